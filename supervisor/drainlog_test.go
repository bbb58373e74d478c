package supervisor

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/drainit/drainit/supervisor/internal/drainlog"
)

// logTo returns a logger writing slog's text lines at level into a buffer.
func logTo(level slog.Level) (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: level})), &buf
}

func lines(buf *bytes.Buffer) []string {
	return strings.Split(strings.TrimSpace(buf.String()), "\n")
}

// drainingState is a drain of the given held locks that started at t0,
// without a watcher: snapshots are given by the test.
func drainingState(log *slog.Logger, t0 time.Time, held []string) *state {
	s := testState(Config{Locks: []string{"/app/lock/*.lock"}})
	s.log = log
	s.phase, s.t0, s.scanned = draining, t0, true
	s.drainEnd, s.budgetEnd = t0.Add(time.Hour), t0.Add(time.Hour)
	s.dlog = drainlog.New(log, t0, progressEvery)
	s.held = held
	return s
}

// A few jobs: each release is its own info line, the last one says 0 left.
func TestDrainLogFewEvents(t *testing.T) {
	log, buf := logTo(slog.LevelInfo)
	s := drainingState(log, time.Now(), []string{"/app/lock/job-1.lock", "/app/lock/job-2.lock", "/app/lock/job-3.lock"})
	s.onLocks([]string{"/app/lock/job-1.lock", "/app/lock/job-2.lock"})
	s.onLocks([]string{"/app/lock/job-2.lock"})
	s.onLocks(nil)
	want := []string{"released /app/lock/job-3.lock, 2 left", "released /app/lock/job-1.lock, 1 left", "released /app/lock/job-2.lock, 0 left"}
	got := lines(buf)
	if len(got) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(got), len(want), buf)
	}
	for i, w := range want {
		if !strings.Contains(got[i], `msg="`+w+`"`) {
			t.Errorf("line %d: %s, want %q", i, got[i], w)
		}
	}
	s.dlog.AllDone()
	if n := len(lines(buf)); n != 3 {
		t.Errorf("allDone repeated a last release already logged:\n%s", buf)
	}
}

// Churn: thousands of locks made and released, one snapshot each, over
// three progress intervals. Info gets the first few events, one line that
// says they are being counted, one progress line an interval with the
// counts, and the last release; debug gets every event.
func TestDrainLogChurn(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelDebug} {
		t.Run(level.String(), func(t *testing.T) {
			log, buf := logTo(level)
			t0 := time.Now()
			s := drainingState(log, t0, []string{"/app/lock/long.lock"})
			const perInterval = 1000
			now := t0
			for interval := range 3 {
				for i := range perInterval {
					job := fmt.Sprintf("/app/lock/job-%d-%04d.lock", interval, i)
					s.onLocks([]string{job, "/app/lock/long.lock"})
					s.onLocks([]string{"/app/lock/long.lock"})
				}
				now = now.Add(progressEvery)
				s.advance(now)
			}
			s.onLocks(nil)
			s.advance(now)
			if s.phase != stopping {
				t.Fatalf("phase %v, want stopping", s.phase)
			}
			out := buf.String()
			if level == slog.LevelDebug {
				// Every event, one line each.
				if n := strings.Count(out, "msg=\"released /app/lock/job-"); n != 3*perInterval {
					t.Errorf("%d release lines at debug, want %d", n, 3*perInterval)
				}
				if n := strings.Count(out, "msg=\"new lock while draining\""); n != 3*perInterval {
					t.Errorf("%d new-lock lines at debug, want %d", n, 3*perInterval)
				}
				return
			}
			// 5 events + "counting" + 3 progress lines + the last release
			// + "drain done" + "stopping the app".
			if n := len(lines(buf)); n > drainlog.EventLines+1+3+1+2 {
				t.Errorf("%d info lines for %d events in 3 intervals:\n%s", n, 6*perInterval, out)
			}
			for _, want := range []string{
				"msg=\"more than 5 job events in 5s: counting them",
				"msg=draining locks=1 oldest=\"/app/lock/long.lock 5s\" finished=1000 new=1000 spent=5s",
				"msg=draining locks=1 oldest=\"/app/lock/long.lock 10s\" finished=1000 new=1000 spent=10s",
				"msg=\"released /app/lock/long.lock, 0 left\"",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("no %q in:\n%s", want, out)
				}
			}
		})
	}
}

