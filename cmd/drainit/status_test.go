package main_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drainit/drainit/internal/testkit"
	drainitstatus "github.com/drainit/drainit/supervisor/status"
)

// statusJSON is what drainit status --json prints.
type statusJSON struct {
	Phase  string `json:"phase"`
	PID    int    `json:"pid"`
	AppPID int    `json:"app_pid"`
	Jobs   []struct {
		Lock        string    `json:"lock"`
		PID         int       `json:"pid"`
		Command     string    `json:"command"`
		Since       time.Time `json:"since"`
		HeldSeconds float64   `json:"held_seconds"`
	} `json:"jobs"`
	StopSignalAt   *time.Time `json:"stop_signal_at"`
	Deadline       *time.Time `json:"deadline"`
	StopSecondsAgo *float64   `json:"stop_seconds_ago"`
	LeftSeconds    *float64   `json:"left_seconds"`
}

// status runs drainit status as kubectl exec would: in drainit's PID and
// mount namespaces when drainit is PID 1 (nsenter), as a plain process
// beside a subreaper.
func status(t *testing.T, m mode, p *proc, state string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	argv := append([]string{drainitBin, "status", "--state", state}, args...)
	if m.pid1 {
		if _, err := exec.LookPath("nsenter"); err != nil {
			skipOrFail(t, "nsenter not found: apt-get install util-linux")
		}
		argv = append([]string{"nsenter", "-t", strconv.Itoa(p.pid), "-p", "-m", "--"}, argv...)
	}
	return runCmd(t, argv...)
}

func runCmd(t *testing.T, argv ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("%q: %v", argv, err)
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

func statusOf(t *testing.T, m mode, p *proc, state string) statusJSON {
	t.Helper()
	out, errOut, code := status(t, m, p, state, "--json")
	if code != 0 {
		t.Fatalf("drainit status --json: exit %d: %s", code, errOut)
	}
	var st statusJSON
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("drainit status --json printed no JSON (%v):\n%s", err, out)
	}
	return st
}

// waitState waits until the state file says phase with n jobs, and
// returns the file's raw content.
func waitState(t *testing.T, path, phase string, n int) map[string]any {
	t.Helper()
	var raw map[string]any
	eventually(t, long, "state file in phase "+phase+" with "+strconv.Itoa(n)+" jobs", func() bool {
		b, err := os.ReadFile(path)
		if err != nil || json.Unmarshal(b, &raw) != nil {
			return false
		}
		jobs, _ := raw["jobs"].([]any)
		return raw["phase"] == phase && len(jobs) == n
	})
	return raw
}

