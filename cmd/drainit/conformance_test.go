package main_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// conformance is one behaviour that tini's or dumb-init's own test suite
// asserts and that drainit means to share. A case runs drainit with args,
// waits for each of lines in order, checks the exit code and that no line
// matches absent; check, when set, reads the whole output.
type conformance struct {
	name   string
	from   string   // whose suite asserts it: tini, dumb-init or both; drainit for a deliberate difference (README)
	args   []string // drainit's arguments: flags, --, the command
	env    []string
	wrap   func() []string // what starts drainit: a mask, nohup, ...
	lines  []string        // regexps, in order
	absent []string        // regexps no line may match
	send   syscall.Signal  // sent to drainit once lines are seen
	code   int
	check  func(t *testing.T, m mode, out string)
}

// TestConformance runs the table below as a real PID 1 and as a
// subreaper, with and without --group. Behaviours of those suites that
// other tests already cover, in every mode too:
//
//   - every forwardable signal reaches the app, and which ones drainit
//     keeps: TestForwardsSignals
//   - zombies and orphans are reaped: TestReapsOrphans,
//     TestSubreaperAdoptsOrphans
//   - what the app leaves behind is ended when it exits: TestEndsStrays,
//     TestKillsStubbornStrays
//   - Ctrl-C on a terminal reaches the app, which owns the terminal's
//     foreground: TestCtrlCOnTerminal; stdin and stdout pass through:
//     TestStdioPassesThrough
//   - repeated SIGTERM does not kill drainit: TestRepeatedTerm
//
// The deliberate differences (one-shot TERM, the stop timeout, strays
// always ended, exit 2 for bad flags) are in the README's "Coming from tini
// or dumb-init".
func TestConformance(t *testing.T) {
	dir := t.TempDir()
	script := func(name, content string, perm os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), perm); err != nil {
			t.Fatal(err)
		}
		return p
	}
	noShebang := script("no-shebang", "echo \"hi $0 $1\"\nexit 7\n", 0o755)
	notExec := script("not-exec", "echo never\n", 0o644)
	sigblock := buildSigblock(t)
	blockAll := func() []string { return []string{sigblock, allSignals, "--"} }
	blockCI := func() []string { return []string{sigblock, "TERM,USR1,INT,HUP", "--"} }
	launch := func() []string { return []string{selfBin} } // with HELPER=launch: INT ignored, USR2 blocked
	status := []string{"grep", "^Sig[BI]", "/proc/self/status"}

	var cases []conformance
	// The app's exit code is drainit's (tini: exit codes 0-255;
	// dumb-init: test_exit_status_regular_exit). A sample with every bit
	// set once and the shell's own codes: all 256 take 20 s more in each
	// CI pass, and every code goes through the same wait status.
	for _, n := range []int{0, 1, 2, 3, 4, 8, 16, 32, 42, 64, 126, 127, 128, 129, 143, 200, 254, 255} {
		cases = append(cases, conformance{name: fmt.Sprintf("exit/%d", n), from: "both",
			env: helper("exit"), args: []string{"--", selfBin, strconv.Itoa(n)}, code: n})
	}
	// Killed by signal S: 128+S, as a shell reports it (dumb-init:
	// test_exit_status_terminated_by_signal; tini: the signal tests).
	for _, s := range []syscall.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGABRT,
		syscall.SIGKILL, syscall.SIGUSR1, syscall.SIGSEGV, syscall.SIGUSR2, syscall.SIGTERM} {
		cases = append(cases, conformance{name: fmt.Sprintf("killed/%d", s), from: "both",
			args: []string{"--", "sh", "-c", fmt.Sprintf("kill -%d $$", s)}, code: 128 + int(s)})
	}
	cases = append(cases,
		// A command that cannot start: a shell's codes, as tini exits
		// (127 for ENOENT, 126 for the rest). dumb-init exits 2 for any
		// failed exec (dumb-init.c: "return 2" after execvp): a
		// deliberate difference, in the README.
		conformance{name: "notfound/PATH", from: "tini", args: []string{"--", "no-such-command-drainit"}, code: 127,
			lines: []string{`error: no-such-command-drainit: command not found in PATH`}},
		conformance{name: "notfound/path", from: "tini", args: []string{"--", "/no/such/file"}, code: 127},
		conformance{name: "notexecutable", from: "tini", args: []string{"--", notExec}, code: 126,
			lines: []string{`permission denied`}, absent: []string{`^never$`}},
		conformance{name: "notexecutable/PATH", from: "tini", env: []string{"PATH=" + dir + ":" + os.Getenv("PATH")},
			args: []string{"--", "not-exec"}, code: 126, lines: []string{`not-exec: permission denied`}},
		conformance{name: "directory", from: "tini", args: []string{"--", dir}, code: 126},

		// A script without a #! line runs through /bin/sh, as execvp
		// runs it, by path or found in PATH.
		conformance{name: "noshebang/path", from: "both", args: []string{"--", noShebang, "x"}, code: 7,
			lines: []string{`^hi ` + regexp.QuoteMeta(noShebang) + ` x$`}},
		conformance{name: "noshebang/PATH", from: "both", env: []string{"PATH=" + dir + ":" + os.Getenv("PATH")},
			args: []string{"--", "no-shebang", "y"}, code: 7, lines: []string{`^hi ` + regexp.QuoteMeta(noShebang) + ` y$`}},

		// The app runs in a process group of its own (dumb-init: setsid
		// mode; tini: the process group test); with --group a signal
		// reaches its whole group, a background child of a shell app too
		// (tini -g). The shell dies of the USR1; drainit then ends the
		// child with TERM.
		conformance{name: "own-group", from: "both", env: helper("signals", "HELPER_EXIT_ON=10"),
			args: []string{"--", selfBin}, lines: []string{`^ready pid=(\d+) pgid=(\d+)`}, send: syscall.SIGUSR1,
			check: func(t *testing.T, m mode, out string) {
				f := regexp.MustCompile(`(?m)^ready pid=(\d+) pgid=(\d+)`).FindStringSubmatch(out)
				if f[1] != f[2] {
					t.Errorf("app pid %s is in process group %s, want its own", f[1], f[2])
				}
			}},
		conformance{name: "group", from: "tini", env: helper("signals", "HELPER_EXIT_ON=15"),
			args: []string{"--", "sh", "-c", `"$0" & wait`, selfBin}, lines: []string{`^ready`}, send: syscall.SIGUSR1,
			code: 128 + int(syscall.SIGUSR1),
			check: func(t *testing.T, m mode, out string) {
				got := regexp.MustCompile(`(?m)^signal 10$`).MatchString(out)
				if got != m.group {
					t.Errorf("the app's background child got USR1: %v; want %v (--group %v)", got, m.group, m.group)
				}
			}},

		// --exit-ok, tini's -e: listed codes are 0, matched against the
		// code drainit would exit with (so 143 is a JVM's exit(143) and
		// a death by SIGTERM alike); others pass through.
		conformance{name: "exit-ok/exit", from: "tini", env: helper("exit"),
			args: []string{"--exit-ok", "143", "--", selfBin, "143"}, code: 0, lines: []string{`listed in --exit-ok: exiting 0 app-code=143`, `exiting code=0$`}},
		conformance{name: "exit-ok/signal", from: "tini",
			args: []string{"--exit-ok", "130,143", "--", "sh", "-c", "kill -TERM $$"}, code: 0},
		conformance{name: "exit-ok/other", from: "tini", env: helper("exit"),
			args: []string{"--exit-ok", "143", "--exit-ok", "130", "--", selfBin, "1"}, code: 1},
		conformance{name: "exit-ok/variable", from: "tini", env: helper("exit", "DRAINIT_EXIT_OK=3:143"),
			args: []string{"--", selfBin, "3"}, code: 0},
		// An app that runs and exits 127 or 126 is an app's code like
		// any other; drainit's own 127 and 126, for a COMMAND that could
		// not start, are never turned into 0 (tini's -e would: its child
		// exits 127 after the failed exec).
		conformance{name: "exit-ok/app-127", from: "tini", env: helper("exit"),
			args: []string{"--exit-ok", "126,127", "--", selfBin, "127"}, code: 0, lines: []string{`listed in --exit-ok: exiting 0 app-code=127`}},
		conformance{name: "exit-ok/notfound", from: "drainit",
			args: []string{"--exit-ok", "127", "--", "no-such-command-drainit"}, code: 127, absent: []string{`--exit-ok`}},
		conformance{name: "exit-ok/notexecutable", from: "drainit",
			args: []string{"--exit-ok", "126", "--", notExec}, code: 126, absent: []string{`--exit-ok`}},
		conformance{name: "exit-ok/bad", from: "tini",
			args: []string{"--exit-ok", "256", "--", "sh", "-c", "echo started"}, code: 2,
			lines: []string{`^drainit: --exit-ok="256": not an exit code; use numbers from 0 to 255`}, absent: []string{`^started$`}},

		// The signal state the app starts with, as the README says it:
		// ignored signals stay ignored; the start mask is kept, less the
		// signals the Go runtime unblocks (tini keeps the whole mask).
		conformance{name: "mask/all", from: "tini", wrap: blockAll, args: append([]string{"--"}, status...),
			check: func(t *testing.T, m mode, out string) {
				wantMask(t, out, "SigBlk", startMaskLessGo(allSignalsMask()))
			}},
		conformance{name: "mask/ci", from: "tini", wrap: blockCI, args: append([]string{"--"}, status...),
			check: func(t *testing.T, m mode, out string) {
				wantMask(t, out, "SigBlk", 1<<(syscall.SIGUSR1-1))
			}},
		conformance{name: "ignored/nohup", from: "tini", wrap: func() []string { return []string{"nohup"} },
			args: append([]string{"--"}, status...),
			check: func(t *testing.T, m mode, out string) {
				wantMask(t, out, "SigIgn", 1<<(syscall.SIGHUP-1))
			}},
		conformance{name: "ignored/launcher", from: "tini", wrap: launch, env: helper("launch"),
			args: append([]string{"--"}, status...),
			check: func(t *testing.T, m mode, out string) {
				wantMask(t, out, "SigIgn", 1<<(syscall.SIGINT-1))
				wantMask(t, out, "SigBlk", 1<<(syscall.SIGUSR2-1))
			}},
	)

	forEachMode(t, func(t *testing.T, m mode) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				o := opts{env: c.env}
				if c.wrap != nil {
					o.wrap = c.wrap()
				}
				p := start(t, m, o, c.args...)
				for _, l := range c.lines {
					p.waitLine(l, long)
				}
				if c.send != 0 {
					p.signal(c.send)
				}
				if code := p.wait(long); code != c.code {
					t.Errorf("exit code %d, want %d (%s)", code, c.code, c.from)
				}
				out := p.transcript()
				for _, a := range c.absent {
					if regexp.MustCompile(`(?m)` + a).MatchString(out) {
						t.Errorf("a line matches %q (%s)", a, c.from)
					}
				}
				if c.check != nil {
					c.check(t, m, out)
				}
				if t.Failed() {
					t.Logf("output:\n%s", out)
				}
			})
		}
	})
}

