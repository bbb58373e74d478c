package lockwatch_test

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/drainit/drainit/internal/testkit"
	"github.com/drainit/drainit/supervisor/lockwatch"
)

func TestMain(m *testing.M) {
	if err := testkit.ResetSignals(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// TestHelperProcess is not a test: it is the child that other tests start
// from the test binary itself. It lives until its stdin is closed.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("LOCKWATCH_HELPER") != "1" {
		return
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// deadPID returns the PID of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// TestContent runs the stale rules over one file at a time, in both modes.
func TestContent(t *testing.T) {
	t.Parallel()
	dead, live := deadPID(t), os.Getpid()
	pad := strings.Repeat("x", 70)
	for _, tc := range []struct {
		name, content string
		off, on       bool // held with StalePID off, and on
	}{
		{"empty", "", true, true},
		{"no pid", "hello\n", true, true},
		{"dead pid", fmt.Sprintf("%d\n", dead), true, false},
		{"dead pid, spaces, no newline", fmt.Sprintf(" \n\t%d", dead), true, false},
		{"dead pid then words", fmt.Sprintf("%d started by cron\n", dead), true, false},
		{"dead pid glued to text", fmt.Sprintf("%dabc\n", dead), true, true},
		{"live pid", fmt.Sprintf("%d\n", live), true, true},
		{"pid 1", "1\n", true, true},
		{"zero", "0\n", true, true},
		{"negative", fmt.Sprintf("-%d\n", dead), true, true},
		{"too large", "99999999999\n", true, true},
		{"pid after text", fmt.Sprintf("pid %d\n", dead), true, true},
		// A marker with nobody holding the flock: released in both modes,
		// whatever the PID says.
		{"marker, no flock", fmt.Sprintf("%d\n%s\n", live, lockwatch.Marker), false, false},
		{"marker alone, no newline", lockwatch.Marker, false, false},
		{"marker lookalike", lockwatch.Marker + "2\n", true, true},
		{"marker with CR", lockwatch.Marker + "\r\n", true, true},
		{"marker after the first 64 bytes", pad + "\n" + lockwatch.Marker + "\n", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := write(t, t.TempDir()+"/x.lock", tc.content)
			for _, stalePID := range []bool{false, true} {
				opts := lockwatch.Options{Patterns: []string{f}, StalePID: stalePID}
				want := []string{}
				if (stalePID && tc.on) || (!stalePID && tc.off) {
					want = []string{f}
				}
				if got := lockwatch.Scan(opts); !slices.Equal(got, want) {
					t.Errorf("StalePID=%v: Scan = %q, want %q", stalePID, got, want)
				}
			}
		})
	}
}

func TestStalePIDLoggedOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dead := deadPID(t)
	stale := write(t, dir+"/dead.lock", strconv.Itoa(dead)+"\n")
	live := write(t, dir+"/live.lock", strconv.Itoa(os.Getpid())+"\n")
	logs, log := newLogs()
	ch := watch(t, lockwatch.Options{Patterns: []string{dir + "/*.lock"}, StalePID: true, Logger: log})
	waitFor(t, ch, live)

	// More rescans: the stale lock is not logged again.
	other := write(t, dir+"/other.lock", "")
	waitFor(t, ch, live, other)
	remove(t, other)
	waitFor(t, ch, live)
	reason := fmt.Sprintf(`reason="pid %d is gone"`, dead)
	if got := logs.lines(`msg="stale lock"`, "path="+stale, reason); len(got) != 1 {
		t.Errorf("%d log lines about the stale lock, want 1:\n%s", len(got), strings.Join(logs.lines(), ""))
	}

	// Held again (a new job took the name), then stale again: logged again.
	write(t, stale, strconv.Itoa(os.Getpid())+"\n")
	waitFor(t, ch, stale, live)
	write(t, stale, strconv.Itoa(dead)+"\n")
	waitFor(t, ch, live)
	if got := logs.lines(`msg="stale lock"`, "path="+stale); len(got) != 2 {
		t.Errorf("%d log lines about the stale lock, want 2:\n%s", len(got), strings.Join(logs.lines(), ""))
	}
}

