// Command drainit-demo shows a drain end to end, without root and without
// containers: it builds drainit, runs an app that starts background jobs
// holding lock files, stops it the way docker stop or the kubelet would,
// and narrates what happens.
//
//	go run ./cmd/drainit-demo
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// app is the demo's web app: it starts three jobs the way PHP's
// exec("job &") does, then serves until it is told to stop.
const app = `
for n in 1 2 3; do
  secs=$((n + 1))
  sh -c 'echo $$ > "$0/job-$1.lock"; echo "job $1: started, needs $2s"; sleep "$2"; echo "job $1: finished"; rm "$0/job-$1.lock"' "$LOCKS" $n $secs &
done
trap 'echo "app: got SIGTERM, shutting down"; exit 0' TERM
echo "app: serving"
sleep 1000 & wait $!
`

func main() {
	if err := demo(); err != nil {
		fmt.Fprintln(os.Stderr, "drainit-demo:", err)
		os.Exit(1)
	}
}

func demo() error {
	dir, err := os.MkdirTemp("", "drainit-demo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	locks := filepath.Join(dir, "lock")
	if err := os.Mkdir(locks, 0o755); err != nil {
		return err
	}
	bin := filepath.Join(dir, "drainit")
	say("building drainit")
	build := exec.Command("go", "build", "-o", bin, "github.com/drainit/drainit/cmd/drainit")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("go build: %w", err)
	}

	cmd := exec.Command(bin, "--lock", locks+"/*.lock", "--grace", "30s", "--", "sh", "-c", app)
	// The state file in the demo's own directory, not /run/drainit: the
	// demo runs without root, and drainit status reads it from there.
	state := filepath.Join(dir, "state.json")
	cmd.Env = append(os.Environ(), "LOCKS="+locks, "DRAINIT_STATE="+state)
	say("running: drainit --lock '%s/*.lock' --grace 30s -- sh -c <app that starts 3 jobs>", locks)
	r, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { cmd.Wait(); w.Close() }()

	t0 := time.Now()
	var stopAt, lastJob, appStop time.Time
	started, finished := 0, 0
	asked := false // drainit status was shown
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		fmt.Printf("%6.3fs  %s\n", time.Since(t0).Seconds(), line)
		switch {
		case strings.Contains(line, ": started,"):
			started++
			if started == 3 && stopAt.IsZero() {
				say("all 3 jobs run; sending SIGTERM to drainit, as docker stop or the kubelet would")
				stopAt = time.Now()
				cmd.Process.Signal(syscall.SIGTERM)
			}
		case strings.Contains(line, ": finished"):
			finished++
			lastJob = time.Now()
		case strings.Contains(line, "got SIGTERM"):
			appStop = time.Now()
		case strings.Contains(line, "draining by=") && !asked:
			asked = true
			showStatus(bin, state)
		}
	}
	code := cmd.ProcessState.ExitCode()
	fmt.Println()
	say("%d of 3 jobs finished; drainit exited %d", finished, code)
	if !lastJob.IsZero() && !appStop.IsZero() {
		say("the app got its SIGTERM %v after the stop, %v after the last job",
			appStop.Sub(stopAt).Round(time.Millisecond), appStop.Sub(lastJob).Round(time.Millisecond))
	}
	say("tini or dumb-init would have passed SIGTERM on at once and the jobs would have died midway;")
	say("a preStop loop polling every 10s would have kept the pod up to 10s after the last job.")
	if finished != 3 || code != 0 {
		return fmt.Errorf("the demo did not go as it should")
	}
	return nil
}

// showStatus runs drainit status, as kubectl exec POD -- drainit status
// would in a pod stuck in Terminating. drainit writes its state file a
// moment after it logs the drain's start: it asks again until the file
// says so, for a second at most.
func showStatus(bin, state string) {
	var out []byte
	for deadline := time.Now().Add(time.Second); ; {
		out, _ = exec.Command(bin, "status", "--state", state).CombinedOutput()
		if strings.Contains(string(out), "draining") || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // polling for the state file's next write
	}
	say("what is it doing? drainit status (kubectl exec POD -- drainit status) says:")
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		fmt.Printf("          %s\n", l)
	}
}

func say(format string, a ...any) {
	fmt.Printf("demo: "+format+"\n", a...)
}
