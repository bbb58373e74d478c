// Package supervisor runs one command as the main job of a container and
// stays its parent until every process it left behind is gone.
//
// Like tini or dumb-init it forwards signals, reaps orphans and exits with
// the app's code. Unlike them, a stop signal does not go straight to the app:
// the supervisor first drains, holding the signal while lock files of running
// jobs exist, within a budget, so that a scale-down does not kill jobs midway.
// The whole API is Config and Run.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/oklog/run"
	"golang.org/x/sys/unix"

	"github.com/drainit/drainit/signals"
	"github.com/drainit/drainit/supervisor/lockwatch"
	"github.com/drainit/drainit/supervisor/podcost"
	"github.com/drainit/drainit/supervisor/procjobs"
	"github.com/drainit/drainit/supervisor/spawn"
)

// Config is everything Run needs. The zero value of each field is a sensible
// "off", except Command, Signals, Grace and StopTimeout, which must be set.
type Config struct {
	Command []string        // the app: path or name looked up in PATH, then its arguments
	Signals *signals.Caught // from signals.Catch, called first thing in main
	Log     *slog.Logger    // nil discards

	Locks       []string         // lock file glob patterns, absolute
	Grace       time.Duration    // budget from the first stop signal to drainit's exit
	StopTimeout time.Duration    // between the stop signal and SIGKILL
	Delay       time.Duration    // least time between the stop signal and forwarding
	Poll        time.Duration    // rescan interval while draining
	DrainOn     []syscall.Signal // signals that start the drain
	StopSignal  syscall.Signal   // 0: the signal that started the drain
	QuietSignal syscall.Signal   // 0: none
	Marker      string           // created when the drain starts; "" for none
	Group       bool             // signals go to the app's process group
	StalePID    bool             // a lock naming a dead PID is released

	// Process jobs, for jobs that write no lock file. In drainit's care:
	// as PID 1 every process of the namespace, otherwise its descendants;
	// never drainit itself or the app's main process.
	Orphans bool             // every process drainit adopted is a running job
	Jobs    []*regexp.Regexp // a process whose command line (NULs as spaces) matches is a running job

	// ExitOK lists the app's codes that drainit reports as 0 (tini's -e):
	// matched against the code drainit would exit with, so 143 is both an
	// exit(143), as a JVM stopped by SIGTERM does, and a death by SIGTERM.
	// Not for 126 or 127 when the app could not start at all.
	ExitOK []int

	// DeletionCost, when not nil, keeps the pod's deletion cost equal to
	// the number of held locks for drainit's whole life (podcost.FromEnv
	// fills it). Its failures are logged and never change the supervision.
	DeletionCost *podcost.Config

	// State is the file drainit keeps its state in, for drainit status;
	// "" for none. It is rewritten on each change and removed at exit;
	// where it cannot be written, nothing else changes.
	State string
	// TerminationLog is where a summary of the stop is written at exit
	// (Kubernetes' /dev/termination-log); "" for none.
	TerminationLog string
}

