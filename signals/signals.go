// Package signals names, parses and classifies Linux signals for drainit,
// and delivers them to a process or a process group.
//
// Everything here except Send is pure: parsing "TERM", "SIGTERM" or "15",
// deciding which signals an init should forward and which it must keep for
// itself. Keeping that decision in one table, rather than in a switch spread
// over the supervisor, is what lets the tests check it without sending a
// single signal.
package signals

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
)

// Max is the highest signal number on Linux (SIGRTMAX).
const Max = 64

// The first two real-time signals are reserved by the C library and by the
// Go runtime (SIGRTMIN+1 carries its per-thread syscalls); nobody can use them.
const firstUsableRT = 34

var names = map[syscall.Signal]string{
	syscall.SIGHUP: "HUP", syscall.SIGINT: "INT", syscall.SIGQUIT: "QUIT",
	syscall.SIGILL: "ILL", syscall.SIGTRAP: "TRAP", syscall.SIGABRT: "ABRT",
	syscall.SIGBUS: "BUS", syscall.SIGFPE: "FPE", syscall.SIGKILL: "KILL",
	syscall.SIGUSR1: "USR1", syscall.SIGSEGV: "SEGV", syscall.SIGUSR2: "USR2",
	syscall.SIGPIPE: "PIPE", syscall.SIGALRM: "ALRM", syscall.SIGTERM: "TERM",
	syscall.SIGSTKFLT: "STKFLT", syscall.SIGCHLD: "CHLD", syscall.SIGCONT: "CONT",
	syscall.SIGSTOP: "STOP", syscall.SIGTSTP: "TSTP", syscall.SIGTTIN: "TTIN",
	syscall.SIGTTOU: "TTOU", syscall.SIGURG: "URG", syscall.SIGXCPU: "XCPU",
	syscall.SIGXFSZ: "XFSZ", syscall.SIGVTALRM: "VTALRM", syscall.SIGPROF: "PROF",
	syscall.SIGWINCH: "WINCH", syscall.SIGIO: "IO", syscall.SIGPWR: "PWR",
	syscall.SIGSYS: "SYS",
}

// aliases are other names the kernel and shells accept for the same number.
var aliases = map[string]syscall.Signal{
	"IOT": syscall.SIGABRT, "POLL": syscall.SIGIO, "CLD": syscall.SIGCHLD,
	"RTMIN": firstUsableRT, "RTMAX": Max,
}

// Name returns the short name of sig, "TERM" for SIGTERM, "RTMIN+2" for 36.
func Name(sig syscall.Signal) string {
	if n, ok := names[sig]; ok {
		return n
	}
	if sig >= firstUsableRT && sig <= Max {
		if sig == firstUsableRT {
			return "RTMIN"
		}
		return "RTMIN+" + strconv.Itoa(int(sig-firstUsableRT))
	}
	return strconv.Itoa(int(sig))
}

// Parse reads one signal given as a name with or without its SIG prefix, in
// any case, or as a number: "TERM", "sigterm" and "15" are all SIGTERM.
func Parse(s string) (syscall.Signal, error) {
	v, ok := asciiUpper(strings.TrimSpace(s))
	if !ok {
		return 0, fmt.Errorf("unknown signal %q", s)
	}
	if v == "" {
		return 0, fmt.Errorf("empty signal name")
	}
	if n, ok := digits(v); ok {
		if n < 1 || n > Max {
			return 0, fmt.Errorf("signal number %d is out of range 1-%d", n, Max)
		}
		return syscall.Signal(n), nil
	}
	v = strings.TrimPrefix(v, "SIG")
	for sig, name := range names {
		if name == v {
			return sig, nil
		}
	}
	if sig, ok := aliases[v]; ok {
		return sig, nil
	}
	if off, ok := strings.CutPrefix(v, "RTMIN+"); ok {
		if n, ok := digits(off); ok && n <= Max-firstUsableRT {
			return syscall.Signal(firstUsableRT + n), nil
		}
	}
	if off, ok := strings.CutPrefix(v, "RTMAX-"); ok {
		if n, ok := digits(off); ok && n <= Max-firstUsableRT {
			return syscall.Signal(Max - n), nil
		}
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}

// asciiUpper upper-cases s, refusing anything but ASCII letters, digits
// and '+' and '-': strings.ToUpper would turn "ſigterm" into SIGTERM.
func asciiUpper(s string) (string, bool) {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z':
			b[i] = c - 'a' + 'A'
		case c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '+', c == '-':
		default:
			return "", false
		}
	}
	return string(b), true
}

