package lockwatch

import (
	"bytes"
	"errors"
	"math"
	"strconv"

	"golang.org/x/sys/unix"
)

// Marker is the line `drainit lock` writes into its lock files, after their
// PID line, once it holds an exclusive flock on them. A file with this line
// is held exactly as long as some process holds its flock.
const Marker = "drainit-lock"

const reasonNoFlock = "no process holds its flock"

// judge opens a matching regular file and reports why it no longer counts
// as held ("" if it does), or gone if it vanished since it was listed.
// Anything that cannot be read or probed counts as held: a live job wrongly
// seen as stale is a lost job.
func (s *scanner) judge(path string) (reason string, gone bool) {
	// O_NONBLOCK: a file swapped for a FIFO after the listing must not hang
	// the scan. O_NOFOLLOW: nor may a symlink planted in its place send the
	// read elsewhere.
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return "", true
		}
		s.log.Debug("cannot open lock file; counted as held", "path", path, "err", err)
		return "", false
	}
	defer unix.Close(fd)

	n, err := unix.Read(fd, s.buf[:])
	if err != nil || n <= 0 {
		// Empty: a job's plain touch-file, or `drainit lock` between taking
		// the file and writing into it. Held either way.
		return "", false
	}
	content, whole := s.buf[:n], n < len(s.buf)

	if hasMarker(content, whole) {
		// The flock alone decides, never the PID: that PID is `drainit
		// lock`'s, and the job outlives it if it is killed.
		switch err := unix.Flock(fd, unix.LOCK_SH|unix.LOCK_NB); {
		case err == nil:
			// Held only for the length of two system calls, so a writer
			// waiting for LOCK_EX is not kept out.
			_ = unix.Flock(fd, unix.LOCK_UN)
			return reasonNoFlock, false
		case errors.Is(err, unix.EWOULDBLOCK):
			return "", false
		default:
			s.log.Debug("cannot probe the flock of a lock file; counted as held", "path", path, "err", err)
			return "", false
		}
	}

	if s.stalePID {
		if pid, ok := leadingPID(content, whole); ok && processGone(pid) {
			return "pid " + strconv.Itoa(pid) + " is gone", false
		}
	}
	return "", false
}

// hasMarker reports whether content has a line that is exactly Marker. The
// last line counts only if it is terminated or the file ends there (whole):
// a longer line cut at the read's end is not the marker.
func hasMarker(content []byte, whole bool) bool {
	for len(content) > 0 {
		line, rest, found := bytes.Cut(content, []byte{'\n'})
		if string(line) == Marker && (found || whole) {
			return true
		}
		content = rest
	}
	return false
}

// leadingPID reads a decimal PID at the start of content, after optional
// white space. The digits must end at white space or at the end of the file:
// "123abc" names no process, and no guess is made.
func leadingPID(content []byte, whole bool) (int, bool) {
	content = bytes.TrimLeft(content, " \t\r\n\v\f")
	n := 0
	for n < len(content) && '0' <= content[n] && content[n] <= '9' {
		n++
	}
	if n == 0 || n > 10 {
		return 0, false
	}
	if n == len(content) && !whole {
		return 0, false // the number may go on past what was read
	}
	if n < len(content) && !isSpace(content[n]) {
		return 0, false
	}
	pid, err := strconv.Atoi(string(content[:n]))
	if err != nil || pid <= 0 || pid > math.MaxInt32 {
		return 0, false
	}
	return pid, true
}

func isSpace(b byte) bool {
	switch b {
	case ' ', '\t', '\r', '\n', '\v', '\f':
		return true
	}
	return false
}

// processGone reports whether no process has this PID. Only ESRCH says so:
// EPERM means the process exists but belongs to someone else.
func processGone(pid int) bool {
	return errors.Is(unix.Kill(pid, 0), unix.ESRCH)
}
