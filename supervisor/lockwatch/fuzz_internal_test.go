package lockwatch

import (
	"bytes"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
)

// These fuzz targets check the content rules of the stale locks against
// models written another way (a regular expression, a split into lines),
// on any bytes at all, binary included. Their seed corpora live in
// testdata/fuzz.

// pidPrefix is what leadingPID reads: ASCII white space, then digits.
var pidPrefix = regexp.MustCompile(`^[ \t\r\n\v\f]*([0-9]+)`)

// wantPID is the model of leadingPID: digits at the start after white
// space, ended by white space or by the end of a whole file, at most ten of
// them, naming a PID from 1 to MaxInt32.
func wantPID(content []byte, whole bool) (int, bool) {
	m := pidPrefix.FindSubmatchIndex(content)
	if m == nil {
		return 0, false
	}
	digits, end := content[m[2]:m[3]], m[1]
	if end == len(content) && !whole {
		return 0, false
	}
	if end < len(content) && !bytes.ContainsAny(content[end:end+1], " \t\r\n\v\f") {
		return 0, false
	}
	if len(digits) > 10 {
		return 0, false
	}
	pid, err := strconv.ParseInt(string(digits), 10, 64)
	if err != nil || pid < 1 || pid > math.MaxInt32 {
		return 0, false
	}
	return int(pid), true
}

// wantMarker is the model of hasMarker: some line is exactly Marker, and
// it is not the unterminated tail of a cut read.
func wantMarker(content []byte, whole bool) bool {
	lines := bytes.Split(content, []byte("\n"))
	for i, line := range lines {
		if string(line) == Marker && (i < len(lines)-1 || whole) {
			return true
		}
	}
	return false
}

func FuzzLeadingPID(f *testing.F) {
	f.Fuzz(func(t *testing.T, content []byte, whole bool) {
		pid, ok := leadingPID(content, whole)
		want, wantOK := wantPID(content, whole)
		if pid != want || ok != wantOK {
			t.Errorf("leadingPID(%q, whole=%v) = %d, %v; want %d, %v", content, whole, pid, ok, want, wantOK)
		}
		if ok && (pid <= 0 || pid > math.MaxInt32) {
			t.Errorf("leadingPID(%q, whole=%v) = %d: no such PID can exist", content, whole, pid)
		}
	})
}

func FuzzHasMarker(f *testing.F) {
	f.Fuzz(func(t *testing.T, content []byte, whole bool) {
		if got, want := hasMarker(content, whole), wantMarker(content, whole); got != want {
			t.Errorf("hasMarker(%q, whole=%v) = %v; want %v", content, whole, got, want)
		}
		// What `drainit lock` writes is recognised, read whole or cut just
		// after the marker's line.
		var written []byte
		written = strconv.AppendInt(written, int64(len(content)+1), 10)
		written = append(written, "\n"+Marker+"\n"...)
		if !hasMarker(written, false) {
			t.Errorf("hasMarker(%q) = false for what drainit lock writes", written)
		}
	})
}

// FuzzJudge writes the content into a real file and judges it the way a
// scan does, with --stale-pid on, through the 64-byte read: the rules above
// apply to what fits in the buffer, and a file that fills it is not whole.
func FuzzJudge(f *testing.F) {
	f.Fuzz(func(t *testing.T, content []byte) {
		path := filepath.Join(t.TempDir(), "a.lock")
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		s := &scanner{log: slog.New(slog.DiscardHandler), stalePID: true}
		window, whole := content, len(content) < len(s.buf)
		if !whole {
			window = content[:len(s.buf)]
		}
		want := ""
		if pid, ok := wantPID(window, whole); len(content) > 0 && ok {
			if processGone(pid) {
				want = "pid " + strconv.Itoa(pid) + " is gone"
			}
		}
		if len(content) > 0 && wantMarker(window, whole) {
			want = reasonNoFlock // nobody holds this file's flock
		}
		reason, gone := s.judge(path)
		if gone || reason != want {
			t.Errorf("judge(%q) = %q, gone=%v; want %q", content, reason, gone, want)
		}
	})
}
