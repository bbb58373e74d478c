package main

import (
	"fmt"
	"os"

	"github.com/drainit/drainit/signals"
)

func runWait(args []string, caught *signals.Caught) int {
	fmt.Fprintln(os.Stderr, "drainit: wait is not in this build yet; use drainit as the ENTRYPOINT with --lock instead")
	return 2
}

func runLock(args []string, caught *signals.Caught) int {
	fmt.Fprintln(os.Stderr, "drainit: lock is not in this build yet; write the lock file from the job itself")
	return 2
}
