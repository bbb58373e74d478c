package main

import (
	"errors"
	"flag"
	"math"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drainit/drainit/signals"
	"github.com/drainit/drainit/supervisor"
	"github.com/drainit/drainit/supervisor/jobs"
)

// These fuzz targets feed drainit's command line and environment with
// anything at all and check what the rest of drainit relies on: a refusal
// is a usageError of one line, and an acceptance is a config the supervisor
// can run. Their seed corpora live in testdata/fuzz.

// FuzzParseDuration: never negative, plain seconds mean seconds, and Go's
// syntax means what time.ParseDuration says it means.
func FuzzParseDuration(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseDuration(s)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Errorf("parseDuration(%q) error has a line break: %q", s, err)
			}
		} else if d < 0 {
			t.Fatalf("parseDuration(%q) = %v (%d ns), negative", s, d, int64(d))
		}
		trimmed := strings.TrimSpace(s)
		if secs, ferr := strconv.ParseFloat(trimmed, 64); ferr == nil {
			ns := secs * float64(time.Second)
			switch {
			case secs < 0 || math.IsNaN(secs) || ns >= math.MaxInt64:
				if err == nil {
					t.Errorf("parseDuration(%q) = %v; want an error for %v seconds", s, d, secs)
				}
			case err != nil:
				t.Errorf("parseDuration(%q) = %v; want %v seconds", s, err, secs)
			case d != time.Duration(ns):
				t.Errorf("parseDuration(%q) = %v; want %v seconds = %v", s, d, secs, time.Duration(ns))
			}
			return
		}
		want, gerr := time.ParseDuration(trimmed)
		switch {
		case gerr != nil:
			if err == nil {
				t.Errorf("parseDuration(%q) = %v; neither plain seconds nor Go syntax (%v)", s, d, gerr)
			}
		case want < 0:
			if err == nil {
				t.Errorf("parseDuration(%q) = %v; want an error for a negative duration", s, d)
			}
		case err != nil || d != want:
			t.Errorf("parseDuration(%q) = %v, %v; time.ParseDuration says %v", s, d, err, want)
		}
	})
}

// FuzzParseSupervise runs drainit's own command line, NUL-separated, with
// up to two DRAINIT_* variables chosen by index among its flags.
func FuzzParseSupervise(f *testing.F) {
	names := flagNames(superviseOptions(&supervisor.Config{}, &logFlags{}, &kubeFlags{}, noEnv))
	f.Fuzz(func(t *testing.T, args string, i1 uint8, v1 string, i2 uint8, v2 string) {
		argv, lookup := fuzzInput(names, args, i1, v1, i2, v2)
		c, log, err := parseSupervise(argv, lookup)
		if err != nil {
			checkRefusal(t, argv, err)
			return
		}
		if log == nil {
			t.Errorf("parseSupervise(%q) gave no logger", argv)
		}
		if len(c.Command) == 0 {
			t.Errorf("parseSupervise(%q) accepted no command", argv)
		}
		if c.StopTimeout <= 0 || c.Grace <= 0 || c.Poll < time.Millisecond || c.Delay < 0 {
			t.Errorf("parseSupervise(%q): grace %v, stop-timeout %v, poll %v, delay %v", argv, c.Grace, c.StopTimeout, c.Poll, c.Delay)
		}
		// Both are positive, so the difference cannot overflow where
		// StopTimeout+1s could.
		if c.Grace-c.StopTimeout <= time.Second {
			t.Errorf("parseSupervise(%q): grace %v is not more than stop-timeout %v + 1s", argv, c.Grace, c.StopTimeout)
		}
		checkLocks(t, argv, c.Locks)
		if len(c.DrainOn) == 0 {
			t.Errorf("parseSupervise(%q): no drain signal", argv)
		}
		seen := map[syscall.Signal]bool{}
		for _, sig := range c.DrainOn {
			if err := signals.CanDrainOn(sig); err != nil || seen[sig] {
				t.Errorf("parseSupervise(%q): drain-on %v: %d twice or not catchable (%v)", argv, c.DrainOn, int(sig), err)
			}
			seen[sig] = true
		}
		for _, sig := range []syscall.Signal{c.StopSignal, c.QuietSignal} {
			if sig < 0 || sig > signals.Max {
				t.Errorf("parseSupervise(%q): signal %d out of range", argv, int(sig))
			}
		}
		if c.Marker != "" && !filepath.IsAbs(c.Marker) {
			t.Errorf("parseSupervise(%q): marker %q is not absolute", argv, c.Marker)
		}
	})
}

// FuzzParseCompanions does the same for drainit wait and drainit lock.
func FuzzParseCompanions(f *testing.F) {
	var toPID1 bool
	waitNames := flagNames(waitOptions(&jobs.WaitConfig{}, &logFlags{}, &toPID1, noEnv))
	lockNames := flagNames(lockOptions(&jobs.LockConfig{}, &logFlags{}, noEnv))
	f.Fuzz(func(t *testing.T, lock bool, args string, i1 uint8, v1 string, i2 uint8, v2 string) {
		if lock {
			argv, lookup := fuzzInput(lockNames, args, i1, v1, i2, v2)
			c, log, err := parseLock(argv, lookup)
			if err != nil {
				checkRefusal(t, argv, err)
				return
			}
			if log == nil || c.Path == "" || len(c.Command) == 0 || c.Wait < 0 {
				t.Errorf("parseLock(%q) = %+v, logger %v", argv, c, log)
			}
			return
		}
		argv, lookup := fuzzInput(waitNames, args, i1, v1, i2, v2)
		c, log, err := parseWait(argv, lookup)
		if err != nil {
			checkRefusal(t, argv, err)
			return
		}
		if log == nil || len(c.Locks) == 0 || c.Timeout < 0 || c.Poll < time.Millisecond {
			t.Errorf("parseWait(%q) = %+v, logger %v", argv, c, log)
		}
		checkLocks(t, argv, c.Locks)
	})
}

