package signals_test

import (
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/drainit/drainit/signals"
)

// The fuzz targets below check the properties the rest of drainit relies on
// rather than restating the parser: whatever Parse accepts is a real signal
// number whose Name reads back to it, and ParseList hands the supervisor a
// clean set. Their seed corpora live in testdata/fuzz.

// FuzzParse: an accepted signal is in 1..Max and survives Name and back, in
// every spelling Name's output can take; a refusal is one line.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		sig, err := signals.Parse(s)
		if err != nil {
			if sig != 0 {
				t.Errorf("Parse(%q) = %d with error %v; want 0", s, sig, err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("Parse(%q) error has a line break: %q", s, err)
			}
			return
		}
		if sig < 1 || sig > signals.Max {
			t.Fatalf("Parse(%q) = %d, out of range 1-%d", s, int(sig), signals.Max)
		}
		name := signals.Name(sig)
		spellings := []string{name, strings.ToLower(name), " " + name + "\t"}
		if _, err := strconv.Atoi(name); err != nil {
			// 32 and 33 have no name; a number takes no SIG prefix.
			spellings = append(spellings, "SIG"+name, "sig"+strings.ToLower(name))
		}
		for _, spelling := range spellings {
			if back, err := signals.Parse(spelling); err != nil || back != sig {
				t.Errorf("Parse(%q) = %d; Parse(%q) = %d, %v; want %d", s, sig, spelling, back, err, sig)
			}
		}
	})
}

// FuzzName: Name never panics, and Parse reads its output back exactly for
// the signals that exist and refuses it for every other number.
func FuzzName(f *testing.F) {
	f.Fuzz(func(t *testing.T, n int) {
		sig := syscall.Signal(n)
		name := signals.Name(sig)
		if name == "" {
			t.Fatalf("Name(%d) is empty", n)
		}
		back, err := signals.Parse(name)
		if n >= 1 && n <= signals.Max {
			if err != nil || back != sig {
				t.Errorf("Parse(Name(%d)) = Parse(%q) = %d, %v", n, name, back, err)
			}
			return
		}
		if err == nil {
			t.Errorf("Parse(Name(%d)) = Parse(%q) = %d; want an error for a number that is no signal", n, name, back)
		}
	})
}

// FuzzParseList: the list is never empty, holds no 0, nothing out of range
// and no duplicate, and keeps the order of first appearance; written back
// with commas it parses to the same list.
func FuzzParseList(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		list, err := signals.ParseList(s)
		if err != nil {
			if list != nil {
				t.Errorf("ParseList(%q) = %v with error %v; want nil", s, list, err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("ParseList(%q) error has a line break: %q", s, err)
			}
			return
		}
		if len(list) == 0 {
			t.Fatalf("ParseList(%q) = empty list, no error", s)
		}
		seen := map[syscall.Signal]bool{}
		var names []string
		for _, sig := range list {
			if sig < 1 || sig > signals.Max {
				t.Fatalf("ParseList(%q) = %v: %d is out of range 1-%d", s, list, int(sig), signals.Max)
			}
			if seen[sig] {
				t.Fatalf("ParseList(%q) = %v: %d twice", s, list, int(sig))
			}
			seen[sig] = true
			names = append(names, signals.Name(sig))
		}
		// Every field must be one of the signals returned, first-seen order.
		var want []syscall.Signal
		seenField := map[syscall.Signal]bool{}
		for _, field := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ':' || r == ' ' }) {
			sig, err := signals.Parse(field)
			if err != nil {
				t.Fatalf("ParseList(%q) = %v, but its field %q does not parse: %v", s, list, field, err)
			}
			if !seenField[sig] {
				seenField[sig] = true
				want = append(want, sig)
			}
		}
		if !slices.Equal(list, want) {
			t.Errorf("ParseList(%q) = %v; its fields give %v", s, list, want)
		}
		joined := strings.Join(names, ",")
		if back, err := signals.ParseList(joined); err != nil || !slices.Equal(back, list) {
			t.Errorf("ParseList(%q) = %v; ParseList(%q) = %v, %v", s, list, joined, back, err)
		}
	})
}
