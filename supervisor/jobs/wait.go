package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/drainit/drainit/signals"
	"github.com/drainit/drainit/supervisor/lockwatch"
)

// WaitConfig is what Wait needs.
type WaitConfig struct {
	Locks    []string      // lock file patterns, absolute
	Poll     time.Duration // rescan interval, the fallback where events don't arrive
	StalePID bool          // a lock naming a dead PID is released
	Timeout  time.Duration // 0: no limit (the kubelet's grace period is one)
	Signals  *signals.Caught
	Log      *slog.Logger
}

// Exit codes of Wait.
const (
	WaitClear   = 0 // no lock is held
	WaitTimeout = 1 // the timeout came, or a stop signal, with locks still held
)

// progressEvery is how often Wait says what it still waits for.
const progressEvery = 5 * time.Second

// Wait blocks until no lock is held and returns WaitClear, or WaitTimeout
// at the timeout or on SIGTERM or SIGINT, with the held locks logged.
func Wait(cfg WaitConfig) int {
	log := cfg.Log
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan []string, 1)
	failed := make(chan error, 1)
	opts := lockwatch.Options{Patterns: cfg.Locks, Poll: cfg.Poll, StalePID: cfg.StalePID, Logger: log}
	go func() {
		if err := lockwatch.Watch(ctx, opts, out); err != nil {
			failed <- err
		}
	}()

	t0 := time.Now()
	var timeout <-chan time.Time
	if cfg.Timeout > 0 {
		t := time.NewTimer(cfg.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	progress := time.NewTicker(progressEvery)
	defer progress.Stop()

	var held []string
	first := true
	for {
		select {
		case now := <-out:
			if first {
				first = false
				if len(now) > 0 {
					log.Info(fmt.Sprintf("waiting for %d locks: %s", len(now), strings.Join(now, ", ")))
				}
			}
			for _, p := range held {
				if !slices.Contains(now, p) {
					log.Info(fmt.Sprintf("released %s, %d left", p, len(now)))
				}
			}
			held = now
			if len(held) == 0 {
				log.Info("no lock held", "waited", time.Since(t0).Round(time.Millisecond))
				return WaitClear
			}
		case <-progress.C:
			log.Info("waiting", "locks", len(held), "held", strings.Join(first3(held), ", "), "spent", time.Since(t0).Round(time.Second))
		case <-timeout:
			log.Error(fmt.Sprintf("gave up after waiting %v (--timeout %v) with %d locks still held: %s", time.Since(t0).Round(time.Millisecond), cfg.Timeout, len(held), strings.Join(held, ", ")))
			return WaitTimeout
		case s := <-cfg.Signals.All:
			if sig := s.(syscall.Signal); sig == syscall.SIGTERM || sig == syscall.SIGINT {
				log.Error(fmt.Sprintf("stopped by SIG%s after waiting %v with %d locks still held: %s", signals.Name(sig), time.Since(t0).Round(time.Millisecond), len(held), strings.Join(held, ", ")))
				return WaitTimeout
			}
		case err := <-failed:
			log.Error("cannot watch the locks", "err", err)
			return WaitTimeout
		}
	}
}

func first3(s []string) []string {
	if len(s) > 3 {
		return append(slices.Clip(s[:3]), "…")
	}
	return s
}
