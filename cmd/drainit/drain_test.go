package main_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// jobsScript is an app that starts its jobs the way PHP's exec("job &")
// does: through a shell that backgrounds them and exits, so each job is
// orphaned to drainit while it stays in the app's process group. Then the
// app becomes the signal printer.
func jobsScript(dir string, durations []time.Duration) []string {
	var b strings.Builder
	for i, d := range durations {
		fmt.Fprintf(&b, `DRAINIT_TEST_HELPER=job sh -c '"$0" "$@" &' "$0" %s/job-%d.lock %s %d; `, dir, i, d, i)
	}
	b.WriteString(`exec "$0"`)
	return []string{"sh", "-c", b.String(), selfBin}
}

func lockDir(t *testing.T) string {
	d := filepath.Join(t.TempDir(), "lock")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// The first user's scale-down: every job finishes, the app gets its stop
// signal only after the last lock is gone, drainit exits with its code.
func TestDrainWaitsForJobs(t *testing.T) {
	forEachMode(t, func(t *testing.T, m mode) {
		dir := lockDir(t)
		var ds []time.Duration
		for range 5 {
			ds = append(ds, 500*time.Millisecond+rand.N(2500*time.Millisecond))
		}
		// The jobs' work starts with the drain, so all five are held when
		// it starts, however slowly this machine gets there.
		marker := filepath.Join(filepath.Dir(dir), "draining")
		p := start(t, m, opts{env: helper("signals", "HELPER_EXIT_ON=15", "HELPER_AFTER="+marker)},
			append([]string{"--lock", dir + "/*.lock", "--marker", marker, "--grace", "30s", "--"}, jobsScript(dir, ds)...)...)
		for i := range ds {
			p.waitSeen(fmt.Sprintf(`^job %d started`, i), long)
		}
		p.waitSeen(`^ready`, long)
		p.signal(syscall.SIGTERM)
		p.waitLine(`draining by=SIGTERM locks="5 `, long)
		p.waitLine(`^signal 15$`, long)
		if code := p.wait(long); code != 0 {
			t.Fatalf("exit code %d", code)
		}
		out := p.transcript()
		stop := strings.Index(out, "\nsignal 15\n")
		for i := range ds {
			done := strings.Index(out, fmt.Sprintf("\njob %d done\n", i))
			if done < 0 || done > stop {
				t.Errorf("job %d did not finish before the app's stop signal", i)
			}
		}
		if n := strings.Count(out, "drainit") - strings.Count(out, "debug:"); n > 20 {
			t.Errorf("%d info lines for one drain of 5 jobs: too chatty", n)
		}
	})
}

// pid1 is the mode for the tests of single rules: a real PID 1.
var pid1 = mode{pid1: true}

// A lock that never goes: the stop signal at grace - stop-timeout - 1s,
// the lock named, drainit gone before the grace.
func TestDrainDeadline(t *testing.T) {
	dir := lockDir(t)
	stuck := dir + "/stuck.lock"
	os.WriteFile(stuck, nil, 0o644)
	// A shell, not the race-built helper: it exits at once on TERM even
	// on a loaded machine.
	app := `trap "echo got TERM; exit 0" TERM; echo ready; sleep 1000 & wait $!`
	p := start(t, pid1, opts{}, "--lock", dir+"/*.lock", "--grace", "4s", "--stop-timeout", "1s", "--", "sh", "-c", app)
	p.waitLine(`^ready`, long)
	t0 := time.Now()
	p.signal(syscall.SIGTERM)
	p.waitLine(`error: drain deadline reached with 1 lock still held: `+regexp.QuoteMeta(stuck)+`; stopping the app anyway$`, long)
	if d := time.Since(t0); d < 2*time.Second {
		t.Errorf("drain deadline after %v, want 4s - 1s - 1s = 2s", d)
	}
	p.waitLine(`^got TERM$`, long)
	if code := p.wait(long); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if d := p.logSpan(`draining by=SIGTERM`, `exiting code=`); d >= 4*time.Second {
		t.Errorf("drainit exited %v after SIGTERM, past its 4s grace", d)
	}
}

// The app ignores its stop signal after a deadline drain: SIGKILL comes in
// time for drainit to be gone before the grace.
func TestDrainDeadlineAppIgnoresStop(t *testing.T) {
	dir := lockDir(t)
	os.WriteFile(dir+"/stuck.lock", nil, 0o644)
	p := start(t, pid1, opts{env: helper("ignterm")}, "--lock", dir+"/*.lock", "--grace", "4s", "--stop-timeout", "1s", "--", selfBin, "sleep", "1000")
	p.waitLine(`^ignoring TERM`, long)
	p.signal(syscall.SIGTERM)
	if code := p.wait(long); code != 137 {
		t.Fatalf("exit code %d, want 137", code)
	}
	if d := p.logSpan(`draining by=SIGTERM`, `exiting code=`); d >= 4*time.Second {
		t.Errorf("drainit exited %v after SIGTERM, past its 4s grace", d)
	}
}

// drainWith starts a drain held by one lock and returns drainit and the lock.
func drainWith(t *testing.T, sig syscall.Signal, exitOn string, args ...string) (*proc, string) {
	t.Helper()
	dir := lockDir(t)
	lock := dir + "/job.lock"
	os.WriteFile(lock, nil, 0o644)
	p := start(t, pid1, opts{env: helper("signals", "HELPER_EXIT_ON="+exitOn)}, append(append([]string{"--lock", dir + "/*.lock"}, args...), "--", selfBin)...)
	p.waitLine(`^ready`, long)
	p.signal(sig)
	p.waitLine(`draining by=`, long)
	return p, lock
}

func TestDrainIgnoresRepeatedTerm(t *testing.T) {
	p, lock := drainWith(t, syscall.SIGTERM, "15")
	p.signal(syscall.SIGTERM)
	p.waitLine(`already draining: ignoring SIGTERM`, long)
	p.signal(syscall.SIGTERM)
	p.waitLine(`already draining: ignoring SIGTERM`, long)
	os.Remove(lock)
	p.waitLine(`released .*job.lock, 0 left`, long)
	if code := p.wait(long); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if n := strings.Count(p.transcript(), "\nsignal 15\n"); n != 1 {
		t.Fatalf("the app got SIGTERM %d times, want once", n)
	}
}

// Ctrl-C twice: the second SIGINT ends the drain, and the app gets the
// signal that started it.
func TestDrainSecondInt(t *testing.T) {
	p, _ := drainWith(t, syscall.SIGINT, "2")
	p.signal(syscall.SIGINT)
	p.waitLine(`second SIGINT: ending the drain now`, long)
	p.waitLine(`^signal 2$`, long)
	if code := p.wait(long); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

func TestDrainStopSignal(t *testing.T) {
	p, lock := drainWith(t, syscall.SIGTERM, "28", "--stop-signal", "WINCH")
	os.Remove(lock)
	p.waitLine(`^signal 28$`, long)
	if code := p.wait(long); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if strings.Contains(p.transcript(), "\nsignal 15\n") {
		t.Fatal("the app got SIGTERM, want only WINCH")
	}
}

func TestDrainQuietSignalAndMarker(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "draining")
	os.WriteFile(marker, nil, 0o644) // left by an earlier run: removed at start
	p, lock := drainWith(t, syscall.SIGTERM, "15", "--quiet-signal", "USR2", "--marker", marker)
	if !p.has("removed a drain marker left from before") {
		t.Error("the old marker was not removed at start")
	}
	p.waitLine(`^signal 12$`, long)
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("marker: %v", err)
	}
	os.Remove(lock)
	p.waitLine(`^signal 15$`, long)
	if code := p.wait(long); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

func TestDrainDelay(t *testing.T) {
	p := start(t, pid1, opts{env: helper("signals", "HELPER_EXIT_ON=15")}, "--delay", "1500ms", "--", selfBin)
	p.waitLine(`^ready`, long)
	t0 := time.Now()
	p.signal(syscall.SIGTERM)
	p.waitLine(`^signal 15$`, long)
	if d := time.Since(t0); d < 1500*time.Millisecond {
		t.Fatalf("stop signal %v after SIGTERM, want at least the 1.5s delay", d)
	}
	p.wait(long)
}

// Events, not polling, find a lock directory that appears during the drain
// (watched through its parent) and one removed and made again: --poll is
// an hour.
func TestDrainDirectoriesComeAndGo(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"keep", "gone"} {
		os.Mkdir(filepath.Join(root, d), 0o755)
	}
	os.WriteFile(root+"/keep/k.lock", nil, 0o644)
	os.WriteFile(root+"/gone/g.lock", nil, 0o644)
	p := start(t, pid1, opts{env: helper("signals", "HELPER_EXIT_ON=15")},
		"--lock", root+"/*/*.lock", "--lock", root+"/later/sub/*.lock", "--poll", "1h", "--", selfBin)
	p.waitLine(`^ready`, long)
	p.signal(syscall.SIGTERM)
	p.waitLine(`draining by=SIGTERM locks="2 `, long)

	os.RemoveAll(root + "/gone")
	p.waitLine(`released .*/gone/g.lock, 1 left`, long)
	os.Mkdir(root+"/gone", 0o755)
	os.WriteFile(root+"/gone/again.lock", nil, 0o644)
	p.waitLine(`new lock while draining path=.*/gone/again.lock`, long)

	os.MkdirAll(root+"/later/sub", 0o755)
	os.WriteFile(root+"/later/sub/l.lock", nil, 0o644)
	p.waitLine(`new lock while draining path=.*/later/sub/l.lock`, long)

	for _, f := range []string{"/keep/k.lock", "/gone/again.lock", "/later/sub/l.lock"} {
		os.Remove(root + f)
	}
	p.waitLine(`^signal 15$`, long)
	if code := p.wait(long); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

func TestDrainLockVariableList(t *testing.T) {
	a, b := lockDir(t), lockDir(t)
	os.WriteFile(a+"/1.lock", nil, 0o644)
	os.WriteFile(b+"/2.lock", nil, 0o644)
	p := start(t, pid1, opts{env: append(helper("signals", "HELPER_EXIT_ON=15"), "DRAINIT_LOCK="+a+"/*.lock:"+b+"/*.lock")}, "--", selfBin)
	p.waitLine(`^ready`, long)
	p.signal(syscall.SIGTERM)
	p.waitLine(`draining by=SIGTERM locks="2 `, long)
	os.Remove(a + "/1.lock")
	p.waitLine(`released .*/1.lock, 1 left`, long)
	os.Remove(b + "/2.lock")
	p.waitLine(`^signal 15$`, long)
	p.wait(long)
}

func TestDrainStalePID(t *testing.T) {
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	dir := lockDir(t)
	os.WriteFile(dir+"/dead.lock", []byte(fmt.Sprintf("%d\n", dead.Process.Pid)), 0o644)
	p, lock := drainWith(t, syscall.SIGTERM, "15", "--stale-pid", "--lock", dir+"/*.lock")
	p.waitSeen(`stale lock path=.*dead.lock reason="pid \d+ is gone"`, long)
	os.Remove(lock)
	p.waitLine(`^signal 15$`, long)
	p.wait(long)
}

// The app exits by itself while a job runs: drainit drains first (exiting
// would kill the job with PID 1's namespace), then exits with the app's code.
func TestDrainAfterAppExit(t *testing.T) {
	forEachMode(t, func(t *testing.T, m mode) {
		dir := lockDir(t)
		// The job's second counts from the drain's start (its marker), so
		// the lock is still held when the drain looks, however loaded
		// the machine.
		marker := filepath.Join(filepath.Dir(dir), "draining")
		script := fmt.Sprintf(`DRAINIT_TEST_HELPER=job HELPER_AFTER=%s sh -c '"$0" "$@" &' "$0" %s/j.lock 1s 1; while [ ! -e %s/j.lock ]; do :; done; exit 5`, marker, dir, dir)
		p := start(t, m, opts{}, "--lock", dir+"/*.lock", "--marker", marker, "--", "sh", "-c", script, selfBin)
		p.waitLine(`draining by="the app's exit" locks="1 `, long)
		p.waitLine(`^job 1 done`, long)
		if code := p.wait(long); code != 5 {
			t.Fatalf("exit code %d, want 5", code)
		}
	})
}

// php:apache's STOPSIGNAL trap: WINCH goes past the drain, the app kills
// its whole process group, the job with it, and the job's lock stays. As
// PID 1 drainit sees that no process is left that could release it and
// exits at once with the app's code, not at the end of its 60s grace; as a
// subreaper it cannot see every process that may hold it, and waits.
func TestDrainEndsWhenNobodyIsLeft(t *testing.T) {
	forEachMode(t, func(t *testing.T, m mode) {
		dir := lockDir(t)
		lock := dir + "/j.lock"
		app := fmt.Sprintf(`trap 'kill -9 0' WINCH; DRAINIT_TEST_HELPER=job "$0" %s 1000s 1 & while [ ! -e %s ]; do :; done; echo ready; sleep 1000 & wait $!`, lock, lock)
		p := start(t, m, opts{}, "--lock", dir+"/*.lock", "--grace", "60s", "--", "sh", "-c", app, selfBin)
		p.waitLine(`^ready`, long)
		p.signal(syscall.SIGWINCH)
		p.waitLine(`app exited status="killed by SIGKILL"`, long)
		p.waitLine(`draining by="the app's exit" locks="1 `, long)
		if m.pid1 {
			p.waitLine(`warn: the app has exited and no process is left that could release 1 lock: `+regexp.QuoteMeta(lock)+`; ending the drain now$`, long)
		} else {
			p.waitLine(`the app has exited and left no process behind; still waiting for 1 lock`, long)
			if _, err := os.Stat(lock); err != nil {
				t.Fatalf("the lock is gone before the test removed it: %v", err)
			}
			os.Remove(lock)
			p.waitLine(`released .*j.lock, 0 left`, long)
		}
		// A deadline for the test, far below the grace: not a measure of speed.
		if code := p.wait(long); code != 137 {
			t.Fatalf("exit code %d, want the app's 137", code)
		}
		if p.has("drain deadline") || p.has("stopping the app") {
			t.Error("drainit waited for the deadline, or claims to stop an app that is gone")
		}
	})
}

// A --lock whose directory does not exist is warned about at start and at
// the drain, and the first line shows what decides a stop.
func TestLockDirMissing(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "app", "lock")
	p := start(t, pid1, opts{env: append(helper("signals", "HELPER_EXIT_ON=28"), "DRAINIT_LOCK="+missing+"/*.lock")},
		"--grace", "45s", "--stop-signal", "WINCH", "--drain-on", "TERM,QUIT", "--", selfBin)
	first := p.waitLine(`^drainit .*`, long)[0]
	want := `^drainit \S+ started command=\S+ pid=\d+ mode="PID 1" lock=` + regexp.QuoteMeta(missing) + `/\*\.lock grace=45s stop-signal=WINCH drain-on=TERM,QUIT$`
	if !regexp.MustCompile(want).MatchString(first) {
		t.Errorf("first line %q, want it to match %q", first, want)
	}
	warn := `warn: lock directory ` + regexp.QuoteMeta(missing) + ` does not exist: no lock can be held there; create it in the image \(RUN mkdir -p ` + regexp.QuoteMeta(missing) + `\) or correct DRAINIT_LOCK`
	p.waitLine(warn, long)
	p.waitSeen(`^ready`, long)
	p.signal(syscall.SIGTERM)
	p.waitLine(`draining by=SIGTERM locks=none`, long)
	p.waitLine(warn, long)
	p.waitSeen(`^signal 28$`, long)
	if code := p.wait(long); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// The STOPSIGNAL trap is named when it springs: WINCH (QUIT, or the
// --stop-signal) passed to the app while a lock is held gets a warn line
// with the fix. Without a lock, or for another signal, it is a debug line.
func TestStopSignalTrapWarned(t *testing.T) {
	dir := lockDir(t)
	lock := dir + "/j.lock"
	p := start(t, pid1, opts{env: helper("signals", "HELPER_EXIT_ON=15")}, "--lock", dir+"/*.lock", "--", selfBin)
	p.waitLine(`^ready`, long)
	p.signal(syscall.SIGWINCH)
	p.waitSeen(`^signal 28$`, long)
	// The router takes signals one at a time: once USR1 is forwarded,
	// whatever WINCH was to log is logged.
	p.signal(syscall.SIGUSR1)
	p.waitSeen(`signal forwarded signal=USR1 `, long)
	if p.has("warn:") {
		t.Fatal("a warn line for WINCH with no lock held")
	}
	os.WriteFile(lock, nil, 0o644)
	p.signal(syscall.SIGUSR2) // not a likely stop signal: no warn line
	p.waitSeen(`signal forwarded signal=USR2 `, long)
	p.signal(syscall.SIGWINCH)
	p.waitSeen(`warn: SIGWINCH passed to the app while 1 lock is held; if it is the container's stop signal, no job is waited for: `+
		`set STOPSIGNAL SIGTERM \(docker run --stop-signal TERM\) or add WINCH to DRAINIT_DRAIN_ON \(--drain-on\) locks="1 \(`+regexp.QuoteMeta(lock)+`\)"$`, long)
	os.Remove(lock)
	p.signal(syscall.SIGTERM)
	if code := p.wait(long); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if n := strings.Count(p.transcript(), "warn:"); n != 1 {
		t.Fatalf("%d warn lines, want only WINCH's with the lock held", n)
	}
}

// With inotify out of reach for real (the user's instances exhausted),
// drainit warns once and polls.
func TestDrainPollingFallback(t *testing.T) {
	dir, bin, self := nobodyDir(t)
	os.WriteFile(dir+"/job.lock", nil, 0o644)
	cred := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}

	hog := exec.Command(self)
	hog.Env = append(os.Environ(), helperEnv+"=exhaust-inotify")
	hog.SysProcAttr = cred
	stdin, _ := hog.StdinPipe()
	out, _ := hog.StdoutPipe()
	if err := hog.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); hog.Wait() })
	buf := make([]byte, 256)
	n, _ := out.Read(buf)
	if !strings.Contains(string(buf[:n]), "exhausted") {
		t.Fatalf("hog: %q", buf[:n])
	}

	p := runAs(t, nobody, bin, "--lock", dir+"/*.lock", "--poll", "100ms", "--", "sleep", "1000")
	p.waitLine(`started command=`, long)
	p.signal(syscall.SIGTERM)
	p.waitLine(`warn: .*inotify.*max_user_instances`, long)
	p.waitLine(`draining by=SIGTERM locks="1 `, long) // the scan after the warning
	os.Remove(dir + "/job.lock")
	p.waitLine(`released .*job.lock, 0 left`, long)
	p.wait(long)
	if n := strings.Count(p.transcript(), "warn:"); n != 1 {
		t.Fatalf("%d warn lines, want exactly one:\n%s", n, p.transcript())
	}
}
