// Package testkit holds what drainit's integration tests in several
// packages need alike: a known signal state for the processes they start,
// the strict-skip rule of CI, a pseudo-terminal read line by line and a
// recorder of output lines. It is for tests only.
package testkit

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// SkipOrFail skips a test that cannot run here, except under
// DRAINIT_TEST_STRICT=1, where a skip would hide a test CI must run.
func SkipOrFail(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("DRAINIT_TEST_STRICT") == "1" {
		t.Fatalf("cannot run (DRAINIT_TEST_STRICT=1 forbids skipping): %s", why)
	}
	t.Skip(why)
}

// OpenPTY opens a pseudo-terminal and returns its master and slave. The
// master is closed with the test; the slave is the caller's to close.
func OpenPTY(t testing.TB) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		SkipOrFail(t, "no pseudo-terminals here: "+err.Error())
	}
	t.Cleanup(func() { master.Close() })
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	return master, slave
}

// Terminal is what a pseudo-terminal's master has read, line by line.
type Terminal struct {
	lines   chan string
	seen    []string
	timeout time.Duration
}

// ReadTerminal reads master until it fails (EIO once every slave is
// closed); WaitFor gives up after timeout.
func ReadTerminal(master *os.File, timeout time.Duration) *Terminal {
	term := &Terminal{lines: make(chan string, 1000), timeout: timeout}
	go func() {
		defer close(term.lines)
		buf := make([]byte, 4096)
		var acc string
		for {
			n, err := master.Read(buf)
			acc += string(buf[:n])
			for {
				i := strings.IndexByte(acc, '\n')
				if i < 0 {
					break
				}
				term.lines <- strings.TrimRight(acc[:i], "\r")
				acc = acc[i+1:]
			}
			if err != nil {
				return
			}
		}
	}()
	return term
}

// WaitFor reads lines until one contains s.
func (term *Terminal) WaitFor(t testing.TB, s string) {
	t.Helper()
	deadline := time.After(term.timeout)
	for {
		select {
		case l, ok := <-term.lines:
			if !ok {
				t.Fatalf("the terminal closed before %q:\n%s", s, term.All())
			}
			term.seen = append(term.seen, l)
			if strings.Contains(l, s) {
				return
			}
		case <-deadline:
			t.Fatalf("no %q on the terminal:\n%s", s, term.All())
		}
	}
}

// All is every line read so far by WaitFor.
func (term *Terminal) All() string { return strings.Join(term.seen, "\n") }

// ImpossiblePID is pid_max, one above the highest PID the kernel gives:
// a PID that no process can have, for tests of a process that is gone.
func ImpossiblePID(t testing.TB) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if _, err := fmt.Sscan(string(b), &n); err != nil {
		t.Fatalf("/proc/sys/kernel/pid_max: %v", err)
	}
	return n
}
