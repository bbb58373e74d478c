package spawn_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/drainit/drainit/supervisor/spawn"
)

// run starts argv with its stdout in a file and returns the exit code and
// what it wrote, or the start error.
func run(t *testing.T, argv ...string) (int, string, error) {
	t.Helper()
	out, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	// Start hands the command drainit's descriptors 0, 1 and 2.
	saved, err := unix.Dup(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Dup2(int(out.Fd()), 1); err != nil {
		t.Fatal(err)
	}
	pid, startErr := spawn.Start(argv, 0)
	if err := unix.Dup2(saved, 1); err != nil {
		t.Fatal(err)
	}
	unix.Close(saved)
	if startErr != nil {
		return 0, "", startErr
	}
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EINTR) {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	return ws.ExitStatus(), string(b), nil
}

func write(t *testing.T, path, content string, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// wantCode checks that err is a start error with the shell's code and a
// message that says why.
func wantCode(t *testing.T, err error, code int, says string) {
	t.Helper()
	var se *spawn.Error
	if !errors.As(err, &se) {
		t.Fatalf("error %v, want a *spawn.Error with code %d", err, code)
	}
	if se.Code != code || !strings.Contains(se.Msg, says) {
		t.Fatalf("code %d %q, want %d and a message with %q", se.Code, se.Msg, code, says)
	}
}

// A script without a #! line runs through /bin/sh, as execvp runs it:
// $0 is its path, its arguments follow.
func TestScriptWithoutShebang(t *testing.T) {
	dir := t.TempDir()
	script := write(t, filepath.Join(dir, "x.sh"), "echo \"hi $0 $*\"\nexit 7\n", 0o755)
	code, out, err := run(t, script, "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	if want := "hi " + script + " a b\n"; code != 7 || out != want {
		t.Fatalf("code %d, output %q; want 7, %q", code, out, want)
	}
	// Found through PATH, the path it was found at is $0.
	t.Setenv("PATH", dir+":/usr/bin:/bin")
	code, out, err = run(t, "x.sh", "c")
	if err != nil {
		t.Fatal(err)
	}
	if want := "hi " + script + " c\n"; code != 7 || out != want {
		t.Fatalf("code %d, output %q; want 7, %q", code, out, want)
	}
}

// FROM scratch has no /bin/sh: the script cannot run, 126 with a line
// that says why and what to do.
func TestScriptWithoutShell(t *testing.T) {
	defer spawn.SetShell(filepath.Join(t.TempDir(), "no-sh"))()
	script := write(t, filepath.Join(t.TempDir(), "x.sh"), "echo hi\n", 0o755)
	_, _, err := run(t, script)
	wantCode(t, err, spawn.ExitNotExecutable, "no #! line, and no ")
}

// A program for another machine is not handed to the shell, which would
// read it as a script.
func TestForeignBinary(t *testing.T) {
	bin := write(t, filepath.Join(t.TempDir(), "prog"), "\x7fELF\x02\x01\x01\x00garbage\n", 0o755)
	_, _, err := run(t, bin)
	wantCode(t, err, spawn.ExitNotExecutable, "exec format error: not a program for this machine")
	nul := write(t, filepath.Join(t.TempDir(), "prog"), "ab\x00cd\necho hi\n", 0o755)
	_, _, err = run(t, nul)
	wantCode(t, err, spawn.ExitNotExecutable, "exec format error")
}

// PATH is searched as execvp searches it.
func TestLookPath(t *testing.T) {
	// Mode 0644: not even root may execute a file with no x bit at all.
	a, b := t.TempDir(), t.TempDir()
	write(t, filepath.Join(a, "cmd"), "echo a\n", 0o644) // not executable
	write(t, filepath.Join(b, "cmd"), "echo b\n", 0o755)
	write(t, filepath.Join(a, "only-a"), "echo a\n", 0o644)

	t.Setenv("PATH", a+":"+b)
	// A match without the x bit is skipped for a later one.
	if _, out, err := run(t, "cmd"); err != nil || out != "b\n" {
		t.Fatalf("cmd: %q, %v; want the one in %s", out, err, b)
	}
	// Only a match without the x bit: permission denied, not "not found".
	_, _, err := run(t, "only-a")
	wantCode(t, err, spawn.ExitNotExecutable, "permission denied")
	_, _, err = run(t, "no-such-command")
	wantCode(t, err, spawn.ExitNotFound, "command not found")
	// A name with a '/' is not looked up; execve says what is wrong.
	_, _, err = run(t, filepath.Join(a, "only-a"))
	wantCode(t, err, spawn.ExitNotExecutable, "permission denied")
	_, _, err = run(t, filepath.Join(a, "none"))
	wantCode(t, err, spawn.ExitNotFound, "no such file")
	_, _, err = run(t, a)
	wantCode(t, err, spawn.ExitNotExecutable, "permission denied")

	// An empty entry is the current directory, as in a shell.
	t.Setenv("PATH", ":/usr/bin:/bin")
	t.Chdir(b)
	if _, out, err := run(t, "cmd"); err != nil || out != "b\n" {
		t.Fatalf("cmd from the current directory: %q, %v", out, err)
	}
	// So is an empty PATH, a single empty entry (execvp, sh).
	t.Setenv("PATH", "")
	if _, out, err := run(t, "cmd"); err != nil || out != "b\n" {
		t.Fatalf("cmd with PATH=\"\": %q, %v; want the one in the current directory", out, err)
	}
}
