package e2e_test

import (
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drainit/drainit/internal/testkit"
)

// appCode is what the demo exits with after its stop signal: not 0, so that
// a pass-through is told apart from drainit's own success.
const appCode = 3

var appEnv = fmt.Sprintf("DEMO_EXIT_CODE=%d", appCode)

// docker stop waits for every job, one of each kind, and returns within a
// second of the last one; the container exits with the app's code.
func TestDockerStopWaitsForJobs(t *testing.T) {
	t.Parallel()
	c := run(t, testImage(t, "drainit"), appEnv, "DRAINIT_GRACE=30")
	c.startJob("wrapped-1", "wrapped", 4)
	c.startJob("own-1", "own", 5)
	stopped := c.stop(30)
	c.waitEnd()

	c.waitLine(`draining by=SIGTERM locks="2 (/app/lock/own-1.lock, /app/lock/wrapped-1.lock)"`)
	for _, lock := range []string{"own-1", "wrapped-1"} {
		if _, ok := c.find("released /app/lock/" + lock + ".lock"); !ok {
			t.Errorf("no release of %s.lock logged:\n%s", lock, c.transcript())
		}
	}
	for _, s := range []string{
		"released /app/lock/", // either, then the other
		", 0 left",
		"drain done",
		"stopping the app signal=TERM",
		"demo: got SIGTERM",
		fmt.Sprintf("exiting code=%d", appCode),
	} {
		c.waitLine(s)
	}
	c.before("job wrapped-1 finished", "stopping the app")
	last, ok := c.find("job own-1 finished")
	if !ok {
		t.Fatalf("job own-1 did not finish:\n%s", c.transcript())
	}
	c.before("job own-1 finished", "stopping the app")
	// drainit's part: it exits within a second of the last job. After
	// that, the engine (containerd, the network, the port proxy) takes its
	// own time to notice and tell docker stop: about 0.1 s on a quiet
	// machine, but up to 10 s was seen on a 2-CPU machine at load 25. So
	// docker stop's return is only held to what drainit decides: it did
	// not wait for the budget (-t 30).
	exiting, _ := c.find("exiting code=")
	if d := exiting.at.Sub(last.at); d > time.Second || d < 0 {
		t.Errorf("drainit exited %v after the last job finished, want within a second:\n%s", d, c.transcript())
	}
	if d := stopped.Sub(last.at); d > 20*time.Second {
		t.Errorf("docker stop returned %v after the last job finished (drainit exited after %v):\n%s", d, exiting.at.Sub(last.at), c.transcript())
	}
	t.Logf("after the last job finished: drainit exited in %v, the engine recorded the exit in %v, docker stop returned in %v",
		exiting.at.Sub(last.at).Round(time.Millisecond), c.finishedAt().Sub(last.at).Round(time.Millisecond), stopped.Sub(last.at).Round(time.Millisecond))
	if code := c.exitCode(); code != appCode {
		t.Errorf("exit code %d, want the app's %d:\n%s", code, appCode, c.transcript())
	}
}

// A job that outlives the budget is given up: drainit says which, stops
// the app itself and exits with its code before Docker's SIGKILL.
func TestDockerStopGivesUpOnLongJob(t *testing.T) {
	t.Parallel()
	// grace = docker stop -t; the drain ends at 20 - 8 - 1 = 11 s, which
	// leaves drainit 9 s to stop everything: room for a loaded machine,
	// where its timers were seen to fire 4 s late in a container.
	const grace = 20
	c := run(t, testImage(t, "drainit"), appEnv, fmt.Sprintf("DRAINIT_GRACE=%d", grace), "DRAINIT_STOP_TIMEOUT=8")
	c.startJob("short", "own", 1)
	c.startJob("endless", "wrapped", 600)
	t0 := time.Now()
	stopped := c.stop(grace)
	c.waitEnd()

	c.waitLine("job short finished")
	// On a loaded machine the short job's release may come late too, so
	// the line may name it as well; the endless one it must name.
	if l := c.waitLine("drain deadline reached with"); !strings.Contains(l.text, "/app/lock/endless.lock") {
		t.Errorf("the lost job's lock is not named: %s", l.text)
	}
	c.waitLine("stopping the app signal=TERM")
	c.waitLine(fmt.Sprintf("exiting code=%d", appCode))
	if _, ok := c.find("job endless finished"); ok {
		t.Errorf("the endless job finished?\n%s", c.transcript())
	}
	// Before Docker's SIGKILL: drainit's last line came within the grace,
	// and the exit code below is the app's, where a SIGKILLed PID 1 gives
	// 137. docker stop's own return is the engine's business, and seconds
	// late on a loaded machine.
	// Both clocks start at the SIGTERM: drainit's budget when it gets it
	// (its "draining" line), Docker's timer when it sends it.
	drain, _ := c.find("draining by=SIGTERM")
	exiting, _ := c.find("exiting code=")
	if d := exiting.at.Sub(drain.at); d >= grace*time.Second {
		t.Errorf("drainit exited %v after the SIGTERM, after Docker's SIGKILL at %ds:\n%s", d, grace, c.transcript())
	}
	t.Logf("drainit exited %v after the SIGTERM; docker stop returned after %v",
		exiting.at.Sub(drain.at).Round(time.Millisecond), stopped.Sub(t0).Round(time.Millisecond))
	if code := c.exitCode(); code != appCode {
		t.Errorf("exit code %d, want the app's %d (137 is Docker's SIGKILL):\n%s", code, appCode, c.transcript())
	}
}