// goUnblocks are the signals the Go runtime (1.26, not a c-archive)
// unblocks in every thread, whatever mask the process started with:
// _SigUnblock, _SigKill and _SigThrow in runtime/sigtab_linux_generic.go,
// and SIGURG for asynchronous preemption (blockableSig in
// runtime/signal_unix.go). The README lists them.
var goUnblocks = []syscall.Signal{
	syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGILL, syscall.SIGTRAP,
	syscall.SIGABRT, syscall.SIGBUS, syscall.SIGFPE, syscall.SIGSEGV, syscall.SIGSTKFLT,
	syscall.SIGTERM, syscall.SIGCHLD, syscall.SIGURG, syscall.SIGPROF, syscall.SIGSYS,
	32, 33, 34,
}

// allSignals is every signal that can be blocked, for sigblock.
var allSignals = func() string {
	var s []string
	for sig := 1; sig <= 64; sig++ {
		if sig != int(syscall.SIGKILL) && sig != int(syscall.SIGSTOP) {
			s = append(s, strconv.Itoa(sig))
		}
	}
	return strings.Join(s, ",")
}()

func allSignalsMask() uint64 {
	return ^uint64(0) &^ (1 << (syscall.SIGKILL - 1)) &^ (1 << (syscall.SIGSTOP - 1))
}

