package supervisor

import (
	"fmt"
	"os"
	"time"

	"github.com/drainit/drainit/supervisor/procjobs"
)

// Process jobs (--orphans, --job) are tracked only while draining: a scan
// of /proc when the drain starts, one on every --poll tick and one right
// before the stop signal, so a job started during the drain is never
// missed. Between scans their exits are events: a child's (an adopted job)
// comes from the reaper, any other process's from a pidfd.

func (s *state) procRules() procjobs.Rules {
	return procjobs.Rules{Orphans: s.cfg.Orphans, Match: s.cfg.Jobs}
}

// procScope is "in drainit's care": as PID 1 every process of the
// namespace, otherwise its descendants; never the app's main process.
func (s *state) procScope() procjobs.Scope {
	return procjobs.Scope{Self: os.Getpid(), All: s.pid1, Exclude: []int{s.app}}
}

// startProcs finds the process jobs held when the drain starts.
func (s *state) startProcs(now time.Time) {
	if s.procRules().Empty() {
		return
	}
	// A child's exit comes through the reaper; any other process's
	// through its pidfd, or the next scan where there is none.
	s.procs = &procjobs.Set{Reaper: os.Getpid(), Log: s.log}
	if err := s.procs.WatchExits(); err != nil {
		s.log.Warn(fmt.Sprintf("cannot watch processes through pidfds (%v): the end of a job that is not drainit's child is seen at the next --poll scan; run on Linux 5.3 or later, with a seccomp profile that allows pidfd_open", err))
	}
	s.rescanProcs(now, false)
}

func (s *state) stopProcs() {
	if s.procs != nil {
		s.procs.Close()
	}
}

// rescanProcs brings the process jobs in line with /proc and returns how
// many it found that were not known. A known job the scan no longer finds
// has ended unseen (no pidfd): it is released here.
func (s *state) rescanProcs(now time.Time, logNew bool) int {
	s.nextScan = now.Add(orDefault(s.cfg.Poll, time.Second))
	added, ended := s.procs.Update(s.scanProcs())
	// Ends first, as they happened: a PID reused by the same command
	// names the ended job and the new one alike.
	s.logEnded(ended)
	if logNew {
		for _, p := range added {
			s.dlog.Started(p.String(), now, "new job while draining", "job", p.String())
		}
	}
	return len(added)
}

// onProcExit is the end of a process job seen through the reaper or a
// pidfd; PIDs that are not jobs are ignored.
func (s *state) onProcExit(pid int) {
	if s.phase != draining {
		return
	}
	if p, ok := s.procs.End(pid); ok {
		s.logEnded([]procjobs.Proc{p})
	}
}

// logEnded says that jobs the set has let go ended, each with how many
// are left after it.
func (s *state) logEnded(ended []procjobs.Proc) {
	left := len(s.held) + s.procs.Len() + len(ended)
	for _, p := range ended {
		left--
		s.dlog.Ended(p.String(), left, func() string { return fmt.Sprintf("job %s ended, %d left", p, left) })
	}
}

// warnOrphanTrap says, when the deadline cut adopted jobs, what --orphans
// cannot tell apart: a daemon that an entrypoint script started with '&'
// is adopted like a job and never ends, so it holds every stop to the
// deadline.
func (s *state) warnOrphanTrap() {
	if !s.cfg.Orphans {
		return
	}
	self := os.Getpid()
	for p := range s.procs.All() {
		if p.Child(self) {
			s.log.Warn("with --orphans every process left in the background counts as a job, a daemon started with '&' by an entrypoint script too; if one listed above is such a daemon, run it in the foreground under its own supervisor, or name the jobs with --job instead")
			return
		}
	}
}
