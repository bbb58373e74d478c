package spawn

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// shell runs a script that has no #! line, as execvp's fallback does. A
// variable so that the tests can take it away, as FROM scratch does.
var shell = "/bin/sh"

// defaultPath is glibc's search path for execvp when PATH is unset.
const defaultPath = "/bin:/usr/bin"

// lookPath finds a command as execvp does: a name with a '/' is used as it
// is (execve says what is wrong with it); otherwise each directory of PATH
// in turn, an empty one being the current directory, and the first
// executable file wins. A match that cannot be executed is skipped, and
// reported (126, not 127) only when no later one can be: a shell says
// "permission denied" there, not "not found".
//
// exec.LookPath is not used: it reports such a match as not found, and
// refuses a match found through a relative PATH entry (ErrDot), which a
// shell runs.
func lookPath(file string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	if file == "" {
		return "", &Error{`"": command not found`, ExitNotFound}
	}
	path, ok := os.LookupEnv("PATH")
	if !ok {
		path = defaultPath
	}
	dirs := filepath.SplitList(path)
	if path == "" {
		// SplitList gives no entry for "", but an empty PATH is one empty
		// entry to execvp and a shell: the current directory.
		dirs = []string{""}
	}
	denied := ""
	for _, dir := range dirs {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, file)
		if dir == "." {
			p = "./" + file // keep the '/': p is a path, not a name to look up again
		}
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			// ENOENT, ENOTDIR, ELOOP, or a directory of PATH we may not
			// search (EACCES): as execvp, go on to the next one.
			if errors.Is(err, unix.EACCES) && denied == "" {
				denied = p
			}
			continue
		}
		if st.Mode&unix.S_IFMT == unix.S_IFREG && executable(p) {
			return p, nil
		}
		// A directory, or a file without the x bit for us: execve would
		// fail with EACCES.
		if denied == "" {
			denied = p
		}
	}
	if denied != "" {
		return "", &Error{fmt.Sprintf("%s: permission denied at %s, and no other match in PATH can be executed; chmod +x it or fix PATH", file, denied), ExitNotExecutable}
	}
	return "", &Error{fmt.Sprintf("%s: command not found in PATH", file), ExitNotFound}
}

// executable tells whether execve may run p, by the effective IDs as the
// kernel judges (root needs one x bit). Where faccessat2 is missing (old
// kernels) or refused (ENOSYS or EPERM from a seccomp profile), x/sys's
// Faccessat already judges by the mode bits and IDs itself, as glibc does.
func executable(p string) bool {
	return unix.Faccessat(unix.AT_FDCWD, p, unix.X_OK, unix.AT_EACCESS) == nil
}

// forkExec starts path and, when the kernel refuses it with ENOEXEC (a
// script without a #! line), starts it again through /bin/sh as execvp
// does: argv becomes /bin/sh, path, then the arguments after argv[0]. Not
// for a binary built for another machine: a shell would read it as a
// script and print garbage; it is 126, as bash says "cannot execute binary
// file".
//
// ForkExec has already waited for the first child when it returns an
// error, so the retry leaves no zombie for the reaper, which is not
// running yet anyway.
func forkExec(path string, argv []string, attr *syscall.ProcAttr) (int, error) {
	pid, err := syscall.ForkExec(path, argv, attr)
	if errors.Is(err, syscall.ENOEXEC) {
		if isBinary(path) {
			return 0, &Error{fmt.Sprintf("%s: exec format error: not a program for this machine (%s/%s), and not a script", argv[0], runtime.GOOS, runtime.GOARCH), ExitNotExecutable}
		}
		if _, serr := os.Stat(shell); serr != nil {
			// FROM scratch: there is nothing to run a script with.
			return 0, &Error{fmt.Sprintf("%s: exec format error: no #! line, and no %s to run it as a script; add a #! line naming its interpreter, or a shell to the image", argv[0], shell), ExitNotExecutable}
		}
		sh := append([]string{shell, path}, argv[1:]...)
		pid, err = syscall.ForkExec(shell, sh, attr)
		if err != nil {
			return 0, &Error{fmt.Sprintf("%s: running it with %s (it has no #! line): %v", argv[0], shell, err), codeOf(err)}
		}
		return pid, nil
	}
	if err != nil {
		return 0, &Error{fmt.Sprintf("%s: %v", argv[0], err), codeOf(err)}
	}
	return pid, nil
}

// codeOf is the shell's code for a failed execve: 127 when there is no
// such file, 126 for anything else (EACCES, a directory, ENOTDIR, ...).
func codeOf(err error) int {
	if errors.Is(err, syscall.ENOENT) {
		return ExitNotFound
	}
	return ExitNotExecutable
}

// isBinary tells a program for another machine from a script: an ELF
// header, or a NUL byte in the first line (bash's test). A file drainit
// cannot read is left to the shell, which says why.
func isBinary(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, 128)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return false
	}
	head = head[:n]
	if bytes.HasPrefix(head, []byte("\x7fELF")) {
		return true
	}
	if i := bytes.IndexByte(head, '\n'); i >= 0 {
		head = head[:i]
	}
	return bytes.IndexByte(head, 0) >= 0
}
