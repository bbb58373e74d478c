package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/drainit/drainit/signals"
	"github.com/drainit/drainit/supervisor/internal/drainlog"
	"github.com/drainit/drainit/supervisor/lockwatch"
	"github.com/drainit/drainit/supervisor/procjobs"
)

// phase is where the supervisor is in the life of the app. It only moves
// forward: running → draining → stopping → exited.
type phase int

const (
	running  phase = iota // the app runs; signals are forwarded
	draining              // a stop was asked for; waiting for the jobs to end
	stopping              // the app got its stop signal, or is gone; ending what is left
	exited                // every process is reaped; Run returns
)

func (p phase) String() string {
	return [...]string{"running", "draining", "stopping", "exited"}[p]
}

const (
	// margin keeps drainit's own exit one second ahead of the kubelet's or
	// Docker's SIGKILL, so its last lines are written and the app's code,
	// not 137, is what the platform records.
	margin = time.Second
	// progressEvery is how often a drain reports what it still waits for.
	progressEvery = 5 * time.Second
	// afterKill bounds the wait for processes that got SIGKILL: one stuck
	// in an uninterruptible sleep must not keep drainit past its budget.
	afterKill = 500 * time.Millisecond
	// strayPoll is how often PID 1 looks whether the processes it did not
	// start, and gets no SIGCHLD for, have ended after their TERM.
	strayPoll = 10 * time.Millisecond
)

// state is owned by the control goroutine; the router and the reaper only
// talk to it through channels, and read appGone.
type state struct {
	cfg  Config
	log  *slog.Logger
	app  int // the app's PID
	pid1 bool

	// strays signals the processes left behind and says how many there
	// were: signalStrays, or a stand-in in tests, where the real one would
	// signal the test binary's own children.
	strays func(syscall.Signal) int
	// alone reports that drainit is the only process of its PID
	// namespace: aloneInNamespace, or a stand-in in tests.
	alone func() bool
	// scanProcs finds the process jobs in drainit's care: a scan of
	// /proc, or a stand-in in tests.
	scanProcs func() []procjobs.Proc

	appGone  atomic.Bool // set by the reaper the moment it reaps the app
	drainc   chan syscall.Signal
	reapedc  chan reaped
	locksc   chan []string
	stopLock context.CancelFunc // ends the lock watcher

	phase     phase
	status    *unix.WaitStatus // the app's, once reaped
	childless bool

	t0           time.Time      // the first drain signal, or the app's exit
	cause        syscall.Signal // the signal that started the drain; 0 if the app's exit did
	held         []string       // the latest lock snapshot
	scanned      bool           // held is the watcher's truth, not a guess
	procs        *procjobs.Set  // process jobs held; nil without rules for them, or before the drain
	nextScan     time.Time      // the next /proc scan for process jobs
	drainEnd     time.Time      // the drain deadline
	delayEnd     time.Time      // --delay
	budgetEnd    time.Time      // t0 + grace - margin
	nextProgress time.Time
	dlog         *drainlog.Log // what the drain's log says and when; nil before it
	aliveAt      time.Time     // the last time alone was asked during this drain
	saidOutside  bool          // the subreaper has said why it still waits

	appKillAt   time.Time // zero until the app has its stop signal
	appKilled   time.Time // when the app got SIGKILL
	strayTermed bool
	strayKillAt time.Time
	strayKilled time.Time

	report report // for the state file and the termination message
}

func newState(cfg Config, app int, pid1 bool) *state {
	s := &state{
		cfg: cfg, log: cfg.Log, app: app, pid1: pid1,
		drainc:  make(chan syscall.Signal, 16),
		reapedc: make(chan reaped),
		locksc:  make(chan []string, 1),
		report:  newReport(),
	}
	s.strays = s.signalStrays
	s.alone = aloneInNamespace
	s.scanProcs = func() []procjobs.Proc { return procjobs.Scan(s.procRules(), s.procScope()) }
	return s
}