// drainit status in each phase, from where kubectl exec would run it,
// as text and as JSON.
func TestStatusPhases(t *testing.T) {
	forEachMode(t, func(t *testing.T, m mode) {
		dir := lockDir(t)
		state := filepath.Join(t.TempDir(), "run", "state.json") // its directory is made by drainit
		lock := filepath.Join(dir, "job.lock")
		// The app exits only on USR1, which the test sends once it has
		// seen the stopping phase.
		p := start(t, m, opts{env: helper("signals", "HELPER_EXIT_ON=10")},
			"--lock", dir+"/*.lock", "--grace", "60s", "--stop-timeout", "20s", "--state", state, "--", selfBin)
		ready := p.waitLine(`^ready pid=(\d+)`, long)
		wantPID, wantApp := p.pid, ready[1]
		if m.pid1 {
			wantPID = 1
		}

		raw := waitState(t, state, "running", 0)
		if raw["stop_signal_at"] != nil || raw["deadline"] != nil {
			t.Errorf("running: stop_signal_at and deadline should be null: %v", raw)
		}
		out, _, code := status(t, m, p, state)
		if code != 0 || !strings.Contains(out, "phase:     running") || !strings.Contains(out, "drainit:   pid "+strconv.Itoa(wantPID)+"\n") || !strings.Contains(out, "app:       pid "+wantApp+"\n") {
			t.Errorf("running: exit %d:\n%s", code, out)
		}
		st := statusOf(t, m, p, state)
		if st.Phase != "running" || st.PID != wantPID || strconv.Itoa(st.AppPID) != wantApp || st.Jobs == nil || len(st.Jobs) != 0 {
			t.Errorf("running: %+v", st)
		}

		// A job that took its lock an hour before the stop has held it
		// that long.
		if err := os.WriteFile(lock, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		locked := time.Now().Add(-time.Hour).Truncate(time.Second)
		if err := os.Chtimes(lock, locked, locked); err != nil {
			t.Fatal(err)
		}
		before := time.Now()
		p.signal(syscall.SIGTERM)
		p.waitLine(`draining by=SIGTERM locks="1 `, long)
		waitState(t, state, "draining", 1)
		out, _, code = status(t, m, p, state)
		if code != 0 || !strings.Contains(out, "phase:     draining") || !strings.Contains(out, "jobs:      1 job held:\n  "+lock+"  held 1h0m") ||
			!strings.Contains(out, "until the drain deadline") || !strings.Contains(out, "stop:      ") {
			t.Errorf("draining: exit %d:\n%s", code, out)
		}
		st = statusOf(t, m, p, state)
		if st.Phase != "draining" || len(st.Jobs) != 1 || st.Jobs[0].Lock != lock || st.Jobs[0].PID != 0 || st.StopSignalAt == nil || st.Deadline == nil || st.LeftSeconds == nil {
			t.Fatalf("draining: %+v", st)
		}
		// The drain deadline is T0 + grace - stop-timeout - 1s.
		if d := st.Deadline.Sub(*st.StopSignalAt); d != 39*time.Second {
			t.Errorf("draining: deadline %v after the stop, want 39s", d)
		}
		if st.StopSignalAt.Before(before.Add(-time.Second)) || !st.Jobs[0].Since.Equal(locked) || st.Jobs[0].HeldSeconds < 3600 || *st.LeftSeconds > 39 || *st.LeftSeconds < 20 {
			t.Errorf("draining: times do not add up: %+v, stop %v, since %v", st, *st.StopSignalAt, st.Jobs[0].Since)
		}

		os.Remove(lock)
		p.waitLine(`^signal 15$`, long) // the app has its stop signal and runs on
		waitState(t, state, "stopping", 0)
		out, _, code = status(t, m, p, state)
		if code != 0 || !strings.Contains(out, "phase:     stopping") || !strings.Contains(out, "until the final deadline") || !strings.Contains(out, "none was held when the drain ended") {
			t.Errorf("stopping: exit %d:\n%s", code, out)
		}
		st = statusOf(t, m, p, state)
		if st.Phase != "stopping" || st.Deadline == nil || st.Deadline.Sub(*st.StopSignalAt) != 59*time.Second {
			t.Errorf("stopping: %+v", st)
		}

		p.signal(syscall.SIGUSR1)
		if code := p.wait(long); code != 0 {
			t.Fatalf("exit code %d", code)
		}
		if _, err := os.Stat(state); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the state file is still there after drainit exited: %v", err)
		}
		if _, errOut, code := runCmd(t, drainitBin, "status", "--state", state); code != 1 || !strings.Contains(errOut, "no drainit running") {
			t.Errorf("after the exit: exit %d, %q", code, errOut)
		}
	})
}

