package testkit

import (
	"bytes"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Lines records what is written to it line by line: a process's output or
// a log handler's. The zero value is not ready; use NewLines.
type Lines struct {
	mu      sync.Mutex
	lines   []string // each with its '\n'
	partial []byte   // a line not yet ended
	changed chan struct{}
}

// NewLines returns an empty Lines.
func NewLines() *Lines { return &Lines{changed: make(chan struct{}, 1)} }

func (l *Lines) Write(b []byte) (int, error) {
	l.mu.Lock()
	l.partial = append(l.partial, b...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.lines = append(l.lines, string(l.partial[:i+1]))
		l.partial = l.partial[i+1:]
	}
	l.mu.Unlock()
	select {
	case l.changed <- struct{}{}:
	default:
	}
	return len(b), nil
}

// All returns the lines ended so far.
func (l *Lines) All() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines)
}

// Wait waits up to timeout for a line that contains every one of want,
// and returns it.
func (l *Lines) Wait(t testing.TB, timeout time.Duration, want ...string) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		for _, line := range l.All() {
			if containsAll(line, want) {
				return line
			}
		}
		select {
		case <-l.changed:
		case <-deadline:
			t.Fatalf("no line containing %q in:\n%s", want, strings.Join(l.All(), ""))
		}
	}
}

// Matching returns the lines that contain every one of want.
func (l *Lines) Matching(want ...string) []string {
	var out []string
	for _, line := range l.All() {
		if containsAll(line, want) {
			out = append(out, line)
		}
	}
	return out
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
