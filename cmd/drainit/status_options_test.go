package main

import (
	"os"
	"testing"

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
