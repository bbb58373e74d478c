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

	"golang.org/x/sys/unix"
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
	// Jobs are what the drain waits for, each since it began: a process
	// job since its process started, a lock since its file's last change.
	// Jobs are watched from the stop on: while running the list is empty.
	// While stopping it is what was still held when the drain ended, the
	// jobs the stop cut.
	Jobs []Job `json:"jobs"`
	// StopSignalAt is when the stop began: the first drain signal, or the
	// app's own exit, which starts a drain too. Null while running.
	StopSignalAt *time.Time `json:"stop_signal_at"`
	// Deadline is the drain deadline while draining (the app gets its
	// stop signal then at the latest), the end of the whole budget while
	// stopping (every process left is killed and drainit exits then at
	// the latest). Null while running.
	Deadline *time.Time `json:"deadline"`
	// Writer is which drainit wrote the file, a field DESIGN.md does not
	// name: Read checks it, for PID alone does not tell.
	Writer Writer `json:"writer"`
}

// Writer identifies a process across PID namespaces and PID reuse. Two
// containers of a pod can share a volume, and so a state file, and each
// one's drainit is PID 1 there; drainit lock and drainit wait, run by the
// app, can get a dead drainit's PID.
type Writer struct {
	// PIDNSDev and PIDNSIno name the PID namespace, as stat of
	// /proc/self/ns/pid gives them: the one where pid means this process.
	PIDNSDev uint64 `json:"pid_ns_dev"`
	PIDNSIno uint64 `json:"pid_ns_ino"`
	// StartTicks is when the process started, in clock ticks after boot
	// (field 22 of /proc/PID/stat): a reused PID has a later one.
	StartTicks uint64 `json:"start_ticks"`
}

// Self is the calling process as a Writer.
func Self() (Writer, error) {
	dev, ino, err := pidNS()
	if err != nil {
		return Writer{}, err
	}
	start, _, err := startOf("self")
	if err != nil {
		return Writer{}, err
	}
	return Writer{PIDNSDev: dev, PIDNSIno: ino, StartTicks: start}, nil
}

// pidNS is the device and inode of the caller's PID namespace.
func pidNS() (dev, ino uint64, err error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/pid", &st); err != nil {
		return 0, 0, &fs.PathError{Op: "stat", Path: "/proc/self/ns/pid", Err: err}
	}
	return uint64(st.Dev), st.Ino, nil
}

// startOf reads the start time of /proc/<pid> in clock ticks after boot,
// and whether it is a zombie, whose work is over.
func startOf(pid string) (start uint64, zombie bool, err error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, false, err
	}
	// The command name, in parentheses, can hold both; the fields after
	// its last ')' are fixed: state (the 3rd) … starttime (the 22nd).
	end := bytes.LastIndexByte(b, ')')
	var f [][]byte
	if end >= 0 {
		f = bytes.Fields(b[end+1:])
	}
	if len(f) < 20 {
		return 0, false, fmt.Errorf("/proc/%s/stat: cannot read %q", pid, b)
	}
	start, err = strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("/proc/%s/stat: start time %q: %v", pid, f[19], err)
	}
	return start, f[0][0] == 'Z' || f[0][0] == 'X', nil
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
// created if missing. It returns the file written, so that the caller can
// tell later whether the path still holds it. No fsync: the state means
// nothing after a crash of the machine, and a reader checks that its
// drainit still runs anyway.
func Write(path string, st State) (os.FileInfo, error) {
	b, err := Encode(st)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return nil, err
	}
	tmp := f.Name()
	// CreateTemp makes it 0600: a person who execs in as another user
	// should still be able to read it.
	err = f.Chmod(0o644)
	if err == nil {
		_, err = f.Write(b)
	}
	var fi os.FileInfo
	if err == nil {
		fi, err = f.Stat()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp) // best effort: the write already failed
		return nil, err
	}
	return fi, nil
}

// ErrNone means no drainit publishes its state at the path read.
var ErrNone = errors.New("no drainit running")

// Read reads the state at path and checks that the drainit which wrote it
// still runs, in the reader's PID namespace. A missing file, one whose
// drainit is gone, or one another drainit wrote (in another container
// that shares the volume) is ErrNone, wrapped, with the reason.
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
	if err := dec.Decode(&st); err != nil || st.PID <= 0 || st.Phase == "" || st.Writer.PIDNSIno == 0 {
		return st, fmt.Errorf("%s is not a drainit state file", path)
	}
	if err := Alive(st.PID, st.Writer); err != nil {
		return st, fmt.Errorf("%w: %s was %v", ErrNone, path, err)
	}
	return st, nil
}

// Alive tells whether w, as PID pid, is a running process that the
// caller can see as pid: in the caller's PID namespace, started when w
// says. The error says what it is instead, to follow "the file was".
func Alive(pid int, w Writer) error {
	// Without /proc, or without the right to read it, nothing says the
	// file is stale.
	dev, ino, err := pidNS()
	if err == nil && (dev != w.PIDNSDev || ino != w.PIDNSIno) {
		return errors.New("written by another drainit, in another PID namespace (another container sharing the volume, or outside this container)")
	}
	start, zombie, err := startOf(strconv.Itoa(pid))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("left by a drainit that is gone: no process %d", pid)
	case err != nil:
		return nil
	case start != w.StartTicks:
		return fmt.Errorf("left by a drainit that is gone: process %d is another process, started at another time", pid)
	case zombie:
		return fmt.Errorf("left by a drainit that is gone: process %d has exited", pid)
	}
	return nil
}
