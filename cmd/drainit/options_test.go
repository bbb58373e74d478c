package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// env is an environment of the variables named and valued in kv; one
// valued "" is set.
func env(kv ...string) lookupEnv {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func TestParseDuration(t *testing.T) {
	good := map[string]time.Duration{
		"300": 300 * time.Second, "90s": 90 * time.Second, "5m": 5 * time.Minute,
		"1h30m": 90 * time.Minute, "2.5": 2500 * time.Millisecond, "0": 0, " 30 ": 30 * time.Second,
		"250ms": 250 * time.Millisecond,
	}
	for in, want := range good {
		if got, err := parseDuration(in); err != nil || got != want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "-5s", "abc", "5 minutes", "1e300", "NaN", "10x"} {
		if got, err := parseDuration(in); err == nil {
			t.Errorf("parseDuration(%q) = %v, want an error", in, got)
		}
	}
}

func TestAcceptedCombinations(t *testing.T) {
	for _, args := range [][]string{
		{"--quiet-signal", "TSTP", "--stop-signal", "TERM", "app"},
		{"--quiet-signal", "USR2", "app"},
		{"--drain-on", "WINCH", "--stop-signal", "WINCH", "app"},
		{"--stop-signal", "KILL", "app"},
		{"--grace", "300", "--stop-timeout", "10", "--delay", "5", "app"},
		{"--marker", "/tmp/draining", "--lock", "/tmp/lock/*.lock", "app"},
	} {
		if _, _, err := parseSupervise(args, env()); err != nil {
			t.Errorf("%q: %v", args, err)
		}
	}
}

// inPod is the environment of a pod with the downward-API variables set,
// plus kv.
func inPod(kv ...string) []string {
	return append([]string{"KUBERNETES_SERVICE_HOST", "10.96.0.1", "KUBERNETES_SERVICE_PORT", "443",
		"POD_NAME", "web-0", "HOSTNAME", "web-0"}, kv...)
}

// --deletion-cost takes the pod from the environment, the credentials from
// --kube-dir, and is off (nil) unless asked for.
func TestDeletionCostOptions(t *testing.T) {
	c, _, err := parseSupervise([]string{"--lock", "/l/*.lock", "app"}, env(inPod()...))
	if err != nil || c.DeletionCost != nil {
		t.Fatalf("without --deletion-cost: %v, DeletionCost %+v", err, c.DeletionCost)
	}
	dir := t.TempDir()
	for _, f := range []string{"token", "ca.crt"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c, _, err = parseSupervise([]string{"--lock", "/l/*.lock", "--kube-dir", dir, "app"},
		env(inPod("DRAINIT_DELETION_COST", "true", "DRAINIT_DELETION_COST_INTERVAL", "30",
			"DRAINIT_POD_NAMESPACE_VAR", "MY_NS", "MY_NS", "shop")...))
	if err != nil {
		t.Fatal(err)
	}
	pc := c.DeletionCost
	if pc == nil {
		t.Fatal("DRAINIT_DELETION_COST=true left DeletionCost nil")
	}
	if pc.Server != "https://10.96.0.1:443" || pc.Pod != "web-0" || pc.Namespace != "shop" ||
		pc.KubeDir != dir || pc.Interval != 30*time.Second {
		t.Errorf("DeletionCost = %+v", *pc)
	}
}

func TestSuperviseDefaults(t *testing.T) {
	c, _, err := parseSupervise([]string{"php-fpm", "-F"}, env())
	if err != nil {
		t.Fatal(err)
	}
	if c.Grace != 30*time.Second || c.StopTimeout != 10*time.Second || c.Poll != time.Second || c.Delay != 0 {
		t.Errorf("durations: %+v", c)
	}
	if !slices.Equal(c.DrainOn, []syscall.Signal{syscall.SIGTERM, syscall.SIGINT}) {
		t.Errorf("drain-on %v", c.DrainOn)
	}
	if !slices.Equal(c.Command, []string{"php-fpm", "-F"}) {
		t.Errorf("command %q: flags after the command belong to it", c.Command)
	}
}

func TestFlagBeatsVariable(t *testing.T) {
	e := env("DRAINIT_GRACE", "300", "DRAINIT_LOCK", "/app/lock/*.lock:/tmp/*/x.lock", "DRAINIT_GROUP", "yes",
		"DRAINIT_STOP_SIGNAL", "sigwinch", "DRAINIT_DRAIN_ON", "TERM:QUIT")
	c, _, err := parseSupervise([]string{"--", "app"}, e)
	if err != nil {
		t.Fatal(err)
	}
	if c.Grace != 300*time.Second || !c.Group || c.StopSignal != syscall.SIGWINCH {
		t.Errorf("from variables: %+v", c)
	}
	if !slices.Equal(c.Locks, []string{"/app/lock/*.lock", "/tmp/*/x.lock"}) {
		t.Errorf("DRAINIT_LOCK split: %q", c.Locks)
	}
	if !slices.Equal(c.DrainOn, []syscall.Signal{syscall.SIGTERM, syscall.SIGQUIT}) {
		t.Errorf("DRAINIT_DRAIN_ON: %v", c.DrainOn)
	}
	c, _, err = parseSupervise([]string{"--grace", "60s", "--lock", "/a/*.lock", "--lock", "/b/*.lock", "--group=false", "app"}, e)
	if err != nil {
		t.Fatal(err)
	}
	if c.Grace != time.Minute || c.Group {
		t.Errorf("flags should win: grace %v group %v", c.Grace, c.Group)
	}
	if !slices.Equal(c.Locks, []string{"/a/*.lock", "/b/*.lock"}) {
		t.Errorf("--lock repeated: %q", c.Locks)
	}
}

// Every bad value is refused with one line that names where it came from
// and what would be accepted.
func TestBadInput(t *testing.T) {
	cases := []struct {
		args []string
		env  []string
		want string
	}{
		{nil, nil, "no command to run"},
		{[]string{"--"}, nil, "no command to run"},
		{[]string{"--grace", "abc", "app"}, nil, `--grace="abc": not a duration; use Go syntax like 90s`},
		{[]string{"app"}, []string{"DRAINIT_GRACE", "abc"}, `DRAINIT_GRACE="abc": not a duration`},
		{[]string{"--grace", "-5", "app"}, nil, `must not be negative`},
		{[]string{"--grace", "0", "app"}, nil, `--grace="0": must be more than 0`},
		{[]string{"--stop-timeout", "0s", "app"}, nil, `--stop-timeout="0s": must be more than 0`},
		{[]string{"--delay", "20s", "app"}, nil, "--delay 20s leaves no time to drain"},
		{[]string{"--stop-signal", "STOP", "app"}, nil, "--stop-signal STOP would suspend the app"},
		{[]string{"--quiet-signal", "KILL", "app"}, nil, "--quiet-signal KILL would end the app"},
		{[]string{"--quiet-signal", "TERM", "app"}, nil, "--quiet-signal TERM is also the stop signal"},
		{[]string{"--quiet-signal", "WINCH", "--stop-signal", "WINCH", "app"}, nil, "--quiet-signal and --stop-signal are both WINCH"},
		{[]string{"--marker", "/tmp/lock/draining.lock", "--lock", "/tmp/lock/*.lock", "app"}, nil, "matches --lock /tmp/lock/*.lock"},
		{[]string{"--poll", "0", "app"}, nil, `--poll="0": must be at least 1ms`},
		{[]string{"--grace", "10", "app"}, nil, "--grace 10s must be more than --stop-timeout 10s + 1s"},
		{[]string{"--drain-on", "KILL", "app"}, nil, "KILL cannot be caught"},
		{[]string{"--drain-on", "CHLD", "app"}, nil, "CHLD is kept by drainit"},
		{[]string{"--drain-on", "", "app"}, nil, "empty signal list"},
		{[]string{"--stop-signal", "0", "app"}, nil, `--stop-signal="0": signal number 0 is out of range`},
		{[]string{"--stop-signal", "FOO", "app"}, nil, `unknown signal "FOO"; use a name like TERM`},
		{[]string{"app"}, []string{"DRAINIT_QUIET_SIGNAL", "nope"}, `DRAINIT_QUIET_SIGNAL="nope": unknown signal`},
		{[]string{"--log-format", "xml", "app"}, nil, "use one of text, json"},
		{[]string{"--log-level", "loud", "app"}, nil, "use one of debug, info, warn, error"},
		{[]string{"--lock", "/app/[lock/*.lock", "app"}, nil, "not a valid glob"},
		{[]string{"--lock", "", "app"}, nil, "empty lock pattern"},
		{[]string{"--lock", "/app/lock/", "app"}, nil, "names a directory; add the file pattern"},
		{[]string{"--group=maybe", "app"}, nil, "not a boolean"},
		{[]string{"app"}, []string{"DRAINIT_STALE_PID", "maybe"}, `DRAINIT_STALE_PID="maybe": not a boolean`},
		{[]string{"--marker", "/no/such/dir/draining", "app"}, nil, "directory /no/such/dir does not exist"},
		{[]string{"--bogus", "app"}, nil, "unknown flag --bogus"},
		{[]string{"--grace"}, nil, "flag needs an argument"},
		{[]string{"--deletion-cost", "app"}, nil, "--deletion-cost counts held locks, and no --lock is given"},
		{[]string{"--deletion-cost", "--lock", "/l/*.lock", "app"}, nil, "--deletion-cost: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set"},
		{[]string{"--deletion-cost", "--lock", "/l/*.lock", "--kube-dir", "/no/such/dir", "app"}, inPod("POD_NAMESPACE", "shop"), "no service-account token: mount one"},
		{[]string{"--deletion-cost", "--lock", "/l/*.lock", "--pod-name-var", "MY_POD", "app"}, inPod("HOSTNAME", ""), "set MY_POD from the downward API"},
		{[]string{"--pod-name-var", "MY-POD", "app"}, nil, `--pod-name-var="MY-POD": not a variable name`},
		{[]string{"app"}, []string{"DRAINIT_POD_NAMESPACE_VAR", "1NS"}, `DRAINIT_POD_NAMESPACE_VAR="1NS": not a variable name`},
		{[]string{"--deletion-cost-interval", "10ms", "app"}, nil, `--deletion-cost-interval="10ms": must be at least 100ms`},
		{[]string{"app"}, []string{"DRAINIT_DELETION_COST", "maybe"}, `DRAINIT_DELETION_COST="maybe": not a boolean`},
		{[]string{"--exit-ok", "256", "app"}, nil, `--exit-ok="256": not an exit code; use numbers from 0 to 255`},
		{[]string{"--exit-ok", "-1", "app"}, nil, `--exit-ok="-1": not an exit code`},
		{[]string{"--exit-ok", "SIGTERM", "app"}, nil, `--exit-ok="SIGTERM": not an exit code`},
		{[]string{"--exit-ok", "143,", "app"}, nil, `--exit-ok="143,": "" is not an exit code`},
		{[]string{"app"}, []string{"DRAINIT_EXIT_OK", "143:1000"}, `DRAINIT_EXIT_OK="1000": not an exit code`},
	}
	for _, c := range cases {
		_, _, err := parseSupervise(c.args, env(c.env...))
		if err == nil {
			t.Errorf("%q %q: accepted", c.args, c.env)
			continue
		}
		if _, ok := err.(*usageError); !ok {
			t.Errorf("%q: %T is not a usage error", c.args, err)
		}
		msg := err.Error()
		if !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") {
			t.Errorf("%q %q: %q, want one line containing %q", c.args, c.env, msg, c.want)
		}
	}
}

// DRAINIT_JOB is a ':'-separated list, like DRAINIT_LOCK; a ':' inside an
// expression is written \x3a, which RE2 reads as ':'. Repeated --job flags
// beat it. drainit wait takes --job alone.
func TestJobOptions(t *testing.T) {
	e := env("DRAINIT_JOB", `job\.php:worker\x3a run`, "DRAINIT_ORPHANS", "1")
	c, _, err := parseSupervise([]string{"app"}, e)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, re := range c.Jobs {
		got = append(got, re.String())
	}
	if !slices.Equal(got, []string{`job\.php`, `worker\x3a run`}) || !c.Orphans {
		t.Fatalf("from variables: jobs %q, orphans %v", got, c.Orphans)
	}
	if !c.Jobs[1].MatchString("php worker: run 7") {
		t.Error(`\x3a does not match ':'`)
	}
	c, _, err = parseSupervise([]string{"--job", "a", "--job", "b:c", "--orphans=false", "app"}, e)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Jobs) != 2 || c.Jobs[1].String() != "b:c" || c.Orphans {
		t.Errorf("flags should win: %v, orphans %v", c.Jobs, c.Orphans)
	}
	w, _, err := parseWait([]string{"--job", `job\.php`, "--log-to-pid1=false"}, noEnv)
	if err != nil || len(w.Jobs) != 1 || len(w.Locks) != 0 {
		t.Errorf("drainit wait --job alone: %+v, %v", w, err)
	}
}

