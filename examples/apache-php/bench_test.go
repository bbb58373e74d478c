package apachephp_test

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// BenchmarkDockerStop stops the example's container with three jobs of 1,
// 2 and 3 s in flight, once per init, side by side in one run:
//
//	go test ./examples/apache-php -run XXX -bench DockerStop -benchtime 5x
//
// It reports medians over the iterations: jobs lost (of 3); where a job
// finished, the time from the last job's release to the container's exit
// and, under drainit, to the moment it gives Apache its stop signal (the
// rest is Apache's graceful stop); and from docker stop to the exit.
func BenchmarkDockerStop(b *testing.B) {
	inits := []struct {
		name string
		opts []string
	}{
		{"none", []string{"--entrypoint", "apache2-foreground"}},
		{"tini", []string{"--init", "--entrypoint", "apache2-foreground"}},
		{"drainit", nil},
	}
	for _, in := range inits {
		b.Run(in.name, func(b *testing.B) {
			needImage(b)
			var lost, linger, signal, stop []float64
			for range b.N {
				r := stopOnce(b, in.opts)
				lost = append(lost, r.lost)
				stop = append(stop, r.stop)
				if r.linger >= 0 {
					linger = append(linger, r.linger)
				}
				if r.signal >= 0 {
					signal = append(signal, r.signal)
				}
			}
			b.ReportMetric(median(lost), "jobs-lost")
			b.ReportMetric(median(stop), "stop-to-exit-ms")
			if len(linger) > 0 {
				b.ReportMetric(median(linger), "release-to-exit-ms")
			}
			if len(signal) > 0 {
				b.ReportMetric(median(signal), "release-to-stop-signal-ms")
			}
			b.ReportMetric(0, "ns/op") // the loop's own time means nothing here
		})
	}
}

// result is one stop, in milliseconds; -1 where there is nothing to measure.
type result struct {
	lost   float64 // jobs that did not finish, of 3
	linger float64 // the last job's release → the container's exit
	signal float64 // the last job's release → drainit's "stopping the app" (to its log's millisecond)
	stop   float64 // docker stop → the container's exit
}

// stopOnce runs one container, starts the jobs, stops it and measures.
func stopOnce(b *testing.B, opts []string) result {
	c := run(b, opts...)
	ids := []string{"a", "b", "c"}
	for i, id := range ids {
		c.start(id, time.Duration(i+1)*time.Second)
	}
	stopped := time.Now()
	c.stop(30)
	exit := c.finished()
	done := c.done()
	r := result{lost: float64(len(ids) - len(done)), linger: -1, signal: -1, stop: ms(exit.Sub(stopped))}
	if len(done) == 0 {
		return r
	}
	var last time.Time
	for _, at := range done {
		if at.After(last) {
			last = at
		}
	}
	r.linger = ms(exit.Sub(last))
	// drainit's text log stamps its lines with the container's time of
	// day (UTC here) to the millisecond.
	for _, l := range strings.Split(c.logs(), "\n") {
		f := strings.Fields(l)
		if len(f) < 4 || f[0] != "drainit" || !strings.HasPrefix(l, "drainit "+f[1]+" stopping the app") {
			continue
		}
		at, err := time.Parse("15:04:05.000", f[1])
		if err != nil {
			b.Fatalf("drainit's log line %q: %v", l, err)
		}
		y, mo, d := last.UTC().Date()
		at = at.AddDate(y, int(mo)-1, d-1)
		r.signal = ms(at.Sub(last))
	}
	return r
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
