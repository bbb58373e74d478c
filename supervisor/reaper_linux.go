package supervisor

import (
	"context"
	"errors"
	"time"

	"golang.org/x/sys/unix"
)

// backstop is how often the reaper looks for exited children without being
// told. It should never find anything: os/signal drops a SIGCHLD only when
// the channel's one slot is full, and then a pass is already pending. It is
// a guard against what that reasoning misses, slow enough (once a minute)
// that an idle drainit does not wake up for it.
const backstop = time.Minute

// reaped is what one pass of the reaper learned.
type reaped struct {
	app       *unix.WaitStatus // the app's status, if this pass reaped it
	childless bool             // no child of drainit is left
	jobs      []int            // the other children it reaped, when process jobs are on
}

// reap is the only caller of wait4 in drainit. It runs on every SIGCHLD and
// on the backstop tick until ctx ends.
func (s *state) reap(ctx context.Context) {
	t := time.NewTicker(backstop)
	defer t.Stop()
	for {
		r := s.reapOnce()
		if r.app != nil || r.childless || len(r.jobs) > 0 {
			select {
			case s.reapedc <- r:
			case <-ctx.Done():
				return
			}
		}
		select {
		case <-s.cfg.Signals.Child:
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

func (s *state) reapOnce() reaped {
	var r reaped
	// An adopted job's exit reaches the drain only this way; without
	// process jobs a burst of orphans costs nothing more than wait4.
	jobs := !s.procRules().Empty()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ECHILD):
			r.childless = true
			return r
		case err != nil:
			s.log.Error("wait4 failed", "err", err)
			return r
		case pid == 0:
			return r
		case pid == s.app:
			s.appGone.Store(true)
			st := ws
			r.app = &st
		default:
			s.log.Debug("reaped", "pid", pid, "status", describe(ws))
			if jobs {
				r.jobs = append(r.jobs, pid)
			}
		}
	}
}
