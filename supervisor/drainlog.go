package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
)

// A drain's log has to stay readable in kubectl logs however busy the
// jobs are: issue 17 measured 159,000 info lines in one 49 s drain with
// heavy job churn, one per lock created or released. So each job event
// (a lock released or new, a process job ended or new) is an info line
// only while events are few: at most eventLines in a progress interval.
// Past that, events go to debug and are counted, and the progress line
// that comes every progressEvery says how many; an interval with more
// than eventLines events keeps the next one counting too, so sustained
// churn costs one line per interval. Whatever the pace, the line that
// empties the drain ("released …, 0 left") is at info: when the drain
// ends with nothing held, the last release is named.
const (
	// eventLines is how many job events a progress interval logs one by
	// one at info: a user with 3 jobs still reads "released
	// /app/lock/job-3.lock, 2 left".
	eventLines = 5
	// oldestShown is how many of the longest-held jobs a progress line
	// names, with their age.
	oldestShown = 3
	// namedAtDeadline bounds the names in the loud lines that list what
	// is still held (the deadline's, nobody left's); the whole list is
	// then logged at debug.
	namedAtDeadline = 10
)

// drainLog decides which of a drain's job events reach info level and
// keeps what the progress line says: how long each held job has been
// held, and how many ended or started since the last progress line. It is
// owned by the control goroutine.
type drainLog struct {
	log *slog.Logger

	budget   int  // event lines left at info in this interval
	events   int  // events in this interval
	emptied  bool // a "0 left" line was logged in this interval
	counting bool // said that events are being counted, once a drain

	finished, added int // since the last progress line

	// since is when each held job was first seen: its key (a lock's path,
	// a process job's name) to the time; those held when the drain
	// started count from its start.
	since map[string]time.Time

	last      string // the latest "…, 0 left" line, or ""
	lastShown bool   // it was logged at info
}

func newDrainLog(log *slog.Logger) *drainLog {
	return &drainLog{log: log, budget: eventLines, since: map[string]time.Time{}}
}

// hold notes a job as held from now on, without a line: those found when
// the drain starts, which its first line names.
func (d *drainLog) hold(key string, now time.Time) {
	if _, ok := d.since[key]; !ok {
		d.since[key] = now
	}
}

// ended is a job's end: a lock released, a process job gone; left is
// how many are still held. line is built only if it is logged.
func (d *drainLog) ended(key string, left int, line func() string) {
	delete(d.since, key)
	d.finished++
	level := d.level()
	if left == 0 && !d.emptied {
		// At info whatever the pace, but once an interval: with --delay
		// a busy drain may empty and fill again many times.
		d.emptied, level = true, slog.LevelInfo
	}
	d.last, d.lastShown = "", false
	if left == 0 {
		d.last, d.lastShown = line(), level >= slog.LevelInfo
		d.log.Log(context.Background(), level, d.last)
		return
	}
	if d.log.Enabled(context.Background(), level) {
		d.log.Log(context.Background(), level, line())
	}
}

// started is a job that appeared while draining: msg and its attributes.
func (d *drainLog) started(key string, now time.Time, msg string, args ...any) {
	d.hold(key, now)
	d.added++
	d.last, d.lastShown = "", false
	d.log.Log(context.Background(), d.level(), msg, args...)
}

// level counts one event and says at which level it is logged: info while
// the interval's budget lasts, debug after.
func (d *drainLog) level() slog.Level {
	d.events++
	if d.budget > 0 {
		d.budget--
		return slog.LevelInfo
	}
	if !d.counting {
		d.counting = true
		d.log.Info(fmt.Sprintf("more than %d job events in %v: counting them in the progress line instead of a line each (every one at --log-level debug)", eventLines, progressEvery))
	}
	return slog.LevelDebug
}

// allDone is said when the drain ends with nothing held: the last release
// is named at info, even when it came among many.
func (d *drainLog) allDone() {
	if d != nil && d.last != "" && !d.lastShown {
		d.log.Info(d.last)
		d.lastShown = true
	}
}

// progress logs the progress line: held is what heldCounts gives, then
// the oldest jobs with their age, the events since the last line, the
// time spent and left. It starts the next interval.
func (d *drainLog) progress(now time.Time, held []any, spent, left time.Duration) {
	args := append([]any{}, held...)
	if old := d.oldest(now, oldestShown); old != "" {
		args = append(args, "oldest", old)
	}
	if d.finished > 0 {
		args = append(args, "finished", d.finished)
	}
	if d.added > 0 {
		args = append(args, "new", d.added)
	}
	d.log.Info("draining", append(args, "spent", spent, "left", left)...)
	d.finished, d.added = 0, 0
	// Busy: stay counting for one more interval at least.
	d.budget = eventLines
	if d.events > eventLines {
		d.budget = 0
	}
	d.events, d.emptied = 0, false
}

// oldest names the n jobs held longest with their age, "a 12s, b 3s".
func (d *drainLog) oldest(now time.Time, n int) string {
	type job struct {
		key string
		at  time.Time
	}
	var top []job // kept sorted, at most n: one pass over every held job
	for k, at := range d.since {
		j := job{k, at}
		i, _ := slices.BinarySearchFunc(top, j, func(a, b job) int {
			if c := a.at.Compare(b.at); c != 0 {
				return c
			}
			return strings.Compare(a.key, b.key)
		})
		if i < n {
			top = slices.Insert(top, i, j)
			if len(top) > n {
				top = top[:n]
			}
		}
	}
	parts := make([]string, len(top))
	for i, j := range top {
		parts[i] = fmt.Sprintf("%s %v", j.key, now.Sub(j.at).Round(time.Second))
	}
	return strings.Join(parts, ", ")
}

// named lists names for a loud line, the longest held first: all of them
// when they are few, else the first namedAtDeadline and how many more,
// with the whole list at debug.
func (d *drainLog) named(names []string) string {
	if d != nil {
		names = slices.Clone(names)
		slices.SortStableFunc(names, func(a, b string) int {
			ta, oka := d.since[a]
			tb, okb := d.since[b]
			if !oka || !okb {
				return 0
			}
			return ta.Compare(tb)
		})
	}
	if len(names) <= namedAtDeadline {
		return strings.Join(names, ", ")
	}
	if d != nil {
		d.log.Debug("every job still held", "jobs", strings.Join(names, ", "))
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:namedAtDeadline], ", "), len(names)-namedAtDeadline)
}
