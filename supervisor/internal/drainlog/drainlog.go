// Package drainlog keeps the log of a drain (the supervisor's, drainit
// wait's) readable in kubectl logs however busy the jobs are. Issue 17
// measured 159,000 info lines in one 49 s drain with heavy job churn, one
// per lock created or released. Here each job event (a lock released or
// new, a process job ended or new) is an info line only while events are
// few: at most EventLines in a progress interval. Past that, events go to
// debug and are counted, and the progress line that comes every interval
// says how many; an interval with more than EventLines events keeps the
// next one counting too, so sustained churn costs one line per interval.
// Whatever the pace, the line that empties the drain ("released …, 0
// left") is at info: when the drain ends with nothing held, the last
// release is named.
package drainlog

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"
)

const (
	// EventLines is how many job events a progress interval logs one by
	// one at info: a user with 3 jobs still reads "released
	// /app/lock/job-3.lock, 2 left".
	EventLines = 5
	// oldestShown is how many of the longest-held jobs a progress line
	// names, with their age.
	oldestShown = 3
	// Named is how many names the loud lines that list what is still held
	// (at the deadline, at a timeout) give; the whole list is then logged
	// at debug.
	Named = 10
)

// Log decides which of a drain's job events reach info level and keeps
// what the progress line says: how long each held job has been held, and
// how many ended or started since the last progress line. It is owned by
// one goroutine.
type Log struct {
	log   *slog.Logger
	every time.Duration // the progress interval

	budget   int  // event lines left at info in this interval
	events   int  // events in this interval
	emptied  bool // a "0 left" line was logged in this interval
	counting bool // said that events are being counted, once a drain

	finished, added int // since the last progress line
	hidden          int // of those, logged at debug only

	// since is when each job that appeared during the drain was first
	// seen, by key (a lock's path, a process job's name); one not in it
	// has been held since t0, the drain's start. So 10,000 locks held at
	// the start cost no memory here.
	since map[string]time.Time
	t0    time.Time

	// Since, when set, tells when a job began, where its owner knows
	// better than when the drain first saw it (a lock's mtime, a
	// process's start); the drain's own sightings are the fallback.
	Since func(key string) (time.Time, bool)

	last      string // the latest "…, 0 left" line, or ""
	lastShown bool   // it was logged at info
}

// New starts the log of a drain that started at t0 and logs a progress
// line every interval.
func New(log *slog.Logger, t0 time.Time, every time.Duration) *Log {
	return &Log{log: log, every: every, budget: EventLines, since: map[string]time.Time{}, t0: t0}
}

// at is when the job named key began, or was first seen.
func (d *Log) at(key string) time.Time {
	if d.Since != nil {
		if t, ok := d.Since(key); ok {
			return t
		}
	}
	if t, ok := d.since[key]; ok {
		return t
	}
	return d.t0
}

// Ended is a job's end: a lock released, a process job gone; left is
// how many are still held. line is built only if it is logged.
func (d *Log) Ended(key string, left int, line func() string) {
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

// Started is a job that appeared while draining: msg and its attributes.
func (d *Log) Started(key string, now time.Time, msg string, args ...any) {
	d.since[key] = now
	d.added++
	d.last, d.lastShown = "", false
	d.log.Log(context.Background(), d.level(), msg, args...)
}

// level counts one event and says at which level it is logged: info while
// the interval's budget lasts, debug after.
func (d *Log) level() slog.Level {
	d.events++
	if d.budget > 0 {
		d.budget--
		return slog.LevelInfo
	}
	d.hidden++
	if !d.counting {
		d.counting = true
		d.log.Info(fmt.Sprintf("more than %d job events in %v: counting them in the progress line instead of a line each (every one at --log-level debug)", EventLines, d.every))
	}
	return slog.LevelDebug
}

// AllDone is said when the drain ends with nothing held: the last release
// is named at info, even when it came among many.
func (d *Log) AllDone() {
	if d != nil && d.last != "" && !d.lastShown {
		d.log.Info(d.last)
		d.lastShown = true
	}
}

// Progress logs the progress line: msg, counts (held locks and jobs, as
// attributes), the oldest of names (every job held) with their age, the
// events since the last line, then tail (the time spent and left, as
// attributes). It starts the next interval.
func (d *Log) Progress(now time.Time, msg string, counts []any, names []string, tail ...any) {
	args := append([]any{}, counts...)
	if old := d.oldest(now, names, oldestShown); old != "" {
		args = append(args, "oldest", old)
	}
	if d.finished > 0 {
		args = append(args, "finished", d.finished)
	}
	if d.added > 0 {
		args = append(args, "new", d.added)
	}
	d.log.Info(msg, append(args, tail...)...)
	d.finished, d.added, d.hidden = 0, 0, 0
	// Busy: stay counting for one more interval at least.
	d.budget = EventLines
	if d.events > EventLines {
		d.budget = 0
	}
	d.events, d.emptied = 0, false
}

// oldest names the n of names held longest, with their age: "a 12s, b
// 3s". Among jobs seen at the same moment, the order of names holds.
func (d *Log) oldest(now time.Time, names []string, n int) string {
	type job struct {
		name string
		at   time.Time
	}
	var top []job // sorted, at most n: one pass over every held job
	for _, name := range names {
		at := d.at(name)
		i := sort.Search(len(top), func(i int) bool { return top[i].at.After(at) })
		if i < n {
			top = slices.Insert(top, i, job{name, at})
			if len(top) > n {
				top = top[:n]
			}
		}
	}
	parts := make([]string, len(top))
	for i, j := range top {
		parts[i] = fmt.Sprintf("%s %v", j.name, now.Sub(j.at).Round(time.Second))
	}
	return strings.Join(parts, ", ")
}

// Names lists names for a loud line, the longest held first: all of them
// when they are few, else the first Named and how many more. Every logs
// the rest.
func (d *Log) Names(names []string) string {
	names = d.sorted(names)
	if len(names) <= Named {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more (every one in the next line)", strings.Join(names[:Named], ", "), len(names)-Named)
}

// Every follows a loud line that Names cut short: it lists every job
// still held, at the same level, since a job the stop cuts must be named
// loudly. Nothing when Names named them all.
func (d *Log) Every(level slog.Level, names []string) {
	if d == nil || len(names) <= Named {
		return
	}
	d.log.Log(context.Background(), level, "every job still held", "jobs", strings.Join(d.sorted(names), ", "))
}

// sorted is names, the longest held first.
func (d *Log) sorted(names []string) []string {
	if d == nil {
		return names
	}
	names = slices.Clone(names)
	slices.SortStableFunc(names, func(a, b string) int { return d.at(a).Compare(d.at(b)) })
	return names
}

// Tail is what the end of a drain adds to its line: the job events since
// the last progress line, when some of them were only counted, so that
// none goes unsaid at info.
func (d *Log) Tail() []any {
	if d == nil || d.hidden == 0 {
		return nil
	}
	return []any{"finished", d.finished, "new", d.added}
}

// Diff compares two sorted snapshots in one pass.
func Diff(old, now []string) (released, added []string) {
	i, j := 0, 0
	for i < len(old) || j < len(now) {
		switch {
		case j == len(now) || (i < len(old) && old[i] < now[j]):
			released = append(released, old[i])
			i++
		case i == len(old) || now[j] < old[i]:
			added = append(added, now[j])
			j++
		default:
			i++
			j++
		}
	}
	return released, added
}
