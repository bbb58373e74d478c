// Package lockwatch reports which lock files of running jobs exist: files
// that match glob patterns such as /app/lock/*.lock or /app/*/lock/*.lock.
// It watches the patterns' directories with inotify, but treats each event
// only as a hint to rescan: the scan is the truth, so lost events, queue
// overflows and directories created late cannot make it wrong, and where
// inotify cannot be had it polls. Compared with a shell loop polling `ls`
// every 10 s it sees a release within a millisecond or two instead of up to
// 10 s later, needs no shell, and can tell a crashed job's stale lock from a
// live one.
package lockwatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"
)

// Options says what to watch and how.
type Options struct {
	// Patterns are absolute glob patterns in filepath.Match syntax; directory
	// parts may hold globs too (/app/*/lock/*.lock). A non-directory entry
	// matching any of them is a held lock.
	Patterns []string

	// Poll is the rescan interval, the fallback where events do not arrive
	// (NFS, a lost event) and the only way to see a stale lock's holder die,
	// since neither a process's exit nor a released flock touches the
	// directory. 0 means no polling: events and the first scan only.
	Poll time.Duration

	// StalePID releases a lock file whose content starts with the PID of a
	// process that no longer exists.
	StalePID bool

	// Logger gets stale locks (info), the switch to polling (warn, once)
	// and the rest at debug. nil discards.
	Logger *slog.Logger
}

var errStopped = errors.New("the inotify watcher stopped")

// fallbackPoll is the polling interval when inotify cannot be had and
// Options.Poll is 0.
const fallbackPoll = time.Second

// Seams for tests, which cannot make the kernel run out of inotify
// instances or watches on demand.
var (
	newNotifier = fsnotify.NewWatcher
	addWatch    = (*fsnotify.Watcher).Add
)

// Scan returns the held locks right now, sorted, without watching. Each
// stale lock it skips is logged at info level.
func Scan(opts Options) []string {
	log := logger(opts)
	var pats []pattern
	for _, g := range opts.Patterns {
		p, err := compile(g)
		if err != nil {
			log.Warn("lock pattern ignored", "err", err)
			continue
		}
		pats = append(pats, p)
	}
	s := scanner{log: log, stalePID: opts.StalePID}
	held, stale := s.scan(pats)
	for _, st := range stale {
		log.Info("stale lock", "path", st.path, "reason", st.reason)
	}
	return held
}

// FixedDir is the deepest directory a pattern names without a glob:
// /app/lock for /app/lock/*.lock, /app for /app/*/lock/*.lock. Every file
// the pattern can match lies below it, so while it does not exist no lock
// can be held; that is how a mistyped pattern shows before a stop. It
// returns "" for a pattern that is not valid.
func FixedDir(glob string) string {
	p, err := compile(glob)
	if err != nil {
		return ""
	}
	n := len(p.parts) - 1 // the last part names files, not a directory
	for i := range n {
		if p.magic[i] {
			n = i
			break
		}
	}
	return "/" + strings.Join(p.parts[:n], "/")
}