// A process job is listed with its PID and command line, held since it
// started, before the stop.
func TestStatusProcessJob(t *testing.T) {
	for _, m := range []mode{pid1, {}} {
		t.Run(m.String(), func(t *testing.T) {
			t.Parallel()
			word := jobWord()
			marker := filepath.Join(t.TempDir(), "draining")
			state := filepath.Join(t.TempDir(), "state.json")
			launched := time.Now()
			p := start(t, m, opts{env: pjobEnv(word, marker)}, append([]string{"--job", word, "--marker", marker, "--state", state, "--"}, app(child(word, "1h", "a"))...)...)
			job := p.waitSeen2(`^pjob a started pid=(\d+)`)
			p.waitSeen(`^ready`, long)
			p.signal(syscall.SIGTERM)
			p.waitLine(`draining by=SIGTERM`, long)
			waitState(t, state, "draining", 1)
			st := statusOf(t, m, p, state)
			if len(st.Jobs) != 1 || st.Jobs[0].PID == 0 || st.Jobs[0].Lock != "" || !strings.Contains(st.Jobs[0].Command, word) {
				t.Fatalf("jobs: %+v", st.Jobs)
			}
			if strconv.Itoa(st.Jobs[0].PID) != job {
				t.Errorf("job pid %d, the job said %s", st.Jobs[0].PID, job)
			}
			// /proc counts start times in ticks of 10ms.
			if since := st.Jobs[0].Since; since.Before(launched.Add(-10*time.Millisecond)) || !since.Before(*st.StopSignalAt) {
				t.Errorf("job held since %v, want from its start, between drainit's start %v and the stop %v", since, launched, *st.StopSignalAt)
			}
			out, _, _ := status(t, m, p, state)
			if !strings.Contains(out, "  pid "+strconv.Itoa(st.Jobs[0].PID)+" (") {
				t.Errorf("text:\n%s", out)
			}
			p.signal(syscall.SIGINT) // ends the drain now
			p.wait(long)
		})
	}
}

// waitSeen2 is waitSeen that returns the first submatch.
func (p *proc) waitSeen2(re string) string {
	p.t.Helper()
	p.waitSeen(re, long)
	m := regexp.MustCompile(`(?m)` + re).FindStringSubmatch(p.transcript())
	return m[1]
}

// No state file, bad flags.
func TestStatusNoDrainit(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state.json")
	_, errOut, code := runCmd(t, drainitBin, "status", "--state", state)
	if code != 1 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "no drainit running: no state file "+state) || !strings.Contains(errOut, "--state") {
		t.Errorf("no file: exit %d, %q", code, errOut)
	}
	cmd := exec.Command(drainitBin, "status", "--json")
	cmd.Env = append(os.Environ(), "DRAINIT_STATE="+state)
	if err := cmd.Run(); cmd.ProcessState.ExitCode() != 1 {
		t.Errorf("DRAINIT_STATE: %v", err)
	}
	// The container's DRAINIT_STATE='' turned drainit's file off.
	cmd = exec.Command(drainitBin, "status")
	var errBuf bytes.Buffer
	cmd.Env, cmd.Stderr = append(os.Environ(), "DRAINIT_STATE="), &errBuf
	if err := cmd.Run(); cmd.ProcessState.ExitCode() != 1 || strings.Count(errBuf.String(), "\n") != 1 || !strings.Contains(errBuf.String(), "DRAINIT_STATE is set to '', which tells drainit to keep no state file") {
		t.Errorf("DRAINIT_STATE='': %v, %q", err, errBuf.String())
	}
	for _, args := range [][]string{{"--bogus"}, {"extra"}, {"--json=maybe"}, {"--state="}} {
		_, errOut, code := runCmd(t, append([]string{drainitBin, "status"}, args...)...)
		if code != 2 || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%q: exit %d, %q", args, code, errOut)
		}
	}
}