// route is the signal actor: SIGCHLD is the reaper's (on its own channel),
// drain signals go to the state machine, the few signals drainit keeps are
// dropped, and everything else goes to the app.
func (s *state) route(ctx context.Context) {
	for {
		var os os.Signal
		select {
		case os = <-s.cfg.Signals.All:
		case <-ctx.Done():
			return
		}
		sig := os.(syscall.Signal)
		switch {
		case slices.Contains(s.cfg.DrainOn, sig):
			select {
			case s.drainc <- sig:
			case <-ctx.Done():
				return
			}
		case !signals.Forwardable(sig):
			s.log.Debug("signal kept", "signal", signals.Name(sig))
		case s.appGone.Load():
			s.log.Debug("signal dropped: the app is gone", "signal", signals.Name(sig))
		default:
			s.send(sig, "forwarded")
			s.warnStopTrap(sig)
		}
	}
}

// warnStopTrap warns when a signal that is likely the container's stop
// signal went past the drain to the app while jobs hold locks: the
// STOPSIGNAL trap (php:apache's WINCH, php-fpm's and nginx's QUIT). The app
// stops at once and takes the jobs with it, and without this line nothing
// between "started" and "app exited" would say why. Outside a drain nothing
// watches the locks, so they are counted by a one-off scan, only for these
// signals and after the signal is on its way.
func (s *state) warnStopTrap(sig syscall.Signal) {
	if len(s.cfg.Locks) == 0 || (sig != syscall.SIGWINCH && sig != syscall.SIGQUIT && sig != s.cfg.StopSignal) {
		return
	}
	// Its stale-lock lines would repeat the drain watcher's.
	quiet := slog.New(demoted{s.log.Handler()})
	held := lockwatch.Scan(lockwatch.Options{Patterns: s.cfg.Locks, StalePID: s.cfg.StalePID, Logger: quiet})
	if len(held) == 0 {
		return
	}
	name := signals.Name(sig)
	s.log.Warn(fmt.Sprintf("SIG%s passed to the app while %s held; if it is the container's stop signal, no job is waited for: set STOPSIGNAL SIGTERM (docker run --stop-signal TERM) or add %s to DRAINIT_DRAIN_ON (--drain-on)",
		name, plural(len(held), "lock is", "locks are"), name), "locks", summary(held))
}

// send delivers sig to the app, or its group with --group.
func (s *state) send(sig syscall.Signal, what string) {
	err := signals.Send(s.app, sig, s.cfg.Group)
	switch {
	case signals.Gone(err):
		s.log.Debug("signal not delivered: the app is gone", "signal", signals.Name(sig))
	case err != nil:
		s.log.Warn("cannot signal the app", "signal", signals.Name(sig), "err", err)
	default:
		s.log.Debug("signal "+what, "signal", signals.Name(sig), "pid", s.app, "group", s.cfg.Group)
	}
}

// control is the drain controller: it owns state and moves it forward on
// signals, reaps, lock snapshots and deadlines.
func (s *state) control(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	defer s.stopWatcher()
	defer s.stopProcs()
	for {
		s.advance(time.Now())
		s.observe(time.Now())
		if s.phase == exited {
			return
		}
		if wake, ok := s.report.wake(s.nextWake()); ok {
			timer.Reset(time.Until(wake))
		} else {
			timer.Stop()
		}
		select {
		case sig := <-s.drainc:
			s.onDrainSignal(sig, time.Now())
		case r := <-s.reapedc:
			s.onReaped(r, time.Now())
		case held := <-s.locksc:
			s.onLocks(held)
		case pid := <-s.procs.C():
			s.onProcExit(pid)
		case <-timer.C:
		case <-ctx.Done():
			return
		}
	}
}

