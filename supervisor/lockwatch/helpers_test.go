package lockwatch_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drainit/drainit/supervisor/lockwatch"
)

// patience bounds every wait for a snapshot. Generous, because -race on a
// busy machine is slow; a passing test never waits this long.
const patience = 10 * time.Second

// watch runs Watch until the test ends, then checks that it returned nil.
// out is unbuffered, so every test also exercises the coalescing send.
func watch(t testing.TB, opts lockwatch.Options) <-chan []string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan []string)
	done := make(chan error, 1)
	go func() { done <- lockwatch.Watch(ctx, opts, out) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Watch returned %v, want nil", err)
			}
		case <-time.After(patience):
			t.Errorf("Watch did not return after its context was cancelled")
		}
	})
	return out
}

// next returns the next snapshot, or false after timeout.
func next(t testing.TB, ch <-chan []string, timeout time.Duration) ([]string, bool) {
	t.Helper()
	select {
	case s := <-ch:
		return s, true
	case <-time.After(timeout):
		return nil, false
	}
}

// waitFor reads snapshots until one equals want; snapshots on the way are
// the states in between, which a watcher may or may not report. want is
// given in any order.
func waitFor(t testing.TB, ch <-chan []string, want ...string) {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	deadline := time.Now().Add(patience)
	var last []string
	for {
		s, ok := next(t, ch, time.Until(deadline))
		if !ok {
			t.Fatalf("no snapshot %q within %v; last one was %q", want, patience, last)
		}
		if !slices.IsSorted(s) {
			t.Fatalf("snapshot %q is not sorted", s)
		}
		if slices.Equal(s, want) {
			return
		}
		last = s
	}
}

// quiet checks that no snapshot comes for a short while. It is an
// assertion of absence, not synchronisation: nothing waits on it.
func quiet(t testing.TB, ch <-chan []string) {
	t.Helper()
	if s, ok := next(t, ch, 50*time.Millisecond); ok {
		t.Fatalf("unexpected snapshot %q", s)
	}
}

func write(t testing.TB, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func remove(t testing.TB, path string) {
	t.Helper()
	if err := os.RemoveAll(path); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t testing.TB, path string) {
	t.Helper()
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
}

// logs is a logger whose lines a test can read while Watch writes them.
type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func newLogs() (*logs, *slog.Logger) {
	l := &logs{}
	return l, slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// lines returns the lines that contain every one of words.
func (l *logs) lines(words ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var found []string
	for line := range strings.Lines(l.buf.String()) {
		if all(line, words) {
			found = append(found, line)
		}
	}
	return found
}

func all(line string, words []string) bool {
	for _, w := range words {
		if !strings.Contains(line, w) {
			return false
		}
	}
	return true
}
