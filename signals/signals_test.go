package signals_test

import (
	"slices"
	"syscall"
	"testing"

	"github.com/drainit/drainit/signals"
)

func TestParse(t *testing.T) {
	good := map[string]syscall.Signal{
		"TERM": syscall.SIGTERM, "SIGTERM": syscall.SIGTERM, "15": syscall.SIGTERM,
		"term": syscall.SIGTERM, "SigTerm": syscall.SIGTERM, " int ": syscall.SIGINT,
		"WINCH": syscall.SIGWINCH, "quit": syscall.SIGQUIT, "USR2": syscall.SIGUSR2,
		"TSTP": syscall.SIGTSTP, "IOT": syscall.SIGABRT, "1": syscall.SIGHUP,
		"64": 64, "RTMIN": 34, "RTMIN+3": 37, "SIGRTMAX-1": 63, "rtmax": 64,
	}
	for in, want := range good {
		got, err := signals.Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "65", "-1", "TERMINATE", "SIG", "RTMIN+31", "RTMAX-31", "1.5", "SIGSIGTERM"} {
		if got, err := signals.Parse(in); err == nil {
			t.Errorf("Parse(%q) = %v, want an error", in, got)
		}
	}
}

func TestNameRoundTrips(t *testing.T) {
	for s := syscall.Signal(1); s <= signals.Max; s++ {
		if s == 32 || s == 33 {
			continue
		}
		got, err := signals.Parse(signals.Name(s))
		if err != nil || got != s {
			t.Errorf("Parse(Name(%d)=%q) = %v, %v", s, signals.Name(s), got, err)
		}
	}
}

func TestParseList(t *testing.T) {
	got, err := signals.ParseList("TERM,INT")
	if err != nil || !slices.Equal(got, []syscall.Signal{syscall.SIGTERM, syscall.SIGINT}) {
		t.Fatalf("ParseList = %v, %v", got, err)
	}
	got, err = signals.ParseList("term:SIGQUIT:3")
	if err != nil || !slices.Equal(got, []syscall.Signal{syscall.SIGTERM, syscall.SIGQUIT}) {
		t.Fatalf("ParseList with ':' and a duplicate = %v, %v", got, err)
	}
	for _, in := range []string{"", ",", "TERM,BOGUS", "TERM,0"} {
		if _, err := signals.ParseList(in); err == nil {
			t.Errorf("ParseList(%q): want an error", in)
		}
	}
}

func TestForwardable(t *testing.T) {
	kept := []syscall.Signal{syscall.SIGCHLD, syscall.SIGURG, syscall.SIGPIPE, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGPROF}
	for s := syscall.Signal(1); s <= signals.Max; s++ {
		want := s != syscall.SIGKILL && s != syscall.SIGSTOP && s != 32 && s != 33 && !slices.Contains(kept, s)
		if got := signals.Forwardable(s); got != want {
			t.Errorf("Forwardable(%s) = %v, want %v", signals.Name(s), got, want)
		}
	}
	if err := signals.CanDrainOn(syscall.SIGKILL); err == nil {
		t.Error("KILL accepted as a drain signal")
	}
	if err := signals.CanDrainOn(syscall.SIGCHLD); err == nil {
		t.Error("CHLD accepted as a drain signal")
	}
	if err := signals.CanDrainOn(syscall.SIGWINCH); err != nil {
		t.Errorf("WINCH refused as a drain signal: %v", err)
	}
}

func TestExitCode(t *testing.T) {
	for sig, want := range map[syscall.Signal]int{syscall.SIGTERM: 143, syscall.SIGKILL: 137, syscall.SIGINT: 130, syscall.SIGHUP: 129} {
		if got := signals.ExitCode(sig); got != want {
			t.Errorf("ExitCode(%v) = %d, want %d", sig, got, want)
		}
	}
}
