// Package within runs the node tests' commands (kubectl, ctr, docker,
// start-apiserver) with a bound on how long each may take, so that a
// command that hangs fails its own test with its name and output instead
// of stalling the whole run until go test's -timeout.
package within

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// Output runs cmd as cmd.Output does, killing it after d.
func Output(cmd *exec.Cmd, d time.Duration) ([]byte, error) {
	var out bytes.Buffer
	cmd.Stdout = &out
	err := run(cmd, d)
	return out.Bytes(), err
}

// CombinedOutput runs cmd as cmd.CombinedOutput does, killing it after d.
func CombinedOutput(cmd *exec.Cmd, d time.Duration) ([]byte, error) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := run(cmd, d)
	return out.Bytes(), err
}

// Run runs cmd with its own stdout and stderr, killing it after d.
func Run(cmd *exec.Cmd, d time.Duration) error {
	return run(cmd, d)
}

func run(cmd *exec.Cmd, d time.Duration) error {
	// A child the command leaves behind may hold its output pipes open;
	// Wait gives up on them this long after the command itself exits.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return err
	}
	killed := make(chan struct{})
	timer := time.AfterFunc(d, func() {
		close(killed)
		_ = cmd.Process.Kill()
	})
	err := cmd.Wait()
	if !timer.Stop() {
		<-killed
		return fmt.Errorf("%s: still running after %v, killed", strings.Join(cmd.Args, " "), d)
	}
	return err
}
