package main

import (
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// table is measures × inits, printed as one Markdown table with a last
// column for drainit ÷ tini.
type table struct {
	notes []string // printed under the table
	rows  []string
	cells map[string]map[string]cell
}

type cell struct {
	v     float64 // for ratios and targets: ms, MiB, MB or a count
	label string
}

var columns = []string{colNone, colTini, colTiniG, colDumb, colPreStop, colDrainit}

func newTable() *table { return &table{cells: map[string]map[string]cell{}} }

func (t *table) set(row, col string, v float64, label string) {
	if t.cells[row] == nil {
		t.rows = append(t.rows, row)
		t.cells[row] = map[string]cell{}
	}
	t.cells[row][col] = cell{v, label}
}

func (t *table) setDur(row, col string, d time.Duration) {
	ms := float64(d) / float64(time.Millisecond)
	t.set(row, col, ms, formatMS(ms))
}

func (t *table) setMiB(row, col string, bytes int64) {
	mib := float64(bytes) / (1 << 20)
	t.set(row, col, mib, fmt.Sprintf("%.1f MiB", mib))
}

func formatMS(ms float64) string {
	switch {
	case ms >= 1000:
		return fmt.Sprintf("%.2f s", ms/1000)
	case ms >= 100:
		return fmt.Sprintf("%.0f ms", ms)
	case ms >= 10:
		return fmt.Sprintf("%.1f ms", ms)
	default:
		return fmt.Sprintf("%.2f ms", ms)
	}
}

func (t *table) get(row, col string) (float64, bool) {
	c, ok := t.cells[row][col]
	return c.v, ok
}

func (t *table) print(w io.Writer) {
	head := append([]string{"measure"}, columns...)
	head = append(head, "drainit ÷ tini")
	grid := [][]string{head}
	for _, r := range t.rows {
		line := []string{r}
		for _, c := range columns {
			if x, ok := t.cells[r][c]; ok {
				line = append(line, x.label)
			} else {
				line = append(line, "–")
			}
		}
		ratio := "–"
		d, okD := t.get(r, colDrainit)
		ti, okT := t.get(r, colTini)
		if okD && okT && ti > 0 && r != "jobs lost" {
			ratio = fmt.Sprintf("%.2f×", d/ti)
		}
		grid = append(grid, append(line, ratio))
	}
	width := make([]int, len(head))
	for _, line := range grid {
		for i, s := range line {
			width[i] = max(width[i], utf8.RuneCountInString(s))
		}
	}
	row := func(line []string) {
		var b strings.Builder
		b.WriteString("|")
		for i, s := range line {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(s))
			if i == 0 {
				b.WriteString(" " + s + pad + " |")
			} else {
				b.WriteString(" " + pad + s + " |")
			}
		}
		fmt.Fprintln(w, b.String())
	}
	row(grid[0])
	var sep strings.Builder
	sep.WriteString("|")
	for i := range head {
		if i == 0 {
			sep.WriteString(strings.Repeat("-", width[i]+2) + "|")
		} else {
			sep.WriteString(strings.Repeat("-", width[i]+1) + ":|")
		}
	}
	fmt.Fprintln(w, sep.String())
	for _, line := range grid[1:] {
		row(line)
	}
	for _, n := range t.notes {
		fmt.Fprintf(w, "\nnote: %s\n", n)
	}
}

