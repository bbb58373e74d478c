package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// config is the server's settings, from DEMO_* variables.
type config struct {
	addr, locks, drainit, launch string
	exitCode                     int
}

func loadConfig(getenv func(string) string) (config, error) {
	c := config{
		addr:    or(getenv("DEMO_ADDR"), "127.0.0.1:8080"),
		locks:   or(getenv("DEMO_LOCKS"), "/app/lock"),
		drainit: or(getenv("DEMO_DRAINIT"), "drainit"),
		launch:  or(getenv("DEMO_LAUNCH"), "auto"),
	}
	if s := getenv("DEMO_EXIT_CODE"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > 255 {
			return c, fmt.Errorf("DEMO_EXIT_CODE=%q: want a number from 0 to 255", s)
		}
		c.exitCode = n
	}
	switch c.launch {
	case "auto":
		c.launch = "self"
		if _, err := os.Stat("/bin/sh"); err == nil {
			c.launch = "sh"
		}
	case "sh", "self":
	default:
		return c, fmt.Errorf("DEMO_LAUNCH=%q: want sh, self or auto", c.launch)
	}
	return c, nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func serve(getenv func(string) string) int {
	log.SetFlags(0)
	log.SetPrefix("demo: ")
	c, err := loadConfig(getenv)
	if err != nil {
		log.Print(err)
		return 2
	}
	self, err := os.Executable()
	if err != nil {
		log.Print(err)
		return 1
	}
	if err := os.MkdirAll(c.locks, 0o755); err != nil {
		log.Print(err)
		return 1
	}
	// Caught before listening, so that a signal that comes as soon as the
	// port is open is handled, not fatal.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	other := make(chan os.Signal, 4)
	signal.Notify(other, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGHUP)

	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		log.Print(err)
		return 1
	}
	s := &server{config: c, self: self}
	srv := &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Printf("listening on %s (jobs orphaned by %s, locks in %s)", ln.Addr(), c.launch, c.locks)

	for {
		select {
		case sig := <-other:
			log.Printf("got %s", sigName(sig))
		case sig := <-stop:
			log.Printf("got %s: finishing in-flight requests", sigName(sig))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := srv.Shutdown(ctx)
			cancel()
			if err != nil {
				log.Printf("shutdown: %v", err)
			}
			log.Printf("exiting with %d", c.exitCode)
			return c.exitCode
		case err := <-served:
			log.Print(err)
			return 1
		}
	}
}

func sigName(sig os.Signal) string {
	switch sig {
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGUSR1:
		return "SIGUSR1"
	case syscall.SIGUSR2:
		return "SIGUSR2"
	case syscall.SIGHUP:
		return "SIGHUP"
	}
	return sig.String()
}

type server struct {
	config
	self string
	n    atomic.Int64 // jobs started, for default names and kinds
}

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("POST /jobs", s.startJob)
	return mux
}

var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$`)

func (s *server) startJob(w http.ResponseWriter, r *http.Request) {
	n := s.n.Add(1)
	q := r.URL.Query()
	name := or(q.Get("name"), fmt.Sprintf("job-%d", n))
	if !validName.MatchString(name) {
		http.Error(w, "name: letters, digits, - and _ only", http.StatusBadRequest)
		return
	}
	secs := or(q.Get("seconds"), "10")
	if d, err := strconv.ParseFloat(secs, 64); err != nil || d < 0 {
		http.Error(w, "seconds: want a number of seconds", http.StatusBadRequest)
		return
	}
	kind := q.Get("kind")
	if kind == "" {
		kind = []string{"wrapped", "own"}[n%2]
	}
	lock := filepath.Join(s.locks, name+".lock")
	var argv []string
	switch kind {
	case "wrapped":
		argv = []string{s.drainit, "lock", lock, "--", s.self, "job", name, secs}
	case "own":
		argv = []string{s.self, "job", name, secs, lock}
	default:
		http.Error(w, "kind: wrapped or own", http.StatusBadRequest)
		return
	}
	if err := s.orphan(argv); err != nil {
		log.Printf("job %s: cannot start: %v", name, err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusAccepted)
	fmt.Fprintf(w, "job %s (%s, %ss, lock %s)\n", name, kind, secs, lock)
}

// orphan starts argv in the background and returns once it runs, without
// keeping it as a child: like PHP's exec("job &"), the job's parent (sh,
// or demo detach in an image without a shell) exits at once, so the job is
// reparented to PID 1, drainit, which reaps it when it ends.
func (s *server) orphan(argv []string) error {
	var cmd []string
	switch s.launch {
	case "sh":
		cmd = append([]string{"/bin/sh", "-c", `"$@" &`, "sh"}, argv...)
	default:
		cmd = append([]string{s.self, "detach"}, argv...)
	}
	p, err := os.StartProcess(cmd[0], cmd, &os.ProcAttr{Files: []*os.File{os.Stdin, os.Stdout, os.Stderr}})
	if err != nil {
		return err
	}
	// The launcher exits as soon as the job is started: this wait is
	// short, and it reaps the launcher, not the job.
	st, err := p.Wait()
	if err != nil {
		return err
	}
	if !st.Success() {
		return errors.New("launcher " + st.String())
	}
	return nil
}
