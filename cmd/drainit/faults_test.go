package main_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A burst of thousands of signals of mixed kinds: drainit and the app
// survive it, and the stop signal after it still works.
func TestSignalBurst(t *testing.T) {
	for _, m := range []mode{{pid1: true}, {pid1: false}} {
		t.Run(m.String(), func(t *testing.T) {
			t.Parallel()
			p := start(t, m, opts{env: helper("signals", "HELPER_EXIT_ON=15", "GODEBUG=asyncpreemptoff=1")}, "--", selfBin)
			p.waitLine(`^ready`, long)
			mix := []syscall.Signal{syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGHUP, syscall.SIGWINCH, syscall.SIGCHLD,
				syscall.SIGURG, syscall.SIGPIPE, syscall.SIGCONT, syscall.SIGALRM, syscall.SIGQUIT}
			for i := range 5000 {
				p.signal(mix[i%len(mix)])
			}
			if kids := children(p.pid); len(kids) != 1 {
				t.Fatalf("after the burst drainit has children %v, want the app alone", kids)
			}
			p.signal(syscall.SIGWINCH)
			p.waitLine(`^signal 28$`, long)
			p.signal(syscall.SIGTERM)
			if code := p.wait(long); code != 0 {
				t.Fatalf("exit code %d", code)
			}
		})
	}
}

// The stubborn stray of TestKillsStubbornStrays is reaped, not left a zombie.
func TestStrayIsReaped(t *testing.T) {
	forEachMode(t, func(t *testing.T, m mode) {
		fifo := t.TempDir() + "/ready"
		syscall.Mkfifo(fifo, 0o600)
		script := `"$0" sleep 1000 > "$1" & read line < "$1"; echo "$line"; exit 0`
		p := start(t, m, opts{env: helper("ignterm")}, "--grace", "5s", "--stop-timeout", "500ms", "--", "sh", "-c", script, selfBin, fifo)
		p.waitLine(`^ignoring TERM`, long)
		p.waitLine(`reaped pid=\d+ status="killed by SIGKILL"`, long)
		p.wait(long)
	})
}

// The lock directory is replaced by a file during a drain: its locks are
// released. Made again, it is watched again.
func TestDrainDirectoryReplacedByFile(t *testing.T) {
	root := t.TempDir()
	os.Mkdir(root+"/keep", 0o755)
	os.Mkdir(root+"/l", 0o755)
	os.WriteFile(root+"/keep/k.lock", nil, 0o644)
	os.WriteFile(root+"/l/a.lock", nil, 0o644)
	p := start(t, pid1, opts{env: helper("signals", "HELPER_EXIT_ON=15")}, "--lock", root+"/*/*.lock", "--poll", "1h", "--", selfBin)
	p.waitLine(`^ready`, long)
	p.signal(syscall.SIGTERM)
	p.waitLine(`draining by=SIGTERM locks="2 `, long)
	os.RemoveAll(root + "/l")
	os.WriteFile(root+"/l", []byte("not a directory"), 0o644)
	p.waitLine(`released .*/l/a.lock, 1 left`, long)
	os.Remove(root + "/l")
	os.Mkdir(root+"/l", 0o755)
	os.WriteFile(root+"/l/b.lock", nil, 0o644)
	p.waitLine(`new lock while draining path=.*/l/b.lock`, long)
	os.Remove(root + "/l/b.lock")
	os.Remove(root + "/keep/k.lock")
	p.waitLine(`^signal 15$`, long)
	p.wait(long)
}

// nobodyDir is a directory the unprivileged user can use, with copies of
// drainit and the helper in it: the test's own are not theirs to run.
func nobodyDir(t *testing.T) (dir, bin, self string) {
	t.Helper()
	needNamespaces(t) // root, to switch users
	dir, err := os.MkdirTemp("", "drainit-nobody")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777)
	bin, self = filepath.Join(dir, "drainit"), filepath.Join(dir, "helper")
	for src, dst := range map[string]string{drainitBin: bin, selfBin: self} {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(dst, data, 0o755)
	}
	return dir, bin, self
}

const nobody = 65534

// runAs starts bin as the unprivileged user, its output read like start's.
func runAs(t *testing.T, uid int, argv ...string) *proc {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	return launch(t, cmd)
}

// A lock directory made unreadable during a drain: its locks are unknown,
// so they stay held rather than look finished.
func TestDrainDirectoryUnreadable(t *testing.T) {
	dir, bin, _ := nobodyDir(t)
	locks := dir + "/lock"
	os.Mkdir(locks, 0o755)
	os.WriteFile(locks+"/a.lock", nil, 0o644)
	p := runAs(t, nobody, bin, "--lock", locks+"/*.lock", "--poll", "100ms", "--", "sleep", "1000")
	p.waitLine(`started command=`, long)
	p.signal(syscall.SIGTERM)
	p.waitLine(`draining by=SIGTERM locks="1 `, long)
	os.Chmod(locks, 0o700)
	p.waitLine(`warn: cannot read lock directory; counting the locks seen in it before as held dir=`+locks+` locks=1`, long)
	if strings.Contains(p.transcript(), "released") {
		t.Fatal("an unreadable directory's lock was released")
	}
	os.Chmod(locks, 0o755)
	os.Remove(locks + "/a.lock")
	p.waitLine(`released .*a.lock, 0 left`, long)
	if code := p.wait(long); code != 143 {
		t.Fatalf("exit code %d, want 143 (sleep killed by the stop signal)", code)
	}
}

