// Package procjobs finds running jobs by their processes rather than by lock
// files: a process drainit has adopted (what PHP's exec("job &") leaves), or
// one whose command line matches a rule, as pgrep -f reads it. A lock file
// the job writes itself misses the job's first moments (PHP's CLI takes
// 50–300 ms to start) and outlives a crashed job; the process is there from
// the fork to the exit. Scan reads /proc once; Exits tells, through pidfds,
// the moment a process found by Scan ends; Set keeps the jobs from one scan
// to the next, by PID and start time, and watches them through Exits.
package procjobs

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Rules say which processes are running jobs.
type Rules struct {
	// Orphans: every child of Scope.Self that it did not start itself
	// (the excluded app): processes reparented to it.
	Orphans bool
	// Match: a process whose command line, NULs read as spaces, matches
	// one of these.
	Match []*regexp.Regexp
}

// Empty is true when no rule is set: nothing is ever a process job.
func (r Rules) Empty() bool { return !r.Orphans && len(r.Match) == 0 }

// String is the rules as drainit's first log line shows them.
func (r Rules) String() string {
	var s []string
	if r.Orphans {
		s = append(s, "orphans")
	}
	for _, m := range r.Match {
		s = append(s, m.String())
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ":")
}

// Scope says which processes the rules apply to.
type Scope struct {
	Self int // the caller, never a job; its children are the orphans
	// All: every process /proc shows (PID 1 of a namespace, or drainit
	// wait inside a container), else only Self's descendants.
	All bool
	// Ancestors: Self's ancestors are never jobs either (the shell that
	// runs a preStop hook, whose own command line holds the pattern).
	Ancestors bool
	Exclude   []int // never jobs: the app's main process
}

// Proc is a process that is a running job.
type Proc struct {
	PID   int
	PPID  int
	Start uint64 // start time in clock ticks after boot; with PID, its identity
	Cmd   string // its command line, NULs as spaces
}

// String names the job in logs: pid 123 (php job.php 42).
func (p Proc) String() string { return fmt.Sprintf("pid %d (%s)", p.PID, short(p.Cmd)) }

// Command is the job's command line as logs and drainit status show it,
// a long one cut short.
func (p Proc) Command() string { return short(p.Cmd) }

// userHZ is the unit of start times in /proc/PID/stat: USER_HZ, which
// sysconf(_SC_CLK_TCK) gives, 100 on every architecture drainit is built
// for.
const userHZ = 100

// Started is when p started, by the wall clock. /proc gives the start
// in ticks after boot, counted on CLOCK_BOOTTIME (suspend included, and
// shifted in a time namespace as /proc is): its age is how far
// CLOCK_BOOTTIME has gone since. The boot time of /proc/stat's btime
// would do as well, but in whole seconds. ok is false where the clock
// cannot be read.
func (p Proc) Started() (t time.Time, ok bool) {
	now := time.Now()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return time.Time{}, false
	}
	start := time.Duration(p.Start) * (time.Second / userHZ)
	return now.Add(start - time.Duration(ts.Nano())), true
}

// Began is when p's job began, as drainit status and the drain's ages
// count it: its start, or now where the clock cannot be read or the start
// would lie ahead of now.
func (p Proc) Began(now time.Time) time.Time {
	if t, ok := p.Started(); ok && t.Before(now) {
		return t
	}
	return now
}

// Child tells whether Self is p's parent, so that its exit reaches Self's
// reaper as a SIGCHLD and needs no pidfd.
func (p Proc) Child(self int) bool { return p.PPID == self }

