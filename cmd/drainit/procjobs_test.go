package main_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Process jobs (--orphans, --job): jobs that write no lock file.
//
// Each test's jobs carry a word of their own in their command lines, passed
// to the app's scripts in $W, so that no shell's command line holds it and
// no other test's processes match it.

func jobWord() string { return fmt.Sprintf("work%09d", rand.N(1_000_000_000)) }

// pjobEnv is the environment of an app whose jobs match word and start
// their work with the drain's marker.
func pjobEnv(word, marker string, extra ...string) []string {
	return append(helper("signals", "HELPER_EXIT_ON=15", "W="+word, "HELPER_AFTER="+marker), extra...)
}

// orphan is a script line that starts a pjob the way PHP's exec("job &")
// does: orphaned to drainit at once.
func orphan(word, dur, label string) string {
	return fmt.Sprintf(`DRAINIT_TEST_HELPER=pjob sh -c '"$0" "$@" &' "$0" %s %s %s; `, word, dur, label)
}

// child is a script line that starts a pjob the app keeps as its child.
func child(word, dur, label string) string {
	return fmt.Sprintf(`DRAINIT_TEST_HELPER=pjob "$0" %s %s %s & `, word, dur, label)
}

func app(lines ...string) []string {
	return []string{"sh", "-c", strings.Join(lines, "") + `exec "$0"`, selfBin}
}

// doneBeforeStop checks that every labelled pjob said done before the app
// got its stop signal.
func doneBeforeStop(t *testing.T, p *proc, labels ...string) {
	t.Helper()
	out := p.transcript()
	stop := strings.Index(out, "\nsignal 15\n")
	for _, l := range labels {
		done := strings.Index(out, "\npjob "+l+" done\n")
		if done < 0 || stop < 0 || done > stop {
			t.Errorf("job %s did not finish before the app's stop signal", l)
		}
	}
}

// --orphans: what the app left in the background is waited for, with no
// lock file and no rule about its name.
func TestOrphansAreJobs(t *testing.T) {
	forEachMode(t, func(t *testing.T, m mode) {
		marker := filepath.Join(t.TempDir(), "draining")
		var lines []string
		for i := range 3 {
			lines = append(lines, orphan("anything", (300*time.Millisecond+rand.N(1200*time.Millisecond)).String(), strconv.Itoa(i)))
		}
		p := start(t, m, opts{env: pjobEnv("", marker)}, append([]string{"--orphans", "--marker", marker, "--"}, app(lines...)...)...)
		for i := range 3 {
			p.waitSeen(fmt.Sprintf(`^pjob %d started`, i), long)
		}
		p.waitSeen(`^ready`, long)
		p.signal(syscall.SIGTERM)
		p.waitLine(`draining by=SIGTERM locks=none jobs="3 \(pid \d+ \(\S+ anything `, long)
		p.waitLine(`^signal 15$`, long)
		if code := p.wait(long); code != 0 {
			t.Fatalf("exit code %d", code)
		}
		doneBeforeStop(t, p, "0", "1", "2")
	})
}

// --job: the app's own children that match are waited for (their exits
// come through pidfds: they are not drainit's children); an orphaned
// daemon that does not match is not, and gets TERM once the app is gone.
func TestJobMatchesAppChildrenNotDaemon(t *testing.T) {
	forEachMode(t, func(t *testing.T, m mode) {
		word := jobWord()
		marker := filepath.Join(t.TempDir(), "draining")
		p := start(t, m, opts{env: pjobEnv(word, marker)}, append([]string{"--job", word, "--marker", marker, "--"},
			app(orphan("daemon", "1h", "d"), child("$W", "300ms", "1"), child("$W", "1s", "2"))...)...)
		for _, l := range []string{"d", "1", "2"} {
			p.waitSeen(`^pjob `+l+` started`, long)
		}
		p.waitSeen(`^ready`, long)
		p.signal(syscall.SIGTERM)
		// Named by PID, whose order a wrapped PID counter can turn.
		line := p.waitLine(`draining by=SIGTERM locks=none jobs="2 \(.*`, long)[0]
		for _, job := range []string{word + ` 300ms 1)`, word + ` 1s 2)`} {
			if !strings.Contains(line, job) {
				t.Errorf("the drain's first line does not name %q: %s", job, line)
			}
		}
		p.waitLine(`^signal 15$`, long)
		p.waitSeen(`^pjob d got TERM$`, long)
		if code := p.wait(long); code != 0 {
			t.Fatalf("exit code %d", code)
		}
		doneBeforeStop(t, p, "1", "2")
		if p.has("daemon 1h d)") {
			t.Error("the daemon was counted as a job")
		}
	})
}

