package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/drainit/drainit/supervisor/status"
)

// runStatus is drainit status: what the drainit of this container is doing,
// read from its state file. Exit 0 with the report, 1 when no drainit runs
// (or its file cannot be read), 2 for bad flags.
func runStatus(args []string) int {
	path, asJSON, err := parseStatus(args, os.LookupEnv)
	if errors.Is(err, errStateOff) {
		fmt.Fprintf(os.Stderr, "drainit status: %v; unset it, or set it to the path drainit was given, to read drainit's state\n", err)
		return 1
	}
	if err != nil {
		return fail(err, statusUsage)
	}
	st, err := status.Read(path)
	switch {
	case errors.Is(err, status.ErrNone):
		fmt.Fprintf(os.Stderr, "drainit status: %v; run it inside drainit's container (kubectl exec POD -- drainit status), with the --state (DRAINIT_STATE) drainit was given\n", err)
		return 1
	case err != nil:
		fmt.Fprintf(os.Stderr, "drainit status: %v; point --state (DRAINIT_STATE) at the file drainit writes\n", err)
		return 1
	}
	now := time.Now()
	if asJSON {
		err = status.JSON(os.Stdout, st, now)
	} else {
		err = status.Text(os.Stdout, st, now)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "drainit status: %v\n", err)
		return 1
	}
	return 0
}

func statusOptions(path *string, asJSON *bool, lookup lookupEnv) *options {
	o := newOptions("drainit status", lookup)
	o.boolean("json", asJSON, "print the state as JSON, with ages and time left computed")
	*path = status.DefaultPath
	// DRAINIT_STATE='' means to drainit status what it means to drainit.
	o.path("state", path, "the file drainit keeps its state in").emptyIsValue = true
	return o
}

// errStateOff: the container's DRAINIT_STATE turns drainit's state file
// off, so there is none to read.
var errStateOff = errors.New("DRAINIT_STATE is set to '', which tells drainit to keep no state file")

func parseStatus(args []string, lookup lookupEnv) (path string, asJSON bool, err error) {
	o := statusOptions(&path, &asJSON, lookup)
	rest, err := o.parse(args)
	if err != nil {
		return "", false, err
	}
	if len(rest) > 0 {
		return "", false, usagef("drainit status takes no arguments, got %q; usage: drainit status [--json] [--state PATH]", rest[0])
	}
	if path == "" {
		if o.fs.Lookup("state").Value.(*value).src == envName("state") {
			return "", false, errStateOff
		}
		return "", false, usagef("--state is empty: drainit status reads the file drainit keeps its state in; give its path, like %s", status.DefaultPath)
	}
	return path, asJSON, nil
}

func statusUsage(f *os.File) {
	fmt.Fprint(f, `usage: drainit status [--json] [--state PATH]

Tells what the drainit of this container is doing: its phase, the app's PID,
each held job and how long it has been held, when the stop came and how long
is left. Run it inside the container: kubectl exec POD -- drainit status.
Exits 1 when no drainit runs there.

flags (each also set by the variable in brackets):
`)
	var path string
	var asJSON bool
	statusOptions(&path, &asJSON, noEnv).printDefaults(f)
}
