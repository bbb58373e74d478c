package supervisor

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/drainit/drainit/signals"
	"github.com/drainit/drainit/supervisor/status"
)

// Kubernetes keeps at most this much of a termination message (the
// kubelet cuts the file to 4096 bytes and 80 lines, and cuts harder when a
// pod's containers together write more than 12 KiB).
const (
	maxMessageBytes = 4096
	maxMessageLines = 80
	// maxCutNamed bounds the cut jobs named, so that the counts and the
	// app's fate, around them, always fit.
	maxCutNamed = 20
)

// stopSummary is what the termination message says.
type stopSummary struct {
	cause     syscall.Signal // the drain signal; 0 when the app's exit started the drain
	t0        time.Time
	took      time.Duration // from the stop to the end of the drain
	deadline  bool          // the drain ended at its deadline
	finished  int
	cut       []status.Job
	cutAt     time.Time // when the drain ended, for the ages of cut jobs
	appStatus string    // "exit 0", "killed by SIGKILL"
	code      int
}

// terminationMessage is the short account of a stop that `kubectl
// describe pod` shows, or "" when there is nothing to tell: the app exited
// by itself and no job was cut. That case is left to the kubelet's
// terminationMessagePolicy FallbackToLogsOnError, whose tail of the log
// says more about a crash than drainit could.
func terminationMessage(s stopSummary) string {
	if s.t0.IsZero() || (s.cause == 0 && len(s.cut) == 0) {
		return ""
	}
	var b strings.Builder
	by := "the app's own exit"
	if s.cause != 0 {
		by = "SIG" + signals.Name(s.cause)
	}
	fmt.Fprintf(&b, "drainit: stop by %s at %s; drain took %s; %s finished",
		by, s.t0.UTC().Format(time.RFC3339), s.took.Round(time.Millisecond), plural(s.finished, "job", "jobs"))
	switch {
	case len(s.cut) == 0:
		b.WriteString(", none cut\n")
	case s.deadline:
		fmt.Fprintf(&b, ", %d cut at the drain deadline:\n", len(s.cut))
	default:
		fmt.Fprintf(&b, ", %d still held when the drain ended early:\n", len(s.cut))
	}
	tail := fmt.Sprintf("app: %s; drainit exit code %d\n", s.appStatus, s.code)
	for i, j := range s.cut {
		line := fmt.Sprintf("  %s (held %s)\n", short(j.Name()), s.cutAt.Sub(j.Since).Round(time.Second))
		// Room kept for the count of the rest and the tail.
		if i == maxCutNamed || b.Len()+len(line)+len("  … and 123456 more\n")+len(tail) > maxMessageBytes {
			fmt.Fprintf(&b, "  … and %d more\n", len(s.cut)-i)
			break
		}
		b.WriteString(line)
	}
	b.WriteString(tail)
	return bound(b.String())
}

// bound keeps a message within what Kubernetes keeps, cutting at a line's
// end: the kubelet would otherwise keep its head and drop the app's fate,
// which comes last. maxCutNamed keeps it far from both limits; this is
// the backstop.
func bound(m string) string {
	lines := strings.SplitAfter(m, "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) > maxMessageLines {
		lines = append(lines[:maxMessageLines-1], lines[len(lines)-1])
	}
	for len(lines) > 1 && len(strings.Join(lines, "")) > maxMessageBytes {
		lines = append(lines[:len(lines)-2], lines[len(lines)-1])
	}
	out := strings.Join(lines, "")
	if len(out) > maxMessageBytes {
		out = out[:maxMessageBytes]
		for !utf8.ValidString(out) {
			out = out[:len(out)-1]
		}
	}
	return out
}

// summary of this stop, once Run's actors are done.
func (s *state) stopSummary(code int) stopSummary {
	r := &s.report
	appStatus := "fate unknown"
	if s.status != nil {
		appStatus = describe(*s.status)
	}
	return stopSummary{
		cause: s.cause, t0: s.t0, took: r.drainDone.Sub(s.t0),
		deadline: !s.drainEnd.IsZero() && !r.drainDone.Before(s.drainEnd),
		finished: r.finishedAtEnd, cut: r.cut, cutAt: r.drainDone,
		appStatus: appStatus, code: code,
	}
}

// writeTerminationLog writes the summary of the stop to path (the
// kubelet's /dev/termination-log). Its failure is only warned about: it
// changes nothing about the stop or the exit code.
func (s *state) writeTerminationLog(path string, code int) {
	msg := terminationMessage(s.stopSummary(code))
	if msg == "" {
		return
	}
	// The kubelet makes the file; outside Kubernetes a path given on
	// purpose is made here. Never through a symlink, as every file
	// drainit writes as root: the kubelet's file is a bind mount, which
	// O_NOFOLLOW lets through.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o644)
	if err == nil {
		_, err = f.WriteString(msg)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	switch {
	case errors.Is(err, syscall.ELOOP):
		s.log.Warn("cannot write the termination message: the path is a symlink, and drainit does not write through one; kubectl describe pod will not show how the stop went: set DRAINIT_TERMINATION_LOG (--termination-log) to the file itself", "path", path, "err", err)
	case err != nil:
		s.log.Warn("cannot write the termination message; kubectl describe pod will not show how the stop went: check DRAINIT_TERMINATION_LOG (--termination-log)", "path", path, "err", err)
	}
}