func (s *state) onDrainSignal(sig syscall.Signal, now time.Time) {
	name := signals.Name(sig)
	switch s.phase {
	case running:
		s.startDrain(sig, now)
	case draining:
		if sig == syscall.SIGINT {
			if s.cause == syscall.SIGINT {
				s.log.Info("second SIGINT: ending the drain now")
			} else {
				s.log.Info("SIGINT while draining: ending the drain now")
			}
			s.endDrain(now)
			return
		}
		s.log.Info("already draining: ignoring SIG"+name, "left", left(s.drainEnd, now))
	case stopping:
		if sig == syscall.SIGINT && !s.appGone.Load() {
			s.send(sig, "forwarded")
			return
		}
		s.log.Debug("already stopping: ignoring SIG" + name)
	}
}

func (s *state) onReaped(r reaped, now time.Time) {
	s.childless = r.childless
	for _, pid := range r.jobs {
		s.onProcExit(pid)
	}
	if r.app == nil {
		return
	}
	s.status = r.app
	s.log.Info("app exited", "status", describe(*r.app))
	if s.phase == running {
		// Exiting now would make the kernel kill every job in the
		// container with PID 1: drain first, from this moment.
		s.startDrain(0, now)
	}
}

func (s *state) startDrain(cause syscall.Signal, now time.Time) {
	s.phase = draining
	s.t0, s.cause = now, cause
	s.budgetEnd = now.Add(s.cfg.Grace - margin)
	s.drainEnd = now.Add(s.cfg.Grace - s.cfg.StopTimeout - margin)
	s.delayEnd = now.Add(s.cfg.Delay)
	s.nextProgress = now.Add(progressEvery)
	s.dlog = drainlog.New(s.log, now, progressEvery)
	s.dlog.Since = s.report.since

	if len(s.cfg.Locks) > 0 {
		s.held = s.startWatcher()
		s.scanned = s.held != nil
	} else {
		s.scanned = true
	}
	s.startProcs(now)
	// Nothing to wait for: the stop is as fast as tini's. With rules for
	// jobs, the drain runs its course (its log line, the marker, the quiet
	// signal) even when none is held, as it does for locks.
	if len(s.cfg.Locks) == 0 && s.procs == nil && s.cfg.Delay == 0 {
		s.endDrain(now)
		return
	}
	by := "the app's exit"
	if cause != 0 {
		by = "SIG" + signals.Name(cause)
	}
	s.log.Info("draining", append(append([]any{"by", by}, s.heldAttrs()...), "budget", left(s.drainEnd, now))...)
	warnMissingDirs(s.log, s.cfg.Locks)
	// The marker first: an app that looks for it on the quiet signal
	// must find it.
	if s.cfg.Marker != "" {
		if err := createMarker(s.cfg.Marker); err != nil {
			s.log.Warn("cannot create the drain marker", "path", s.cfg.Marker, "err", err)
		}
	}
	if cause != 0 && s.cfg.QuietSignal != 0 && !s.appGone.Load() {
		s.send(s.cfg.QuietSignal, "sent to quiet the app")
	}
}

func (s *state) watchOptions() lockwatch.Options {
	return lockwatch.Options{Patterns: s.cfg.Locks, Poll: s.cfg.Poll, StalePID: s.cfg.StalePID, Logger: s.log}
}

// startWatcher starts the lock watcher and returns its first snapshot, the
// scan made once its watches were set.
func (s *state) startWatcher() []string {
	ctx, cancel := context.WithCancel(context.Background())
	s.stopLock = cancel
	out := make(chan []string, 1)
	failed := make(chan struct{})
	go func() {
		if err := lockwatch.Watch(ctx, s.watchOptions(), out); err != nil {
			s.log.Error("lock watcher failed; waiting for the deadline", "err", err)
			close(failed)
		}
	}()
	var first []string
	select {
	case first = <-out:
	case <-failed:
		return nil
	}
	// Forward later snapshots into the controller's channel, keeping only
	// the newest if it falls behind.
	go func() {
		for {
			select {
			case held := <-out:
				select {
				case <-s.locksc:
				default:
				}
				s.locksc <- held
			case <-ctx.Done():
				return
			}
		}
	}()
	return first
}

