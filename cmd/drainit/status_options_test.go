package main

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/drainit/drainit/supervisor/status"
)

func TestStateAndTerminationLogOptions(t *testing.T) {
	// In a pod (a CI runner can be one) the kubelet's file is there.
	wantLog := ""
	if fi, err := os.Stat(kubeTerminationLog); err == nil && fi.Mode().IsRegular() {
		wantLog = kubeTerminationLog
	}
	c, _, err := parseSupervise([]string{"app"}, env())
	if err != nil || c.State != status.DefaultPath || c.TerminationLog != wantLog {
		t.Errorf("defaults: state %q, termination log %q, %v", c.State, c.TerminationLog, err)
	}
	c, _, err = parseSupervise([]string{"app"}, env("DRAINIT_STATE", "/tmp/s.json", "DRAINIT_TERMINATION_LOG", "/tmp/term"))
	if err != nil || c.State != "/tmp/s.json" || c.TerminationLog != "/tmp/term" {
		t.Errorf("variables: %q %q %v", c.State, c.TerminationLog, err)
	}
	c, _, err = parseSupervise([]string{"--state", "", "--termination-log=", "app"}, env("DRAINIT_STATE", "/tmp/s.json", "DRAINIT_TERMINATION_LOG", "/tmp/term"))
	if err != nil || c.State != "" || c.TerminationLog != "" {
		t.Errorf("turned off: %q %q %v", c.State, c.TerminationLog, err)
	}
}

func TestParseStatus(t *testing.T) {
	path, asJSON, err := parseStatus(nil, env())
	if err != nil || path != status.DefaultPath || asJSON {
		t.Errorf("defaults: %q %v %v", path, asJSON, err)
	}
	path, asJSON, err = parseStatus([]string{"--json"}, env("DRAINIT_STATE", "/x/state.json"))
	if err != nil || path != "/x/state.json" || !asJSON {
		t.Errorf("DRAINIT_STATE: %q %v %v", path, asJSON, err)
	}
	for _, args := range [][]string{{"--state", ""}, {"now"}, {"--jsn"}} {
		if _, _, err := parseStatus(args, env()); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

// DRAINIT_STATE and DRAINIT_TERMINATION_LOG set empty turn them off, as
// --state "" and --termination-log "" do, even where the kubelet's file is
// there. Every other option still takes a variable set empty for unset,
// so that a Kubernetes env entry templated to nothing keeps the default.
func TestEmptyVariables(t *testing.T) {
	c, _, err := parseSupervise([]string{"app"}, env("DRAINIT_STATE", "", "DRAINIT_TERMINATION_LOG", ""))
	if err != nil || c.State != "" || c.TerminationLog != "" {
		t.Errorf("turned off by variables: state %q, termination log %q, %v", c.State, c.TerminationLog, err)
	}
	c, _, err = parseSupervise([]string{"app"}, env("DRAINIT_GRACE", "", "DRAINIT_STOP_TIMEOUT", "", "DRAINIT_LOCK", "", "DRAINIT_STOP_SIGNAL", "", "DRAINIT_LOG_LEVEL", ""))
	if err != nil || c.Grace != 30*time.Second || c.StopTimeout != 10*time.Second || len(c.Locks) != 0 || c.StopSignal != 0 || c.State != status.DefaultPath {
		t.Errorf("other variables set to '': %+v, %v", c, err)
	}
	if _, _, err := parseStatus(nil, env("DRAINIT_STATE", "")); !errors.Is(err, errStateOff) {
		t.Errorf("drainit status with DRAINIT_STATE='': %v", err)
	}
}