// Tens of thousands of lock files made and removed in a burst overflow the
// inotify queue; drainit rescans and still decides right: the one lock
// that stays is held, a new one is seen.
func TestDrainEventOverflow(t *testing.T) {
	dir := lockDir(t)
	os.WriteFile(dir+"/keep.lock", nil, 0o644)
	// A long grace: the burst takes seconds on a loaded machine, and the
	// drain must end by the release, not by the deadline.
	p := start(t, pid1, opts{env: helper("signals", "HELPER_EXIT_ON=15")}, "--lock", dir+"/*.lock", "--poll", "1h", "--grace", "10m", "--", selfBin)
	p.waitLine(`^ready`, long)
	p.signal(syscall.SIGTERM)
	p.waitLine(`draining by=SIGTERM locks="1 `, long)
	const n = 30000
	for i := range n {
		os.WriteFile(fmt.Sprintf("%s/burst-%d.lock", dir, i), nil, 0o644)
	}
	for i := range n {
		os.Remove(fmt.Sprintf("%s/burst-%d.lock", dir, i))
	}
	os.WriteFile(dir+"/after.lock", nil, 0o644)
	p.waitSeen(`new lock while draining path=.*/after.lock|locks released, \d+ new, 2 left`, 2*long)
	if strings.Contains(p.transcript(), "\nsignal 15\n") {
		t.Fatal("stopped the app while keep.lock was held")
	}
	os.Remove(dir + "/keep.lock")
	os.Remove(dir + "/after.lock")
	p.waitLine(`^signal 15$`, 2*long)
	if !p.has("drain done") || p.has("drain deadline") {
		t.Fatal("the drain did not end by the release")
	}
	p.wait(long)
	// Whether the kernel's queue (fs.inotify.max_queued_events) overflowed
	// depends on how fast drainit read it; the decisions above must be
	// right either way.
	t.Logf("queue overflowed: %v", p.has("event queue overflowed"))
}

// drainit killed with SIGKILL when it is not PID 1: the app gets SIGTERM
// (its parent-death signal), rather than run on with nobody to stop it.
func TestKilledSubreaperStopsApp(t *testing.T) {
	for _, group := range []bool{false, true} {
		m := mode{group: group}
		t.Run(m.String(), func(t *testing.T) {
			p := start(t, m, opts{env: helper("signals", "HELPER_EXIT_ON=15")}, "--", selfBin)
			p.waitLine(`^ready`, long)
			p.signal(syscall.SIGKILL)
			p.waitLine(`^signal 15$`, long)
		})
	}
}

// A closed or broken stdout and stderr must not stop drainit: it keeps
// supervising and exits with the app's code.
func TestClosedOutput(t *testing.T) {
	out := t.TempDir() + "/app.out"
	app := fmt.Sprintf(`echo ready > %s; exec sleep 1000`, out)
	for _, how := range []string{"closed", "broken"} {
		t.Run(how, func(t *testing.T) {
			var cmd *exec.Cmd
			switch how {
			case "closed":
				cmd = exec.Command("sh", "-c", `exec "$@" >&- 2>&-`, "sh", drainitBin, "--log-level", "debug", "--", "sh", "-c", app)
			case "broken":
				cmd = exec.Command(drainitBin, "--log-level", "debug", "--", "sh", "-c", app)
				r, w, _ := os.Pipe()
				r.Close() // every write drainit makes now gets EPIPE
				cmd.Stdout, cmd.Stderr = w, w
				defer w.Close()
			}
			os.Remove(out)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			eventually(t, long, "the app to start", func() bool { _, err := os.Stat(out); return err == nil })
			for range 20 { // each makes drainit write a debug line
				cmd.Process.Signal(syscall.SIGWINCH) // sleep ignores it
			}
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(long):
				cmd.Process.Kill()
				t.Fatal("drainit did not exit")
			}
			if code := cmd.ProcessState.ExitCode(); code != 143 {
				t.Fatalf("exit code %d (%v), want 143", code, cmd.ProcessState)
			}
		})
	}
}

// A marker in a read-only directory is refused before the app starts.
func TestMarkerReadOnly(t *testing.T) {
	needNamespaces(t)
	dir := t.TempDir()
	cmd := exec.Command("unshare", "--mount", "sh", "-c", `mount -t tmpfs -o ro tmpfs "$1" && exec "$0" --marker "$1/draining" -- touch "$1/started"`, drainitBin, dir)
	out, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 2 {
		t.Fatalf("exit code %d (%v), want 2: %s", code, err, out)
	}
	if !strings.Contains(string(out), "is not writable") || strings.Count(string(out), "\n") != 1 {
		t.Fatalf("want one line saying the directory is not writable, got %q", out)
	}
}