// A state file left behind by a drainit that is gone counts as none: its
// PID gone, or reused by another process (this test's, which did not
// start when the file says).
func TestStatusStaleFile(t *testing.T) {
	me, err := drainitstatus.Self()
	if err != nil {
		t.Fatal(err)
	}
	reused := me
	reused.StartTicks++
	for _, c := range []struct {
		pid    int
		writer drainitstatus.Writer
		why    string
	}{
		{testkit.ImpossiblePID(t), me, "no process " + strconv.Itoa(testkit.ImpossiblePID(t))},
		{os.Getpid(), reused, "is another process, started at another time"},
	} {
		state := filepath.Join(t.TempDir(), "state.json")
		st := drainitstatus.State{Phase: drainitstatus.Draining, PID: c.pid, AppPID: 7, Writer: c.writer}
		if _, err := drainitstatus.Write(state, st); err != nil {
			t.Fatal(err)
		}
		_, errOut, code := runCmd(t, drainitBin, "status", "--state", state)
		if code != 1 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "no drainit running: "+state+" was left by a drainit that is gone") || !strings.Contains(errOut, c.why) {
			t.Errorf("pid %d: exit %d, %q", c.pid, code, errOut)
		}
	}
}

// drainit status run outside drainit's PID namespace cannot tell which
// process the file's PID is: the file is another drainit's.
func TestStatusOutsideNamespace(t *testing.T) {
	dir := lockDir(t)
	state := filepath.Join(t.TempDir(), "state.json")
	p := start(t, pid1, opts{env: helper("signals", "HELPER_EXIT_ON=15")}, "--lock", dir+"/*.lock", "--state", state, "--", selfBin)
	p.waitLine(`^ready`, long)
	waitState(t, state, "running", 0)
	if _, errOut, code := runCmd(t, drainitBin, "status", "--state", state); code != 1 || !strings.Contains(errOut, "no drainit running: "+state+" was written by another drainit, in another PID namespace") {
		t.Errorf("exit %d, %q", code, errOut)
	}
	p.signal(syscall.SIGTERM)
	p.wait(long)
}

// Two containers of a pod can share a volume, and so a state file; each
// one's drainit is PID 1 in its own PID namespace. drainit status in one
// does not take the other's drainit for its own, and a drainit that exits
// leaves a file the other wrote since.
func TestStatusSharedStateFile(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state.json")
	nsOf := func(p *proc) uint64 {
		var st syscall.Stat_t
		if err := syscall.Stat("/proc/"+strconv.Itoa(p.pid)+"/ns/pid", &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	writtenIn := func(ns uint64) bool {
		var f struct {
			Writer struct {
				Ino uint64 `json:"pid_ns_ino"`
			} `json:"writer"`
		}
		b, err := os.ReadFile(state)
		return err == nil && json.Unmarshal(b, &f) == nil && f.Writer.Ino == ns
	}
	// a stops first and is left in its stopping phase, its app ignoring
	// the stop signal until USR1: it writes no more.
	a := start(t, pid1, opts{env: helper("signals", "HELPER_EXIT_ON=10")},
		"--grace", "60s", "--stop-timeout", "20s", "--state", state, "--", selfBin)
	a.waitLine(`^ready`, long)
	a.signal(syscall.SIGTERM)
	a.waitLine(`^signal 15$`, long)
	waitState(t, state, "stopping", 0)
	if !writtenIn(nsOf(a)) {
		t.Fatalf("the state file is not a's")
	}
	// b starts and writes over it.
	b := start(t, pid1, opts{env: helper("signals", "HELPER_EXIT_ON=15")}, "--state", state, "--", selfBin)
	b.waitLine(`^ready`, long)
	eventually(t, long, "b's state over a's", func() bool { return writtenIn(nsOf(b)) })

	_, errOut, code := status(t, pid1, a, state)
	if code != 1 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "no drainit running: "+state+" was written by another drainit, in another PID namespace") {
		t.Errorf("drainit status in a's namespace, on b's file: exit %d, %q", code, errOut)
	}
	if st := statusOf(t, pid1, b, state); st.Phase != "running" || st.PID != 1 {
		t.Errorf("drainit status in b's namespace: %+v", st)
	}

	a.signal(syscall.SIGUSR1)
	if code := a.wait(long); code != 0 {
		t.Fatalf("a: exit code %d", code)
	}
	if !writtenIn(nsOf(b)) {
		t.Fatalf("a removed or replaced b's state file as it exited")
	}
	if st := statusOf(t, pid1, b, state); st.Phase != "running" {
		t.Errorf("drainit status in b's namespace after a's exit: %+v", st)
	}
	b.signal(syscall.SIGTERM)
	if code := b.wait(long); code != 0 {
		t.Fatalf("b: exit code %d", code)
	}
	if _, err := os.Stat(state); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("b left its own state file: %v", err)
	}
}