// A holder's death touches no directory; the poll is what notices it.
func TestStalePIDNoticedByPolling(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), "LOCKWATCH_HELPER=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()

	f := write(t, t.TempDir()+"/job.lock", strconv.Itoa(cmd.Process.Pid)+"\n")
	ch := watch(t, lockwatch.Options{Patterns: []string{f}, StalePID: true, Poll: 10 * time.Millisecond})
	waitFor(t, ch, f)
	stdin.Close()
	if err := cmd.Wait(); err != nil { // reaped: kill(pid, 0) now says ESRCH
		t.Fatal(err)
	}
	waitFor(t, ch)
}

// flockFile creates a lock file the way `drainit lock` does: O_EXCL, an
// exclusive flock, then the PID and the marker. It returns the descriptor
// that holds the flock.
func flockFile(t *testing.T, path string, pid int) int {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Write(fd, []byte(strconv.Itoa(pid)+"\n"+lockwatch.Marker+"\n")); err != nil {
		t.Fatal(err)
	}
	return fd
}

func TestFlockRule(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dead := deadPID(t)
	held := dir + "/held.lock"
	fd := flockFile(t, held, os.Getpid())
	// drainit lock was killed, but the job that inherited its flock lives
	// on: the flock wins over the dead PID, even with StalePID on.
	orphan := dir + "/orphan.lock"
	flockFile(t, orphan, dead)
	released := write(t, dir+"/released.lock", fmt.Sprintf("%d\n%s\n", os.Getpid(), lockwatch.Marker))
	plain := write(t, dir+"/plain.lock", "hello\n") // no marker: its flock is never probed

	for _, stalePID := range []bool{false, true} {
		opts := lockwatch.Options{Patterns: []string{dir + "/*.lock"}, StalePID: stalePID}
		if got, want := lockwatch.Scan(opts), []string{held, orphan, plain}; !slices.Equal(got, want) {
			t.Errorf("StalePID=%v: Scan = %q, want %q", stalePID, got, want)
		}
	}

	logs, log := newLogs()
	ch := watch(t, lockwatch.Options{Patterns: []string{dir + "/*.lock"}, Poll: 10 * time.Millisecond, Logger: log})
	waitFor(t, ch, held, orphan, plain)
	if err := unix.Flock(fd, unix.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ch, orphan, plain)
	for _, path := range []string{held, released} {
		if got := logs.lines(`msg="stale lock"`, "path="+path, `reason="no process holds its flock"`); len(got) != 1 {
			t.Errorf("%d log lines about %s, want 1:\n%s", len(got), path, strings.Join(logs.lines(), ""))
		}
	}
}

// Between its creation and the marker, a `drainit lock` file is empty, and
// so held; once written, its flock decides.
//
// Not parallel: a test forking a process (the stale-PID ones do) gives its
// child a copy of this test's descriptor until the child's exec closes it,
// and the flock stays held that long. A rescan in that window sees the
// lock held, and with Poll off no later event would correct it.
func TestFlockFileBeingWritten(t *testing.T) {
	dir := t.TempDir()
	ch := watch(t, lockwatch.Options{Patterns: []string{dir + "/*.lock"}})
	waitFor(t, ch)

	path := dir + "/job.lock"
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			unix.Close(fd)
		}
	})
	waitFor(t, ch, path)
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Write(fd, []byte("1\n"+lockwatch.Marker+"\n")); err != nil {
		t.Fatal(err)
	}
	quiet(t, ch) // still held: the write caused a rescan, the flock is taken
	// Released by its holder's exit, as the closing of the last descriptor.
	// That makes no event and Poll is off, so touch the file to cause a
	// rescan.
	unix.Close(fd)
	closed = true
	now := time.Now()
	if err := os.Chtimes(path, now, now); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ch)
}