// The contrast the README quotes: tini as PID 1 passes SIGTERM on at once,
// the app exits, and the kernel kills the jobs with the container.
func TestTiniLosesJobs(t *testing.T) {
	t.Parallel()
	c := run(t, testImage(t, "tini"), appEnv)
	// Long enough that a loaded machine cannot let them finish before the
	// stop reaches the app; the stop itself does not wait for them.
	c.startJob("job-a", "own", 60)
	c.startJob("job-b", "own", 60)
	start := time.Now()
	c.stop(30)
	took := time.Since(start)
	c.waitEnd()
	c.waitLine("demo: got SIGTERM")
	for _, j := range []string{"job-a", "job-b"} {
		if l, ok := c.find("job " + j + " finished"); ok {
			t.Errorf("under tini, job %s finished (%s): expected it lost", j, l.text)
		}
	}
	if took > 30*time.Second {
		t.Errorf("docker stop took %v under tini, expected it at once", took)
	}
	if code := c.exitCode(); code != appCode {
		t.Errorf("exit code %d, want the app's %d", code, appCode)
	}
	t.Logf("tini: docker stop took %v and lost both jobs:\n%s", took.Round(time.Millisecond), c.transcript())
}

// docker kill -s USR1 reaches the app through drainit.
func TestDockerKillReachesApp(t *testing.T) {
	t.Parallel()
	c := run(t, testImage(t, "drainit"), appEnv)
	docker(t, "kill", "-s", "USR1", c.name)
	c.waitLine("demo: got SIGUSR1")
	docker(t, "kill", "-s", "HUP", c.name)
	c.waitLine("demo: got SIGHUP")
	c.stop(10)
	c.waitEnd()
	if code := c.exitCode(); code != appCode {
		t.Errorf("exit code %d, want %d:\n%s", code, appCode, c.transcript())
	}
}

// A CMD that does not exist: drainit says so and exits 127, like a shell.
func TestDockerMissingCommand(t *testing.T) {
	t.Parallel()
	img := testImage(t, "drainit")
	name := unique("drainit-e2e-")
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", name).Run() })
	out, err := exec.Command("docker", "run", "--name", name, img, "no-such-app").CombinedOutput()
	code := -1
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	if code != 127 {
		t.Fatalf("docker run exited %d (%v), want 127:\n%s", code, err, out)
	}
	if got := docker(t, "inspect", "-f", "{{.State.ExitCode}}", name); got != "127" {
		t.Errorf("State.ExitCode %s, want 127", got)
	}
	// Docker exits 127 too when it cannot start the ENTRYPOINT; this line
	// shows that drainit ran and said why.
	if !strings.Contains(string(out), "drainit") || !strings.Contains(string(out), "no-such-app: command not found") {
		t.Errorf("no line from drainit about the missing command:\n%s", out)
	}
}

// docker run -it, and Ctrl-C typed on the terminal: the app, which owns
// the container's terminal, gets SIGINT straight from it; drainit exits
// with the app's code.
func TestDockerRunTTYCtrlC(t *testing.T) {
	t.Parallel()
	img := testImage(t, "drainit")
	master, slave := testkit.OpenPTY(t)
	name := unique("drainit-e2e-")
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", name).Run() })
	cmd := exec.Command("docker", "run", "-it", "--name", name, "-e", appEnv, img)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	term := testkit.ReadTerminal(master, long)
	term.WaitFor(t, "listening on")
	if _, err := master.Write([]byte{3}); err != nil { // ^C
		t.Fatal(err)
	}
	term.WaitFor(t, "demo: got SIGINT")
	term.WaitFor(t, fmt.Sprintf("exiting code=%d", appCode))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(long):
		t.Fatalf("docker run did not return:\n%s", term.All())
	}
	if code := cmd.ProcessState.ExitCode(); code != appCode {
		t.Errorf("docker run exited %d, want the app's %d:\n%s", code, appCode, term.All())
	}
	if strings.Contains(term.All(), "by=SIGINT") {
		t.Errorf("drainit itself got the ^C, not the app:\n%s", term.All())
	}
}