func (s *state) stopWatcher() {
	if s.stopLock != nil {
		s.stopLock()
		s.stopLock = nil
	}
}

func (s *state) onLocks(held []string) {
	if s.phase != draining {
		return
	}
	s.scanned = true
	released, added := drainlog.Diff(s.held, held)
	s.logChanges(released, added, time.Now())
	s.held = held
}

// logChanges passes a snapshot's changes to the drain's log, the new
// locks first, so that each release says how many are left after it and
// only the last of a snapshot that empties the drain says 0.
func (s *state) logChanges(released, added []string, now time.Time) {
	for _, p := range added {
		s.dlog.Started(p, now, "new lock while draining", "path", p)
	}
	left := len(s.held) + len(added) + s.procs.Len()
	for _, p := range released {
		left--
		s.dlog.Ended(p, left, func() string { return fmt.Sprintf("released %s, %d left", p, left) })
	}
}

// endDrain sends the stop signal: the drain is over, whatever ended it.
func (s *state) endDrain(now time.Time) {
	s.stopWatcher()
	// After the stop signal: closing the pidfds waits for their goroutine.
	defer s.stopProcs()
	s.phase = stopping
	if len(s.cfg.Locks) > 0 || s.cfg.Delay > 0 || !s.procRules().Empty() {
		s.log.Info("drain done", append([]any{"took", now.Sub(s.t0).Round(time.Millisecond)}, s.dlog.Tail()...)...)
	}
	if s.appGone.Load() {
		return
	}
	sig := s.cfg.StopSignal
	if sig == 0 {
		sig = s.cause
	}
	if sig == 0 {
		sig = syscall.SIGTERM
	}
	s.log.Info("stopping the app", "signal", signals.Name(sig))
	s.send(sig, "sent to stop the app")
	s.appKillAt = now.Add(s.cfg.StopTimeout)
	if s.appKillAt.After(s.budgetEnd) {
		s.appKillAt = s.budgetEnd
	}
}

