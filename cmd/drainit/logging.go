package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
)

func noEnv(string) (string, bool) { return "", false }

type logFlags struct{ format, level, prefix string }

func (lf *logFlags) register(o *options) {
	o.choice("log-format", &lf.format, "text", []string{"text", "json"}, "drainit's own log lines: text or json")
	o.choice("log-level", &lf.level, "info", []string{"debug", "info", "warn", "error"}, "debug, info, warn or error")
}

func (lf *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(lf.level)); err != nil {
		return nil, usagef("--log-level %q: use debug, info, warn or error", lf.level)
	}
	if lf.format == "json" {
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})), nil
	}
	prefix := lf.prefix
	if prefix == "" {
		prefix = "drainit"
	}
	return slog.New(&plainHandler{w: w, prefix: prefix, level: level, mu: new(sync.Mutex)}), nil
}

// plainHandler writes the short lines a person reads in kubectl logs:
//
//	drainit 12:00:01.234 draining by=SIGTERM locks="2 (/app/lock/a.lock, /app/lock/b.lock)"
//
// The time is kept (kubectl logs shows none unless asked) and the level is
// shown only when it is not info.
type plainHandler struct {
	w      io.Writer
	prefix string
	level  slog.Level
	mu     *sync.Mutex
	attrs  string
}

func (h *plainHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *plainHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(h.prefix + " ")
	t := r.Time
	if t.IsZero() {
		t = time.Now()
	}
	b.WriteString(t.Format("15:04:05.000"))
	if r.Level != slog.LevelInfo {
		b.WriteString(" " + strings.ToLower(r.Level.String()) + ":")
	}
	b.WriteString(" " + r.Message)
	b.WriteString(h.attrs)
	r.Attrs(func(a slog.Attr) bool { appendAttr(&b, a); return true })
	b.WriteByte('\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	// A closed or broken stderr must not stop supervision: the error is dropped.
	_, _ = io.WriteString(h.w, b.String())
	return nil
}

func (h *plainHandler) WithAttrs(as []slog.Attr) slog.Handler {
	var b strings.Builder
	for _, a := range as {
		appendAttr(&b, a)
	}
	c := *h
	c.attrs += b.String()
	return &c
}

func (h *plainHandler) WithGroup(string) slog.Handler { return h }

func appendAttr(b *strings.Builder, a slog.Attr) {
	v := a.Value.Resolve().String()
	if v == "" || strings.ContainsAny(v, " \"=\n\t") {
		v = strconv.Quote(v)
	}
	fmt.Fprintf(b, " %s=%s", a.Key, v)
}
