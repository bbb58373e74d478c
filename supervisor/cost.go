package supervisor

import (
	"context"
	"log/slog"
	"time"

	"github.com/drainit/drainit/supervisor/lockwatch"
	"github.com/drainit/drainit/supervisor/podcost"
	"github.com/drainit/drainit/supervisor/procjobs"
)

// keepCost keeps the pod's deletion cost equal to the number of held locks
// and process jobs for as long as ctx lasts, from the start, not only while
// draining: a ReplicaSet picks which pods to delete before any of them is
// told to stop. It has a lock watcher of its own that never polls (events
// and their rescans only), so an idle container stays idle; process jobs,
// which send no event when they start, are counted by a /proc scan every
// --deletion-cost-interval, and only when --orphans or --job is set.
// Nothing it meets reaches the supervision: errors are logged and it waits
// for ctx.
func (s *state) keepCost(ctx context.Context, c podcost.Config) {
	if c.Log == nil {
		c.Log = s.log
	}
	snapshots := make(chan []string, 1)
	counts := make(chan int)
	go func() {
		// Its info lines (stale locks) would repeat the drain watcher's.
		quiet := slog.New(demoted{s.log.Handler()})
		opts := lockwatch.Options{Patterns: s.cfg.Locks, StalePID: s.cfg.StalePID, Logger: quiet}
		if err := lockwatch.Watch(ctx, opts, snapshots); err != nil {
			s.log.Error("lock watcher for pod-deletion-cost failed; the cost stays as it is", "err", err)
		}
	}()
	go func() {
		rules := s.procRules()
		var tick <-chan time.Time
		if !rules.Empty() {
			t := time.NewTicker(orDefault(c.Interval, 5*time.Second))
			defer t.Stop()
			tick = t.C
		}
		procs := func() int { return len(procjobs.Scan(rules, s.procScope())) }
		locks, jobs, last := -1, procs(), -1
		for {
			select {
			case held := <-snapshots:
				locks = len(held)
			case <-tick:
				jobs = procs()
			case <-ctx.Done():
				return
			}
			// Nothing before the first lock snapshot, which says how many
			// are held; nothing that says what was said already.
			if locks < 0 || locks+jobs == last {
				continue
			}
			last = locks + jobs
			select {
			case counts <- last:
			case <-ctx.Done():
				return
			}
		}
	}()
	// Run returns when ctx ends, or at once if c lacks what FromEnv fills.
	if err := podcost.Run(ctx, c, counts); err != nil {
		s.log.Error("pod-deletion-cost is off", "err", err)
		<-ctx.Done()
	}
}

// demoted logs info records at debug level.
type demoted struct{ slog.Handler }

func (d demoted) Enabled(ctx context.Context, l slog.Level) bool {
	if l == slog.LevelInfo {
		l = slog.LevelDebug
	}
	return d.Handler.Enabled(ctx, l)
}

func (d demoted) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelInfo {
		r.Level = slog.LevelDebug
	}
	return d.Handler.Handle(ctx, r)
}

func (d demoted) WithAttrs(a []slog.Attr) slog.Handler { return demoted{d.Handler.WithAttrs(a)} }
func (d demoted) WithGroup(n string) slog.Handler      { return demoted{d.Handler.WithGroup(n)} }
