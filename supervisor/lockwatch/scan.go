package lockwatch

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// pattern is one lock pattern cut at its separators, so that a glob in a
// directory part can be expanded one level at a time and every directory on
// the way can be watched before it is read.
type pattern struct {
	parts []string // components below "/"
	magic []bool   // parts[i] must be matched against a listing, not looked up
}

func compile(glob string) (pattern, error) {
	if _, err := filepath.Match(glob, ""); err != nil {
		return pattern{}, fmt.Errorf("lock pattern %q: %w", glob, err)
	}
	abs, err := filepath.Abs(glob) // Abs also cleans
	if err != nil {
		return pattern{}, fmt.Errorf("lock pattern %q: %w", glob, err)
	}
	if abs == "/" {
		return pattern{}, fmt.Errorf("lock pattern %q names the root directory, not files in it", glob)
	}
	p := pattern{parts: strings.Split(abs[1:], "/")}
	for _, part := range p.parts {
		p.magic = append(p.magic, strings.ContainsAny(part, `*?[\`))
	}
	return p, nil
}

// matchesStart reports whether the absolute, clean path name matches the
// first components of p, all of them included.
func (p *pattern) matchesStart(name string) bool {
	if name == "/" {
		return true
	}
	i := 0
	for comp := range strings.SplitSeq(name[1:], "/") {
		if i == len(p.parts) {
			return false
		}
		if p.magic[i] {
			if ok, _ := filepath.Match(p.parts[i], comp); !ok {
				return false
			}
		} else if comp != p.parts[i] {
			return false
		}
		i++
	}
	return true
}

// scanner makes one pass over every pattern. It is not safe for concurrent
// use; Watch keeps one and reuses its buffers.
type scanner struct {
	log      *slog.Logger
	stalePID bool

	// visit, when set, is called with each directory whose entries decide
	// the result, before that directory is read: a watch set there first
	// cannot miss a change made while the directory is being read.
	visit func(dir string)

	found []entry
	buf   [64]byte

	// unreadable holds the directories this scan could not read for a
	// reason other than their absence: their locks are unknown, not gone.
	unreadable map[string]error
}

// entry is a file that matched a pattern.
type entry struct {
	path    string
	regular bool // only regular files are opened to be judged stale
}

// staleLock is a matching file that does not count as held, and why.
type staleLock struct {
	path, reason string
}

// scan returns the held locks, sorted, and the matching files judged stale.
func (s *scanner) scan(pats []pattern) (held []string, stale []staleLock) {
	s.found = s.found[:0]
	clear(s.unreadable)
	for i := range pats {
		s.walk(&pats[i], "/", 0)
	}
	slices.SortFunc(s.found, func(a, b entry) int { return strings.Compare(a.path, b.path) })
	// Patterns are independent: a file two of them match is one lock.
	s.found = slices.CompactFunc(s.found, func(a, b entry) bool { return a.path == b.path })

	held = make([]string, 0, len(s.found))
	for _, e := range s.found {
		if !e.regular {
			// Symlinks, FIFOs and the like are never opened: there is no
			// content to judge them by, and a lock is never guessed stale.
			held = append(held, e.path)
			continue
		}
		reason, gone := s.judge(e.path)
		switch {
		case gone:
			// Removed between the listing and the read: released.
		case reason != "":
			stale = append(stale, staleLock{e.path, reason})
		default:
			held = append(held, e.path)
		}
	}
	clear(s.found) // drop the path strings until the next scan
	return held, stale
}

func (s *scanner) watch(dir string) {
	if s.visit != nil {
		s.visit(dir)
	}
}

// walk expands p.parts[i] inside dir, which matches the parts before it.
// Directories at depth 1 and below are watched by the caller; the root is
// watched only when changes in it matter, so that a pattern under /app does
// not wake up for every file created in /.
func (s *scanner) walk(p *pattern, dir string, i int) {
	part, last := p.parts[i], i == len(p.parts)-1
	if !p.magic[i] {
		child := join(dir, part)
		if last {
			s.watch(dir)
			s.consider(child)
			return
		}
		ok := s.isDir(child)
		if !ok && i == 0 {
			// The nearest existing ancestor of a missing directory must be
			// watched to see it created; look again once the watch is set,
			// in case it appeared in between.
			s.watch(dir)
			ok = s.isDir(child)
		}
		if ok {
			s.watch(child)
			s.walk(p, child, i+1)
		}
		return
	}

	s.watch(dir)
	for _, d := range s.readDir(dir) {
		name := d.Name()
		if ok, _ := filepath.Match(part, name); !ok {
			continue
		}
		child := join(dir, name)
		t := d.Type()
		if last {
			switch {
			case t.IsDir():
			case t&fs.ModeSymlink != 0:
				// A link to a directory is a directory; a dangling one is
				// still an entry that matches, so it counts as held.
				if !isDir(child) {
					s.found = append(s.found, entry{path: child})
				}
			default:
				s.found = append(s.found, entry{path: child, regular: t.IsRegular()})
			}
			continue
		}
		if t.IsDir() || (t&fs.ModeSymlink != 0 && isDir(child)) {
			s.watch(child)
			s.walk(p, child, i+1)
		}
	}
}

// consider adds the file at a literal path, if it is there and no directory.
func (s *scanner) consider(path string) {
	fi, err := os.Lstat(path)
	if err != nil {
		s.dirError(filepath.Dir(path), err)
		return
	}
	switch m := fi.Mode(); {
	case m.IsDir():
	case m&fs.ModeSymlink != 0:
		if !isDir(path) {
			s.found = append(s.found, entry{path: path})
		}
	default:
		s.found = append(s.found, entry{path: path, regular: m.IsRegular()})
	}
}

// readDir lists dir unsorted: the result is sorted once, at the end.
func (s *scanner) readDir(dir string) []os.DirEntry {
	f, err := os.Open(dir)
	if err != nil {
		s.dirError(dir, err)
		return nil
	}
	defer f.Close()
	ents, err := f.ReadDir(-1)
	if err != nil {
		// What was read before the error is still worth counting.
		s.dirError(dir, err)
	}
	return ents
}

// dirError notes a directory that could not be read. Gone, or replaced by
// a file: its locks are released. Not ours to read (EACCES), or a flaky
// network filesystem (EIO): its locks are unknown, and the watcher counts
// the ones it saw there before as still held rather than guess them gone.
// The next scan, by event or by poll, tries again.
func (s *scanner) dirError(dir string, err error) {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return
	}
	s.log.Debug("cannot read lock directory", "dir", dir, "err", err)
	if s.unreadable == nil {
		s.unreadable = map[string]error{}
	}
	s.unreadable[dir] = err
}

// isDir reports whether path is a directory, noting one it cannot stat.
func (s *scanner) isDir(path string) bool {
	fi, err := os.Stat(path)
	if err != nil {
		s.dirError(path, err)
		return false
	}
	return fi.IsDir()
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

func join(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}
