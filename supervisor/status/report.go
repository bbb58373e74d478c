package status

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// maxJobLines bounds the jobs the text report lists: thousands of locks
// would bury the lines above them. The oldest come first; --json has all.
const maxJobLines = 30

// Text writes the report a person reads after kubectl exec: the phase,
// the PIDs, when the stop came, the time left and each held job with how
// long it has been held, all measured at now.
func Text(w io.Writer, st State, now time.Time) error {
	var b strings.Builder
	line := func(label, format string, a ...any) {
		fmt.Fprintf(&b, "%-10s %s\n", label+":", fmt.Sprintf(format, a...))
	}
	switch st.Phase {
	case Running:
		line("phase", "running: no stop has come; the app runs and signals are passed to it")
	case Draining:
		line("phase", "draining: the app runs on while drainit waits for its jobs")
	case Stopping:
		line("phase", "stopping: the app has its stop signal (or is gone); ending what is left")
	default:
		line("phase", "%s", st.Phase)
	}
	line("drainit", "pid %d", st.PID)
	line("app", "pid %d", st.AppPID)
	if st.StopSignalAt != nil {
		line("stop", "%s ago (%s)", ago(now.Sub(*st.StopSignalAt)), clock(*st.StopSignalAt))
	}
	if st.Deadline != nil {
		what := "the drain deadline (%s): the app gets its stop signal then, whatever is held"
		if st.Phase == Stopping {
			what = "the final deadline (%s): every process left is killed and drainit exits then at the latest"
		}
		what = fmt.Sprintf(what, clock(*st.Deadline))
		if left := st.Deadline.Sub(now); left >= 0 {
			line("left", "%s until %s", ago(left), what)
		} else {
			line("left", "none: %s ago was %s", ago(-left), what)
		}
	}
	jobs := slices.Clone(st.Jobs)
	slices.SortStableFunc(jobs, func(a, b Job) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		return strings.Compare(a.Name(), b.Name())
	})
	switch {
	case st.Phase == Running:
		line("jobs", "watched from the stop on")
	case len(jobs) == 0 && st.Phase == Stopping:
		line("jobs", "none was held when the drain ended")
	case len(jobs) == 0:
		line("jobs", "none held")
	case st.Phase == Stopping:
		line("jobs", "%s still held when the drain ended, cut by the stop:", count(len(jobs)))
	default:
		line("jobs", "%s held:", count(len(jobs)))
	}
	for i, j := range jobs {
		if i == maxJobLines {
			fmt.Fprintf(&b, "  … and %d more (drainit status --json lists them all)\n", len(jobs)-i)
			break
		}
		fmt.Fprintf(&b, "  %s  held %s\n", j.Name(), ago(now.Sub(j.Since)))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func count(n int) string {
	if n == 1 {
		return "1 job"
	}
	return fmt.Sprintf("%d jobs", n)
}

// ago is a span as a person reads it: 350ms, 12s, 1m17s.
func ago(d time.Duration) string {
	if d < 0 {
		d = 0 // clocks of two processes, a hair apart
	}
	if d < time.Second {
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func clock(t time.Time) string { return t.Local().Format("15:04:05 MST") }

// JSON writes the state as the file holds it, with what Text computes
// added: "now", each job's "held_seconds", "stop_seconds_ago" and
// "left_seconds" (null where the state has no stop or deadline; negative
// once the deadline has passed). A script reads one object, the same
// shape as the file plus these, and needs no clock arithmetic.
func JSON(w io.Writer, st State, now time.Time) error {
	jobs := make([]json.RawMessage, 0, len(st.Jobs))
	for _, j := range st.Jobs {
		j.Since = wall(j.Since)
		b, err := j.MarshalJSON()
		if err != nil {
			return err
		}
		// One more field in the object the file holds for it.
		held, _ := json.Marshal(seconds(now.Sub(j.Since)))
		b = append(append(append(b[:len(b)-1:len(b)-1], `,"held_seconds":`...), held...), '}')
		jobs = append(jobs, b)
	}
	var since, left *float64
	if st.StopSignalAt != nil {
		s := seconds(now.Sub(*st.StopSignalAt))
		since = &s
	}
	if st.Deadline != nil {
		l := seconds(st.Deadline.Sub(now))
		left = &l
	}
	out := struct {
		Phase          string            `json:"phase"`
		PID            int               `json:"pid"`
		AppPID         int               `json:"app_pid"`
		Jobs           []json.RawMessage `json:"jobs"`
		StopSignalAt   *time.Time        `json:"stop_signal_at"`
		Deadline       *time.Time        `json:"deadline"`
		Now            time.Time         `json:"now"`
		StopSecondsAgo *float64          `json:"stop_seconds_ago"`
		LeftSeconds    *float64          `json:"left_seconds"`
	}{st.Phase, st.PID, st.AppPID, jobs, wallPtr(st.StopSignalAt), wallPtr(st.Deadline), wall(now), since, left}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// seconds keeps milliseconds: finer means nothing to a reader.
func seconds(d time.Duration) float64 {
	return float64(d.Round(time.Millisecond)) / float64(time.Second)
}