// A job started during the drain, after every scan but the one right
// before the stop signal (--poll is an hour), is found by that one: job a
// ends only once job b has started, and b is started by an orphan that
// waits for the drain's marker.
func TestJobStartedDuringDrain(t *testing.T) {
	forEachMode(t, func(t *testing.T, m mode) {
		word := jobWord()
		dir := t.TempDir()
		marker, bUp := filepath.Join(dir, "draining"), filepath.Join(dir, "b-started")
		spawner := `DRAINIT_TEST_HELPER=spawn HELPER_MARK=` + bUp + ` sh -c '"$0" "$@" &' "$0" 2s b; `
		a := `HELPER_AFTER=` + bUp + ` ` + child("$W", "200ms", "a")
		p := start(t, m, opts{env: pjobEnv(word, marker)}, append([]string{"--job", word, "--poll", "1h", "--marker", marker, "--"},
			app(spawner, a)...)...)
		p.waitSeen(`^pjob a started`, long)
		p.waitSeen(`^ready`, long)
		p.signal(syscall.SIGTERM)
		p.waitLine(`draining by=SIGTERM locks=none jobs="1 \(pid \d+ \(\S+ `+word+` 200ms a\)\)"`, long)
		p.waitLine(`job pid \d+ \(\S+ `+word+` 200ms a\) ended, 0 left`, long)
		p.waitLine(`new job while draining job="pid \d+ \(\S+ `+word+` 2s b\)"`, long)
		p.waitLine(`^signal 15$`, long)
		if code := p.wait(long); code != 0 {
			t.Fatalf("exit code %d", code)
		}
		doneBeforeStop(t, p, "a", "b")
	})
}

// A job longer than the grace: the deadline names it loudly, the app is
// stopped, the job gets TERM, and drainit is gone before the grace.
func TestJobDeadline(t *testing.T) {
	forEachMode(t, func(t *testing.T, m mode) {
		word := jobWord()
		p := start(t, m, opts{env: pjobEnv(word, "")}, append([]string{"--job", word, "--grace", "4s", "--stop-timeout", "1s", "--"},
			app(child("$W", "1h", "x"))...)...)
		p.waitSeen(`^pjob x started`, long)
		p.waitSeen(`^ready`, long)
		p.signal(syscall.SIGTERM)
		p.waitLine(`error: drain deadline reached with 1 job still held: pid \d+ \(\S+ `+word+` 1h x\); stopping the app anyway$`, long)
		p.waitLine(`^signal 15$`, long)
		p.waitSeen(`^pjob x got TERM$`, long)
		if code := p.wait(long); code != 0 {
			t.Fatalf("exit code %d", code)
		}
		if d := p.logSpan(`draining by=SIGTERM`, `exiting code=`); d >= 4*time.Second {
			t.Errorf("drainit exited %v after SIGTERM, past its 4s grace", d)
		}
	})
}