// digits reads a number made of decimal digits only (no sign), up to a
// size no signal number comes near.
func digits(s string) (int, bool) {
	if s == "" || len(s) > 4 {
		return 0, false
	}
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// ParseList reads signals separated by commas, colons or spaces, as in
// "TERM,INT" or DRAINIT_DRAIN_ON=TERM:INT. Duplicates are dropped.
func ParseList(s string) ([]syscall.Signal, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ':' || r == ' ' })
	if len(fields) == 0 {
		return nil, fmt.Errorf("empty signal list")
	}
	var out []syscall.Signal
	seen := map[syscall.Signal]bool{}
	for _, f := range fields {
		sig, err := Parse(f)
		if err != nil {
			return nil, err
		}
		if !seen[sig] {
			seen[sig] = true
			out = append(out, sig)
		}
	}
	return out, nil
}

// Catchable reports whether a process can install a handler for sig.
// SIGKILL and SIGSTOP cannot be caught; 32 and 33 belong to the C library
// and the Go runtime.
func Catchable(sig syscall.Signal) bool {
	switch {
	case sig == syscall.SIGKILL || sig == syscall.SIGSTOP:
		return false
	case sig >= 1 && sig < 32:
		return true
	case sig >= firstUsableRT && sig <= Max:
		return true
	}
	return false
}

// Kept reports whether drainit keeps sig for itself instead of forwarding it,
// and why. These are the only catchable signals an app never receives from
// drainit:
//   - SIGCHLD tells drainit to reap; the app has its own children to care about.
//   - SIGURG is sent by the Go runtime to preempt its own goroutines, many
//     times a second under load; forwarding it would flood the app.
//   - SIGPIPE is caught so that a closed stdout cannot kill drainit.
//   - SIGTTIN and SIGTTOU would stop drainit when the app owns the terminal.
//   - SIGPROF belongs to the Go runtime's profiler, which never hands it to
//     os/signal; nobody sends it to an init.
func Kept(sig syscall.Signal) (string, bool) {
	switch sig {
	case syscall.SIGPROF:
		return "the Go runtime's profiler", true
	case syscall.SIGCHLD:
		return "reaping", true
	case syscall.SIGURG:
		return "Go runtime preemption", true
	case syscall.SIGPIPE:
		return "broken pipe", true
	case syscall.SIGTTIN, syscall.SIGTTOU:
		return "terminal job control", true
	}
	return "", false
}

// Forwardable reports whether drainit passes sig on to the app.
func Forwardable(sig syscall.Signal) bool {
	_, kept := Kept(sig)
	return Catchable(sig) && !kept
}

// All returns every catchable signal, in order.
func All() []syscall.Signal {
	var out []syscall.Signal
	for s := syscall.Signal(1); s <= Max; s++ {
		if Catchable(s) {
			out = append(out, s)
		}
	}
	return out
}

// CanDrainOn reports whether sig may start a drain, and if not, why.
func CanDrainOn(sig syscall.Signal) error {
	if !Catchable(sig) {
		return fmt.Errorf("%s cannot be caught", Name(sig))
	}
	if why, kept := Kept(sig); kept {
		return fmt.Errorf("%s is kept by drainit for %s", Name(sig), why)
	}
	return nil
}

// ExitCode is the shell's encoding of a death by signal: 128 + the number.
func ExitCode(sig syscall.Signal) int { return 128 + int(sig) }
