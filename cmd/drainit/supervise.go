package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/drainit/drainit/signals"
	"github.com/drainit/drainit/supervisor"
	"github.com/drainit/drainit/supervisor/status"
)

// parseSupervise turns drainit's arguments and environment into the
// supervisor's config, or the one line that says what is wrong.
func parseSupervise(args []string, lookup lookupEnv) (supervisor.Config, *slog.Logger, error) {
	var c supervisor.Config
	var lf logFlags
	var kf kubeFlags
	o := superviseOptions(&c, &lf, &kf, lookup)
	rest, err := o.parse(args)
	if err != nil {
		return c, nil, err
	}
	defaultTerminationLog(&c, o)
	if len(rest) == 0 {
		return c, nil, usagef("no command to run; usage: drainit [flags] [--] COMMAND [ARG...]")
	}
	c.Command = rest
	if c.Grace-c.StopTimeout <= time.Second { // not StopTimeout+1s: that can overflow
		return c, nil, usagef("--grace %v must be more than --stop-timeout %v + 1s; raise --grace (and terminationGracePeriodSeconds) or lower --stop-timeout", c.Grace, c.StopTimeout)
	}
	if err := checkSupervise(&c); err != nil {
		return c, nil, err
	}
	if err := kf.configure(&c, getenvOf(lookup)); err != nil {
		return c, nil, err
	}
	log, err := lf.logger(os.Stderr)
	return c, log, err
}

// superviseOptions declares drainit's flags, bound to c, lf and kf.
func superviseOptions(c *supervisor.Config, lf *logFlags, kf *kubeFlags, lookup lookupEnv) *options {
	o := newOptions("drainit", lookup)
	o.globs("lock", &c.Locks, "a lock file pattern; a matching file is a running job")
	o.duration("grace", &c.Grace, 30*time.Second, time.Nanosecond, "the whole budget from the first stop signal to drainit's exit")
	o.duration("stop-timeout", &c.StopTimeout, 10*time.Second, time.Nanosecond, "time the app gets between its stop signal and SIGKILL")
	o.drainSignals("drain-on", &c.DrainOn, []syscall.Signal{syscall.SIGTERM, syscall.SIGINT}, "signals that start the drain")
	o.signal("stop-signal", &c.StopSignal, "what the app gets when the drain ends").defText = "the signal that started the drain"
	o.signal("quiet-signal", &c.QuietSignal, "sent to the app when the drain starts, so it takes no new jobs")
	o.path("marker", &c.Marker, "a file created when the drain starts")
	o.duration("delay", &c.Delay, 0, 0, "least time between the stop signal and forwarding it")
	o.boolean("group", &c.Group, "signal the app's whole process group")
	o.duration("poll", &c.Poll, time.Second, time.Millisecond, "rescan interval while draining")
	o.boolean("stale-pid", &c.StalePID, "a lock file that starts with a dead PID is released")
	o.boolean("orphans", &c.Orphans, "every process drainit adopted (what \"job &\" leaves) is a running job")
	o.regexps("job", &c.Jobs, "a process whose command line matches this expression is a running job")
	o.exitCodes("exit-ok", &c.ExitOK, "app exit codes drainit exits 0 for, comma-separated, like 143 (a JVM stopped by SIGTERM)")
	c.State = status.DefaultPath
	o.path("state", &c.State, "the file drainit keeps its state in, for drainit status; '' for none").emptyIsValue = true
	tl := o.path("termination-log", &c.TerminationLog, "where a summary of the stop is written at exit, for kubectl describe pod; '' for none")
	tl.defText = kubeTerminationLog + " when it exists"
	tl.emptyIsValue = true
	kf.register(o)
	lf.register(o)
	return o
}

// kubeTerminationLog is the file the kubelet reads a container's
// termination message from, unless its spec names another
// (terminationMessagePath, which it then creates too).
const kubeTerminationLog = "/dev/termination-log"

