package main_test

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drainit/drainit/internal/testkit"
)

const long = 20 * time.Second // a deadline for things that take milliseconds

// Every catchable signal except the ones drainit keeps reaches the app;
// SIGURG and SIGCHLD do not.
func TestForwardsSignals(t *testing.T) {
	forEachMode(t, func(t *testing.T, m mode) {
		p := start(t, m, opts{env: helper("signals", "HELPER_EXIT_ON=15", "GODEBUG=asyncpreemptoff=1")}, "--", selfBin)
		p.waitLine(`^ready`, long)
		for s := syscall.Signal(1); s < 32; s++ {
			switch s {
			case syscall.SIGKILL, syscall.SIGSTOP, syscall.SIGCHLD, syscall.SIGURG,
				syscall.SIGPIPE, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGPROF,
				syscall.SIGTERM, syscall.SIGINT:
				continue
			}
			p.signal(s)
			p.waitLine(fmt.Sprintf(`^signal %d$`, s), long)
		}
		for _, s := range []syscall.Signal{syscall.SIGURG, syscall.SIGCHLD, syscall.SIGPIPE, syscall.SIGTTIN, syscall.SIGTTOU} {
			p.signal(s)
		}
		p.signal(syscall.SIGWINCH) // a sentinel: it is forwarded after the rest were handled
		// drainit's log and the app's output interleave: the kept line may
		// come after the sentinel's, so it does not move the cursor.
		p.waitSeen(`signal kept signal=PIPE`, long)
		p.waitLine(`^signal 28$`, long)
		p.signal(syscall.SIGTERM)
		if code := p.wait(long); code != 0 {
			t.Fatalf("exit code %d, want 0", code)
		}
		for _, s := range []syscall.Signal{syscall.SIGURG, syscall.SIGCHLD, syscall.SIGPIPE, syscall.SIGTTIN, syscall.SIGTTOU} {
			if regexp.MustCompile(fmt.Sprintf(`(?m)^signal %d$`, s)).MatchString(p.transcript()) {
				t.Errorf("signal %d reached the app", s)
			}
		}
	})
}

// Orphans are reaped: none is left a zombie.
func TestReapsOrphans(t *testing.T) {
	const n = 200
	script := fmt.Sprintf(`i=0; while [ $i -lt %d ]; do sh -c 'true &'; i=$((i+1)); done; echo spawned; exec "$0"`, n)
	forEachMode(t, func(t *testing.T, m mode) {
		p := start(t, m, opts{env: helper("signals", "HELPER_EXIT_ON=15")}, "--", "sh", "-c", script, selfBin)
		p.waitLine(`^spawned`, long)
		p.waitLine(`^ready`, long)
		// drainit logs a reap after wait4 returns, and the test reads its
		// lines later still: the count is waited for too.
		reaped := func() int { return strings.Count(p.transcript(), "debug: reaped pid=") }
		eventually(t, long, fmt.Sprintf("no child but the app, and %d orphans reaped", n), func() bool {
			return len(children(p.pid)) == 1 && reaped() >= n
		})
		p.signal(syscall.SIGTERM)
		if code := p.wait(long); code != 0 {
			t.Fatalf("exit code %d", code)
		}
	})
}

// Kubernetes or a person may send SIGTERM again: a Go PID 1 whose handler
// was released would die with status 2 on the second one.
func TestRepeatedTerm(t *testing.T) {
	forEachMode(t, func(t *testing.T, m mode) {
		p := start(t, m, opts{env: helper("signals")}, "--grace", "5s", "--stop-timeout", "2s", "--", selfBin)
		p.waitLine(`^ready`, long)
		p.signal(syscall.SIGTERM)
		p.waitLine(`^signal 15$`, long)
		p.signal(syscall.SIGTERM)
		p.waitLine(`already stopping: ignoring SIGTERM`, long)
		p.signal(syscall.SIGTERM)
		p.waitLine(`already stopping: ignoring SIGTERM`, long)
		if st := children(p.pid); len(st) != 1 {
			t.Fatalf("drainit's children: %v", st)
		}
		// The app ignores its stop signal: SIGKILL at --stop-timeout.
		p.waitLine(`did not stop in time: sending SIGKILL`, long)
		if code := p.wait(long); code != 137 {
			t.Fatalf("exit code %d, want 137", code)
		}
	})
}

