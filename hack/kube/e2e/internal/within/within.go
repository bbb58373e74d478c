// Package within runs the node tests' commands (kubectl, ctr, docker,
// start-apiserver, go test) with a bound on how long each may take, so
// that a command that hangs fails its own test with its name and output
// instead of stalling the whole run until go test's -timeout.
package within

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Output runs cmd as cmd.Output does, killed after d.
func Output(cmd *exec.Cmd, d time.Duration) ([]byte, error) {
	var out bytes.Buffer
	cmd.Stdout = &out
	err := run(cmd, d)
	return out.Bytes(), err
}

// CombinedOutput runs cmd as cmd.CombinedOutput does, killed after d.
func CombinedOutput(cmd *exec.Cmd, d time.Duration) ([]byte, error) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := run(cmd, d)
	return out.Bytes(), err
}

// Run runs cmd with its own stdout and stderr, killed after d.
func Run(cmd *exec.Cmd, d time.Duration) error {
	return run(cmd, d)
}

// run starts cmd in a process group of its own, so that what it started
// (go test's test binary, kubectl's helpers) is killed with it.
func run(cmd *exec.Cmd, d time.Duration) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	// A child that escaped the group may hold the output pipes open; Wait
	// gives up on them this long after the command itself has exited.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return err
	}
	killed := make(chan struct{})
	timer := time.AfterFunc(d, func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		close(killed)
	})
	err := cmd.Wait()
	// A command that ended by itself as the bound struck keeps its result.
	if !timer.Stop() && err != nil {
		<-killed
		return fmt.Errorf("%s: still running after %v, killed: %w", strings.Join(cmd.Args, " "), d, err)
	}
	return err
}
