// Command drainit is a container init that lets background jobs finish
// before the container stops.
//
//	drainit [flags] [--] COMMAND [ARG...]     run COMMAND as the app
//	drainit wait [flags]                      block until no lock is held and no job runs (a preStop hook)
//	drainit lock [flags] PATH -- COMMAND...   run COMMAND while holding lock file PATH
//	drainit status [--json] [--state PATH]    what the drainit of this container is doing
//	drainit version                           (also drainit --version)
//
// Every flag can also be set by its environment variable; a flag on the
// command line beats its variable. A variable set to the empty string
// counts as unset, except DRAINIT_STATE and DRAINIT_TERMINATION_LOG, which
// it turns off. Lists in variables are ':'-separated. Durations take Go
// syntax (90s, 5m) or plain seconds (300).
//
//	DRAINIT_LOCK          --lock GLOB       lock file pattern, repeatable (none)
//	DRAINIT_GRACE         --grace DUR       budget from the first stop signal to drainit's exit (30s);
//	                                        set it to terminationGracePeriodSeconds
//	DRAINIT_STOP_TIMEOUT  --stop-timeout DUR time the app gets between its stop signal and SIGKILL (10s)
//	DRAINIT_DRAIN_ON      --drain-on SIGS   signals that start the drain (TERM,INT)
//	DRAINIT_STOP_SIGNAL   --stop-signal SIG what the app gets when the drain ends (the signal that started it)
//	DRAINIT_QUIET_SIGNAL  --quiet-signal SIG sent to the app when the drain starts (none)
//	DRAINIT_MARKER        --marker PATH     file created when the drain starts (none)
//	DRAINIT_DELAY         --delay DUR       least time between the stop signal and forwarding (0)
//	DRAINIT_GROUP         --group           signal the app's whole process group (off)
//	DRAINIT_POLL          --poll DUR        rescan interval while draining (1s)
//	DRAINIT_STALE_PID     --stale-pid       a lock naming a dead PID is released (off)
//	DRAINIT_ORPHANS       --orphans         every process drainit adopted is a running job (off)
//	DRAINIT_JOB           --job REGEX       a process whose command line matches is a running job,
//	                                        repeatable (none); Go RE2 syntax, write ':' as \x3a
//	DRAINIT_STATE         --state PATH      the file drainit keeps its state in, for drainit status
//	                                        (/run/drainit/state.json; '' for none)
//	DRAINIT_TERMINATION_LOG --termination-log PATH  where a summary of the stop is written at exit,
//	                                        for kubectl describe pod (/dev/termination-log when it
//	                                        exists; '' for none)
//	DRAINIT_EXIT_OK       --exit-ok CODES   app exit codes drainit exits 0 for, like 143 (none); ','-separated,
//	                                        repeatable; matched against the code drainit would exit with,
//	                                        so 143 is an exit(143) and a death by SIGTERM alike (tini -e)
//	DRAINIT_LOG_FORMAT    --log-format F    text or json (text)
//	DRAINIT_LOG_LEVEL     --log-level L     debug, info, warn or error (info)
//
// At info, a drain logs its start, its job events one by one while they
// are few (at most 5 in 5 s; past that they are counted in the progress
// line), a progress line every 5 s (held count, the longest held with their
// age, time left), the last release and its end; --log-level debug logs
// every event.
//
// The state file is rewritten (a temporary file, then a rename) on each
// change: the phase, a job held or released, the stop signal sent; at most
// every 200ms under churn. It is removed when drainit exits, unless
// another drainit sharing it has written it since. Where it cannot be
// written (a read-only root filesystem) drainit says so once at debug
// level and nothing else changes. drainit status, run inside the
// container (kubectl exec POD -- drainit status), reads it: the phase, the
// app's PID, each held job with how long it has been held, when the stop
// came and the time left; --json prints the state with those computed.
// It takes --state (DRAINIT_STATE) and --json (DRAINIT_JSON, like every
// flag), and exits 1 when no drainit runs (no file, or one whose drainit
// is gone or in another PID namespace, another container's sharing the
// volume).
//
// The termination message says how the stop went: how long the drain
// took, the jobs finished, the jobs cut (named). It is not written when the
// app exited by itself and no job was cut, so that the kubelet's
// FallbackToLogsOnError shows the log instead.
//
// Under Kubernetes, drainit can keep its pod's
// controller.kubernetes.io/pod-deletion-cost annotation equal to the number
// of held locks and process jobs (a /proc scan every interval, with
// --orphans or --job), so that a ReplicaSet scale-down deletes idle pods
// first:
//
//	DRAINIT_DELETION_COST           --deletion-cost               on (off)
//	DRAINIT_DELETION_COST_INTERVAL  --deletion-cost-interval DUR  least time between two writes (5s)
//	DRAINIT_KUBE_DIR                --kube-dir DIR                token, ca.crt, namespace
//	                                                              (/var/run/secrets/kubernetes.io/serviceaccount)
//	DRAINIT_POD_NAME_VAR            --pod-name-var NAME           the variable with the pod's name (POD_NAME)
//	DRAINIT_POD_NAMESPACE_VAR       --pod-namespace-var NAME      the variable with its namespace (POD_NAMESPACE)
//
// The API server is KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT; the
// service account needs a Role that allows patch on pods.
//
// Jobs that write no lock file are seen by their processes. In drainit's
// care: as PID 1 every process of the namespace, otherwise its
// descendants; never drainit itself or the app's main process. --orphans
// counts what the app left in the background (exec("job &")), and also a
// daemon an entrypoint script started with '&'; --job counts processes
// whose /proc/PID/cmdline, NULs read as spaces (as pgrep -f), matches.
// Locks and process jobs are waited for together, under one deadline.
//
// drainit wait takes --lock, --job, --poll, --stale-pid and the log flags
// above, and also:
//
//	DRAINIT_TIMEOUT       --timeout DUR     give up and exit 1 after this long (no limit)
//	DRAINIT_LOG_TO_PID1   --log-to-pid1     also write to PID 1's stdout, for kubectl logs (true)
//
// drainit lock takes the log flags and:
//
//	DRAINIT_WAIT          --wait DUR        wait this long for a held lock instead of exiting 1 (0)
//
// Exit codes: the app's own; 128+N when the app was killed by signal N; 0
// for a code listed in --exit-ok; 127 when COMMAND is not found, 126 when it
// cannot be executed (a script without a #! line runs through /bin/sh, as
// with execvp); 2 for bad flags, variables or arguments.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/drainit/drainit/signals"
	"github.com/drainit/drainit/supervisor"
)

func main() {
	// First, before anything can go wrong: a Go PID 1 without a handler
	// for SIGTERM dies with status 2 when it gets one.
	caught := signals.Catch()
	os.Exit(dispatch(os.Args[1:], caught))
}

func dispatch(args []string, caught *signals.Caught) int {
	if len(args) > 0 {
		switch args[0] {
		case "version", "--version":
			// --version is the spelling every other tool answers to; it
			// only counts as the first argument, like the subcommands.
			fmt.Println("drainit", buildVersion())
			return 0
		case "wait":
			return runWait(args[1:], caught)
		case "lock":
			return runLock(args[1:], caught)
		case "status":
			return runStatus(args[1:])
		}
	}
	cfg, log, err := parseSupervise(args, os.LookupEnv)
	if err != nil {
		return fail(err, superviseUsage)
	}
	cfg.Signals = caught
	cfg.Log = log
	return supervisor.Run(cfg)
}

// fail reports bad input on one line, or the usage for --help.
func fail(err error, usage func(*os.File)) int {
	if errors.Is(err, flag.ErrHelp) {
		usage(os.Stdout)
		return 0
	}
	fmt.Fprintf(os.Stderr, "drainit: %v\n", err)
	return 2
}