// Locks and process jobs under one drain: the stop waits for both.
func TestLocksAndProcessJobsTogether(t *testing.T) {
	forEachMode(t, func(t *testing.T, m mode) {
		word := jobWord()
		dir := lockDir(t)
		lock := dir + "/held.lock"
		os.WriteFile(lock, nil, 0o644)
		marker := filepath.Join(filepath.Dir(dir), "draining")
		p := start(t, m, opts{env: pjobEnv(word, marker)}, append([]string{"--lock", dir + "/*.lock", "--job", word, "--marker", marker, "--"},
			app(child("$W", "200ms", "1"))...)...)
		p.waitSeen(`^pjob 1 started`, long)
		p.waitSeen(`^ready`, long)
		p.signal(syscall.SIGTERM)
		p.waitLine(`draining by=SIGTERM locks="1 \(`+regexp.QuoteMeta(lock)+`\)" jobs="1 \(pid \d+ `, long)
		p.waitLine(`job pid \d+ \(\S+ `+word+` 200ms 1\) ended, 1 left`, long)
		if p.has("\nsignal 15\n") {
			t.Fatal("the app was stopped with a lock still held")
		}
		os.Remove(lock)
		p.waitLine(`released .*held.lock, 0 left`, long)
		p.waitLine(`^signal 15$`, long)
		if code := p.wait(long); code != 0 {
			t.Fatalf("exit code %d", code)
		}
	})
}

// DRAINIT_ORPHANS and DRAINIT_JOB (a ':'-separated list) together: the
// first line shows the rules, an orphan and a matching child both count.
func TestJobVariables(t *testing.T) {
	word := jobWord()
	marker := filepath.Join(t.TempDir(), "draining")
	p := start(t, pid1, opts{env: pjobEnv(word, marker, "DRAINIT_ORPHANS=true", "DRAINIT_JOB=nomatch:"+word, "DRAINIT_MARKER="+marker)},
		app(orphan("other", "300ms", "o"), child("$W", "600ms", "c"))...)
	p.waitLine(`started .* lock=none jobs=orphans:nomatch:`+word+` grace=`, long)
	p.waitSeen(`^pjob o started`, long)
	p.waitSeen(`^pjob c started`, long)
	p.waitSeen(`^ready`, long)
	p.signal(syscall.SIGTERM)
	p.waitLine(`draining by=SIGTERM locks=none jobs="2 \(`, long)
	p.waitLine(`^signal 15$`, long)
	if code := p.wait(long); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	doneBeforeStop(t, p, "o", "c")
}

// A bad expression is bad input: one line, exit 2, and the app never runs.
func TestJobBadRegex(t *testing.T) {
	ran := filepath.Join(t.TempDir(), "ran")
	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"--job", "job(.php"}, "", `drainit: --job="job(.php": not a valid regular expression (missing closing ): ` + "`job(.php`" + `); use Go's RE2 syntax, like 'php .*job\.php'`},
		{nil, "DRAINIT_JOB=ok:[a", `drainit: DRAINIT_JOB="[a": not a valid regular expression (missing closing ]: ` + "`[a`" + `); use Go's RE2 syntax, like 'php .*job\.php'`},
	} {
		cmd := exec.Command(drainitBin, append(tc.args, "--", "touch", ran)...)
		cmd.Env = append(os.Environ(), tc.env)
		out, err := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); code != 2 {
			t.Errorf("%v %s: exit code %d (%v), want 2", tc.args, tc.env, code, err)
		}
		if got := strings.TrimSuffix(string(out), "\n"); got != tc.want {
			t.Errorf("%v %s: said\n%s\nwant\n%s", tc.args, tc.env, got, tc.want)
		}
		if _, err := os.Stat(ran); err == nil {
			t.Fatal("the app ran")
		}
	}
}

