// Package status is the state file through which a running drainit tells
// what it is doing, and what `drainit status` makes of it. drainit rewrites
// the file on each change of its state; the reader computes ages and time
// left from the timestamps in it, so the file need not change as time
// passes. It is the small, file-based answer to "what is this pod waiting
// for?" where a socket or an HTTP endpoint would be one more thing to keep
// alive in PID 1.
package status

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// DefaultPath is where drainit keeps its state unless told otherwise.
const DefaultPath = "/run/drainit/state.json"

// The phases a state file can name; drainit removes the file when it exits.
const (
	Running  = "running"
	Draining = "draining"
	Stopping = "stopping"
)

// State is the file's content:
//
//	{"phase": "running"|"draining"|"stopping", "pid": N, "app_pid": N,
//	 "jobs": [{"lock": PATH, "since": T} | {"pid": N, "command": S, "since": T}],
//	 "stop_signal_at": T|null, "deadline": T|null}
type State struct {
	Phase  string `json:"phase"`
	PID    int    `json:"pid"`     // drainit's, in its own PID namespace (1 in a container)
	AppPID int    `json:"app_pid"` // the app's main process
	// Jobs are what the drain waits for, each since drainit first saw it
	// held. Jobs are watched from the stop on: while running the list is
	// empty. While stopping it is what was still held when the drain
	// ended, the jobs the stop cut.
	Jobs []Job `json:"jobs"`
	// StopSignalAt is when the stop began: the first drain signal, or the
	// app's own exit, which starts a drain too. Null while running.
	StopSignalAt *time.Time `json:"stop_signal_at"`
	// Deadline is the drain deadline while draining (the app gets its
	// stop signal then at the latest), the end of the whole budget while
	// stopping (every process left is killed then, and drainit exits).
	// Null while running.
	Deadline *time.Time `json:"deadline"`
}

// Job is a held lock file (Lock set) or a process job (PID set).
type Job struct {
	Lock    string    `json:"lock"`
	PID     int       `json:"pid"`
	Command string    `json:"command"`
	Since   time.Time `json:"since"`
}

// MarshalJSON writes a lock as {"lock", "since"} and a process as
// {"pid", "command", "since"}, with nothing of the other kind.
func (j Job) MarshalJSON() ([]byte, error) {
	if j.PID == 0 {
		return json.Marshal(struct {
			Lock  string    `json:"lock"`
			Since time.Time `json:"since"`
		}{j.Lock, j.Since})
	}
	return json.Marshal(struct {
		PID     int       `json:"pid"`
		Command string    `json:"command"`
		Since   time.Time `json:"since"`
	}{j.PID, j.Command, j.Since})
}

// Name is how logs and the text report name a job.
func (j Job) Name() string {
	if j.PID == 0 {
		return j.Lock
	}
	return fmt.Sprintf("pid %d (%s)", j.PID, j.Command)
}

// Encode is the file's bytes: one JSON object and a newline. Times are
// written in UTC, to the nanosecond (RFC 3339 allows the fraction), without
// the monotonic reading, which means nothing to another process.
func Encode(st State) ([]byte, error) {
	st.Jobs = append(make([]Job, 0, len(st.Jobs)), st.Jobs...)
	for i := range st.Jobs {
		st.Jobs[i].Since = wall(st.Jobs[i].Since)
	}
	st.StopSignalAt = wallPtr(st.StopSignalAt)
	st.Deadline = wallPtr(st.Deadline)
	b, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func wall(t time.Time) time.Time { return t.Round(0).UTC() }

func wallPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	w := wall(*t)
	return &w
}

// Write replaces the file at path with st in one rename, so that a reader
// sees the old state or the new one, never half of one. The directory is
// created if missing. No fsync: the state means nothing after a crash of
// the machine, and a reader checks that its drainit still runs anyway.
func Write(path string, st State) error {
	b, err := Encode(st)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	// CreateTemp makes it 0600: a person who execs in as another user
	// should still be able to read it.
	err = f.Chmod(0o644)
	if err == nil {
		_, err = f.Write(b)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp) // best effort: the write already failed
		return err
	}
	return nil
}

// ErrNone means no drainit publishes its state at the path read.
var ErrNone = errors.New("no drainit running")

// Read reads the state at path and checks that the drainit which wrote it
// still runs. A missing file, or one whose drainit is gone, is ErrNone
// (wrapped, with the reason).
func Read(path string) (State, error) {
	var st State
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, fmt.Errorf("%w: no state file %s", ErrNone, path)
	}
	if err != nil {
		return st, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&st); err != nil || st.PID <= 0 || st.Phase == "" {
		return st, fmt.Errorf("%s is not a drainit state file", path)
	}
	if err := Alive(st.PID); err != nil {
		return st, fmt.Errorf("%w: %s is left from a drainit that is gone (%v)", ErrNone, path, err)
	}
	return st, nil
}

// Alive tells whether pid, in the reader's PID namespace, is a drainit. A
// PID that is gone, or reused by another program, is an error saying so.
// It is read from /proc: in a container drainit is PID 1, and the reader
// (kubectl exec, docker exec) is in the same namespaces.
func Alive(pid int) error {
	proc := "/proc/" + strconv.Itoa(pid)
	cmdline, err := os.ReadFile(proc + "/cmdline")
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("no process %d", pid)
	case err != nil:
		// /proc unreadable: nothing says the file is stale.
		return nil
	case len(cmdline) == 0:
		return fmt.Errorf("process %d is a zombie or a kernel thread", pid)
	}
	argv0, _, _ := bytes.Cut(cmdline, []byte{0})
	if bytes.Contains([]byte(filepath.Base(string(argv0))), []byte("drainit")) {
		return nil
	}
	// Renamed, like COPY drainit /sbin/init: the same program as this
	// one. Reading another process's exe can fail (EACCES without
	// ptrace rights); then the name is all there is to go by.
	if a, err := os.Stat(proc + "/exe"); err == nil {
		if b, err := os.Stat("/proc/self/exe"); err == nil && os.SameFile(a, b) {
			return nil
		}
	}
	return fmt.Errorf("process %d is %s, not drainit", pid, filepath.Base(string(argv0)))
}