// A state directory that cannot be written costs drainit status and
// nothing else: one line at debug, the stop as always.
func TestStatusReadOnlyStateDir(t *testing.T) {
	if os.Geteuid() != 0 {
		skipOrFail(t, "mounting a read-only tmpfs needs root")
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		skipOrFail(t, "nsenter not found: apt-get install util-linux")
	}
	ro := t.TempDir()
	dir := lockDir(t)
	state := filepath.Join(ro, "drainit", "state.json")
	cmd := exec.Command("unshare", "--mount", "sh", "-c", `mount -t tmpfs -o ro tmpfs "$1" && shift && exec "$@"`,
		"sh", ro, drainitBin, "--log-level", "debug", "--lock", dir+"/*.lock", "--state", state, "--", selfBin)
	cmd.Env = append(os.Environ(), helper("signals", "HELPER_EXIT_ON=15")...)
	p := launch(t, cmd)
	p.waitLine(`^ready`, long)
	os.WriteFile(dir+"/job.lock", nil, 0o644)
	p.signal(syscall.SIGTERM)
	p.waitLine(`draining by=SIGTERM locks="1 `, long)
	// drainit status in drainit's mount namespace, where the directory
	// is read-only: no state file, so no drainit.
	_, errOut, code := runCmd(t, "nsenter", "-t", strconv.Itoa(p.pid), "-m", "--", drainitBin, "status", "--state", state)
	if code != 1 || !strings.Contains(errOut, "no drainit running: no state file") {
		t.Errorf("status: exit %d, %q", code, errOut)
	}
	os.Remove(dir + "/job.lock")
	if code := p.wait(long); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	out := p.transcript()
	if n := strings.Count(out, "cannot write the state file"); n != 1 {
		t.Errorf("said %d times that the state file cannot be written, want once at debug:\n%s", n, out)
	}
	if !strings.Contains(out, "debug: cannot write the state file") || strings.Contains(out, "warn:") || strings.Contains(out, "error:") {
		t.Errorf("a read-only state directory should be a debug line and nothing more:\n%s", out)
	}
}