// advance applies every transition that time alone decides.
func (s *state) advance(now time.Time) {
	switch s.phase {
	case draining:
		if s.procs != nil && !now.Before(s.nextScan) {
			s.rescanProcs(now, true)
		}
		switch {
		case s.scanned && len(s.held) == 0 && s.procs.Len() == 0 && !now.Before(s.delayEnd) && s.noNewProcs(now):
			s.dlog.AllDone()
			s.endDrain(now)
		case s.nobodyLeft(now):
			if len(s.held) > 0 {
				s.log.Warn(fmt.Sprintf("the app has exited and no process is left that could release %s: %s; ending the drain now",
					plural(len(s.held), "lock", "locks"), s.dlog.Names(s.held)))
				s.dlog.Every(slog.LevelWarn, s.held)
			}
			s.endDrain(now)
		case !now.Before(s.drainEnd):
			if s.procs != nil {
				// The loud list below must name every job the stop cuts.
				s.rescanProcs(now, true)
			}
			then := "stopping the app anyway"
			switch {
			case s.appGone.Load() && s.childless:
				then = "the app has exited and left no process behind"
			case s.appGone.Load():
				then = "the app has exited: ending the processes it left behind"
			}
			count, names := s.heldText()
			s.log.Error(fmt.Sprintf("drain deadline reached with %s still held: %s; %s", count, s.dlog.Names(names), then), s.dlog.Tail()...)
			s.dlog.Every(slog.LevelError, names)
			s.warnOrphanTrap()
			s.endDrain(now)
		case !now.Before(s.nextProgress):
			_, names := s.heldText()
			s.dlog.Progress(now, "draining", s.heldCounts(), names, "spent", now.Sub(s.t0).Round(time.Second), "left", left(s.drainEnd, now))
			s.nextProgress = now.Add(progressEvery)
		}
	}
	if s.phase != stopping {
		return
	}
	if !s.appGone.Load() {
		switch {
		case s.appKilled.IsZero() && !now.Before(s.appKillAt):
			s.log.Warn("the app did not stop in time: sending SIGKILL", "after", s.cfg.StopTimeout)
			s.send(syscall.SIGKILL, "sent")
			s.appKilled = now
		case !s.appKilled.IsZero() && now.Sub(s.appKilled) >= afterKill:
			// Stuck in the kernel (D state, a huge address space to tear
			// down): waiting longer would run past the budget. As PID 1,
			// exiting makes the kernel finish the job.
			s.log.Error("the app did not die after SIGKILL; exiting anyway")
			killed := unix.WaitStatus(syscall.SIGKILL)
			s.status = &killed
			s.phase = exited
		}
		return
	}
	if s.status == nil {
		return // gone, but its status is on its way from the reaper
	}
	// As PID 1 no child left is not enough: a process entered from
	// outside (kubectl exec, its parent the runtime) is no child, and
	// drainit's exit would have the kernel SIGKILL it unwarned. It gets
	// the TERM below, and its end is looked for every strayPoll.
	if s.childless && (!s.pid1 || s.alone()) {
		s.phase = exited
		return
	}
	if !s.strayTermed {
		s.strayTermed = true
		s.strayKillAt = now.Add(s.cfg.StopTimeout)
		if !s.budgetEnd.IsZero() && s.strayKillAt.After(s.budgetEnd) {
			s.strayKillAt = s.budgetEnd
		}
		if n := s.strays(syscall.SIGTERM); n > 0 {
			s.log.Info("ending the processes the app left behind", "count", n, "signal", "TERM")
		}
	}
	if s.strayKilled.IsZero() && !now.Before(s.strayKillAt) {
		n := s.strays(syscall.SIGKILL)
		s.log.Warn("processes left behind did not stop in time: sent SIGKILL", "count", n)
		s.strayKilled = now
	}
	if !s.strayKilled.IsZero() && now.Sub(s.strayKilled) >= afterKill {
		s.log.Error("processes left behind could not be reaped; exiting anyway")
		s.phase = exited
	}
}

// nobodyLeft reports that the drain waits for what can no longer happen:
// the app has exited and, as PID 1, no other process is left in the PID
// namespace, so no lock still held can ever be released (Apache, stopped by
// a STOPSIGNAL that went past the drain, kills its whole process group,
// jobs included; their locks stay behind). Waiting out the budget would
// only delay the container's end. A process of another container that
// shares the lock directory is not waited for: drainit's exit does not end
// it, so waiting would protect nothing. As a subreaper drainit cannot know:
// a process of its namespace outside its tree (the init above it, a docker
// exec) may still hold the locks, so it keeps waiting, and says so once.
//
// It asks only once the reaper has found no child left (wait4 gave ECHILD),
// and the app's status is in. From then on only a process entered from
// outside (docker exec, kubectl exec: setns, with a parent outside the
// namespace) can be in it, and such a process's exit sends drainit no
// SIGCHLD, so the question is asked again on every event and every --poll.
// A process that enters right after the answer is too late for the drain,
// as it would be a moment after drainit exits.
func (s *state) nobodyLeft(now time.Time) bool {
	if s.status == nil || !s.childless {
		return false
	}
	if !s.pid1 {
		if !s.saidOutside && len(s.held) > 0 {
			s.saidOutside = true
			s.log.Info(fmt.Sprintf("the app has exited and left no process behind; still waiting for %s: not being PID 1, drainit cannot tell whether a process outside its tree holds one",
				plural(len(s.held), "lock", "locks")))
		}
		return false
	}
	s.aliveAt = now
	return s.alone()
}

