package testkit

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

var dockerOK = sync.OnceValue(func() error {
	if _, err := exec.LookPath("docker"); err != nil {
		return fmt.Errorf("no docker command: install docker.io and start the engine")
	}
	out, err := exec.Command("docker", "version", "--format", "{{.Server.Version}}").CombinedOutput()
	if err != nil {
		return fmt.Errorf("the Docker engine does not answer (%v: %s): start it (service docker start, or dockerd &)", err, strings.TrimSpace(string(out)))
	}
	return nil
})

// NeedDocker skips (or, under DRAINIT_TEST_STRICT=1, fails) a test when
// the Docker engine cannot be used.
func NeedDocker(t testing.TB) {
	t.Helper()
	if err := dockerOK(); err != nil {
		SkipOrFail(t, err.Error())
	}
}

// Docker runs the docker command and returns its trimmed output; a failure
// fails the test with that output.
func Docker(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}
