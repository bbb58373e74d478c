package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"syscall"
	"time"

	"github.com/drainit/drainit/signals"
	"github.com/drainit/drainit/supervisor/internal/drainlog"
	"github.com/drainit/drainit/supervisor/lockwatch"
	"github.com/drainit/drainit/supervisor/procjobs"
)

// WaitConfig is what Wait needs.
type WaitConfig struct {
	Locks    []string         // lock file patterns, absolute
	Jobs     []*regexp.Regexp // a process whose command line matches is a running job
	Poll     time.Duration    // rescan interval, the fallback where events don't arrive
	StalePID bool             // a lock naming a dead PID is released
	Timeout  time.Duration    // 0: no limit (the kubelet's grace period is one)
	Signals  *signals.Caught
	Log      *slog.Logger
}

// Exit codes of Wait.
const (
	WaitClear   = 0 // no lock is held
	WaitTimeout = 1 // the timeout came, or a stop signal, with locks still held
)

// progressEvery is how often Wait says what it still waits for.
const progressEvery = 5 * time.Second

// Wait blocks until no lock is held and no matching process runs, and
// returns WaitClear, or WaitTimeout at the timeout or on SIGTERM or SIGINT,
// with what is still held logged.
func Wait(cfg WaitConfig) int {
	w := &waiter{cfg: cfg, log: cfg.Log, dlog: drainlog.New(cfg.Log, time.Now(), progressEvery), began: map[string]time.Time{}}
	w.dlog.Since = w.since
	return w.run()
}

type waiter struct {
	cfg   WaitConfig
	log   *slog.Logger
	locks []string      // the latest lock snapshot
	procs *procjobs.Set // matching processes still running; nil without --job
	dlog  *drainlog.Log
	// began is when each held job began, by the name logs give it: a
	// lock's mtime, a process's start; the ages of the progress line
	// count from it, as drainit status's do.
	began map[string]time.Time
}

func (w *waiter) since(key string) (time.Time, bool) {
	t, ok := w.began[key]
	return t, ok
}

// lockBegan notes when a lock first seen now began: its file's last
// change, or now where that cannot be read or lies ahead.
func (w *waiter) lockBegan(path string, now time.Time) {
	t := now
	if fi, err := os.Lstat(path); err == nil && fi.ModTime().Before(now) {
		t = fi.ModTime()
	}
	w.began[path] = t
}

