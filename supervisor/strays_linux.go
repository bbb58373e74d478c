package supervisor

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// signalStrays sends sig to every process left in drainit's care and reports
// how many there were. As PID 1 of a namespace that is everything else in
// it, which kill(-1) reaches at once, descendants or not (a job started by
// kubectl exec has the runtime as parent). As a subreaper it is drainit's
// descendants, found through /proc: kill(-1) there would hit every process
// the user owns.
func (s *state) signalStrays(sig syscall.Signal) int {
	if s.pid1 {
		n := len(others())
		if err := unix.Kill(-1, sig); err != nil && err != unix.ESRCH {
			s.log.Warn("cannot signal the remaining processes", "signal", sig, "err", err)
		}
		return n
	}
	pids := descendants(os.Getpid())
	for _, pid := range pids {
		if err := unix.Kill(pid, sig); err != nil && err != unix.ESRCH {
			s.log.Debug("cannot signal stray", "pid", pid, "err", err)
		}
	}
	return len(pids)
}

// others lists every process /proc shows but drainit, as PID 1 the rest of
// its namespace.
func others() []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid != os.Getpid() {
			out = append(out, pid)
		}
	}
	return out
}

// descendants lists the processes below root, read from /proc/*/stat.
func descendants(root int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	kids := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		// The command name can hold spaces and parentheses; the fields
		// after its last ')' are fixed: state, then ppid.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		kids[ppid] = append(kids[ppid], pid)
	}
	var out []int
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, k := range kids[p] {
			out = append(out, k)
			queue = append(queue, k)
		}
	}
	return out
}

// aloneInNamespace reports whether drainit, as PID 1, is the only process
// left in its PID namespace. kill(-1, 0) delivers nothing: the kernel walks
// every process under the tasklist lock and fails with ESRCH only when it
// found none but the caller in the caller's namespace (zombies and nested
// namespaces included). Unlike a read of /proc it is one atomic look, and it
// needs no /proc mounted for this namespace: a host /proc would show other
// processes forever. EPERM or any other answer means someone is there.
func aloneInNamespace() bool {
	return errors.Is(unix.Kill(-1, 0), unix.ESRCH)
}
