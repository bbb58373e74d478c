package supervisor

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/drainit/drainit/supervisor/internal/drainlog"
	"github.com/drainit/drainit/supervisor/status"
)

// locks returns n sorted lock paths over 100 directories, as the watcher's
// snapshots are.
func locks(n int) []string {
	out := make([]string, 0, n)
	for i := range n {
		out = append(out, fmt.Sprintf("/app/lock/d%03d/job%05d.lock", i%100, i))
	}
	slices.Sort(out)
	return out
}

// benchState is a draining state whose log lines are formatted as drainit's
// would be and then dropped, so that their cost is counted.
func benchState(b *testing.B) *state {
	s := testState(Config{Locks: []string{"/app/lock/*/*.lock"}})
	s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	s.phase = draining
	s.dlog = drainlog.New(s.log, time.Now(), progressEvery)
	return s
}

// BenchmarkOnLocks is the controller taking one lock snapshot while
// draining: the diff against the previous snapshot and a log line per
// release. With 10,000 held locks the diff's cost decides how soon the
// stop signal follows the last release.
func BenchmarkOnLocks(b *testing.B) {
	all := locks(10_000)
	for _, tc := range []struct {
		name string
		next []string
	}{
		{"10k-to-9999", all[1:]},
		{"10k-to-5k", all[5_000:]},
		{"10k-to-0", nil},
		{"1-to-0", nil},
	} {
		prev := all
		if tc.name == "1-to-0" {
			prev = all[:1]
		}
		b.Run(tc.name, func(b *testing.B) {
			s := benchState(b)
			b.ReportAllocs()
			for b.Loop() {
				s.held = prev
				s.onLocks(tc.next)
			}
		})
	}
}

// BenchmarkControlStep is what the controller does around every event while
// draining: apply the transitions time decides, then find its next wake-up.
func BenchmarkControlStep(b *testing.B) {
	s := benchState(b)
	now := time.Now()
	s.t0, s.scanned, s.held = now, true, locks(3)
	s.drainEnd = now.Add(time.Hour)
	s.budgetEnd = now.Add(time.Hour)
	s.nextProgress = now.Add(time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		s.advance(now)
		s.nextWake()
	}
}

// BenchmarkStopWithoutLocks is a whole stop with no lock pattern, as fast
// as tini's should be: running → draining → stopping on one signal. The app
// does not exist, so the stop signal fails with ESRCH, as it would for an
// app that just exited.
func BenchmarkStopWithoutLocks(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		s := testState(Config{})
		s.onDrainSignal(syscall.SIGTERM, time.Now())
		if s.phase != stopping {
			b.Fatalf("phase %v, want stopping", s.phase)
		}
	}
}

// BenchmarkObserve is what the state file and the termination message add
// to a lock snapshot while draining: following the held jobs (when each was
// first seen, how many finished), and the state to write when it is due.
// Compare with BenchmarkOnLocks, the diff every snapshot costs anyway.
func BenchmarkObserve(b *testing.B) {
	all := locks(10_000)
	s := benchState(b)
	s.report.out = make(chan status.State, 1)
	now := time.Now()
	s.t0 = now
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		// One lock released, then back: a new snapshot every time.
		if i%2 == 0 {
			s.held = all[1:]
		} else {
			s.held = slices.Clone(all)
		}
		i++
		now = now.Add(time.Millisecond)
		s.observe(now)
		select {
		case <-s.report.out:
		default:
		}
	}
}
