package supervisor

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/drainit/drainit/supervisor/internal/drainlog"
	"github.com/drainit/drainit/supervisor/procjobs"
	"github.com/drainit/drainit/supervisor/status"
)

// publishEvery is the least time between two writes of the state file.
// Under heavy churn the lock watcher brings thousands of snapshots a
// second, and each write encodes every held job and costs a create, a
// write and a rename: one per snapshot would spend a core on a file
// nobody reads. A person reading `drainit status` cannot tell 200 ms of
// lag, and the ages in the report are computed from the timestamps, not
// from when the file was written. The first change after a quiet spell is
// written at once; later ones wait for the slot, and the last state is
// always written.
const publishEvery = 200 * time.Millisecond

// removeWithin bounds how long drainit's exit waits for the state file's
// writer to finish and remove the file: a hung filesystem must not eat
// into the second drainit keeps before the platform's SIGKILL.
const removeWithin = 250 * time.Millisecond

// report follows, for the state file and the termination message, what
// the drain waits for and since when. It is the controller's: its fields
// are touched only from control's loop, through observe, except out,
// which its writer reads.
type report struct {
	locks    map[string]time.Time // held locks, by when they began
	procs    map[procjobs.ID]status.Job
	byName   map[string]time.Time // process jobs' Since, by the name logs use
	lastHeld []string             // s.held when last looked at
	finished int                  // jobs that ended during the drain
	changes  int                  // changes to what the file shows

	seen          phase // the phase last observed
	drainDone     time.Time
	cut           []status.Job // what was still held when the drain ended
	finishedAtEnd int

	// The state file: nil out means none.
	writer    status.Writer // this drainit, as the file names it
	out       chan status.State
	done      chan struct{}
	written   int // changes when the file was last brought up to date
	wrotePh   phase
	dirty     bool
	nextWrite time.Time
}

func newReport() report {
	return report{locks: map[string]time.Time{}, procs: map[procjobs.ID]status.Job{}, byName: map[string]time.Time{}, written: -1}
}

// publish starts the writer of the state file at path. Without /proc
// drainit cannot say which process it is, and a file that does not say
// would be believed by a drainit status in any container that shares it:
// then there is none.
func (s *state) publish(path string) {
	r := &s.report
	w, err := status.Self()
	if err != nil {
		s.log.Debug("no state file: drainit cannot tell which process it is; drainit status will say no drainit runs", "path", path, "err", err)
		return
	}
	r.writer = w
	r.out = make(chan status.State, 1)
	r.done = make(chan struct{})
	go writeStates(path, s.log, r.out, r.done)
}

// unpublish removes the state file, once its last write is over, waiting
// at most removeWithin.
func (s *state) unpublish() {
	r := &s.report
	if r.out == nil {
		return
	}
	// A state not yet written would be written only to be removed.
	select {
	case <-r.out:
	default:
	}
	close(r.out)
	select {
	case <-r.done:
	case <-time.After(removeWithin):
		s.log.Debug("the state file's writer is still busy; exiting without removing it")
	}
}

// writeStates writes each state it gets to path until in is closed, then
// removes the file. A failure is said once, at debug: a read-only root
// filesystem is a sound way to run a container, and it costs only
// `drainit status`.
func writeStates(path string, log *slog.Logger, in <-chan status.State, done chan<- struct{}) {
	defer close(done)
	said := false
	var last os.FileInfo // the file this drainit last put at path
	for st := range in {
		fi, err := status.Write(path, st)
		if err == nil {
			last = fi
			continue
		}
		if !said {
			said = true
			log.Debug("cannot write the state file: drainit status will say no drainit runs; set DRAINIT_STATE (--state) to a writable path, like one in an emptyDir volume", "path", path, "err", err)
		}
	}
	if last == nil {
		return
	}
	// drainit status checks that the file's drainit still runs, but
	// removing it leaves no doubt. Only this drainit's own: the drainit
	// of another container that shares the volume may have written the
	// path since, and its status must not vanish.
	fi, err := os.Lstat(path)
	if err == nil && !os.SameFile(fi, last) {
		log.Debug("another drainit sharing the state file has written it since; leaving it", "path", path)
		return
	}
	if err == nil {
		err = os.Remove(path)
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Debug("cannot remove the state file", "path", path, "err", err)
	}
}