// When the release that empties the drain came among many, it is still
// named at info when the drain ends, just before "drain done".
func TestDrainLogLastReleaseNamed(t *testing.T) {
	log, buf := logTo(slog.LevelInfo)
	t0 := time.Now()
	var held []string
	for i := range 20 {
		held = append(held, fmt.Sprintf("/app/lock/job-%02d.lock", i))
	}
	s := drainingState(log, t0, held)
	s.cfg.Delay = time.Minute // keeps the drain open while the locks come and go
	s.delayEnd = t0.Add(time.Minute)
	s.onLocks(nil)              // 20 releases at once: the last says 0 left
	s.onLocks([]string{"/x/a"}) // back
	s.onLocks(nil)              // empty again, in the same interval: debug
	s.advance(t0.Add(time.Minute))
	out := buf.String()
	if n := strings.Count(out, "0 left"); n != 2 {
		t.Fatalf("%d lines say 0 left, want the first emptying and the last release:\n%s", n, out)
	}
	if !strings.Contains(out, "msg=\"released /x/a, 0 left\"\n") || !strings.Contains(out, "msg=\"released /app/lock/job-19.lock, 0 left\"\n") {
		t.Errorf("the emptying releases are not named:\n%s", out)
	}
	if i, j := strings.Index(out, "released /x/a, 0 left"), strings.Index(out, "drain done"); i < 0 || j < i {
		t.Errorf("the last release is not named before drain done:\n%s", out)
	}
}

// The deadline's loud line names the longest held first, at most
// drainlog.Named of them, and counts the rest; the next line, as loud,
// names every one (DESIGN: every lock still held is logged loudly). The
// events the log only counted are in the loud line and in "drain done".
func TestDrainDeadlineNamesEveryJob(t *testing.T) {
	log, buf := logTo(slog.LevelInfo)
	t0 := time.Now()
	s := drainingState(log, t0, []string{"/app/lock/old.lock"})
	s.cfg.Grace, s.cfg.StopTimeout = 30*time.Second, 10*time.Second
	s.drainEnd = t0.Add(19 * time.Second)
	var held []string
	for i := range 30 {
		held = append(held, fmt.Sprintf("/app/lock/a-%02d.lock", i))
	}
	held = append(held, "/app/lock/old.lock")
	s.onLocks(held)
	s.advance(t0.Add(19 * time.Second))
	out := lines(buf)
	want := []string{
		`level=ERROR msg="drain deadline reached with 31 locks still held: /app/lock/old.lock, /app/lock/a-00.lock, /app/lock/a-01.lock, /app/lock/a-02.lock, /app/lock/a-03.lock, /app/lock/a-04.lock, /app/lock/a-05.lock, /app/lock/a-06.lock, /app/lock/a-07.lock, /app/lock/a-08.lock and 21 more (every one in the next line); stopping the app anyway" finished=0 new=30`,
		`level=ERROR msg="every job still held" jobs="/app/lock/old.lock, /app/lock/a-00.lock, `,
		`level=INFO msg="drain done" took=19s finished=0 new=30`,
	}
	i := 0
	for _, l := range out {
		if i < len(want) && strings.Contains(l, want[i]) {
			if i == 1 && !strings.Contains(l, "a-29.lock") {
				t.Errorf("the list of every job lacks a-29.lock: %s", l)
			}
			i++
		}
	}
	if i < len(want) {
		t.Errorf("no %q (in this order) in:\n%s", want[i], strings.Join(out, "\n"))
	}
}

// A few jobs cut at the deadline: one loud line names them all, and a
// drain whose events were all logged one by one adds no counts.
func TestDrainDeadlineFewJobs(t *testing.T) {
	log, buf := logTo(slog.LevelInfo)
	t0 := time.Now()
	s := drainingState(log, t0, []string{"/app/lock/a.lock", "/app/lock/b.lock"})
	s.drainEnd = t0.Add(19 * time.Second)
	s.advance(t0.Add(19 * time.Second))
	out := buf.String()
	if !strings.Contains(out, `still held: /app/lock/a.lock, /app/lock/b.lock; stopping the app anyway"`+"\n") {
		t.Errorf("the loud line does not name both locks, or adds counts:\n%s", out)
	}
	if strings.Contains(out, "every job still held") || strings.Contains(out, "finished=") {
		t.Errorf("a second list, or counts, for two locks logged one by one:\n%s", out)
	}
}