// defaultTerminationLog turns the termination message on where the
// kubelet has made its file, unless --termination-log or its variable
// said otherwise: elsewhere (docker run) nothing reads one.
func defaultTerminationLog(c *supervisor.Config, o *options) {
	if f := o.fs.Lookup("termination-log"); f != nil && f.Value.(*value).given {
		return
	}
	if fi, err := os.Stat(kubeTerminationLog); err == nil && fi.Mode().IsRegular() {
		c.TerminationLog = kubeTerminationLog
	}
}

// checkSupervise refuses settings that are each valid but cannot work
// together, or that point at a place drainit cannot write.
func checkSupervise(c *supervisor.Config) error {
	window := c.Grace - c.StopTimeout - time.Second
	if c.Delay >= window {
		return usagef("--delay %v leaves no time to drain: the drain must end by --grace %v - --stop-timeout %v - 1s = %v; lower --delay or raise --grace", c.Delay, c.Grace, c.StopTimeout, window)
	}
	switch c.StopSignal {
	case syscall.SIGSTOP, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU:
		return usagef("--stop-signal %s would suspend the app, not stop it; use TERM, INT, QUIT or WINCH", signals.Name(c.StopSignal))
	}
	// TSTP is fine as a quiet signal: it is Sidekiq's.
	switch c.QuietSignal {
	case syscall.SIGSTOP, syscall.SIGTTIN, syscall.SIGTTOU:
		return usagef("--quiet-signal %s would suspend the app; use the signal that tells it to take no new jobs, like TSTP or USR2", signals.Name(c.QuietSignal))
	case syscall.SIGKILL:
		return usagef("--quiet-signal KILL would end the app at the start of the drain; use the signal that tells it to take no new jobs, like TSTP or USR2")
	}
	if c.QuietSignal != 0 {
		stop := c.StopSignal
		for _, d := range c.DrainOn {
			if c.QuietSignal == d && (stop == 0 || stop == d) {
				return usagef("--quiet-signal %s is also the stop signal: the app would stop when the drain starts; choose another quiet signal, like TSTP or USR2", signals.Name(d))
			}
		}
		if c.QuietSignal == stop {
			return usagef("--quiet-signal and --stop-signal are both %s; the app would stop when the drain starts", signals.Name(stop))
		}
	}
	if c.Marker != "" {
		// First: the fix it asks for may also mend the directory.
		for _, l := range c.Locks {
			if ok, _ := filepath.Match(l, c.Marker); ok {
				return usagef("--marker %s matches --lock %s: the marker would count as a running job and hold the drain to its deadline; move one of them", c.Marker, l)
			}
		}
		if err := checkDir(filepath.Dir(c.Marker)); err != nil {
			return usagef("--marker %s: %v; create the directory or choose another path", c.Marker, err)
		}
		if err := unix.Access(filepath.Dir(c.Marker), unix.W_OK); err != nil {
			return usagef("--marker %s: directory %s is not writable (%v); choose a writable path, like /tmp/draining", c.Marker, filepath.Dir(c.Marker), err)
		}
	}
	return nil
}

// parentOf is the directory a path's file lives in; a path ending in '/'
// is its own.
func parentOf(p string) string {
	if strings.HasSuffix(p, "/") {
		return p
	}
	return filepath.Dir(p)
}

func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("directory %s does not exist", dir)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	return nil
}

func superviseUsage(f *os.File) {
	fmt.Fprint(f, `drainit: a container init that lets background jobs finish before the container stops.

usage: drainit [flags] [--] COMMAND [ARG...]
       drainit wait [flags]
       drainit lock [flags] PATH -- COMMAND [ARG...]
       drainit status [--json] [--state PATH]
       drainit version

flags (each also set by the variable in brackets):
`)
	superviseOptions(&supervisor.Config{}, &logFlags{}, &kubeFlags{}, noEnv).printDefaults(f)
}