// Scan returns the processes that are running jobs right now, by PID. A
// process that exits while it is read is left out; so are zombies, whose
// work is done.
func Scan(r Rules, sc Scope) []Proc {
	if r.Empty() {
		return nil
	}
	names, err := pids()
	if err != nil {
		return nil
	}
	skip := map[int]bool{sc.Self: true}
	for _, p := range sc.Exclude {
		skip[p] = true
	}
	if sc.Ancestors {
		for _, p := range ancestors(sc.Self) {
			skip[p] = true
		}
	}
	var buf [4096]byte
	var out []Proc
	var settling settle

	// As the namespace's init with only expressions to match, one read of
	// each command line decides, and stat is read for the few that match:
	// half the system calls of the general case.
	if sc.All && !r.Orphans {
		for _, pid := range names {
			if skip[pid] {
				continue
			}
			cmd, ok := settling.cmdline(buf[:], pid)
			if !ok || !matches(r.Match, cmd) {
				continue
			}
			st, ok := readStat(buf[:], pid)
			if !ok || st.zombie || st.kernel {
				continue
			}
			out = append(out, Proc{PID: pid, PPID: st.ppid, Start: st.start, Cmd: cmd})
		}
		return out
	}

	stats := make(map[int]stat, len(names))
	for _, pid := range names {
		// The tree of descendants needs every process; the namespace's
		// init only those that can be jobs.
		if sc.All && skip[pid] {
			continue
		}
		if st, ok := readStat(buf[:], pid); ok {
			stats[pid] = st
		}
	}
	inCare := func(int) bool { return true }
	if !sc.All {
		below := descendants(stats, sc.Self)
		inCare = func(pid int) bool { return below[pid] }
	}
	for _, pid := range names {
		st, ok := stats[pid]
		if !ok || skip[pid] || st.zombie || st.kernel || !inCare(pid) {
			continue
		}
		adopted := r.Orphans && st.ppid == sc.Self
		if !adopted && len(r.Match) == 0 {
			continue
		}
		cmd, ok := settling.cmdline(buf[:], pid)
		if !ok {
			continue
		}
		if adopted || matches(r.Match, cmd) {
			if cmd == "" {
				cmd = "[" + st.comm + "]"
			}
			out = append(out, Proc{PID: pid, PPID: st.ppid, Start: st.start, Cmd: cmd})
		}
	}
	return out
}

func matches(res []*regexp.Regexp, cmd string) bool {
	for _, re := range res {
		if re.MatchString(cmd) {
			return true
		}
	}
	return false
}