// Events only counted (past the budget) and no progress line before the
// drain ends: "drain done" carries their counts, so that none goes
// unsaid at info.
func TestDrainDoneCarriesCountedEvents(t *testing.T) {
	log, buf := logTo(slog.LevelInfo)
	t0 := time.Now()
	var held []string
	for i := range 40 {
		held = append(held, fmt.Sprintf("/app/lock/j-%02d.lock", i))
	}
	s := drainingState(log, t0, held)
	s.onLocks(nil)
	s.advance(t0.Add(time.Second))
	out := buf.String()
	if !strings.Contains(out, `msg="drain done" took=1s finished=40 new=0`) {
		t.Errorf("drain done does not count the releases logged at debug only:\n%s", out)
	}
}

// A drain that never had many events keeps its single lines after a
// progress line; a busy interval keeps the next one counting.
func TestDrainLogBudgetPerInterval(t *testing.T) {
	log, buf := logTo(slog.LevelInfo)
	t0 := time.Now()
	s := drainingState(log, t0, []string{"/app/lock/long.lock"})
	release := func(name string) {
		s.onLocks([]string{"/app/lock/long.lock", name})
		s.onLocks([]string{"/app/lock/long.lock"})
	}
	release("/a") // 2 events
	s.advance(t0.Add(progressEvery))
	release("/b") // a quiet interval: at info
	if !strings.Contains(buf.String(), "released /b, 1 left") {
		t.Fatalf("a release after a quiet interval is not at info:\n%s", buf)
	}
	for i := range 10 {
		release(fmt.Sprintf("/c%d", i))
	}
	s.advance(t0.Add(2 * progressEvery))
	release("/d") // right after a busy interval: counted
	if strings.Contains(buf.String(), "/d") {
		t.Fatalf("a release right after a busy interval is at info:\n%s", buf)
	}
	s.advance(t0.Add(3 * progressEvery))
	release("/e")
	if !strings.Contains(buf.String(), "released /e, 1 left") {
		t.Fatalf("a release after the drain calmed down is not at info:\n%s", buf)
	}
}

// The progress line names the jobs held longest: those there when the
// drain started, in their order, then the others by when they came.
func TestDrainLogOldest(t *testing.T) {
	log, buf := logTo(slog.LevelInfo)
	t0 := time.Now()
	s := drainingState(log, t0, []string{"/l/b.lock", "/l/c.lock"})
	s.dlog.Started("/l/z.lock", t0.Add(2*time.Second), "new")
	s.dlog.Started("/l/a.lock", t0.Add(3*time.Second), "new")
	s.held = []string{"/l/a.lock", "/l/b.lock", "/l/c.lock", "/l/z.lock"}
	s.advance(t0.Add(progressEvery))
	if want := `oldest="/l/b.lock 5s, /l/c.lock 5s, /l/z.lock 3s" new=2 spent=5s`; !strings.Contains(buf.String(), want) {
		t.Errorf("no %q in:\n%s", want, buf)
	}
	s.held = []string{"/l/a.lock", "/l/z.lock"}
	s.advance(t0.Add(2 * progressEvery))
	if want := `oldest="/l/z.lock 8s, /l/a.lock 7s" spent=10s`; !strings.Contains(buf.String(), want) {
		t.Errorf("no %q in:\n%s", want, buf)
	}
}

// The progress line ages a job from when it began, as drainit status and
// the termination message do, not from when the drain first saw it.
func TestDrainLogAgesAgreeWithStatus(t *testing.T) {
	log, buf := logTo(slog.LevelInfo)
	t0 := time.Now()
	s := drainingState(log, t0, []string{"/l/new.lock", "/l/old.lock"})
	s.dlog.Since = s.report.since
	s.report.locks["/l/old.lock"] = t0.Add(-time.Hour) // its file's mtime
	s.report.byName["pid 7 (php job.php 1)"] = t0.Add(-time.Minute)
	s.advance(t0.Add(progressEvery))
	if want := `oldest="/l/old.lock 1h0m5s, /l/new.lock 5s"`; !strings.Contains(buf.String(), want) {
		t.Errorf("no %q in:\n%s", want, buf)
	}
	if got, ok := s.report.since("pid 7 (php job.php 1)"); !ok || !got.Equal(t0.Add(-time.Minute)) {
		t.Errorf("a process job's start: got %v, %v", got, ok)
	}
}