// --exit-ok takes ','-separated codes and may be repeated; DRAINIT_EXIT_OK
// is a ':'-separated list like every list variable, and takes ',' too.
func TestExitOKOptions(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  []string
		want []int
	}{
		{[]string{"app"}, nil, nil},
		{[]string{"--exit-ok", "143", "app"}, nil, []int{143}},
		{[]string{"--exit-ok", "143,130", "--exit-ok", " 1", "app"}, nil, []int{143, 130, 1}},
		{[]string{"--exit-ok", "143,143", "app"}, nil, []int{143}},
		{[]string{"app"}, []string{"DRAINIT_EXIT_OK", "143:130"}, []int{143, 130}},
		{[]string{"app"}, []string{"DRAINIT_EXIT_OK", "143,130:0"}, []int{143, 130, 0}},
		{[]string{"--exit-ok", "1", "app"}, []string{"DRAINIT_EXIT_OK", "143"}, []int{1}},
	} {
		cfg, _, err := parseSupervise(c.args, env(c.env...))
		if err != nil {
			t.Errorf("%q %q: %v", c.args, c.env, err)
			continue
		}
		if !slices.Equal(cfg.ExitOK, c.want) {
			t.Errorf("%q %q: exit-ok %v, want %v", c.args, c.env, cfg.ExitOK, c.want)
		}
	}
}