func (w *waiter) run() int {
	cfg, log := w.cfg, w.log
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan []string, 1)
	failed := make(chan error, 1)
	locksIn := len(cfg.Locks) == 0 // no pattern: nothing to wait for from the watcher
	if !locksIn {
		opts := lockwatch.Options{Patterns: cfg.Locks, Poll: cfg.Poll, StalePID: cfg.StalePID, Logger: log}
		go func() {
			if err := lockwatch.Watch(ctx, opts, out); err != nil {
				failed <- err
			}
		}()
	}
	var scan <-chan time.Time
	if len(cfg.Jobs) > 0 {
		// Wait adopts nobody: every job's end comes through a pidfd,
		// or the next scan where there is none.
		w.procs = &procjobs.Set{Log: log}
		if err := w.procs.WatchExits(); err != nil {
			log.Debug("no pidfds: a job's end is seen at the next --poll scan", "err", err)
		}
		defer w.procs.Close()
		w.rescan(false)
		t := time.NewTicker(orDefault(cfg.Poll, time.Second))
		defer t.Stop()
		scan = t.C
	}

	t0 := time.Now()
	var timeout <-chan time.Time
	if cfg.Timeout > 0 {
		t := time.NewTimer(cfg.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	progress := time.NewTicker(progressEvery)
	defer progress.Stop()

	said := false
	for {
		if locksIn && !said {
			said = true
			if n := len(w.locks) + w.procs.Len(); n > 0 {
				log.Info(fmt.Sprintf("waiting for %s: %s", w.count(), w.dlog.Names(w.names())))
			}
		}
		// The last scan before saying all clear: a job started since the
		// previous one must not be missed.
		if locksIn && len(w.locks) == 0 && w.procs.Len() == 0 && w.rescan(true) == 0 {
			w.dlog.AllDone()
			log.Info(w.clear(), append([]any{"waited", time.Since(t0).Round(time.Millisecond)}, w.dlog.Tail()...)...)
			return WaitClear
		}
		select {
		case now := <-out:
			if locksIn {
				w.logChanges(now)
			} else {
				at := time.Now()
				for _, l := range now {
					w.lockBegan(l, at)
				}
			}
			w.locks, locksIn = now, true
		case pid := <-w.procs.C():
			if p, ok := w.procs.End(pid); ok {
				w.logEnded([]procjobs.Proc{p})
			}
		case <-scan:
			w.rescan(true)
		case at := <-progress.C:
			tail := []any{"spent", at.Sub(t0).Round(time.Second)}
			if cfg.Timeout > 0 {
				tail = append(tail, "left", max(cfg.Timeout-at.Sub(t0), 0).Round(time.Second))
			}
			w.dlog.Progress(at, "waiting", []any{"locks", len(w.locks), "jobs", w.procs.Len()}, w.names(), tail...)
		case <-timeout:
			names := w.names()
			log.Error(fmt.Sprintf("gave up after waiting %v (--timeout %v) with %s still held: %s", time.Since(t0).Round(time.Millisecond), cfg.Timeout, w.count(), w.dlog.Names(names)), w.dlog.Tail()...)
			w.dlog.Every(slog.LevelError, names)
			return WaitTimeout
		case s := <-cfg.Signals.All:
			if sig := s.(syscall.Signal); sig == syscall.SIGTERM || sig == syscall.SIGINT {
				names := w.names()
				log.Error(fmt.Sprintf("stopped by SIG%s after waiting %v with %s still held: %s", signals.Name(sig), time.Since(t0).Round(time.Millisecond), w.count(), w.dlog.Names(names)), w.dlog.Tail()...)
				w.dlog.Every(slog.LevelError, names)
				return WaitTimeout
			}
		case err := <-failed:
			log.Error("cannot watch the locks", "err", err)
			return WaitTimeout
		}
	}
}

// rescan brings the matching processes in line with /proc and returns how
// many it found that were not known. In a container every process is
// looked at, but never Wait itself, its ancestors (the shell of the hook,
// whose command line holds the expression) or PID 1, which does not end
// before the stop that this hook comes before.
func (w *waiter) rescan(logNew bool) int {
	if w.procs == nil {
		return 0
	}
	found := procjobs.Scan(procjobs.Rules{Match: w.cfg.Jobs}, procjobs.Scope{Self: os.Getpid(), All: true, Ancestors: true, Exclude: []int{1}})
	added, ended := w.procs.Update(found)
	// Ends first: a PID reused by the same command names the ended job
	// and the new one alike, and the new one's start must stay.
	w.logEnded(ended)
	now := time.Now()
	for _, p := range added {
		w.began[p.String()] = p.Began(now)
		if logNew {
			w.dlog.Started(p.String(), now, "new job", "job", p.String())
		}
	}
	return len(added)
}

// logEnded says that jobs the set has let go ended, each with how many
// are left after it.
func (w *waiter) logEnded(ended []procjobs.Proc) {
	left := len(w.locks) + w.procs.Len() + len(ended)
	for _, p := range ended {
		left--
		delete(w.began, p.String())
		w.dlog.Ended(p.String(), left, func() string { return fmt.Sprintf("job %s ended, %d left", p, left) })
	}
}

// logChanges passes a lock snapshot's changes to the log, the new locks
// first, so that each release says how many are left after it.
func (w *waiter) logChanges(now []string) {
	released, added := drainlog.Diff(w.locks, now)
	at := time.Now()
	for _, p := range added {
		w.lockBegan(p, at)
		w.dlog.Started(p, at, "new lock", "path", p)
	}
	left := len(w.locks) + len(added) + w.procs.Len()
	for _, p := range released {
		left--
		delete(w.began, p)
		w.dlog.Ended(p, left, func() string { return fmt.Sprintf("released %s, %d left", p, left) })
	}
}

// count is "2 locks", "1 job" or "2 locks and 1 job", after what is
// waited for.
func (w *waiter) count() string {
	locks := fmt.Sprintf("%d locks", len(w.locks))
	if len(w.locks) == 1 {
		locks = "1 lock"
	}
	jobs := fmt.Sprintf("%d jobs", w.procs.Len())
	if w.procs.Len() == 1 {
		jobs = "1 job"
	}
	switch {
	case len(w.cfg.Jobs) == 0:
		return locks
	case len(w.cfg.Locks) == 0:
		return jobs
	}
	return locks + " and " + jobs
}

func (w *waiter) clear() string {
	switch {
	case len(w.cfg.Jobs) == 0:
		return "no lock held"
	case len(w.cfg.Locks) == 0:
		return "no job running"
	}
	return "no lock held, no job running"
}

// names lists the held locks, then the running jobs by PID.
func (w *waiter) names() []string {
	return append(slices.Clone(w.locks), w.procs.Names()...)
}

func orDefault(d, otherwise time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return otherwise
}