// The termination message, for kubectl describe pod.
func TestTerminationMessage(t *testing.T) {
	t.Run("all finished", func(t *testing.T) {
		t.Parallel()
		dir := lockDir(t)
		term := filepath.Join(t.TempDir(), "termination-log")
		p := start(t, mode{}, opts{env: helper("signals", "HELPER_EXIT_ON=15")}, "--lock", dir+"/*.lock", "--termination-log", term, "--", selfBin)
		p.waitLine(`^ready`, long)
		os.WriteFile(dir+"/a.lock", nil, 0o644)
		p.signal(syscall.SIGTERM)
		p.waitLine(`draining by=SIGTERM`, long)
		os.Remove(dir + "/a.lock")
		if code := p.wait(long); code != 0 {
			t.Fatalf("exit code %d", code)
		}
		b, err := os.ReadFile(term)
		if err != nil {
			t.Fatal(err)
		}
		msg := string(b)
		if !strings.HasPrefix(msg, "drainit: stop by SIGTERM at ") || !strings.Contains(msg, "; 1 job finished, none cut\n") || !strings.HasSuffix(msg, "app: exit 0; drainit exit code 0\n") {
			t.Errorf("message:\n%s", msg)
		}
	})
	t.Run("cut at the deadline", func(t *testing.T) {
		for _, m := range []mode{pid1, {}} {
			t.Run(m.String(), func(t *testing.T) {
				t.Parallel()
				dir := lockDir(t)
				term := filepath.Join(t.TempDir(), "termination-log")
				// The drain deadline comes 6s after the stop: room, on a
				// loaded machine under -race, for quick.lock's release to
				// be seen before it, while stuck.lock is cut at it.
				p := start(t, m, opts{env: helper("signals", "HELPER_EXIT_ON=15")}, "--lock", dir+"/*.lock", "--grace", "8s", "--stop-timeout", "1s", "--termination-log", term, "--", selfBin)
				p.waitLine(`^ready`, long)
				os.WriteFile(dir+"/stuck.lock", nil, 0o644)
				os.WriteFile(dir+"/quick.lock", nil, 0o644)
				locked := time.Now().Add(-time.Hour)
				os.Chtimes(dir+"/stuck.lock", locked, locked)
				p.signal(syscall.SIGTERM)
				p.waitLine(`draining by=SIGTERM locks="2 `, long)
				os.Remove(dir + "/quick.lock")
				p.waitLine(`released .*quick.lock`, long)
				if code := p.wait(long); code != 0 {
					t.Fatalf("exit code %d", code)
				}
				b, err := os.ReadFile(term)
				if err != nil {
					t.Fatal(err)
				}
				msg := string(b)
				if !strings.Contains(msg, "; 1 job finished, 1 cut at the drain deadline:\n  "+dir+"/stuck.lock (held 1h0m") || !strings.HasSuffix(msg, "app: exit 0; drainit exit code 0\n") {
					t.Errorf("message:\n%s", msg)
				}
			})
		}
	})
	t.Run("app exits by itself", func(t *testing.T) {
		t.Parallel()
		term := filepath.Join(t.TempDir(), "termination-log")
		os.WriteFile(term, nil, 0o644)
		p := start(t, mode{}, opts{env: helper("exit")}, "--termination-log", term, "--", selfBin, "3")
		if code := p.wait(long); code != 3 {
			t.Fatalf("exit code %d", code)
		}
		if b, _ := os.ReadFile(term); len(b) != 0 {
			t.Errorf("a message where the app exited by itself and nothing was cut, which hides the kubelet's fallback to the log:\n%s", b)
		}
	})
	// drainit, often root, writes through no symlink: one planted at
	// the path could aim its write at any file.
	t.Run("symlink", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		target, link := filepath.Join(dir, "target"), filepath.Join(dir, "termination-log")
		if err := os.WriteFile(target, []byte("keep\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		p := start(t, mode{}, opts{env: helper("signals", "HELPER_EXIT_ON=15")}, "--termination-log", link, "--", selfBin)
		p.waitLine(`^ready`, long)
		p.signal(syscall.SIGTERM)
		if code := p.wait(long); code != 0 {
			t.Fatalf("exit code %d, want the app's 0", code)
		}
		if b, _ := os.ReadFile(target); string(b) != "keep\n" {
			t.Errorf("written through the symlink: %q", b)
		}
		if n := strings.Count(p.transcript(), "warn: cannot write the termination message: the path is a symlink"); n != 1 {
			t.Errorf("%d warnings that the path is a symlink, want 1", n)
		}
	})
	t.Run("unwritable", func(t *testing.T) {
		t.Parallel()
		term := t.TempDir() // a directory
		p := start(t, mode{}, opts{env: helper("signals", "HELPER_EXIT_ON=15")}, "--termination-log", term, "--", selfBin)
		p.waitLine(`^ready`, long)
		p.signal(syscall.SIGTERM)
		if code := p.wait(long); code != 0 {
			t.Fatalf("exit code %d, want the app's 0", code)
		}
		if !p.has("warn: cannot write the termination message") {
			t.Errorf("no warning")
		}
	})
}
