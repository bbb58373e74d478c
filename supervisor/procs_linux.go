package supervisor

import (
	"errors"
	"fmt"
	"os"
	"slices"
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
	s.procs = map[int]procjobs.Proc{}
	exits, err := procjobs.NewExits()
	if err != nil {
		s.log.Warn(fmt.Sprintf("cannot watch processes through pidfds (%v): the end of a job that is not drainit's child is seen at the next --poll scan; run on Linux 5.3 or later, with a seccomp profile that allows pidfd_open", err))
	} else {
		s.exits, s.exitc = exits, exits.C
	}
	s.rescanProcs(now, false)
}

func (s *state) stopProcs() {
	if s.exits != nil {
		s.exits.Close()
		s.exits, s.exitc = nil, nil
	}
}

// rescanProcs brings the process jobs in line with /proc and returns how
// many it found that were not known. A known job the scan no longer finds
// has ended unseen (no pidfd): it is released here.
func (s *state) rescanProcs(now time.Time, logNew bool) int {
	s.nextScan = now.Add(orDefault(s.cfg.Poll, time.Second))
	found := s.scanProcs()
	seen := make(map[int]bool, len(found))
	added := 0
	self := os.Getpid()
	for _, p := range found {
		seen[p.PID] = true
		if old, ok := s.procs[p.PID]; ok && old.Start == p.Start {
			continue
		}
		// A child's exit comes through the reaper; any other process's
		// through its pidfd, or the next scan where there is none.
		if !p.Child(self) && s.exits != nil {
			err := s.exits.Watch(p)
			if errors.Is(err, procjobs.ErrGone) {
				continue
			}
			if err != nil {
				s.log.Debug("cannot watch a job's pidfd; its end is seen at the next scan", "job", p.String(), "err", err)
			}
		}
		s.procs[p.PID] = p
		added++
		if logNew {
			s.dlog.Started(p.String(), now, "new job while draining", "job", p.String())
		}
	}
	for pid, p := range s.procs {
		if !seen[pid] {
			s.endProc(p)
		}
	}
	return added
}

// onProcExit is the end of a process job seen through the reaper or a
// pidfd; PIDs that are not jobs are ignored.
func (s *state) onProcExit(pid int) {
	if p, ok := s.procs[pid]; ok && s.phase == draining {
		s.endProc(p)
	}
}

func (s *state) endProc(p procjobs.Proc) {
	delete(s.procs, p.PID)
	if s.exits != nil {
		s.exits.Forget(p.PID)
	}
	left := len(s.held) + len(s.procs)
	s.dlog.Ended(p.String(), left, func() string { return fmt.Sprintf("job %s ended, %d left", p, left) })
}

// procNames names the held process jobs, by PID.
func (s *state) procNames() []string {
	pids := make([]int, 0, len(s.procs))
	for pid := range s.procs {
		pids = append(pids, pid)
	}
	slices.Sort(pids)
	out := make([]string, len(pids))
	for i, pid := range pids {
		out[i] = s.procs[pid].String()
	}
	return out
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
	for _, p := range s.procs {
		if p.Child(self) {
			s.log.Warn("with --orphans every process left in the background counts as a job, a daemon started with '&' by an entrypoint script too; if one listed above is such a daemon, run it in the foreground under its own supervisor, or name the jobs with --job instead")
			return
		}
	}
}