// A job started with kubectl exec (here nsenter) is in the namespace but
// is not drainit's descendant: as PID 1, drainit waits for it when it
// matches, and gets it TERM before exiting, not the kernel's SIGKILL.
func TestExecJobWaitedForAndTermed(t *testing.T) {
	needNamespaces(t)
	if _, err := exec.LookPath("nsenter"); err != nil {
		skipOrFail(t, "nsenter not found: apt-get install util-linux")
	}
	word := jobWord()
	p := start(t, pid1, opts{env: helper("signals", "HELPER_EXIT_ON=15")}, "--job", word, "--grace", "5s", "--stop-timeout", "1s", "--", selfBin)
	p.waitLine(`^ready`, long)
	cmd := exec.Command("nsenter", "-t", strconv.Itoa(p.pid), "-p", "--", selfBin, word, "1h", "e")
	cmd.Env = append(os.Environ(), helperEnv+"=pjob")
	e := launch(t, cmd)
	e.waitLine(`^pjob e started`, long)
	p.signal(syscall.SIGTERM)
	p.waitLine(`draining by=SIGTERM locks=none jobs="1 \(pid \d+ \(\S+ `+word+` 1h e\)\)"`, long)
	p.waitLine(`error: drain deadline reached with 1 job still held: pid \d+ \(\S+ `+word+` 1h e\); stopping the app anyway$`, long)
	e.waitLine(`^pjob e got TERM$`, long)
	if code := p.wait(long); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if d := p.logSpan(`draining by=SIGTERM`, `exiting code=`); d >= 5*time.Second {
		t.Errorf("drainit exited %v after SIGTERM, past its 5s grace", d)
	}
}

// drainit wait --job in a preStop hook: the shell that runs it holds the
// expression in its own command line and is not counted; the job it
// started is, until it ends.
func TestWaitJobSkipsItsShell(t *testing.T) {
	word := jobWord()
	dir := t.TempDir()
	up, finish := dir+"/up", dir+"/finish"
	script := fmt.Sprintf(`DRAINIT_TEST_HELPER=pjob HELPER_MARK=%s HELPER_AFTER=%s "$0" %s 100ms j & `+
		`while [ ! -e %s ]; do :; done; "$1" wait --log-to-pid1=false --job %s --timeout 20s; echo "wait exited $?"`,
		up, finish, word, up, word)
	p := launch(t, exec.Command("sh", "-c", script, selfBin, drainitBin))
	p.waitLine(`waiting for 1 job: pid \d+ \(\S+ `+word+` 100ms j\)$`, long)
	os.WriteFile(finish, nil, 0o644)
	p.waitLine(`job pid \d+ \(\S+ `+word+` 100ms j\) ended, 0 left$`, long)
	p.waitLine(`no job running waited=`, long)
	p.waitLine(`^wait exited 0$`, long)
	if code := p.wait(long); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	doneAt, waitedAt := strings.Index(p.transcript(), "pjob j done"), strings.Index(p.transcript(), "wait exited")
	if doneAt < 0 || doneAt > waitedAt {
		t.Error("drainit wait returned before the job was done")
	}
}

// --orphans' trap: a daemon the app left in the background never ends; the
// deadline names it and says what to do about it.
func TestOrphanDaemonTrapWarned(t *testing.T) {
	p := start(t, pid1, opts{env: pjobEnv("", "")}, append([]string{"--orphans", "--grace", "3s", "--stop-timeout", "1s", "--"},
		app(orphan("crond", "1h", "d"))...)...)
	p.waitSeen(`^pjob d started`, long)
	p.waitSeen(`^ready`, long)
	p.signal(syscall.SIGTERM)
	p.waitLine(`error: drain deadline reached with 1 job still held: pid \d+ \(\S+ crond 1h d\); stopping the app anyway$`, long)
	p.waitLine(`warn: with --orphans every process left in the background counts as a job, a daemon started with '&' by an entrypoint script too; `, long)
	p.waitSeen(`^pjob d got TERM$`, long)
	if code := p.wait(long); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// drainit wait --job with nothing matching returns at once.
func TestWaitJobNothingRunning(t *testing.T) {
	p := run(t, nil, "wait", "--log-to-pid1=false", "--job", jobWord())
	if code := p.wait(long); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	p.waitLine(`no job running waited=`, long)
}