// Watch sets the watches, scans once and sends the first snapshot on out,
// then a new one each time the set of held locks changes, until ctx is done;
// then it returns nil. A snapshot is the sorted list of the held locks'
// absolute paths; the receiver may keep it. A slow receiver makes Watch skip
// snapshots, never fall behind: the one it gets is always the newest. Watch
// never closes out. It returns an error at once if a pattern is not valid.
func Watch(ctx context.Context, opts Options, out chan<- []string) error {
	w := &watcher{
		log:     logger(opts),
		poll:    opts.Poll,
		watched: map[string]bool{},
		want:    map[string]bool{},
		denied:  map[string]bool{},
		stale:   map[string]bool{},
	}
	for _, g := range opts.Patterns {
		p, err := compile(g)
		if err != nil {
			return err
		}
		w.pats = append(w.pats, p)
	}
	w.sc = scanner{log: w.log, stalePID: opts.StalePID, visit: w.visit}
	if opts.Poll > 0 {
		w.startPolling(opts.Poll)
	}
	defer w.stop()

	if fsw, err := newNotifier(); err != nil {
		fix := ""
		switch {
		case errors.Is(err, unix.EMFILE):
			// Also the error for a full descriptor table, but the Go
			// runtime raises RLIMIT_NOFILE to its hard limit at start,
			// which leaves the per-user instance limit (128 by default,
			// shared by every container of the same UID on the node).
			fix = "raise the sysctl fs.inotify.max_user_instances on the host (sysctl -w fs.inotify.max_user_instances=1024)"
		case errors.Is(err, unix.ENOSYS):
			fix = "the kernel was built without inotify; nothing to fix but the poll interval"
		}
		w.fallBack(err, fix)
	} else {
		w.fsw, w.events, w.errs = fsw, fsw.Events, fsw.Errors
	}

	var (
		last    []string // the snapshot sent last
		sent    bool     // whether last is meaningful: the first is always sent
		pending = w.rescan()
		sendc   = out // nil while there is nothing new to send
	)
	for {
		select {
		case <-ctx.Done():
			return nil
		case sendc <- pending:
			last, sent = pending, true
			pending, sendc = nil, nil
			continue
		case ev, ok := <-w.events:
			if !ok {
				w.fallBack(errStopped, "")
			} else if relevant := w.note(ev); !w.drain() && !relevant {
				continue
			}
		case err, ok := <-w.errs:
			if !ok {
				w.fallBack(errStopped, "")
			} else {
				w.noteError(err)
				w.drain()
			}
		case <-w.tick:
		}
		held := w.rescan()
		if sent && slices.Equal(held, last) {
			// Back where the receiver already is: an outdated pending
			// snapshot must not be delivered.
			pending, sendc = nil, nil
		} else {
			pending, sendc = held, out
		}
	}
}

// watcher is the state of one Watch call, owned by its goroutine.
type watcher struct {
	log  *slog.Logger
	pats []pattern
	sc   scanner

	fsw    *fsnotify.Watcher     // nil once polling is all there is
	events <-chan fsnotify.Event // fsw's, or nil
	errs   <-chan error          // fsw's, or nil
	lost   error                 // why the last scan gave inotify up
	warned bool

	poll   time.Duration
	ticker *time.Ticker
	tick   <-chan time.Time // nil without polling

	watched map[string]bool // directories with a watch set by us
	want    map[string]bool // directories the current scan visited
	denied  map[string]bool // directories whose watch was refused, logged once
	stale   map[string]bool // stale in the last scan, so logged already
	held    []string        // the last scan's result
	blind   map[string]bool // unreadable directories, warned about already
}

// rescan scans, keeps the watches in step with what the scan walked, and
// logs the locks that turned stale since the last scan.
func (w *watcher) rescan() []string {
	clear(w.want)
	held, stale := w.sc.scan(w.pats)
	if w.lost != nil {
		err := w.lost
		w.lost = nil
		fix := "the filesystem may not support inotify"
		if errors.Is(err, unix.ENOSPC) {
			fix = "raise the sysctl fs.inotify.max_user_watches on the host (sysctl -w fs.inotify.max_user_watches=524288)"
		}
		w.fallBack(err, fix)
	}
	if w.fsw != nil {
		for dir := range w.watched {
			if !w.want[dir] {
				// ErrNonExistentWatch when the kernel dropped it with the
				// directory: that is the state wanted anyway.
				_ = w.fsw.Remove(dir)
				delete(w.watched, dir)
			}
		}
	}

	now := make(map[string]bool, len(stale))
	for _, st := range stale {
		if !w.stale[st.path] {
			w.log.Info("stale lock", "path", st.path, "reason", st.reason)
		}
		now[st.path] = true
	}
	w.stale = now
	held = w.keepUnknown(held)
	w.held = held
	return held
}

// keepUnknown adds to held the locks of the last scan that sit in a
// directory this scan could not read: a directory made unreadable during a
// drain must not look like every job in it finished.
func (w *watcher) keepUnknown(held []string) []string {
	blind := map[string]bool{}
	for dir, err := range w.sc.unreadable {
		var kept int
		for _, p := range w.held {
			if strings.HasPrefix(p, dir+"/") && !slices.Contains(held, p) {
				held = append(held, p)
				kept++
			}
		}
		if !w.blind[dir] {
			w.log.Warn("cannot read lock directory; counting the locks seen in it before as held", "dir", dir, "locks", kept, "err", err)
		}
		blind[dir] = true
	}
	w.blind = blind
	slices.Sort(held)
	return slices.Compact(held)
}