// nextWake is the next moment advance has something to do.
func (s *state) nextWake() (time.Time, bool) {
	var ts []time.Time
	switch s.phase {
	case draining:
		ts = append(ts, s.drainEnd, s.nextProgress)
		if s.delayEnd.After(s.t0) {
			ts = append(ts, s.delayEnd)
		}
		if !s.aliveAt.IsZero() {
			ts = append(ts, s.aliveAt.Add(orDefault(s.cfg.Poll, time.Second)))
		}
		if s.procs != nil {
			ts = append(ts, s.nextScan)
		}
	case stopping:
		switch {
		case !s.appGone.Load() && s.appKilled.IsZero():
			ts = append(ts, s.appKillAt)
		case !s.appGone.Load():
			ts = append(ts, s.appKilled.Add(afterKill))
		case s.strayTermed && s.strayKilled.IsZero():
			ts = append(ts, s.strayKillAt)
		case !s.strayKilled.IsZero():
			ts = append(ts, s.strayKilled.Add(afterKill))
		}
		if s.pid1 && s.childless && s.strayTermed {
			ts = append(ts, time.Now().Add(strayPoll))
		}
	}
	if len(ts) == 0 {
		return time.Time{}, false
	}
	return slices.MinFunc(ts, func(a, b time.Time) int { return a.Compare(b) }), true
}

func (s *state) exitCode() int {
	if s.status == nil {
		// Only when Run was cut short; the app's fate is unknown.
		return 1
	}
	return statusCode(*s.status)
}

// statusCode maps a wait status to a shell's exit code: N, or 128+signal.
func statusCode(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return signals.ExitCode(ws.Signal())
	}
	return ws.ExitStatus()
}

func describe(ws unix.WaitStatus) string {
	if ws.Signaled() {
		return "killed by SIG" + signals.Name(ws.Signal())
	}
	return fmt.Sprintf("exit %d", ws.ExitStatus())
}

// noNewProcs is the scan right before the stop signal: a job started
// since the last one (a cron-like loop in the app, a kubectl exec) keeps
// the drain going.
func (s *state) noNewProcs(now time.Time) bool {
	return s.procs == nil || s.rescanProcs(now, true) == 0
}

// heldAttrs is what a drain waits for, as log attributes: the locks, and
// the process jobs when rules for them are set.
func (s *state) heldAttrs() []any {
	a := []any{"locks", summary(s.held)}
	if s.procs != nil {
		a = append(a, "jobs", summary(s.procs.Names()))
	}
	return a
}

// heldCounts is how many locks and process jobs are held, as log
// attributes; jobs only when rules for them are set.
func (s *state) heldCounts() []any {
	a := []any{"locks", len(s.held)}
	if s.procs != nil {
		a = append(a, "jobs", s.procs.Len())
	}
	return a
}

// heldText counts and names what is still held: "1 lock" or "1 lock and
// 2 jobs", then every lock and every job.
func (s *state) heldText() (string, []string) {
	count := plural(len(s.held), "lock", "locks")
	if s.procs.Len() > 0 {
		if len(s.held) == 0 {
			count = plural(s.procs.Len(), "job", "jobs")
		} else {
			count += " and " + plural(s.procs.Len(), "job", "jobs")
		}
	}
	return count, append(slices.Clip(s.held), s.procs.Names()...)
}

// plural is "1 lock" or "3 locks".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func orDefault(d, otherwise time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return otherwise
}

// summary names the first few held locks and counts the rest.
func summary(held []string) string {
	const show = 3
	if len(held) == 0 {
		return "none"
	}
	if len(held) <= show {
		return fmt.Sprintf("%d (%s)", len(held), strings.Join(held, ", "))
	}
	return fmt.Sprintf("%d (%s, …)", len(held), strings.Join(held[:show], ", "))
}

func left(deadline, now time.Time) time.Duration {
	d := deadline.Sub(now).Round(time.Second)
	if d < 0 {
		return 0
	}
	return d
}
