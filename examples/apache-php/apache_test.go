package apachephp_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/drainit/drainit/internal/testkit"
)

func TestMain(m *testing.M) {
	if err := testkit.ResetSignals(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// The first user's stop: three jobs of 2, 4 and 6 s started through the
// app's own page, then docker stop. drainit holds the stop until the last
// job has removed its lock, then gives Apache its graceful stop.
func TestDockerStopKeepsJobs(t *testing.T) {
	needImage(t)
	t.Parallel()
	c := run(t)
	jobs := map[string]time.Duration{"a": 2 * time.Second, "b": 4 * time.Second, "c": 6 * time.Second}
	for _, id := range []string{"a", "b", "c"} {
		c.start(id, jobs[id])
	}
	stopped := c.stop(30)

	done := c.done()
	var last time.Time
	for id := range jobs {
		at, ok := done[id]
		if !ok {
			t.Errorf("job %s was lost (jobs.log: %v)", id, done)
		}
		if at.After(last) {
			last = at
		}
	}
	if code := c.exitCode(); code != 0 {
		t.Errorf("exit code %d, want 0 (Apache's own after its graceful stop)", code)
	}
	logs := c.logs()
	for _, want := range []string{"draining", "drain done", "stopping the app signal=WINCH"} {
		if !strings.Contains(logs, want) {
			t.Errorf("no %q in docker logs", want)
		}
	}
	if t.Failed() {
		return
	}
	// Apache's graceful stop takes about a second (it checks on its
	// children once a second); the drain's deadline is 19 s after the stop.
	// A container that lingers longer than a few of Apache's seconds after
	// the last job waited for something else.
	linger := c.finished().Sub(last)
	t.Logf("last job's release → container exit: %v; docker stop returned %v after it",
		linger.Round(time.Millisecond), stopped.Sub(last).Round(time.Millisecond))
	if linger > 5*time.Second {
		t.Errorf("the container exited %v after the last job: the drain did not end on the release", linger)
	}
}

// The lock-free variant of the same image: DRAINIT_JOB='job\.php' and no
// DRAINIT_LOCK. drainit sees each job by its php process, from the fork
// (the lock files job.php still writes are not looked at).
func TestDockerStopKeepsJobsWithoutLocks(t *testing.T) {
	needImage(t)
	t.Parallel()
	c := run(t, "-e", "DRAINIT_LOCK=", "-e", `DRAINIT_JOB=job\.php`)
	// Both still running when docker stop lands, however loaded the
	// machine: the drain's first line names them.
	c.start("a", 4*time.Second)
	c.start("b", 6*time.Second)
	c.stop(30)
	if done := c.done(); len(done) != 2 {
		t.Errorf("jobs done: %v; want a and b", done)
	}
	if code := c.exitCode(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	logs := c.logs()
	for _, want := range []string{`lock=none jobs=job\.php`, `draining by=SIGTERM locks=none jobs="2 (pid `, "job.php b 6) ended, 0 left", "stopping the app signal=WINCH"} {
		if !strings.Contains(logs, want) {
			t.Errorf("no %q in docker logs", want)
		}
	}
}

// The same stop without drainit, and with drainit behind the wrong stop
// signal: the jobs die with Apache, which signals its whole process group.
func TestContrasts(t *testing.T) {
	needImage(t)
	cases := []struct {
		name string
		opts []string
		// wantLogs are what the container's log must hold.
		wantLogs []string
	}{
		{"apache as PID 1", []string{"--entrypoint", "apache2-foreground"}, nil},
		{"docker run --init", []string{"--init", "--entrypoint", "apache2-foreground"}, nil},
		// php:apache's own STOPSIGNAL, left in place: drainit cannot drain
		// on a signal it is not told about, but it says what to fix, and
		// once Apache has taken the jobs down with it, drainit does not
		// wait out the budget for locks nobody is left to release.
		{"STOPSIGNAL SIGWINCH", []string{"--stop-signal", "WINCH"}, []string{
			"warn: SIGWINCH passed to the app while 2 locks are held",
			"set STOPSIGNAL SIGTERM",
			"no process is left that could release 2 locks",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := run(t, tc.opts...)
			// Long enough that neither can finish before the stop on a
			// loaded machine: they are meant to be lost.
			c.start("a", 10*time.Second)
			c.start("b", 12*time.Second)
			c.stop(30)
			if done := c.done(); len(done) != 0 {
				t.Errorf("jobs finished: %v; want both lost, as without drainit", done)
			}
			logs := c.logs()
			for _, want := range tc.wantLogs {
				if !strings.Contains(logs, want) {
					t.Errorf("no %q in docker logs", want)
				}
			}
		})
	}
}