// FuzzFlagEnvMerge checks the merge of flags and variables for each of the
// three commands: a flag given on the command line makes its variable count
// for nothing, whatever the variable holds; and a variable alone means what
// the same value given as the flag means (a list variable as the flag
// repeated once per ':'-separated part).
func FuzzFlagEnvMerge(f *testing.F) {
	type parser struct {
		names []string
		lists map[string]bool
		parse func([]string, lookupEnv) (any, error)
	}
	var toPID1 bool
	sup := superviseOptions(&supervisor.Config{}, &logFlags{}, &kubeFlags{}, noEnv)
	wait := waitOptions(&jobs.WaitConfig{}, &logFlags{}, &toPID1, noEnv)
	lock := lockOptions(&jobs.LockConfig{}, &logFlags{}, noEnv)
	parsers := []parser{
		{flagNames(sup), sup.lists, func(a []string, e lookupEnv) (any, error) {
			c, _, err := parseSupervise(a, e)
			return c, err
		}},
		{flagNames(wait), wait.lists, func(a []string, e lookupEnv) (any, error) {
			c, _, err := parseWait(a, e)
			return c, err
		}},
		{flagNames(lock), lock.lists, func(a []string, e lookupEnv) (any, error) {
			c, _, err := parseLock(a, e)
			return c, err
		}},
	}
	f.Fuzz(func(t *testing.T, which, i uint8, flagVal, envVal, rest string) {
		p := parsers[int(which)%len(parsers)]
		name := p.names[int(i)%len(p.names)]
		variable := envName(name)
		tail := splitArgs(rest)
		withVar := func(k string) (string, bool) {
			if k == variable {
				return envVal, true
			}
			return "", false
		}

		// The flag beats its variable.
		argv := append([]string{"--" + name + "=" + flagVal}, tail...)
		c1, err1 := p.parse(argv, withVar)
		c2, err2 := p.parse(argv, noEnv)
		if errString(err1) != errString(err2) || (err1 == nil && !reflect.DeepEqual(c1, c2)) {
			t.Errorf("%q with %s=%q: %+v, %v\nwithout the variable: %+v, %v", argv, variable, envVal, c1, err1, c2, err2)
		}

		// The variable alone is the flag alone.
		if envVal == "" {
			return // an unset one, or for --state and --termination-log '' (TestEmptyVariables)
		}
		var flags []string
		parts := []string{envVal}
		if p.lists[name] {
			parts = strings.Split(envVal, ":")
		}
		for _, part := range parts {
			if part == "" && len(parts) > 1 {
				continue
			}
			flags = append(flags, "--"+name+"="+part)
		}
		byVar, errVar := p.parse(tail, withVar)
		byFlag, errFlag := p.parse(append(flags, tail...), noEnv)
		if (errVar == nil) != (errFlag == nil) || (errVar == nil && !reflect.DeepEqual(byVar, byFlag)) {
			t.Errorf("%s=%q with %q: %+v, %v\nas %q: %+v, %v", variable, envVal, tail, byVar, errVar, flags, byFlag, errFlag)
		}
	})
}

// flagNames lists every flag of o, so that a flag added later is fuzzed too.
func flagNames(o *options) []string {
	var names []string
	o.fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	return names
}

// fuzzInput turns fuzz values into a command line (NUL-separated, as the
// kernel hands arguments over) and an environment of up to two variables,
// each picked by index among names so that the fuzzer spends its time on
// values rather than on spelling DRAINIT_.
func fuzzInput(names []string, args string, i1 uint8, v1 string, i2 uint8, v2 string) ([]string, lookupEnv) {
	env := map[string]string{}
	env[envName(names[int(i2)%len(names)])] = v2
	env[envName(names[int(i1)%len(names)])] = v1
	return splitArgs(args), func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
}

func splitArgs(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\x00")
}

// checkRefusal: bad input is a usageError of one line, which main prints
// after its own "drainit: ".
func checkRefusal(t *testing.T, argv []string, err error) {
	t.Helper()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	var ue *usageError
	if !errors.As(err, &ue) {
		t.Fatalf("%q: error %v (%T) is not a usageError, so it would not exit 2", argv, err, err)
	}
	msg := err.Error()
	switch {
	case msg == "":
		t.Errorf("%q: empty error message", argv)
	case strings.ContainsAny(msg, "\r\n"):
		t.Errorf("%q: error message is more than one line: %q", argv, msg)
	case strings.HasPrefix(msg, "drainit:"):
		t.Errorf("%q: error message starts with drainit: and main adds another: %q", argv, msg)
	}
}

func checkLocks(t *testing.T, argv []string, locks []string) {
	t.Helper()
	for _, l := range locks {
		if !filepath.IsAbs(l) || strings.TrimSpace(l) == "" {
			t.Errorf("%q: lock pattern %q is not absolute", argv, l)
		}
		if _, err := filepath.Match(l, ""); err != nil {
			t.Errorf("%q: lock pattern %q is not a valid glob: %v", argv, l, err)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
