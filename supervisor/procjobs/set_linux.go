package procjobs

import (
	"errors"
	"iter"
	"log/slog"
	"maps"
	"slices"
)

// ID is a process job's identity: its PID, and its start time, which
// tells a process from a later one that reuses the PID.
type ID struct {
	PID   int
	Start uint64
}

// ID is p's identity.
func (p Proc) ID() ID { return ID{p.PID, p.Start} }

// Set is the process jobs running now, as the scans found them, and the
// pidfds that report their ends in between. Its zero value is an empty
// set that learns of ends only from scans; WatchExits adds the pidfds.
// Both drainit's drain and drainit wait keep one, so that a job is
// counted, watched and let go the same way in each. Len, Has, All,
// Names, C and End work on a nil *Set, which holds nothing.
type Set struct {
	// Reaper is the process whose children are reaped by its own reaper,
	// which reports their exits: they need no pidfd. 0: none, as in
	// drainit wait, which adopts nobody. (A process entered by kubectl
	// exec has PPID 0 in the namespace: 0 cannot mean "no parent here".)
	Reaper int
	// Log takes the debug line for a job that cannot be watched; nil
	// logs nothing.
	Log *slog.Logger

	procs map[int]Proc
	exits *Exits
}

// WatchExits opens the pidfd watcher. Where that fails (Linux before
// 5.3, a seccomp profile that refuses pidfd_open) the set goes on
// without, and a job's end is seen at the first Update that no longer
// finds it; the caller says so, at the level its users need.
func (s *Set) WatchExits() error {
	if s.exits != nil {
		return nil
	}
	e, err := NewExits()
	if err != nil {
		return err
	}
	s.exits = e
	return nil
}

// C delivers the PID of each job whose end a pidfd saw; End lets it go.
// It is nil without pidfds, or after Close: a nil channel never
// delivers, so a select can name C either way.
func (s *Set) C() <-chan int {
	if s == nil || s.exits == nil {
		return nil
	}
	return s.exits.C
}

// Close closes the pidfds; the set keeps its jobs and learns of their
// ends only from Update and End from then on. Close twice is fine.
func (s *Set) Close() {
	if s.exits != nil {
		s.exits.Close()
		s.exits = nil
	}
}

// Update brings the set in line with found, a fresh Scan. added are the
// processes found that were not in the set, each watched from now on;
// ended are those of the set that found no longer holds, or whose PID it
// finds on another process, let go as End does. Both are in PID order.
// A process that ended between the scan and its pidfd's opening is
// neither: it came and went unseen.
func (s *Set) Update(found []Proc) (added, ended []Proc) {
	if s.procs == nil {
		s.procs = map[int]Proc{}
	}
	seen := make(map[int]bool, len(found))
	for _, p := range found {
		seen[p.PID] = true
		old, ok := s.procs[p.PID]
		if ok && old.Start == p.Start {
			continue
		}
		if ok {
			// The PID was reused: the job that held it has ended, and
			// its pidfd, if any, names that one, not p.
			ended = append(ended, old)
			s.forget(old.PID)
		}
		if !s.watch(p) {
			continue
		}
		s.procs[p.PID] = p
		added = append(added, p)
	}
	for pid, p := range s.procs {
		if !seen[pid] {
			ended = append(ended, p)
			s.forget(pid)
		}
	}
	byPID := func(a, b Proc) int { return a.PID - b.PID }
	slices.SortFunc(added, byPID)
	slices.SortFunc(ended, byPID)
	return added, ended
}

// watch opens p's pidfd, unless p's exit reaches Reaper anyway; false
// when p has ended already.
func (s *Set) watch(p Proc) bool {
	if s.exits == nil || (s.Reaper != 0 && p.Child(s.Reaper)) {
		return true
	}
	err := s.exits.Watch(p)
	if errors.Is(err, ErrGone) {
		return false
	}
	if err != nil && s.Log != nil {
		s.Log.Debug("cannot watch a job's pidfd; its end is seen at the next scan", "job", p.String(), "err", err)
	}
	return true
}

// End lets go of the job with pid, which the reaper or C saw end, and
// returns it; ok is false when pid is no job of the set.
func (s *Set) End(pid int) (p Proc, ok bool) {
	if s == nil {
		return Proc{}, false
	}
	p, ok = s.procs[pid]
	if ok {
		s.forget(pid)
	}
	return p, ok
}

func (s *Set) forget(pid int) {
	delete(s.procs, pid)
	if s.exits != nil {
		s.exits.Forget(pid)
	}
}

// Len is how many jobs the set holds.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.procs)
}

// Has tells whether the job with identity id is in the set: not when its
// PID now names another process.
func (s *Set) Has(id ID) bool {
	if s == nil {
		return false
	}
	p, ok := s.procs[id.PID]
	return ok && p.Start == id.Start
}

// All yields the jobs in no particular order.
func (s *Set) All() iter.Seq[Proc] {
	if s == nil {
		return func(func(Proc) bool) {}
	}
	return maps.Values(s.procs)
}

// Names names the jobs as logs do, in PID order.
func (s *Set) Names() []string {
	if s == nil {
		return nil
	}
	pids := slices.Sorted(maps.Keys(s.procs))
	out := make([]string, len(pids))
	for i, pid := range pids {
		out[i] = s.procs[pid].String()
	}
	return out
}
