package main_test

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// run starts a drainit subcommand that is not a supervisor (no mode).
func run(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(drainitBin, args...)
	cmd.Env = append(os.Environ(), env...)
	return launch(t, cmd)
}

func waitCmd(pattern string, extra ...string) []string {
	return append([]string{"wait", "--log-to-pid1=false", "--lock", pattern}, extra...)
}

func TestWaitNothingHeld(t *testing.T) {
	p := run(t, nil, waitCmd(lockDir(t)+"/*.lock")...)
	if code := p.wait(long); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	p.waitLine(`no lock held`, long)
}

func TestWaitBlocksUntilReleased(t *testing.T) {
	dir := lockDir(t)
	os.WriteFile(dir+"/a.lock", nil, 0o644)
	os.WriteFile(dir+"/b.lock", nil, 0o644)
	p := run(t, nil, waitCmd(dir+"/*.lock")...)
	p.waitLine(`waiting for 2 locks: .*a.lock, .*b.lock`, long)
	os.Remove(dir + "/a.lock")
	p.waitLine(`released .*a.lock, 1 left`, long)
	select {
	case <-p.done:
		t.Fatal("wait returned while b.lock is held")
	default:
	}
	os.Remove(dir + "/b.lock")
	if code := p.wait(long); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

func TestWaitTimeout(t *testing.T) {
	dir := lockDir(t)
	os.WriteFile(dir+"/a.lock", nil, 0o644)
	os.WriteFile(dir+"/b.lock", nil, 0o644)
	p := run(t, nil, waitCmd(dir+"/*.lock", "--timeout", "300ms")...)
	if code := p.wait(long); code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
	m := p.waitLine(`error: gave up after waiting (\S+) \(--timeout 300ms\) with 2 locks still held: .*a.lock, .*b.lock`, long)
	if d, err := time.ParseDuration(m[1]); err != nil || d < 300*time.Millisecond {
		t.Fatalf("waited %q, want how long it waited: at least the 300ms timeout", m[1])
	}
}

func TestWaitHelp(t *testing.T) {
	p := run(t, nil, "wait", "--help")
	if code := p.wait(long); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	m := regexp.MustCompile(`(?m)^  --timeout .*$`).FindString(p.transcript())
	if !strings.Contains(m, "(default no limit)") || strings.Count(m, "default") != 1 {
		t.Fatalf("--timeout's help line %q: want its default once, as no limit", m)
	}
}

func TestWaitBadInput(t *testing.T) {
	for _, args := range [][]string{{"wait"}, {"wait", "--lock", "/x/[", "--log-to-pid1=false"}, {"wait", "--lock", "/x/*.lock", "extra"}, {"wait", "--timeout", "soon"}} {
		p := run(t, nil, args...)
		if code := p.wait(long); code != 2 {
			t.Errorf("%q: exit code %d, want 2", args, code)
		}
		if out := p.transcript(); strings.Count(out, "\n") != 0 || !strings.HasPrefix(out, "drainit: ") {
			t.Errorf("%q: want one line, got %q", args, out)
		}
	}
}

// A preStop hook's output goes nowhere; drainit wait's lines must reach
// PID 1's stdout, which kubectl logs shows. Run it inside drainit's PID
// namespace, as the kubelet's exec does.
func TestWaitWritesToPID1(t *testing.T) {
	needNamespaces(t)
	if _, err := exec.LookPath("nsenter"); err != nil {
		skipOrFail(t, "nsenter not found: apt-get install util-linux")
	}
	dir := lockDir(t)
	os.WriteFile(dir+"/job.lock", nil, 0o644)
	p := start(t, pid1, opts{env: helper("signals", "HELPER_EXIT_ON=15")}, "--", selfBin)
	p.waitLine(`^ready`, long)
	hook := exec.Command("nsenter", "--target", strconv.Itoa(p.pid), "--pid", "--mount", "--", drainitBin, "wait", "--lock", dir+"/*.lock")
	hookOut, err := hook.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := hook.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hook.Process.Kill(); hook.Wait() })
	p.waitLine(`^drainit wait .* waiting for 1 lock: .*job.lock`, long)
	os.Remove(dir + "/job.lock")
	p.waitLine(`^drainit wait .* released .*job.lock, 0 left`, long)
	sc := bufio.NewScanner(hookOut)
	if !sc.Scan() || !strings.Contains(sc.Text(), "waiting for 1 lock") {
		t.Fatalf("the hook's own stderr: %q", sc.Text())
	}
	if err := hook.Wait(); err != nil {
		t.Fatalf("drainit wait: %v", err)
	}
	p.signal(syscall.SIGTERM)
	p.wait(long)
}

// probe reports whether a process holds an flock on path, as the lock
// watcher judges it: a fresh open and a non-blocking shared lock.
func probe(t *testing.T, path string) bool {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer unix.Close(fd)
	err = unix.Flock(fd, unix.LOCK_SH|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return true
	}
	if err != nil {
		t.Fatal(err)
	}
	return false
}

