// Command drainit-bench measures drainit beside the alternatives, in one run
// on one machine, and prints one table:
//
//	go run ./cmd/drainit-bench            # a few minutes on 2 cores
//	go run ./cmd/drainit-bench -quick     # a smaller run, under a minute
//
// The scale-down scenario: N pods, each a fresh PID namespace (unshare --pid
// --fork --mount-proc) whose PID 1 is the init under test, each app running K
// background jobs that hold lock files, each with a random amount of work
// left when all are told to stop at
// once with a grace deadline after which the pod is killed, as the kubelet
// does. Per init: jobs lost, how long a pod lingers after its last job, and
// the time from the stop to the pod's exit. Rows: no init (the app is PID 1),
// tini, tini -g, dumb-init, the preStop loop (the real `ls lock/*.lock;
// sleep 10` loop run before SIGTERM, with tini as init) and drainit.
//
// Then log volume: the lines drainit logs in one drain while a busy app's
// short jobs come and go, with -baseline beside another build of drainit.
//
// Then overhead: start-to-exit of `init -- /bin/true`; idle RSS, CPU and
// wakeups over a window with a lock pattern configured; release → stop
// signal latency with 1 and 10,000 locks and drainit's peak RSS; binary
// size; reaping a burst of orphans as PID 1.
//
// It installs nothing. tini and dumb-init must be on PATH (apt-get update &&
// apt-get install -y tini dumb-init); unshare (util-linux) and root, or
// unprivileged user namespaces, for the PID namespaces. It builds drainit from
// this module the way it ships: CGO_ENABLED=0 -trimpath -ldflags='-s -w'.
// No network is used.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/drainit/drainit/internal/benchapp"
)

type config struct {
	pods, jobs        int
	jobMin, jobMax    time.Duration
	grace             time.Duration
	idle              time.Duration
	startRuns         int
	releaseRuns       int
	release10kRuns    int
	orphans, reapRuns int
	drainit           string
	baseline          string
	churnRuns         int
	churnJobs         int
	churnFor          time.Duration
	built             bool // drainit was built here from this module
	allowMissing      bool
	tini, dumbInit    string
	self, work        string
	unshare           []string
}

func main() {
	benchapp.Main()
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role, os.Args[1:]))
	}
	os.Exit(run())
}

func run() int {
	var c config
	quick := flag.Bool("quick", false, "a smaller, shorter run: fewer pods, jobs and runs, a 5s idle window")
	flag.IntVar(&c.pods, "pods", 10, "pods in the scale-down scenario")
	flag.IntVar(&c.jobs, "jobs", 5, "background jobs per pod")
	flag.DurationVar(&c.jobMin, "job-min", 500*time.Millisecond, "shortest job")
	flag.DurationVar(&c.jobMax, "job-max", 3*time.Second, "longest job")
	flag.DurationVar(&c.grace, "grace", 30*time.Second, "the pods' grace period (terminationGracePeriodSeconds)")
	flag.DurationVar(&c.idle, "idle", 60*time.Second, "the window over which idle CPU and RSS are measured")
	flag.IntVar(&c.startRuns, "start-runs", 200, "runs of `init -- /bin/true` per init")
	flag.IntVar(&c.releaseRuns, "release-runs", 50, "drains of one lock")
	flag.IntVar(&c.release10kRuns, "release10k-runs", 5, "drains of 10,000 locks")
	flag.IntVar(&c.orphans, "orphans", 3000, "orphans in the reaping burst")
	flag.IntVar(&c.reapRuns, "reap-runs", 3, "reaping bursts per init")
	flag.StringVar(&c.drainit, "drainit", "", "a drainit binary to measure (default: build this module's, static and stripped)")
	flag.StringVar(&c.baseline, "baseline", "", "another drainit binary, measured beside it in the churn step (e.g. one built from main)")
	flag.IntVar(&c.churnRuns, "churn-runs", 3, "drains per kind of churn and binary")
	flag.IntVar(&c.churnJobs, "churn-jobs", 3000, "short jobs in one churn drain")
	flag.DurationVar(&c.churnFor, "churn-for", 10*time.Second, "how long the churn of one drain lasts")
	only := flag.String("only", "", "run only these steps, comma-separated: scale-down, start, release, jobs, churn, reap, size, idle")
	keep := flag.Bool("keep", false, "keep the work directory, with every pod's output, and say where it is")
	flag.BoolVar(&c.allowMissing, "allow-missing", false, "run without tini or dumb-init, leaving their columns empty")
	flag.Parse()
	if *quick {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		quickly := func(name string, apply func()) {
			if !set[name] {
				apply()
			}
		}
		quickly("pods", func() { c.pods = 4 })
		quickly("jobs", func() { c.jobs = 3 })
		quickly("job-max", func() { c.jobMax = 1500 * time.Millisecond })
		quickly("idle", func() { c.idle = 5 * time.Second })
		quickly("start-runs", func() { c.startRuns = 50 })
		quickly("release-runs", func() { c.releaseRuns = 15 })
		quickly("release10k-runs", func() { c.release10kRuns = 2 })
		quickly("orphans", func() { c.orphans = 1000 })
		quickly("reap-runs", func() { c.reapRuns = 1 })
		quickly("churn-runs", func() { c.churnRuns = 1 })
		quickly("churn-for", func() { c.churnFor = 5 * time.Second })
		quickly("churn-jobs", func() { c.churnJobs = 1500 })
	}
	if c.grace <= 11*time.Second {
		fmt.Fprintln(os.Stderr, "drainit-bench: -grace must be more than 11s (drainit's --stop-timeout 10s + 1s)")
		return 2
	}
	if err := setup(&c); err != nil {
		fmt.Fprintln(os.Stderr, "drainit-bench:", err)
		return 2
	}
	if *keep {
		defer progress("work directory kept: %s", c.work)
	} else {
		defer os.RemoveAll(c.work)
	}

	// Ctrl-C: end every process started so far, then leave.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs
		killAll()
		os.RemoveAll(c.work)
		os.Exit(130)
	}()
	defer killAll()

	want := func(step string) bool {
		return *only == "" || slices.Contains(strings.Split(*only, ","), step)
	}
	t := newTable()
	began := time.Now()
	var idle *idleRun
	if want("idle") {
		progress("idle window of %v starts; it runs beside the rest", c.idle)
		var err error
		if idle, err = startIdle(&c); err != nil {
			fmt.Fprintln(os.Stderr, "drainit-bench:", err)
			return 1
		}
	}
	steps := []struct {
		name, what string
		f          func(*config, *table) error
	}{
		{"scale-down", "the scale-down scenario", scaleDown},
		{"start", "start-to-exit", startToExit},
		{"release", "release → stop signal", releaseToStop},
		{"jobs", "last job's exit → stop signal", jobExitToStop},
		{"churn", "log lines per drain under job churn", churnLines},
		{"reap", "reaping", reaping},
		{"size", "binary size", binarySize},
	}
	for _, s := range steps {
		if !want(s.name) {
			continue
		}
		progress("%s", s.what)
		if err := s.f(&c, t); err != nil {
			fmt.Fprintf(os.Stderr, "drainit-bench: %s: %v\n", s.name, err)
			return 1
		}
	}
	if idle != nil {
		progress("waiting for the idle window to end")
		if err := idle.finish(t); err != nil {
			fmt.Fprintln(os.Stderr, "drainit-bench:", err)
			return 1
		}
	}
	progress("done in %v", time.Since(began).Round(time.Second))

	fmt.Println()
	fmt.Println(machine())
	fmt.Printf("command: go run ./cmd/drainit-bench %s\n", strings.Join(os.Args[1:], " "))
	fmt.Printf("scenario: %d pods × %d jobs, each with %v–%v of work left at the stop, all stopped at once, grace %v; drainit --lock DIR/*.lock --grace %v\n\n",
		c.pods, c.jobs, c.jobMin, c.jobMax, c.grace, c.grace)
	t.print(os.Stdout)
	fmt.Println()
	t.printTargets(os.Stdout)
	return 0
}

