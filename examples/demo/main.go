// Command demo is a small web app that starts background jobs the way a PHP
// app does with exec("job &"): each job is orphaned at once, so that in a
// container it is reparented to PID 1, and holds a lock file while it runs.
// It is what drainit's README demo and container tests run.
//
//	demo [serve]                   serve HTTP (the default)
//	demo job NAME SECONDS [LOCK]   a job: write LOCK (if given), work, remove it
//	demo detach COMMAND [ARG...]   start COMMAND and exit without waiting for it
//
// The server is set by variables:
//
//	DEMO_ADDR       where to listen (127.0.0.1:8080; 0.0.0.0:8080 in a container)
//	DEMO_LOCKS      the lock directory (/app/lock), drainit's DRAINIT_LOCK=/app/lock/*.lock
//	DEMO_DRAINIT    the drainit binary for `drainit lock` (drainit, from PATH)
//	DEMO_EXIT_CODE  the code it exits with after SIGTERM or SIGINT (0)
//	DEMO_LAUNCH     how jobs are orphaned: sh (sh -c 'job &'), self (demo
//	                detach) or auto (sh if /bin/sh exists; a FROM scratch
//	                image has none)
//
// Endpoints:
//
//	GET  /                                    200 "ok"
//	POST /jobs?name=X&seconds=N&kind=K        start job X for N seconds (fractions allowed);
//	                                          K is wrapped (held through `drainit lock
//	                                          LOCKS/X.lock -- demo job …`) or own (the job
//	                                          writes LOCKS/X.lock itself); by default the
//	                                          two alternate
//
// On SIGTERM or SIGINT it stops taking connections, lets in-flight requests
// finish and exits. Under drainit it gets that signal only once every job's
// lock is gone, or drainit's budget is spent.
package main

import (
	"fmt"
	"os"
)

func main() {
	args := os.Args[1:]
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		os.Exit(serve(os.Getenv))
	case "job":
		os.Exit(job(args))
	case "detach":
		os.Exit(detach(args))
	}
	fmt.Fprintf(os.Stderr, "demo: unknown command %q; usage: demo [serve] | demo job NAME SECONDS [LOCK] | demo detach COMMAND [ARG...]\n", cmd)
	os.Exit(2)
}
