package testkit_test

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/drainit/drainit/internal/testkit"
)

const helperEnv = "TESTKIT_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "spoil" {
		os.Unsetenv(helperEnv)
		fmt.Fprintln(os.Stderr, spoilAndExec(os.Args[1:]))
		os.Exit(97)
	}
	if err := testkit.ResetSignals(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// spoilAndExec execs args with every signal it can touch ignored and
// blocked, and without ResetSignals' marker: the worst state a parent can
// hand down, the way nohup and a CI runner hand down part of it.
func spoilAndExec(args []string) error {
	runtime.LockOSThread()
	for sig := 1; sig <= 64; sig++ {
		if sig == int(syscall.SIGKILL) || sig == int(syscall.SIGSTOP) {
			continue
		}
		// SIG_IGN is 1 in the handler, the first field of the kernel's
		// struct sigaction on amd64 and arm64; 8 is its sigset_t's size.
		act := [4]uint64{1}
		if _, _, errno := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&act)), 0, 8, 0, 0); errno != 0 {
			return fmt.Errorf("ignoring signal %d: %w", sig, errno)
		}
	}
	all := unix.Sigset_t{}
	for i := range all.Val {
		all.Val[i] = ^uint64(0)
	}
	if err := unix.PthreadSigmask(unix.SIG_SETMASK, &all, nil); err != nil {
		return err
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "DRAINIT_TEST_SIGNALS_RESET=")
	})
	return syscall.Exec(args[0], args, env)
}

// A child of a test binary gets no signal blocked or ignored. cat is the
// witness, not the test binary: the Go runtime would install its own
// handlers over most inherited ignores and hide them.
func TestChildSignalState(t *testing.T) {
	out, err := exec.Command("cat", "/proc/self/status").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"SigBlk", "SigIgn"} {
		if v := statusMask(t, string(out), field); v != 0 {
			t.Errorf("%s: %016x, want none:\n%s", field, v, out)
		}
	}
}

// The same, with the test binary started in the worst state.
func TestResetSignalsUndoesSpoiledState(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, self, "-test.run=^TestChildSignalState$", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"=spoil")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestChildSignalState") {
		t.Fatalf("%v:\n%s", err, out)
	}
}

// statusMask reads a hex signal mask line like "SigIgn:\t0000000000000002".
func statusMask(t *testing.T, status, field string) uint64 {
	t.Helper()
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in:\n%s", field, status)
	return 0
}