// Run starts the app, supervises it through its whole life and returns the
// code drainit should exit with. It returns only when the app and every
// process left behind have been reaped, or the budget to wait for them has
// run out.
func Run(cfg Config) int {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	log := cfg.Log
	pid1 := os.Getpid() == 1
	mode := "PID 1"
	var subreaperErr error
	if !pid1 {
		// Without this, jobs that the app orphans (PHP's exec("job &"))
		// would be reparented to the real init and escape the drain.
		mode = "subreaper"
		if subreaperErr = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); subreaperErr != nil {
			mode = "no subreaper"
		}
	}
	// One left by an earlier life of this container (a restart keeps the
	// filesystem) would make the app refuse jobs from the start.
	oldMarker := cfg.Marker != "" && os.Remove(cfg.Marker) == nil

	// As PID 1, drainit's death ends the namespace and the kernel kills
	// every process in it. As a subreaper it would leave the app running
	// with nobody to drain, reap or stop it: the app gets SIGTERM, as with
	// tini -p, and its orphans go to the next subreaper up.
	var orphaned syscall.Signal
	if !pid1 {
		orphaned = syscall.SIGTERM
	}
	pid, err := spawn.Start(cfg.Command, orphaned)
	if err != nil {
		log.Error(err.Error())
		return spawn.ExitCode(err)
	}
	// The first line, and the one to read when a stop went wrong: it holds
	// everything that decides a stop, so a mistyped DRAINIT_LOCK or a
	// missing DRAINIT_DRAIN_ON shows in kubectl logs. What came up before
	// the app started is logged after it.
	first := []any{"command", short(strings.Join(cfg.Command, " ")), "pid", pid, "mode", mode, "lock", orNone(strings.Join(cfg.Locks, ":"))}
	// Shown only when set: a line without them stays as it was.
	if r := (procjobs.Rules{Orphans: cfg.Orphans, Match: cfg.Jobs}); !r.Empty() {
		first = append(first, "jobs", r.String())
	}
	log.Info("started", append(first, "grace", cfg.Grace, "stop-signal", stopSignalText(cfg.StopSignal), "drain-on", signalList(cfg.DrainOn))...)
	switch {
	case subreaperErr != nil:
		log.Warn("not PID 1 and cannot become a subreaper: orphaned jobs will not be reaped or waited for; run drainit as the container's ENTRYPOINT", "err", subreaperErr)
	case !pid1:
		log.Debug("not PID 1: registered as a child subreaper")
	}
	for _, sig := range cfg.Signals.Ignored {
		log.Debug("signal was ignored at start and stays ignored", "signal", signals.Name(sig))
	}
	if oldMarker {
		log.Info("removed a drain marker left from before", "path", cfg.Marker)
	}
	warnMissingDirs(log, cfg.Locks)

	s := newState(cfg, pid, pid1)
	if cfg.State != "" {
		s.publish(cfg.State)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var g run.Group
	g.Add(func() error { s.route(ctx); return nil }, func(error) { cancel() })
	g.Add(func() error { s.reap(ctx); return nil }, func(error) { cancel() })
	g.Add(func() error { s.control(ctx); return nil }, func(error) { cancel() })
	if cfg.DeletionCost != nil {
		g.Add(func() error { s.keepCost(ctx, *cfg.DeletionCost); return nil }, func(error) { cancel() })
	}
	_ = g.Run()

	s.unpublish()
	code := s.exitCode()
	if s.status != nil && slices.Contains(cfg.ExitOK, code) {
		log.Info("the app's code is listed in --exit-ok: exiting 0", "app-code", code)
		code = 0
	}
	if cfg.TerminationLog != "" {
		s.writeTerminationLog(cfg.TerminationLog, code)
	}
	log.Info("exiting", "code", code)
	return code
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func stopSignalText(sig syscall.Signal) string {
	if sig == 0 {
		return "the drain's signal"
	}
	return signals.Name(sig)
}

// signalList is written as --drain-on takes it: TERM,INT.
func signalList(sigs []syscall.Signal) string {
	names := make([]string, len(sigs))
	for i, sig := range sigs {
		names[i] = signals.Name(sig)
	}
	return strings.Join(names, ",")
}

// warnMissingDirs warns about each lock pattern whose fixed directory is
// not there, at start and again when the drain starts: no lock can be held
// in it, so a wrong DRAINIT_LOCK would otherwise show only as locks=none at
// the stop, with every job lost. It is a warning, not bad input: the app
// may create the directory once it runs.
func warnMissingDirs(log *slog.Logger, patterns []string) {
	for _, p := range patterns {
		dir := lockwatch.FixedDir(p)
		if dir == "" {
			continue
		}
		fi, err := os.Stat(dir)
		problem := ""
		switch {
		case errors.Is(err, fs.ErrNotExist):
			problem = "does not exist"
		case errors.Is(err, syscall.ENOTDIR), err == nil && !fi.IsDir():
			problem = "is not a directory"
		default:
			// There, or unreadable (EACCES): the watcher says more on that.
			continue
		}
		log.Warn(fmt.Sprintf("lock directory %s %s: no lock can be held there; create it in the image (RUN mkdir -p %s) or correct DRAINIT_LOCK (--lock)", dir, problem, dir), "lock", p)
	}
}

// short keeps a long command line (a shell script passed with -c) from
// filling the screen of kubectl logs.
func short(s string) string {
	const max = 120
	if r := []rune(s); len(r) > max {
		return string(r[:max]) + "…"
	}
	return s
}
