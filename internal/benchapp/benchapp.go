// Package benchapp is the app and the jobs that drainit's benchmarks put
// under drainit, shared by cmd/drainit's Go benchmarks and the
// cmd/drainit-bench tool so that both measure the same thing. A benchmark
// runs its own binary again with Env set to a role; that binary calls Main
// first thing, which plays the role and exits.
//
// Roles:
//
//	stamp     prints "ready"; on SIGTERM prints "stop" and the wall-clock
//	          time it got it, in Unix nanoseconds, taken first thing so that
//	          the pipe and the reader add nothing; then stays alive until
//	          its stdin closes, so that drainit's peak RSS can be read while
//	          drainit is still there. With BENCH_JOB=child or orphan it first
//	          starts a job (below) as its child, or orphaned.
//	job       a job that writes no lock file: the binary run with the
//	          argument in BENCH_WORD, for --job to match. It prints "job"
//	          once it is what is measured (adopted by drainit, when it was
//	          orphaned), then runs until the FIFO in BENCH_FIFO is closed by
//	          its writer, which takes the time just before closing it.
//	orphaner  starts the job and exits at once, leaving it to drainit.
package benchapp

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Env names the role; unset, Main does nothing.
const Env = "DRAINIT_BENCH_APP"

// Main plays the role that Env names and exits; it returns at once when
// Env is unset.
func Main() {
	role := os.Getenv(Env)
	if role == "" {
		return
	}
	var err error
	switch role {
	case "stamp":
		err = stamp()
	case "job":
		err = job()
	case "orphaner":
		err = startJob(true)
	default:
		err = fmt.Errorf("unknown role; want stamp, job or orphaner")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench app %s: %v\n", role, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func stamp() error {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM)
	if kind := os.Getenv("BENCH_JOB"); kind != "" {
		if err := startJob(kind == "orphan"); err != nil {
			return err
		}
	}
	fmt.Println("ready")
	<-c
	fmt.Printf("stop %d\n", time.Now().UnixNano())
	_, err := io.Copy(io.Discard, os.Stdin)
	return err
}

// startJob starts the job; orphaned, through a parent (this process, as
// the orphaner) that exits at once.
func startJob(orphaned bool) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	role := "job"
	if orphaned && os.Getenv(Env) != "orphaner" {
		role = "orphaner"
	}
	cmd := exec.Command(self, os.Getenv("BENCH_WORD"))
	cmd.Env = append(os.Environ(), Env+"="+role, fmt.Sprintf("BENCH_PARENT=%d", os.Getpid()))
	if orphaned && role == "job" {
		cmd.Env = append(cmd.Env, "BENCH_ORPHANED=1")
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Start()
}

func job() error {
	if os.Getenv("BENCH_ORPHANED") != "" {
		parent, _ := strconv.Atoi(os.Getenv("BENCH_PARENT"))
		for os.Getppid() == parent {
			time.Sleep(time.Millisecond) // polling for the adoption
		}
	}
	fmt.Println("job")
	f, err := os.Open(os.Getenv("BENCH_FIFO"))
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.Discard, f)
	return err
}

// ShortJobs is a busy app's churn: it starts n jobs evenly over d, each
// holding a lock file in dir for 20 ms, and returns once the last has
// removed it, with the number of lock events made (2n).
func ShortJobs(dir string, n int, d time.Duration) int {
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := range n {
		time.Sleep(time.Until(t0.Add(d * time.Duration(i) / time.Duration(n)))) // the app's pace
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := fmt.Sprintf("%s/job-%d.lock", dir, i)
			os.WriteFile(p, nil, 0o644)
			time.Sleep(20 * time.Millisecond) // the job's work
			os.Remove(p)
		}()
	}
	wg.Wait()
	return 2 * n
}