func TestLockHeldWhileJobRuns(t *testing.T) {
	path := lockDir(t) + "/job.lock"
	p := run(t, helper("signals", "HELPER_EXIT_ON=15"), "lock", path, "--", selfBin)
	p.waitLine(`^ready`, long)
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := strconv.Itoa(p.pid) + "\ndrainit-lock\n"; string(content) != want {
		t.Fatalf("lock content %q, want %q", content, want)
	}
	if !probe(t, path) {
		t.Fatal("no flock held while the job runs")
	}
	p.signal(syscall.SIGTERM) // forwarded to the job, which exits 0
	p.waitLine(`^signal 15$`, long)
	if code := p.wait(long); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("lock file left behind: %v", err)
	}
}

func TestLockExitCodes(t *testing.T) {
	dir := lockDir(t)
	for cmd, want := range map[string]int{"exit 0": 0, "exit 3": 3, "exit 42": 42, "kill -TERM $$": 143, "kill -KILL $$": 137} {
		p := run(t, nil, "lock", dir+"/", "--", "sh", "-c", cmd)
		if code := p.wait(long); code != want {
			t.Errorf("%s: exit code %d, want %d", cmd, code, want)
		}
	}
	p := run(t, nil, "lock", dir+"/", "--", "no-such-command-drainit")
	if code := p.wait(long); code != 127 {
		t.Errorf("missing command: exit code %d, want 127", code)
	}
	// A job script without a #! line runs through /bin/sh, as under the
	// supervisor (TestConformance): the same spawn path.
	script := filepath.Join(t.TempDir(), "job")
	if err := os.WriteFile(script, []byte("echo job ran\nexit 5\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	p = run(t, nil, "lock", dir+"/", "--", script)
	p.waitLine(`^job ran$`, long)
	if code := p.wait(long); code != 5 {
		t.Errorf("script without #!: exit code %d, want 5", code)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("lock files left: %v", ents)
	}
}

// A directory path gives each job a file of its own.
func TestLockUniqueInDirectory(t *testing.T) {
	dir := lockDir(t)
	script := `ls "$0"`
	a := run(t, helper("signals", "HELPER_EXIT_ON=15"), "lock", dir+"/", "--", selfBin)
	a.waitLine(`^ready`, long)
	b := run(t, nil, "lock", dir, "--", "sh", "-c", script, dir)
	if code := b.wait(long); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	names := regexpAll(b.transcript(), `job-\d+-[0-9a-f]+\.lock`)
	if len(names) != 2 || names[0] == names[1] {
		t.Fatalf("want two distinct lock files while both run, got %q", names)
	}
	a.signal(syscall.SIGTERM)
	a.wait(long)
}

func TestLockAlreadyHeld(t *testing.T) {
	path := lockDir(t) + "/only.lock"
	a := run(t, helper("signals", "HELPER_EXIT_ON=15"), "lock", path, "--", selfBin)
	a.waitLine(`^ready`, long)

	b := run(t, nil, "lock", path, "--", "true")
	if code := b.wait(long); code != 1 {
		t.Fatalf("second lock: exit code %d, want 1", code)
	}
	b.waitLine(`lock .*only.lock is held by pid \d+; wait for it with --wait`, long)

	c := run(t, nil, "lock", "--wait", "20s", path, "--", "sh", "-c", "echo got it")
	a.signal(syscall.SIGTERM)
	a.wait(long)
	c.waitLine(`^got it$`, long)
	if code := c.wait(long); code != 0 {
		t.Fatalf("waiting lock: exit code %d", code)
	}
}

// drainit lock killed with SIGKILL: the job still holds the flock, and the
// leftover file counts as released for wait and the supervisor once the
// job is gone.
func TestLockOutlivesKilledWrapper(t *testing.T) {
	dir := lockDir(t)
	path := dir + "/job.lock"
	fifo := t.TempDir() + "/go"
	syscall.Mkfifo(fifo, 0o600)
	// The job: read one line from the fifo, then exit.
	wrapper := run(t, nil, "lock", path, "--", "sh", "-c", `echo started; read x < "$0"; echo finished`, fifo)
	wrapper.waitLine(`^started$`, long)
	wrapper.signal(syscall.SIGKILL)
	wrapper.wait(long)
	if !probe(t, path) {
		t.Fatal("the job lost its flock with its wrapper")
	}

	w := run(t, nil, waitCmd(dir+"/*.lock")...)
	w.waitLine(`waiting for 1 lock`, long)
	sup := start(t, pid1, opts{env: helper("signals", "HELPER_EXIT_ON=15")}, "--lock", dir+"/*.lock", "--poll", "50ms", "--", selfBin)
	sup.waitLine(`^ready`, long)
	sup.signal(syscall.SIGTERM)
	sup.waitLine(`draining by=SIGTERM locks="1 `, long)

	f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("go\n")
	f.Close()

	if code := w.wait(long); code != 0 {
		t.Fatalf("drainit wait: exit code %d", code)
	}
	sup.waitLine(`^signal 15$`, long)
	if code := sup.wait(long); code != 0 {
		t.Fatalf("supervisor: exit code %d", code)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the leftover file should still be there (only judged released): %v", err)
	}
	if !strings.Contains(w.transcript(), "no process holds its flock") {
		t.Error("wait did not say why the leftover was released")
	}
}

func regexpAll(s, re string) []string {
	return regexp.MustCompile(re).FindAllString(s, -1)
}
