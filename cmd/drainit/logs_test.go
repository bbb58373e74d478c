package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drainit/drainit/internal/benchapp"
)

// progressEvery is the supervisor's interval between progress lines.
const progressEvery = 5 * time.Second

// Thousands of job events during one drain, as a busy app makes them: lock
// files made and removed, short process jobs (--job) started and ended.
// Issue 17 measured 159,000 info lines in one 49 s drain of such churn.
// At info, the drain now logs its start, a few events, one line that says
// they are being counted, one progress line per interval, the last release
// and its end. A bound on the count, from drainit's own timestamps; not a
// measure of speed.
func TestDrainLogsUnderChurn(t *testing.T) {
	dir := lockDir(t)
	hold := dir + "/hold.lock"
	os.WriteFile(hold, nil, 0o644)
	marker := filepath.Join(filepath.Dir(dir), "draining")
	word := fmt.Sprintf("churnjob%d", os.Getpid())
	app := fmt.Sprintf(`DRAINIT_TEST_HELPER=churn "$0" %s & exec "$0"`, dir)
	env := helper("signals", "HELPER_EXIT_ON=15", "HELPER_AFTER="+marker, "HELPER_LOCKS=3000", "HELPER_PROCS=100", "HELPER_FOR=11s", "W="+word)
	// The harness asks for debug; the last --log-level wins.
	p := start(t, pid1, opts{env: env}, "--log-level", "info", "--lock", dir+"/*.lock", "--job", word,
		"--poll", "200ms", "--marker", marker, "--grace", "5m", "--", "sh", "-c", app, selfBin)
	p.waitLine(`^ready`, long)
	p.signal(syscall.SIGTERM)
	p.waitLine(`draining by=SIGTERM locks="1 \(`+regexp.QuoteMeta(hold)+`\)" jobs=`, long)
	p.waitLine(`^churn done \d+$`, 3*time.Minute)
	os.Remove(hold)
	// The last job to go: hold.lock, a churn lock seen gone in the same
	// scan, or a churn process job (300 ms each) still running when
	// hold.lock went.
	p.waitLine(`(released `+regexp.QuoteMeta(dir)+`/\S+|job pid \d+ \(.*\) ended), 0 left$`, long)
	p.waitLine(`drain done took=`, long)
	p.waitLine(`^signal 15$`, long)
	if code := p.wait(long); code != 0 {
		t.Fatalf("exit code %d", code)
	}

	out := p.transcript()
	var drain []string // drainit's lines from the drain's start to its end
	in := false
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, "drainit ") {
			continue
		}
		in = in || strings.Contains(l, " draining by=")
		if in {
			drain = append(drain, l)
		}
		if strings.Contains(l, " drain done took=") {
			break
		}
	}
	span := p.logSpan(`draining by=`, `drain done took=`)
	intervals := int(span/progressEvery) + 1
	// Fixed: the start, the switch to counting, the last release, the
	// end, and 5 single events. Each interval: its progress line, and at
	// most one "0 left" (never here: hold.lock stays to the end).
	bound := 9 + 2*intervals
	events, counted := 0, 0
	for _, l := range drain {
		if strings.Contains(l, "debug:") {
			t.Errorf("a debug line at --log-level info: %s", l)
		}
		for _, m := range regexp.MustCompile(` (finished|new)=(\d+)`).FindAllStringSubmatch(l, -1) {
			n, _ := strconv.Atoi(m[2])
			counted += n
		}
		if regexp.MustCompile(`released |new lock while draining|job pid \d+ .* ended, |new job while draining`).MatchString(l) {
			events++
		}
	}
	t.Logf("%d info lines in a drain of %v (%d progress intervals): %d events named, %d counted:\n%s",
		len(drain), span, intervals, events, counted, strings.Join(drain, "\n"))
	if len(drain) > bound {
		t.Errorf("%d info lines in a drain of %v, want at most %d", len(drain), span, bound)
	}
	if counted < 1000 {
		t.Errorf("the progress lines counted %d events; the churn made about 6,000 locks events and 200 job events", counted)
	}
	if !strings.Contains(out, "counting them in the progress line") {
		t.Error("no line says that events are being counted")
	}
}