// pids lists /proc's numeric entries in ascending order. It reads the
// directory entries itself: os.File's Readdirnames would allocate a string
// for each of them, and the scan right before the stop signal is on the
// path from the last job's exit to the app's stop.
func pids() ([]int, error) {
	fd, err := unix.Open("/proc", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var out []int
	buf := make([]byte, 16<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			break
		}
		// linux_dirent64: ino (8), off (8), reclen (2), type (1), name.
		for b := buf[:n]; len(b) >= 19; {
			reclen := int(b[16]) | int(b[17])<<8
			if reclen < 19 || reclen > len(b) {
				break
			}
			name := b[19:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			if pid, ok := atoi(name); ok {
				out = append(out, pid)
			}
			b = b[reclen:]
		}
	}
	slices.Sort(out)
	return out, nil
}

// atoi reads a PID, and refuses every other name.
func atoi(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

type stat struct {
	comm   string
	ppid   int
	start  uint64
	zombie bool
	kernel bool
	// midExec: the kernel has not finished writing the new program's
	// arguments and environment (env_end is 0), as between the two halves
	// of an execve; also true for kernel threads and zombies, which have
	// no memory, and where stat hides the field.
	midExec bool
}

// pfKthread marks a kernel thread in stat's flags; as a subreaper's
// descendant or in a container's namespace there is none, but a /proc of
// the host shows them, and they are nobody's job.
const pfKthread = 0x00200000

// readStat reads /proc/PID/stat into buf; ok is false when the process is
// gone.
func readStat(buf []byte, pid int) (stat, bool) {
	b, ok := readProc(buf, pid, "stat")
	if !ok {
		return stat{}, false
	}
	// The command name can hold spaces and parentheses; the fields after
	// its last ')' are fixed: state, ppid, … flags (the 7th), … starttime
	// (the 20th), … env_end (the 49th, since Linux 3.5).
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return stat{}, false
	}
	f := bytes.Fields(b[end+1:])
	if len(f) < 20 {
		return stat{}, false
	}
	ppid, _ := strconv.Atoi(string(f[1]))
	flags, _ := strconv.ParseUint(string(f[6]), 10, 64)
	start, _ := strconv.ParseUint(string(f[19]), 10, 64)
	midExec := len(f) < 49 || string(f[48]) == "0"
	return stat{
		comm:    string(b[open+1 : end]),
		ppid:    ppid,
		start:   start,
		zombie:  f[0][0] == 'Z' || f[0][0] == 'X',
		kernel:  flags&pfKthread != 0,
		midExec: midExec,
	}, true
}

// cmdline reads /proc/PID/cmdline as pgrep -f shows it: NULs as spaces.
// A command line longer than buf is cut; an expression meant to tell jobs
// apart looks at their start.
func cmdline(buf []byte, pid int) (string, bool) {
	b, ok := readProc(buf, pid, "cmdline")
	if !ok {
		return "", false
	}
	b = bytes.TrimRight(b, "\x00")
	for i, c := range b {
		if c == 0 {
			b[i] = ' '
		}
	}
	return string(b), true
}

// execSettle bounds how long a scan waits for the command lines of
// processes caught in the middle of an execve. The kernel lets the parent go
// (the end of a vfork, the close-on-exec pipe by which Go's StartProcess
// learns that the exec worked) before it has written the new program's
// arguments, and /proc/PID/cmdline reads empty until it has. Measured
// here, a fifth of the reads made right after exec.Cmd.Start returned came
// back empty; the window lasts as long as the kernel takes to map the
// program and its loader, longer on a loaded machine. Without the wait, a
// job started just before a scan would be missed by it.
const execSettle = 250 * time.Millisecond

// settle is one scan's time for processes met mid-exec: execSettle in
// all, from the first of them, so that several cannot add up their waits.
type settle struct{ deadline time.Time }

// cmdline reads a command line, and one found empty again while stat
// says the process is mid-exec, until the scan's execSettle is spent
// (kernel threads and zombies, empty too, are not waited for). The kernel
// reads a command line as empty until it has set env_end, last of the
// new program's arguments and environment, so env_end is what tells; a
// program started with no arguments at all has it set and costs nothing.
// Where stat hides the field (another user's process, without ptrace
// rights), an empty command line is waited for to the end.
func (s *settle) cmdline(buf []byte, pid int) (string, bool) {
	if cmd, ok := cmdline(buf, pid); !ok || cmd != "" {
		return cmd, ok
	}
	if s.deadline.IsZero() {
		s.deadline = time.Now().Add(execSettle)
	}
	for {
		st, ok := readStat(buf, pid)
		if !ok {
			return "", false
		}
		// stat first: once it says the exec is done, the command line
		// read after it is the new program's.
		cmd, ok := cmdline(buf, pid)
		if !ok || cmd != "" || !st.midExec || st.zombie || st.kernel || time.Now().After(s.deadline) {
			return cmd, ok
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// readProc reads one /proc file in a single read: they are generated whole
// on open, and one read keeps a scan of a thousand processes cheap.
func readProc(buf []byte, pid int, name string) ([]byte, bool) {
	fd, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, false
	}
	defer unix.Close(fd)
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, false
		}
		return buf[:n], true
	}
}

// descendants is the set of processes below root.
func descendants(stats map[int]stat, root int) map[int]bool {
	kids := map[int][]int{}
	for pid, st := range stats {
		kids[st.ppid] = append(kids[st.ppid], pid)
	}
	out := map[int]bool{}
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, k := range kids[p] {
			if !out[k] {
				out[k] = true
				queue = append(queue, k)
			}
		}
	}
	return out
}

// ancestors lists pid's parent, its parent's parent and so on, up to the
// one whose parent is outside the namespace (0).
func ancestors(pid int) []int {
	var buf [4096]byte
	var out []int
	for range 1024 { // a loop in a racing read must not hang
		st, ok := readStat(buf[:], pid)
		if !ok || st.ppid <= 0 {
			break
		}
		pid = st.ppid
		out = append(out, pid)
	}
	return out
}

// short keeps a long command line (a shell script) from filling a log line.
func short(s string) string {
	const max = 80
	if r := []rune(s); len(r) > max {
		return string(r[:max]) + "…"
	}
	return s
}
