package lockwatch

// These tests swap the package's seams for inotify, so they are in the
// package and never run in parallel: the parallel tests of the external
// package only resume once every sequential test has returned.

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"
)

const patience = 10 * time.Second

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *syncBuffer) count(words ...string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for line := range strings.Lines(b.buf.String()) {
		if !slices.ContainsFunc(words, func(w string) bool { return !strings.Contains(line, w) }) {
			n++
		}
	}
	return n
}

// run starts Watch and stops it, waiting for its return, before the seams
// are put back (cleanups run last-in first-out).
func run(t *testing.T, opts Options) (<-chan []string, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan []string)
	done := make(chan error, 1)
	go func() { done <- Watch(ctx, opts, out) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch returned %v", err)
		}
	})
	return out, logs
}

func waitFor(t *testing.T, ch <-chan []string, want ...string) {
	t.Helper()
	timeout := time.After(patience)
	var last []string
	for {
		select {
		case s := <-ch:
			if slices.Equal(s, want) {
				return
			}
			last = s
		case <-timeout:
			t.Fatalf("no snapshot %q within %v; last one was %q", want, patience, last)
		}
	}
}

func swap[T any](t *testing.T, p *T, v T) {
	old := *p
	*p = v
	t.Cleanup(func() { *p = old })
}

func TestFallbackWithoutInotify(t *testing.T) {
	for _, tc := range []struct {
		name     string
		notifier func() (*fsnotify.Watcher, error)
		add      func(*fsnotify.Watcher, string) error
		fix      string
	}{
		{
			name: "no instance left",
			notifier: func() (*fsnotify.Watcher, error) {
				return nil, fmt.Errorf("couldn't initialize inotify: %w", unix.EMFILE)
			},
			add: addWatch,
			fix: "fs.inotify.max_user_instances",
		},
		{
			name:     "no watch left",
			notifier: newNotifier,
			add: func(w *fsnotify.Watcher, dir string) error {
				return fmt.Errorf("%w", unix.ENOSPC)
			},
			fix: "fs.inotify.max_user_watches",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			swap(t, &newNotifier, tc.notifier)
			swap(t, &addWatch, tc.add)
			dir := t.TempDir()
			a, b := dir+"/a.lock", dir+"/b.lock"
			for _, f := range []string{a, b} {
				if err := os.WriteFile(f, nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			ch, logs := run(t, Options{Patterns: []string{dir + "/*.lock"}, Poll: 10 * time.Millisecond})
			waitFor(t, ch, a, b)
			os.Remove(a)
			waitFor(t, ch, b)
			os.Remove(b)
			waitFor(t, ch)
			if n := logs.count("level=WARN"); n != 1 {
				t.Errorf("%d warn lines, want 1:\n%s", n, logs)
			}
			if n := logs.count("level=WARN", "polling instead", "every=10ms", tc.fix); n != 1 {
				t.Errorf("the warn line does not say how to fix it (%s):\n%s", tc.fix, logs)
			}
		})
	}
}

// Without Poll, the fallback still polls, every second.
func TestFallbackPollsWithoutPoll(t *testing.T) {
	swap(t, &newNotifier, func() (*fsnotify.Watcher, error) { return nil, unix.EMFILE })
	dir := t.TempDir()
	ch, logs := run(t, Options{Patterns: []string{dir + "/*.lock"}})
	waitFor(t, ch)
	if n := logs.count("level=WARN", "every=1s"); n != 1 {
		t.Errorf("no warn line with every=1s:\n%s", logs)
	}
	f := dir + "/a.lock"
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ch, f)
}

// An error from fsnotify is a reason to rescan. The change below, a
// released flock, makes no inotify event and Poll is off, so only the
// rescan the error causes can report it.
func TestErrorsCauseRescan(t *testing.T) {
	errs := make(chan error)
	swap(t, &newNotifier, func() (*fsnotify.Watcher, error) {
		w, err := fsnotify.NewWatcher()
		if err == nil {
			w.Errors = errs
		}
		return w, err
	})
	dir := t.TempDir()
	var fds []int
	for _, name := range []string{"a.lock", "b.lock"} {
		fd, err := unix.Open(dir+"/"+name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
			t.Fatal(err)
		}
		if _, err := unix.Write(fd, []byte("1\n"+Marker+"\n")); err != nil {
			t.Fatal(err)
		}
		fds = append(fds, fd)
	}
	ch, logs := run(t, Options{Patterns: []string{dir + "/*.lock"}})
	waitFor(t, ch, dir+"/a.lock", dir+"/b.lock")

	unix.Flock(fds[0], unix.LOCK_UN)
	errs <- fsnotify.ErrEventOverflow
	waitFor(t, ch, dir+"/b.lock")
	unix.Flock(fds[1], unix.LOCK_UN)
	errs <- fmt.Errorf("some read error")
	waitFor(t, ch)
	if logs.count("level=DEBUG", "overflow") != 1 || logs.count("level=DEBUG", "some read error") != 1 {
		t.Errorf("errors not logged at debug level:\n%s", logs)
	}
	if logs.count("level=WARN") != 0 {
		t.Errorf("errors from fsnotify are no reason to warn:\n%s", logs)
	}
}
