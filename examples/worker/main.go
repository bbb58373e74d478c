// Command worker is a Sidekiq-like job worker, for drainit's example of an
// app that needs a quiet signal before its stop signal: on SIGTSTP it
// stops fetching jobs and lets the ones it runs finish; on SIGTERM it stops,
// pushing any job still running back to the queue, where another worker
// will take it again from the start.
//
// Run it under drainit with
//
//	DRAINIT_LOCK=/app/lock/*.lock DRAINIT_QUIET_SIGNAL=TSTP DRAINIT_STOP_SIGNAL=TERM
//
// and a stop goes: SIGTERM to drainit, TSTP to the worker (no new jobs), the
// running jobs finish and release their locks, TERM to the worker, which
// then has nothing to push back.
//
// The queue is a directory: a file NAME.job holding a number of seconds is
// a job (write it under another name and rename it, so it is never read
// half written). Each running job holds LOCKS/NAME.lock.
//
// With -process and -locks "", the lock-free variant: each job runs as a
// child process, "worker job NAME SECONDS", and holds no lock file;
// drainit sees it by its command line:
//
//	DRAINIT_JOB='worker job ' DRAINIT_QUIET_SIGNAL=TSTP DRAINIT_STOP_SIGNAL=TERM
//
//	worker [-queue DIR] [-locks DIR] [-process] [-concurrency N] [-poll DUR]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("worker: ")
	if len(os.Args) == 4 && os.Args[1] == "job" {
		os.Exit(runJob(os.Args[3]))
	}
	queue := flag.String("queue", "/queue", "the queue directory: NAME.job files")
	locks := flag.String("locks", "/app/lock", `where each running job holds NAME.lock; "" for none`)
	process := flag.Bool("process", false, "run each job as a child process, worker job NAME SECONDS")
	concurrency := flag.Int("concurrency", 2, "jobs run at once")
	poll := flag.Duration("poll", 100*time.Millisecond, "how often the queue is looked at")
	flag.Parse()
	w := &worker{queue: *queue, locks: *locks, process: *process, concurrency: *concurrency}
	os.Exit(w.run(*poll))
}

type worker struct {
	queue, locks string
	process      bool
	concurrency  int

	wg      sync.WaitGroup
	mu      sync.Mutex
	running map[string]context.CancelFunc
}

func (w *worker) run(poll time.Duration) int {
	for _, d := range []string{w.queue, w.locks} {
		if d == "" {
			continue
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			log.Print(err)
			return 1
		}
	}
	w.running = map[string]context.CancelFunc{}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTSTP, syscall.SIGTERM, syscall.SIGINT)
	tick := time.NewTicker(poll)
	defer tick.Stop()
	quiet := false
	log.Printf("started: queue %s, locks %s, %d at once", w.queue, w.locks, w.concurrency)
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGTSTP {
				if !quiet {
					quiet = true
					log.Printf("quiet (SIGTSTP): fetching no new jobs, %d running", w.count())
				}
				continue
			}
			log.Printf("stopping (%v): %d running", sig, w.count())
			w.stop()
			log.Print("stopped")
			return 0
		case <-tick.C:
			if !quiet {
				w.fetch()
			}
		}
	}
}

func (w *worker) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.running)
}

// fetch starts queued jobs, oldest name first, while there is room.
func (w *worker) fetch() {
	names, err := filepath.Glob(filepath.Join(w.queue, "*.job"))
	if err != nil {
		log.Print(err)
		return
	}
	sort.Strings(names)
	for _, path := range names {
		if w.count() >= w.concurrency {
			return
		}
		name := strings.TrimSuffix(filepath.Base(path), ".job")
		data, err := os.ReadFile(path)
		if err != nil {
			continue // taken by another worker
		}
		secs, err := strconv.ParseFloat(strings.TrimSpace(string(data)), 64)
		if err != nil {
			log.Printf("job %s: %v; dropped", name, err)
			os.Remove(path)
			continue
		}
		// The lock first, then the claim: from the moment the job leaves
		// the queue, drainit sees it running.
		lock := ""
		if w.locks != "" {
			lock = filepath.Join(w.locks, name+".lock")
			if err := os.WriteFile(lock, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
				log.Printf("job %s: %v", name, err)
				return
			}
		}
		if err := os.Remove(path); err != nil {
			if lock != "" {
				os.Remove(lock)
			}
			continue
		}
		w.start(name, secs, lock)
	}
}

func (w *worker) start(name string, secs float64, lock string) {
	// The process first: from the line that says a job started, drainit
	// --job can see it.
	var proc *exec.Cmd
	if w.process {
		var err error
		if proc, err = startProcess(name, secs); err != nil {
			log.Printf("job %s: %v", name, err)
			w.push(name, secs)
			if lock != "" {
				os.Remove(lock)
			}
			return
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.mu.Lock()
	w.running[name] = cancel
	w.mu.Unlock()
	w.wg.Add(1)
	log.Printf("job %s started (%gs)", name, secs)
	go func() {
		defer w.wg.Done()
		var err error
		if proc != nil {
			err = waitProcess(ctx, proc)
		} else {
			err = work(ctx, time.Duration(secs*float64(time.Second)))
		}
		if err != nil {
			// Back to the queue before the lock goes, so the job is never
			// in neither place.
			w.push(name, secs)
		}
		w.mu.Lock()
		delete(w.running, name)
		w.mu.Unlock()
		if err != nil {
			log.Printf("job %s interrupted: pushed back to the queue", name)
		} else {
			log.Printf("job %s finished", name)
		}
		// Last: once the lock is gone, drainit may stop the worker.
		if lock != "" {
			os.Remove(lock)
		}
	}()
}

// work is the job's work: it takes d, or ends early when cancelled.
func work(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return errors.New("interrupted")
	}
}

// startProcess starts the job as a child process: drainit --job sees it
// running from its fork to its exit, with no lock file.
func startProcess(name string, secs float64) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "job", name, strconv.FormatFloat(secs, 'g', -1, 64))
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd, cmd.Start()
}

// waitProcess waits for the job's process; cancelled, the job gets
// SIGTERM. A job whose process had already finished, but was not yet
// reaped, when the cancel came keeps its result: drainit sees a job's end
// the moment it happens and may stop the worker before the worker has
// noticed, and pushing back a finished job would run it twice.
func waitProcess(ctx context.Context, cmd *exec.Cmd) error {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		cmd.Process.Signal(syscall.SIGTERM)
		if err := <-done; err != nil {
			return fmt.Errorf("interrupted: %w", err)
		}
		return nil
	}
}

// runJob is a job's process: its work, or exit 1 on SIGTERM.
func runJob(secs string) int {
	// The worker's quiet signal is not the job's: sent to a whole process
	// group, TSTP would suspend it.
	signal.Ignore(syscall.SIGTSTP)
	s, err := strconv.ParseFloat(secs, 64)
	if err != nil {
		log.Print(err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if work(ctx, time.Duration(s*float64(time.Second))) != nil {
		return 1
	}
	return 0
}

func (w *worker) push(name string, secs float64) {
	tmp := filepath.Join(w.queue, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf("%g\n", secs)), 0o644); err == nil {
		err = os.Rename(tmp, filepath.Join(w.queue, name+".job"))
		if err == nil {
			return
		}
	}
	log.Printf("job %s: cannot push it back; it is lost", name)
}

// stop interrupts the running jobs and waits for them to be pushed back.
func (w *worker) stop() {
	w.mu.Lock()
	for _, cancel := range w.running {
		cancel()
	}
	w.mu.Unlock()
	w.wg.Wait()
}
