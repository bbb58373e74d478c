package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/drainit/drainit/signals"
	"github.com/drainit/drainit/supervisor/jobs"
)

func runWait(args []string, caught *signals.Caught) int {
	cfg, log, err := parseWait(args, os.LookupEnv)
	if err != nil {
		return fail(err, waitUsage)
	}
	cfg.Signals, cfg.Log = caught, log
	return jobs.Wait(cfg)
}

func waitOptions(c *jobs.WaitConfig, lf *logFlags, toPID1 *bool, lookup lookupEnv) *options {
	o := newOptions("drainit wait", lookup)
	o.globs("lock", &c.Locks, "a lock file pattern; a matching file is a running job")
	o.regexps("job", &c.Jobs, "a process whose command line matches this expression is a running job")
	o.duration("timeout", &c.Timeout, 0, 0, "give up after this long and exit 1").defText = "no limit"
	o.duration("poll", &c.Poll, time.Second, time.Millisecond, "rescan interval, the fallback where file events don't arrive")
	o.boolean("stale-pid", &c.StalePID, "a lock file that starts with a dead PID is released")
	*toPID1 = true
	o.boolean("log-to-pid1", toPID1, "also write the log to PID 1's stdout, where kubectl logs reads")
	lf.register(o)
	return o
}

func parseWait(args []string, lookup lookupEnv) (jobs.WaitConfig, *slog.Logger, error) {
	var c jobs.WaitConfig
	var lf logFlags
	var toPID1 bool
	rest, err := waitOptions(&c, &lf, &toPID1, lookup).parse(args)
	if err != nil {
		return c, nil, err
	}
	if len(rest) > 0 {
		return c, nil, usagef("drainit wait takes no arguments, got %q; give patterns with --lock or --job", rest[0])
	}
	if len(c.Locks) == 0 && len(c.Jobs) == 0 {
		return c, nil, usagef("drainit wait needs something to wait for; add --lock /app/lock/*.lock or --job 'job\\.php', or set DRAINIT_LOCK or DRAINIT_JOB")
	}
	lf.prefix = "drainit wait"
	var w io.Writer = os.Stderr
	if toPID1 {
		w = alsoToPID1(w)
	}
	log, err := lf.logger(w)
	return c, log, err
}

// alsoToPID1 adds PID 1's stdout to w. A preStop hook's own output goes
// nowhere a person looks; PID 1's stdout is what kubectl logs shows. Not
// when this is PID 1, and not when that stream cannot be opened.
func alsoToPID1(w io.Writer) io.Writer {
	if os.Getpid() == 1 {
		return w
	}
	f, err := os.OpenFile("/proc/1/fd/1", os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return w
	}
	return io.MultiWriter(w, tolerant{f})
}

// tolerant drops write errors, so that a closed PID 1 stream does not stop
// the lines that still reach stderr.
type tolerant struct{ w io.Writer }

func (t tolerant) Write(p []byte) (int, error) {
	_, _ = t.w.Write(p)
	return len(p), nil
}

func waitUsage(f *os.File) {
	fmt.Fprint(f, `usage: drainit wait [flags]

Blocks until no lock file is held and no process whose command line matches
--job runs (never counting itself, its ancestors or PID 1): exit 0, or 1 at
--timeout with what is still held listed. Made for a Kubernetes preStop hook.

flags (each also set by the variable in brackets):
`)
	var toPID1 bool
	waitOptions(&jobs.WaitConfig{}, &logFlags{}, &toPID1, noEnv).printDefaults(f)
}

func runLock(args []string, caught *signals.Caught) int {
	cfg, log, err := parseLock(args, os.LookupEnv)
	if err != nil {
		return fail(err, lockUsage)
	}
	cfg.Signals, cfg.Log = caught, log
	return jobs.Lock(cfg)
}

func lockOptions(c *jobs.LockConfig, lf *logFlags, lookup lookupEnv) *options {
	o := newOptions("drainit lock", lookup)
	o.duration("wait", &c.Wait, 0, 0, "wait this long for a held lock instead of failing at once")
	lf.register(o)
	return o
}

func parseLock(args []string, lookup lookupEnv) (jobs.LockConfig, *slog.Logger, error) {
	var c jobs.LockConfig
	var lf logFlags
	rest, err := lockOptions(&c, &lf, lookup).parse(args)
	if err != nil {
		return c, nil, err
	}
	if len(rest) > 1 && rest[1] == "--" {
		rest = append(rest[:1:1], rest[2:]...)
	}
	if len(rest) < 2 || rest[0] == "" {
		return c, nil, usagef("usage: drainit lock [--wait DUR] PATH -- COMMAND [ARG...]; PATH is a lock file, or a directory for a unique one")
	}
	c.Path, c.Command = rest[0], rest[1:]
	if err := checkDir(parentOf(c.Path)); err != nil {
		return c, nil, usagef("lock path %s: %v; create the directory first", c.Path, err)
	}
	lf.prefix = "drainit lock"
	log, err := lf.logger(os.Stderr)
	return c, log, err
}

func lockUsage(f *os.File) {
	fmt.Fprint(f, `usage: drainit lock [flags] PATH -- COMMAND [ARG...]

Runs COMMAND while holding lock file PATH (a unique file inside PATH when it
is a directory or ends in /), and removes it when COMMAND exits. The lock's
flock is inherited by COMMAND: if drainit lock is killed, the job still
holds it. Exits with COMMAND's code, or 1 when the lock is already held.

flags (each also set by the variable in brackets):
`)
	lockOptions(&jobs.LockConfig{}, &logFlags{}, noEnv).printDefaults(f)
}