// drainit wait, a preStop hook whose lines reach kubectl logs too, keeps
// the same bound through 1,500 short jobs over 6 s.
func TestWaitLogsUnderChurn(t *testing.T) {
	dir := lockDir(t)
	hold := dir + "/hold.lock"
	os.WriteFile(hold, nil, 0o644)
	p := run(t, nil, waitCmd(dir+"/*.lock")...)
	p.waitLine(`waiting for 1 lock: `+regexp.QuoteMeta(hold)+`$`, long)
	benchapp.ShortJobs(dir, 1500, 6*time.Second)
	os.Remove(hold)
	p.waitLine(`released `+regexp.QuoteMeta(dir)+`/\S+, 0 left$`, long)
	if code := p.wait(long); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	// The wait's span by its own timestamps, as logSpan reads drainit's.
	stamps := regexp.MustCompile(`(?m)^drainit wait (\d\d:\d\d:\d\d\.\d\d\d) `).FindAllStringSubmatch(p.transcript(), -1)
	first, _ := time.Parse("15:04:05.000", stamps[0][1])
	last, _ := time.Parse("15:04:05.000", stamps[len(stamps)-1][1])
	span, n := last.Sub(first), len(stamps)
	// The first line, 5 events, the switch to counting, the last release,
	// the end; a progress line an interval.
	if bound := 9 + 2*(int(span/progressEvery)+1); n > bound {
		t.Errorf("%d lines in a wait of %v, want at most %d", n, span, bound)
	}
	if !p.has("counting them in the progress line") {
		t.Error("no line says that events are being counted")
	}
	// The events counted after the last progress line are said at the end.
	p.waitLine(`no lock held waited=\S+ finished=\d+ new=\d+$`, long)
}

// drainit wait gives up at --timeout with every lock still held named
// loudly, past the ten of its first line in a second one; its progress
// line says how long is left, and ages a lock from its file's mtime.
func TestWaitTimeoutNamesEveryLock(t *testing.T) {
	dir := lockDir(t)
	old := time.Now().Add(-time.Hour)
	for i := range 12 {
		f := fmt.Sprintf("%s/job-%02d.lock", dir, i)
		os.WriteFile(f, nil, 0o644)
		os.Chtimes(f, old, old)
	}
	p := run(t, nil, waitCmd(dir+"/*.lock", "--timeout", "8s")...)
	p.waitLine(`waiting for 12 locks: .* and 2 more \(every one in the next line\)$`, long)
	p.waitLine(`waiting locks=12 jobs=0 oldest="\S+/job-00.lock 1h0m\d+s, .* left=\d+s$`, long)
	p.waitLine(`gave up after waiting \S+ \(--timeout 8s\) with 12 locks still held: .* and 2 more \(every one in the next line\)`, long)
	p.waitLine(`every job still held jobs=".*job-11.lock"$`, long)
	if code := p.wait(long); code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
}

// BenchmarkDrainLinesUnderChurn counts the lines drainit writes, at info
// (its default), from its start to its exit, for one drain held open by
// one lock while 600 short jobs come and go over 2 s, each holding its
// lock file for 20 ms: 1,200 lock events. cmd/drainit-bench's churn step
// measures the same beside another build (-baseline).
//
//	go test ./cmd/drainit -run XXX -bench DrainLinesUnderChurn -benchtime 5x
func BenchmarkDrainLinesUnderChurn(b *testing.B) {
	dir := b.TempDir()
	hold := dir + "/hold.lock"
	var lines []int64
	for b.Loop() {
		if err := os.WriteFile(hold, nil, 0o644); err != nil {
			b.Fatal(err)
		}
		r := launchDrainit(b, mode{}, "--lock", dir+"/*.lock")
		r.drain(b)
		benchapp.ShortJobs(dir, 600, 2*time.Second)
		if err := os.Remove(hold); err != nil {
			b.Fatal(err)
		}
		r.stopAt(b)
		r.end(b)
		lines = append(lines, r.logged.Load())
	}
	slices.Sort(lines)
	b.ReportMetric(float64(lines[(len(lines)-1)/2]), "lines/drain")
}
