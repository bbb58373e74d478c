package main_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drainit/drainit/internal/testkit"
)

const long = 30 * time.Second

func TestMain(m *testing.M) {
	if err := testkit.ResetSignals(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// Both ways of orphaning a job: the job's parent is not the app (it was
// reparented), it holds its lock while it runs, and the app exits with
// DEMO_EXIT_CODE after SIGTERM. The container tests (../e2e) run the rest.
func TestOrphanedJobs(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "demo")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, launch := range []string{"sh", "self"} {
		t.Run(launch, func(t *testing.T) {
			if launch == "sh" {
				if _, err := os.Stat("/bin/sh"); err != nil {
					t.Skip("no /bin/sh")
				}
			}
			locks := t.TempDir()
			cmd := exec.Command(bin)
			cmd.Env = append(os.Environ(), "DEMO_ADDR=127.0.0.1:0", "DEMO_LOCKS="+locks, "DEMO_LAUNCH="+launch, "DEMO_EXIT_CODE=4")
			r, w := io.Pipe()
			cmd.Stdout, cmd.Stderr = w, w
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan struct{})
			go func() { cmd.Wait(); w.Close(); close(exited) }()
			t.Cleanup(func() { cmd.Process.Kill(); <-exited })
			lines := make(chan string, 100)
			go func() {
				s := bufio.NewScanner(r)
				for s.Scan() {
					lines <- s.Text()
				}
				close(lines)
			}()
			var seen []string
			wait := func(re string) []string {
				t.Helper()
				rx := regexp.MustCompile(re)
				deadline := time.After(long)
				for {
					select {
					case l, ok := <-lines:
						if !ok {
							t.Fatalf("output ended without %q:\n%s", re, strings.Join(seen, "\n"))
						}
						seen = append(seen, l)
						if m := rx.FindStringSubmatch(l); m != nil {
							return m
						}
					case <-deadline:
						t.Fatalf("no %q:\n%s", re, strings.Join(seen, "\n"))
					}
				}
			}
			addr := wait(`listening on (\S+) \(jobs orphaned by ` + launch)[1]
			resp, err := http.Post("http://"+addr+"/jobs?name=j1&kind=own&seconds=2", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("POST /jobs: %s", resp.Status)
			}
			pid, _ := strconv.Atoi(wait(`job j1 started \(pid (\d+)`)[1])
			if _, err := os.Stat(filepath.Join(locks, "j1.lock")); err != nil {
				t.Errorf("the running job holds no lock: %v", err)
			}
			if ppid := parentOf(pid); ppid == cmd.Process.Pid {
				t.Errorf("the job is still the app's child, not orphaned")
			}
			wait(`job j1 finished`)
			// The job says it finished, then removes its lock.
			for deadline := time.Now().Add(long); ; time.Sleep(10 * time.Millisecond) {
				if _, err := os.Stat(filepath.Join(locks, "j1.lock")); err != nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the finished job left its lock")
				}
			}
			cmd.Process.Signal(syscall.SIGTERM)
			wait(`got SIGTERM`)
			<-exited
			if code := cmd.ProcessState.ExitCode(); code != 4 {
				t.Errorf("exit code %d, want DEMO_EXIT_CODE 4", code)
			}
		})
	}
}

// parentOf is pid's parent from /proc, or -1 when pid is gone.
func parentOf(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// The command name, in parentheses, may hold spaces: fields start
	// after its closing one.
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	n, _ := strconv.Atoi(f[1])
	return n
}