// setup finds the tools, makes the work directory and builds drainit.
func setup(c *config) error {
	var missing []string
	for _, tool := range []struct {
		name string
		dst  *string
	}{{"tini", &c.tini}, {"dumb-init", &c.dumbInit}} {
		p, err := exec.LookPath(tool.name)
		if err != nil {
			missing = append(missing, tool.name)
			continue
		}
		*tool.dst = p
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("%s not found on PATH; install with: apt-get update && apt-get install -y tini dumb-init (this tool installs nothing)", strings.Join(missing, " and "))
		if !c.allowMissing {
			return fmt.Errorf("%s, or run with -allow-missing to leave their columns empty", msg)
		}
		progress("%s; their columns stay empty", msg)
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		return fmt.Errorf("unshare not found: apt-get install -y util-linux")
	}
	c.unshare = []string{"unshare", "--pid", "--fork", "--mount-proc"}
	if os.Geteuid() != 0 {
		// A user namespace of one's own makes the PID namespace possible
		// without root where the kernel allows unprivileged ones.
		c.unshare = []string{"unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc"}
	}
	if out, err := exec.Command(c.unshare[0], append(c.unshare[1:], "true")...).CombinedOutput(); err != nil {
		return fmt.Errorf("cannot make a PID namespace (%s true): %v %s; run as root", strings.Join(c.unshare, " "), err, out)
	}
	var err error
	if c.self, err = os.Executable(); err != nil {
		return err
	}
	if c.work, err = os.MkdirTemp("", "drainit-bench"); err != nil {
		return err
	}
	// drainit keeps its state file by default, and that cost belongs in
	// the figures; but in the work directory, not the machine's
	// /run/drainit, unless the caller chose a path.
	if _, ok := os.LookupEnv("DRAINIT_STATE"); !ok {
		os.Setenv("DRAINIT_STATE", filepath.Join(c.work, "state.json"))
	}
	if c.drainit == "" {
		c.drainit = filepath.Join(c.work, "drainit")
		progress("building drainit: CGO_ENABLED=0 go build -trimpath -ldflags='-s -w'")
		build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", c.drainit, "github.com/drainit/drainit/cmd/drainit")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("building drainit (run from inside the drainit module): %w", err)
		}
		c.built = true
	}
	return nil
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "drainit-bench %s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// machine is the line that says where the numbers come from.
func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel := "unknown kernel"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	load := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = ", load " + strings.Join(strings.Fields(string(b))[:3], " ")
	}
	return fmt.Sprintf("machine: %d CPUs, %s, Linux %s, %s%s; %s",
		runtime.NumCPU(), cpu, kernel, runtime.Version(), load, time.Now().UTC().Format("2006-01-02 15:04 UTC"))
}
