// Package jobs holds drainit's two companions for the jobs themselves:
// Lock runs a job while holding a lock file that is right by construction,
// and Wait blocks until no lock is held, for a preStop hook.
//
// A lock file a job writes and deletes itself is held forever once the job
// crashes. Lock's files carry an flock that lives exactly as long as the job
// (the job inherits it), so the supervisor and Wait can tell a leftover from
// a running job without guessing.
package jobs

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/drainit/drainit/signals"
	"github.com/drainit/drainit/supervisor/lockwatch"
	"github.com/drainit/drainit/supervisor/spawn"
)

// LockConfig is what Lock needs.
type LockConfig struct {
	Path    string          // the lock file, or a directory to make a unique one in
	Command []string        // the job
	Wait    time.Duration   // how long to wait for a held lock; 0 fails at once
	Signals *signals.Caught // from signals.Catch
	Log     *slog.Logger
}

// ExitHeld is Lock's code when the lock is held by another live job.
const ExitHeld = 1

// retryEvery is how often a waiting Lock tries a held lock again.
const retryEvery = 50 * time.Millisecond

// Lock creates the lock file, runs the job holding its flock, removes the
// file when the job ends and returns the job's exit code.
func Lock(cfg LockConfig) int {
	log := cfg.Log
	f, err := acquire(cfg.Path, cfg.Wait)
	if err != nil {
		log.Error(err.Error())
		var he *heldError
		if errors.As(err, &he) {
			return ExitHeld
		}
		return spawn.ExitNotExecutable
	}
	defer f.Close()
	// The file's content says who made it and marks it as judged by its
	// flock; the flock is already ours, so a reader never sees the marker
	// on a file nobody holds, except a leftover.
	if _, err := f.WriteAt([]byte(fmt.Sprintf("%d\n%s\n", os.Getpid(), lockwatch.Marker)), 0); err != nil {
		log.Warn("cannot write the lock file's content", "path", f.Name(), "err", err)
	}

	// No parent-death signal: a job must outlive a killed drainit lock,
	// holding the flock it inherited.
	pid, err := spawn.Start(cfg.Command, 0, f)
	if err != nil {
		removeIfOurs(f, log)
		log.Error(err.Error())
		return spawn.ExitCode(err)
	}
	log.Debug("job started", "pid", pid, "lock", f.Name())

	done := make(chan unix.WaitStatus, 1)
	go func() { done <- waitFor(pid) }()
	for {
		select {
		case s := <-cfg.Signals.All:
			sig := s.(syscall.Signal)
			if !signals.Forwardable(sig) {
				continue
			}
			if err := signals.Send(pid, sig, false); err != nil && !signals.Gone(err) {
				log.Warn("cannot forward signal", "signal", signals.Name(sig), "err", err)
			}
		case ws := <-done:
			removeIfOurs(f, log)
			if ws.Signaled() {
				return signals.ExitCode(ws.Signal())
			}
			return ws.ExitStatus()
		}
	}
}

// waitFor reaps the job. Lock starts one child and is not a subreaper, so
// waiting for that PID is all the reaping it has to do.
func waitFor(pid int) unix.WaitStatus {
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if err != unix.EINTR {
			return ws
		}
	}
}

type heldError struct{ path, by string }

func (e *heldError) Error() string {
	return fmt.Sprintf("lock %s is held%s; wait for it with --wait DUR, or use a directory path for a unique lock", e.path, e.by)
}

// acquire returns the lock file, open and flocked. A directory (or a path
// ending in '/') gets a unique file inside it.
func acquire(path string, wait time.Duration) (*os.File, error) {
	if fi, err := os.Stat(path); strings.HasSuffix(path, "/") || (err == nil && fi.IsDir()) {
		return createUnique(path)
	}
	deadline := time.Now().Add(wait)
	for {
		f, err := tryLock(path)
		if err == nil {
			return f, nil
		}
		var he *heldError
		if !errors.As(err, &he) || !time.Now().Before(deadline) {
			return nil, err
		}
		time.Sleep(min(retryEvery, time.Until(deadline)))
	}
}

func createUnique(dir string) (*os.File, error) {
	for range 10 {
		// Not crypto/rand: O_EXCL makes the name safe, the random part
		// only makes a clash rare, and crypto would double the binary.
		name := filepath.Join(dir, fmt.Sprintf("job-%d-%08x.lock", os.Getpid(), rand.Uint32()))
		f, err := create(name)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		return f, err
	}
	return nil, fmt.Errorf("cannot make a unique lock file in %s", dir)
}

// create makes a new lock file and flocks it. O_EXCL and O_NOFOLLOW: a
// symlink planted at the path must not make drainit, often root, write
// somewhere else.
func create(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, &os.PathError{Op: "create lock", Path: path, Err: err}
	}
	// Blocking is fine: the file is new, only a watcher probing it with a
	// shared lock can hold it, and only for a moment.
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		unix.Close(fd)
		unix.Unlink(path)
		return nil, &os.PathError{Op: "flock", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// tryLock takes path: a new file, or a leftover of drainit lock that no
// process holds any more. Anything else is held.
func tryLock(path string) (*os.File, error) {
	f, err := create(path)
	if !errors.Is(err, unix.EEXIST) {
		return f, err
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return tryLock(path) // released between the two opens
	}
	if err != nil {
		return nil, &os.PathError{Op: "open lock", Path: path, Err: err}
	}
	f = os.NewFile(uintptr(fd), path)
	buf := make([]byte, 128)
	n, _ := f.ReadAt(buf, 0)
	content := string(buf[:n])
	pid, _, _ := strings.Cut(content, "\n")
	by := ""
	if _, err := strconv.Atoi(strings.TrimSpace(pid)); err == nil {
		by = " by pid " + strings.TrimSpace(pid)
	}
	// A file without the marker is some other job's lock: never judged by
	// its flock, it is held until it is removed.
	if !strings.Contains(content, "\n"+lockwatch.Marker+"\n") {
		f.Close()
		return nil, &heldError{path, by}
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, &heldError{path, by}
	}
	// Flocked a leftover; make sure it is still the file at path and was
	// not removed by its owner between open and flock.
	if !sameFile(f, path) {
		f.Close()
		return tryLock(path)
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func sameFile(f *os.File, path string) bool {
	a, err1 := f.Stat()
	b, err2 := os.Lstat(path)
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

// removeIfOurs removes the lock file unless another file took its place.
func removeIfOurs(f *os.File, log *slog.Logger) {
	if !sameFile(f, f.Name()) {
		log.Debug("lock file already gone or replaced; not removing", "path", f.Name())
		return
	}
	if err := os.Remove(f.Name()); err != nil {
		log.Warn("cannot remove the lock file", "path", f.Name(), "err", err)
	}
}
