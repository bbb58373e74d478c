package lockwatch_test

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/drainit/drainit/supervisor/lockwatch"
)

// tree makes files lock files in dirs directories under a temporary root
// and returns the pattern that matches them. Each holds what a job would
// write: its PID, so that the scan has content to read.
func tree(b *testing.B, dirs, files int) string {
	b.Helper()
	root := b.TempDir()
	pid := []byte(fmt.Sprintf("%d\n", os.Getpid()))
	for d := range dirs {
		dir := fmt.Sprintf("%s/app%03d", root, d)
		if err := os.Mkdir(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for f := range files / dirs {
			if err := os.WriteFile(fmt.Sprintf("%s/lock%05d.lock", dir, f), pid, 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	return root + "/*/lock*.lock"
}

func BenchmarkScan10k(b *testing.B) {
	for _, stalePID := range []bool{false, true} {
		b.Run(fmt.Sprintf("stalepid=%v", stalePID), func(b *testing.B) {
			opts := lockwatch.Options{Patterns: []string{tree(b, 100, 10_000)}, StalePID: stalePID}
			b.ReportAllocs()
			for b.Loop() {
				if n := len(lockwatch.Scan(opts)); n != 10_000 {
					b.Fatalf("%d locks, want 10000", n)
				}
			}
		})
	}
}

// BenchmarkReleaseToSnapshot measures, per iteration, the time from removing
// a lock file to receiving the snapshot without it: alone, and among 10,000
// other held locks in 100 directories.
func BenchmarkReleaseToSnapshot(b *testing.B) {
	for _, tc := range []struct {
		name        string
		dirs, files int
	}{
		{"last-of-1", 1, 0},
		{"one-of-10k", 100, 10_000},
	} {
		b.Run(tc.name, func(b *testing.B) {
			pattern := tree(b, tc.dirs, tc.files)
			dir := pattern[:len(pattern)-len("/*/lock*.lock")] + "/app000"
			base := lockwatch.Scan(lockwatch.Options{Patterns: []string{pattern}})
			ch := watch(b, lockwatch.Options{Patterns: []string{pattern}})
			waitFor(b, ch, base...)

			f := dir + "/lock-released.lock"
			with := append(slices.Clone(base), f)
			took := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				write(b, f, "")
				waitFor(b, ch, with...)
				b.StartTimer()
				start := time.Now()
				remove(b, f)
				waitFor(b, ch, base...)
				took = append(took, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(took)
			ms := func(q float64) float64 {
				return float64(took[int(q*float64(len(took)-1))]) / float64(time.Millisecond)
			}
			b.ReportMetric(ms(0.50), "p50-ms")
			b.ReportMetric(ms(0.99), "p99-ms")
		})
	}
}
