package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// reaping times how long each init, as PID 1 of a fresh namespace, takes to
// reap a burst of orphans that are all zombies already: PID 1 is stopped
// while they exit and timed from SIGCONT until it has no child but the app,
// so the orphans' own exits are not counted. The inits take turns, run after
// run; see the orphans role for the app's side.
func reaping(c *config, t *table) error {
	type candidate struct {
		col  string
		init []string
		took []time.Duration
	}
	var cands []*candidate
	if c.tini != "" {
		cands = append(cands, &candidate{col: colTini, init: []string{c.tini, "--"}})
	}
	if c.dumbInit != "" {
		cands = append(cands, &candidate{col: colDumb, init: []string{c.dumbInit, "--"}})
	}
	cands = append(cands, &candidate{col: colDrainit, init: []string{c.drainit, "--log-level", "warn", "--"}})
	for range c.reapRuns {
		for _, k := range cands {
			d, err := reapOnce(c, k.init)
			if err != nil {
				return fmt.Errorf("%s: %w", k.col, err)
			}
			k.took = append(k.took, d)
		}
	}
	for _, k := range cands {
		t.setDur(fmt.Sprintf("reap %d zombie orphans as PID 1, median", c.orphans), k.col, median(k.took))
	}
	return nil
}

func reapOnce(c *config, init []string) (time.Duration, error) {
	argv := append(append(append([]string{}, c.unshare...), "--kill-child"), init...)
	argv = append(argv, c.self, strconv.Itoa(c.orphans))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), roleEnv+"=orphans")
	var errb strings.Builder
	cmd.Stderr = &errb
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 0, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := start(cmd); err != nil {
		return 0, err
	}
	defer func() {
		stdin.Close()
		cmd.Process.Kill() // when all went well, it has exited already
		cmd.Wait()
	}()
	out := bufio.NewScanner(stdout)
	expect := func(want string) error {
		if !out.Scan() || out.Text() != want {
			return fmt.Errorf("want %q from the app, got %q; stderr: %s", want, out.Text(), errb.String())
		}
		return nil
	}
	if err := expect("ready"); err != nil {
		return 0, err
	}
	pid1, err := firstChild(cmd.Process.Pid)
	if err != nil {
		return 0, err
	}
	if err := syscall.Kill(pid1, syscall.SIGSTOP); err != nil {
		return 0, err
	}
	fmt.Fprintln(stdin, "go")
	if err := expect("zombies"); err != nil {
		return 0, err
	}
	begin := time.Now()
	if err := syscall.Kill(pid1, syscall.SIGCONT); err != nil {
		return 0, err
	}
	for len(children(pid1)) > 1 {
		time.Sleep(time.Millisecond) // the sampling period, not a synchronisation
	}
	took := time.Since(begin)
	fmt.Fprintln(stdin, "done")
	if err := cmd.Wait(); err != nil {
		return 0, fmt.Errorf("%v; stderr: %s", err, errb.String())
	}
	return took, nil
}
