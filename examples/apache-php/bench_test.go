package apachephp_test

import (
	"slices"
	"testing"
	"time"
)

// BenchmarkDockerStop stops the example's container with three jobs of 1,
// 2 and 3 s in flight, once per init, side by side in one run:
//
//	go test ./examples/apache-php -run XXX -bench DockerStop -benchtime 5x
//
// It reports medians over the iterations: jobs lost (of 3), the time from
// the last job's release to the container's exit (where a job finished),
// and from docker stop to the exit.
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
			var lost, linger, stop []float64
			for range b.N {
				l, lg, s := stopOnce(b, in.opts)
				lost = append(lost, l)
				stop = append(stop, s)
				if lg >= 0 {
					linger = append(linger, lg)
				}
			}
			b.ReportMetric(median(lost), "jobs-lost")
			b.ReportMetric(median(stop), "stop-to-exit-ms")
			if len(linger) > 0 {
				b.ReportMetric(median(linger), "release-to-exit-ms")
			}
			b.ReportMetric(0, "ns/op") // the loop's own time means nothing here
		})
	}
}

// stopOnce runs one container, starts the jobs, stops it and measures.
// linger is -1 when no job finished.
func stopOnce(b *testing.B, opts []string) (lost, linger, stop float64) {
	c := run(b, opts...)
	ids := []string{"a", "b", "c"}
	for i, id := range ids {
		c.start(id, time.Duration(i+1)*time.Second)
	}
	stopped := time.Now()
	c.stop(30)
	exit := c.finished()
	done := c.done()
	lost = float64(len(ids) - len(done))
	linger = -1
	if len(done) > 0 {
		var last time.Time
		for _, at := range done {
			if at.After(last) {
				last = at
			}
		}
		linger = ms(exit.Sub(last))
	}
	return lost, linger, ms(exit.Sub(stopped))
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