// observe brings the report up to date with the controller's state and
// hands the state file's writer a new state when it is due. It is called
// after every event and every transition, so no job that comes and goes
// between two of them is missed.
func (s *state) observe(now time.Time) {
	r := &s.report
	if s.phase != running {
		s.followJobs(now)
	}
	if s.phase != r.seen {
		if r.seen <= draining && s.phase >= stopping {
			r.drainDone = now
			r.cut = r.jobs()
			r.finishedAtEnd = r.finished
		}
		r.seen = s.phase
	}
	if r.out == nil || s.phase == exited {
		return
	}
	if r.changes != r.written || s.phase != r.wrotePh {
		r.dirty = true
	}
	if !r.dirty || now.Before(r.nextWrite) {
		return
	}
	st := s.snapshot()
	select {
	case <-r.out: // not written yet: the newer state replaces it
	default:
	}
	r.out <- st
	r.written, r.wrotePh, r.dirty = r.changes, s.phase, false
	r.nextWrite = now.Add(publishEvery)
}

// wake moves the controller's next wake-up to the state file's next
// write when that comes first.
func (r *report) wake(t time.Time, ok bool) (time.Time, bool) {
	if !r.dirty {
		return t, ok
	}
	if !ok || r.nextWrite.Before(t) {
		return r.nextWrite, true
	}
	return t, ok
}

// followJobs compares the held locks and process jobs with those known,
// noting new ones with the time they began and counting those that ended.
// Jobs are watched from the stop on, so the time drainit first saw them
// is the stop's for every job already running then: a process job began
// when its process started, a lock when its file was last changed. Locks
// come as a new slice with each snapshot from the watcher: an unchanged
// slice needs no look.
func (s *state) followJobs(now time.Time) {
	r := &s.report
	if !sameSlice(s.held, r.lastHeld) {
		// Both sorted, as the watcher gives them: one pass, and map
		// work only for what changed.
		released, added := drainlog.Diff(r.lastHeld, s.held)
		r.lastHeld = s.held
		for _, l := range added {
			r.locks[l] = lockSince(l, s.phase, now)
		}
		for _, l := range released {
			delete(r.locks, l)
		}
		r.finished += len(released)
		r.changes += len(released) + len(added)
	}
	for p := range s.procs.All() {
		k := p.ID()
		if _, ok := r.procs[k]; !ok {
			since := p.Began(now)
			j := status.Job{PID: p.PID, Command: p.Command(), Since: since}
			r.procs[k] = j
			r.byName[j.Name()] = since
			r.changes++
		}
	}
	if len(r.procs) > s.procs.Len() {
		for k := range r.procs {
			if !s.procs.Has(k) {
				// A PID reused by the same command has the same name:
				// the entry is the new job's once it has another start.
				if j := r.procs[k]; r.byName[j.Name()].Equal(j.Since) {
					delete(r.byName, j.Name())
				}
				delete(r.procs, k)
				r.finished++
				r.changes++
			}
		}
	}
}

// since is when the job that logs name key began, as the state file and
// the termination message say: the drain's log ages jobs by it too, so
// that the three agree.
func (r *report) since(key string) (time.Time, bool) {
	if t, ok := r.locks[key]; ok {
		return t, true
	}
	t, ok := r.byName[key]
	return t, ok
}

// lockSince is when a lock first seen at now began: its file's last
// change (a job writes its lock once, as it starts), or now where that
// cannot be read or is later. One lstat per new lock, and only while
// draining: after the drain the jobs held are what the stop cut, and no
// new one counts.
func lockSince(path string, ph phase, now time.Time) time.Time {
	if ph != draining {
		return now
	}
	fi, err := os.Lstat(path)
	if err != nil || !fi.ModTime().Before(now) {
		return now
	}
	return fi.ModTime()
}

func sameSlice(a, b []string) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// jobs lists what is held, oldest first.
func (r *report) jobs() []status.Job {
	out := make([]status.Job, 0, len(r.locks)+len(r.procs))
	for l, since := range r.locks {
		out = append(out, status.Job{Lock: l, Since: since})
	}
	for _, j := range r.procs {
		out = append(out, j)
	}
	slices.SortFunc(out, func(a, b status.Job) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		if a.PID != b.PID {
			return a.PID - b.PID
		}
		return strings.Compare(a.Lock, b.Lock)
	})
	return out
}

// snapshot is what the state file shows now.
func (s *state) snapshot() status.State {
	// Copies, not pointers into the controller's state: the writer reads
	// them on its own goroutine.
	st := status.State{Phase: s.phase.String(), PID: os.Getpid(), AppPID: s.app, Writer: s.report.writer}
	t0, drainEnd, budgetEnd := s.t0, s.drainEnd, s.budgetEnd
	switch s.phase {
	case draining:
		st.Jobs = s.report.jobs()
		st.Deadline = &drainEnd
	case stopping:
		st.Jobs = s.report.cut // never changed once set
		st.Deadline = &budgetEnd
	}
	if s.phase != running {
		st.StopSignalAt = &t0
	}
	return st
}