// As a subreaper, an orphan's new parent is drainit.
func TestSubreaperAdoptsOrphans(t *testing.T) {
	for _, group := range []bool{false, true} {
		m := mode{pid1: false, group: group}
		t.Run(m.String(), func(t *testing.T) {
			p := start(t, m, opts{env: helper("signals", "HELPER_EXIT_ON=15")}, "--", "sh", "-c", `sh -c 'sleep 1000 & echo orphan=$!'; exec "$0"`, selfBin)
			orphan, _ := strconv.Atoi(p.waitLine(`^orphan=(\d+)`, long)[1])
			p.waitLine(`^ready`, long)
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", orphan))
			if err != nil {
				t.Fatal(err)
			}
			f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
			if f[1] != strconv.Itoa(p.pid) {
				t.Fatalf("orphan's parent is %s, want drainit %d", f[1], p.pid)
			}
			p.signal(syscall.SIGTERM)
			if code := p.wait(long); code != 0 {
				t.Fatalf("exit code %d", code)
			}
			if err := syscall.Kill(orphan, 0); err == nil {
				t.Fatalf("orphan %d still alive", orphan)
			}
		})
	}
}

func TestStdioPassesThrough(t *testing.T) {
	forEachMode(t, func(t *testing.T, m mode) {
		p := start(t, m, opts{stdin: strings.NewReader("hello through drainit\n")}, "--", "cat")
		p.waitLine(`^hello through drainit$`, long)
		if code := p.wait(long); code != 0 {
			t.Fatalf("exit code %d", code)
		}
	})
}

// The app exits and leaves a stray behind: drainit ends it and exits with
// the app's code instead of waiting for it.
func TestEndsStrays(t *testing.T) {
	forEachMode(t, func(t *testing.T, m mode) {
		p := start(t, m, opts{}, "--grace", "5s", "--stop-timeout", "2s", "--", "sh", "-c", `sleep 1000 & exit 7`)
		p.waitLine(`ending the processes the app left behind count=1`, long)
		if code := p.wait(long); code != 7 {
			t.Fatalf("exit code %d, want 7", code)
		}
	})
}

// A stray that ignores TERM is killed when --stop-timeout has passed.
func TestKillsStubbornStrays(t *testing.T) {
	forEachMode(t, func(t *testing.T, m mode) {
		fifo := t.TempDir() + "/ready"
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Fatal(err)
		}
		// The app waits until the stray ignores TERM, then exits.
		script := `"$0" sleep 1000 > "$1" & read line < "$1"; echo "$line"; exit 3`
		p := start(t, m, opts{env: helper("ignterm")}, "--grace", "5s", "--stop-timeout", "1s", "--", "sh", "-c", script, selfBin, fifo)
		p.waitLine(`^ignoring TERM`, long)
		p.waitLine(`did not stop in time: sent SIGKILL`, long)
		if code := p.wait(long); code != 3 {
			t.Fatalf("exit code %d, want 3", code)
		}
	})
}

// Ctrl-C typed on a terminal reaches the app, which owns the terminal's
// foreground; drainit exits with 130.
func TestCtrlCOnTerminal(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			t.Parallel()
			master, slave := testkit.OpenPTY(t)
			argv := []string{drainitBin, "--log-level", "debug", "--", "sh", "-c", "echo ready; exec sleep 1000"}
			if m.group {
				argv = append([]string{drainitBin, "--group"}, argv[1:]...)
			}
			if m.pid1 {
				needNamespaces(t)
				argv = append([]string{"unshare", "--pid", "--fork", "--mount-proc"}, argv...)
			}
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// The test keeps the slave open: once the last one closes, Linux
			// may drop what is still buffered and the master reads EIO.
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); slave.Close() })
			term := testkit.ReadTerminal(master, long)
			term.WaitFor(t, "ready")
			if _, err := master.Write([]byte{3}); err != nil { // ^C
				t.Fatal(err)
			}
			err := cmd.Wait()
			if code := cmd.ProcessState.ExitCode(); code != 130 {
				t.Fatalf("exit code %d (%v), want 130:\n%s", code, err, term.All())
			}
			term.WaitFor(t, "exiting code=130") // written before the exit, so buffered by now
			for l := range strings.SplitSeq(term.All(), "\n") {
				if strings.Contains(l, "signal=INT") {
					t.Fatalf("drainit itself got the ^C: %s", l)
				}
			}
		})
	}
}