func startMaskLessGo(start uint64) uint64 {
	for _, s := range goUnblocks {
		start &^= 1 << (uint(s) - 1)
	}
	return start
}

// wantMask checks a mask line of /proc/PID/status ("SigBlk:\t00...0200").
func wantMask(t *testing.T, out, field string, want uint64) {
	t.Helper()
	f := regexp.MustCompile(`(?m)^` + field + `:\s*([0-9a-f]+)$`).FindStringSubmatch(out)
	if f == nil {
		t.Errorf("no %s line", field)
		return
	}
	got, err := strconv.ParseUint(f[1], 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("the app's %s is %016x, want %016x (%s more, %s fewer)", field, got, want,
			sigNames(got&^want), sigNames(want&^got))
	}
}

func sigNames(mask uint64) string {
	var s []string
	for sig := 1; sig <= 64; sig++ {
		if mask&(1<<(sig-1)) != 0 {
			s = append(s, strconv.Itoa(sig))
		}
	}
	if s == nil {
		return "none"
	}
	return strings.Join(s, ",")
}

// buildSigblock builds internal/testkit/sigblock next to drainit.
func buildSigblock(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(filepath.Dir(drainitBin), "sigblock")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	out, err := exec.Command("go", "build", "-o", bin, "github.com/drainit/drainit/internal/testkit/sigblock").CombinedOutput()
	if err != nil {
		t.Fatalf("building sigblock: %v\n%s", err, out)
	}
	return bin
}