// printTargets checks drainit's figures against issue 6's targets.
func (t *table) printTargets(w io.Writer) {
	find := func(prefix string) string {
		for _, r := range t.rows {
			if strings.HasPrefix(r, prefix) {
				return r
			}
		}
		return ""
	}
	check := func(what string, ok, known bool, detail string) {
		verdict := "met"
		switch {
		case !known:
			verdict = "not measured"
		case !ok:
			verdict = "MISSED"
		}
		fmt.Fprintf(w, "- %-44s %-12s %s\n", what, verdict, detail)
	}
	fmt.Fprintln(w, "targets (issues 6, 8 and 16), for drainit:")
	lost, ok := t.get("jobs lost", colDrainit)
	check("zero jobs lost within the budget", lost == 0, ok, fmt.Sprintf("%.0f lost", lost))
	l, ok := t.get("linger after last job, median", colDrainit)
	ls, _ := t.get("last job → app's stop signal, median", colDrainit)
	check("linger after the last job < 10 ms median", l < 10, ok, fmt.Sprintf("%s to the pod's exit, %s to the app's stop signal", formatMS(l), formatMS(ls)))
	p50, ok1 := t.get(find("release → stop signal, 1 lock, p50"), colDrainit)
	p99, ok2 := t.get(find("release → stop signal, 1 lock, p99"), colDrainit)
	check("release → signal p50 ≤ 2 ms, p99 ≤ 10 ms", p50 <= 2 && p99 <= 10, ok1 && ok2, fmt.Sprintf("p50 %s, p99 %s", formatMS(p50), formatMS(p99)))
	j50, ok1 := t.get("last job's exit → stop signal, --job, PID 1, p50", colDrainit)
	o50, ok2 := t.get("last job's exit → stop signal, --orphans, PID 1, p50", colDrainit)
	check("job's exit → signal p50 ≤ 1 ms (issue 16)", j50 <= 1 && o50 <= 1, ok1 && ok2, fmt.Sprintf("--job %s, --orphans %s", formatMS(j50), formatMS(o50)))
	k50, ok := t.get(find("release → stop signal, 10k locks, p50"), colDrainit)
	check("release → signal with 10k locks ≤ 50 ms", k50 <= 50, ok, "p50 "+formatMS(k50))
	rss, ok := t.get("peak RSS draining 10k locks", colDrainit)
	check("peak RSS with 10k locks ≤ 16 MiB", rss <= 16, ok, fmt.Sprintf("%.1f MiB", rss))
	sr := find("start-to-exit")
	sd, ok1 := t.get(sr, colDrainit)
	st, ok2 := t.get(sr, colTini)
	check("start-to-exit within 1 ms of tini", sd-st <= 1, ok1 && ok2, fmt.Sprintf("%+.2f ms", sd-st))
	ir, ok := t.get("idle RSS", colDrainit)
	check("idle RSS ≤ 6 MiB (issue 8; was 4 MiB)", ir <= 6, ok, fmt.Sprintf("%.1f MiB", ir))
	irc, ok := t.get("idle RSS, --deletion-cost", colDrainit)
	check("idle RSS with --deletion-cost ≤ 6 MiB", irc <= 6, ok, fmt.Sprintf("%.1f MiB", irc))
	ic, ok := t.get(find("idle CPU"), colDrainit)
	wk, _ := t.get("idle wakeups per minute", colDrainit)
	// "Near zero": under 0.01% of one CPU, i.e. 6 ms a minute.
	window := 60.0
	if r := find("idle CPU"); r != "" {
		if d, err := time.ParseDuration(strings.TrimPrefix(r, "idle CPU time over ")); err == nil {
			window = d.Seconds()
		}
	}
	check("idle CPU near zero (< 0.01% of a CPU)", ic/(window*1000) < 1e-4, ok, fmt.Sprintf("%s CPU, %.1f wakeups/min", formatMS(ic), wk))
	bs, ok := t.get("binary size (static, stripped)", colDrainit)
	check("binary ≤ 8 MB (issue 8; was 6 MB)", bs <= 8, ok, fmt.Sprintf("%.2f MB", bs))
	rr := find("reap ")
	rd, ok1 := t.get(rr, colDrainit)
	rt, ok2 := t.get(rr, colTini)
	check("reaping within 1.3× tini's time", rd <= 1.3*rt, ok1 && ok2, fmt.Sprintf("%.2f×", rd/rt))
}