// visit is the scanner's hook: it sets a watch on dir before dir is read.
func (w *watcher) visit(dir string) {
	w.want[dir] = true
	if w.fsw == nil || w.lost != nil || w.watched[dir] {
		return
	}
	err := addWatch(w.fsw, dir)
	switch {
	case err == nil:
		w.watched[dir] = true
		delete(w.denied, dir)
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR):
		// Gone since the scan saw it; its parent's watch reports that.
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		// Not fatal: changes in dir are seen by the next scan that other
		// events or the poll cause. Retried on each scan, logged once.
		if !w.denied[dir] {
			w.denied[dir] = true
			w.log.Debug("cannot watch lock directory; relying on rescans", "dir", dir, "err", err)
		}
	default:
		// ENOSPC (the watch limit) and filesystems without inotify.
		w.lost = fmt.Errorf("watch %s: %w", dir, err)
	}
}

// note reads an event for what it says about the watches, and reports
// whether it calls for a rescan. A watched directory that was removed or
// renamed away has lost its watch with it, so it is forgotten and watched
// afresh if it comes back.
func (w *watcher) note(ev fsnotify.Event) bool {
	// fsnotify names an entry of a watch on / "//name".
	name := filepath.Clean(ev.Name)
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		delete(w.watched, name)
	}
	return w.relevant(name)
}

// relevant reports whether name, or a directory it could be, matches the
// start of a pattern. Others cannot change a scan's result: a log file
// written in /app, which /app/lock/*.lock watches, is no reason to rescan.
func (w *watcher) relevant(name string) bool {
	for i := range w.pats {
		if w.pats[i].matchesStart(name) {
			return true
		}
	}
	return false
}

func (w *watcher) noteError(err error) {
	if errors.Is(err, fsnotify.ErrEventOverflow) {
		// Removals of watched directories may be among the lost events:
		// set every watch again (inotify_add_watch is idempotent).
		w.log.Debug("inotify event queue overflowed; rescanning")
		clear(w.watched)
		return
	}
	w.log.Debug("inotify error; rescanning", "err", err)
}

// drain takes every event already waiting, without blocking, so that one
// rescan answers a whole burst. It reports whether any calls for a rescan.
func (w *watcher) drain() (rescan bool) {
	for {
		select {
		case ev, ok := <-w.events:
			if !ok {
				return true // the main loop sees the closed channel next
			}
			rescan = w.note(ev) || rescan
		case err, ok := <-w.errs:
			if !ok {
				return true
			}
			w.noteError(err)
			rescan = true
		default:
			return rescan
		}
	}
}

// fallBack gives inotify up for polling, and says so once, with the fix.
func (w *watcher) fallBack(err error, fix string) {
	if w.fsw != nil {
		_ = w.fsw.Close()
		w.fsw, w.events, w.errs = nil, nil, nil
		clear(w.watched)
	}
	if w.ticker == nil {
		w.startPolling(orDefault(w.poll, fallbackPoll))
	}
	if w.warned {
		return
	}
	w.warned = true
	args := []any{"every", orDefault(w.poll, fallbackPoll), "err", err}
	if fix != "" {
		args = append(args, "fix", fix)
	}
	w.log.Warn("cannot watch lock files with inotify; polling instead, releases are seen late", args...)
}

func (w *watcher) startPolling(every time.Duration) {
	w.ticker = time.NewTicker(every)
	w.tick = w.ticker.C
}

func (w *watcher) stop() {
	if w.fsw != nil {
		// Close waits for fsnotify's reader goroutine to end.
		_ = w.fsw.Close()
	}
	if w.ticker != nil {
		w.ticker.Stop()
	}
}

func orDefault(d, otherwise time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return otherwise
}

func logger(opts Options) *slog.Logger {
	if opts.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return opts.Logger
}
