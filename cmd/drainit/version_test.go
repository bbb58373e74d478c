package main_test

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// TestVersion checks that both spellings print the same line, and that a
// release build's stamp is what they print. Both builds here are
// -buildvcs=false, as the release's is: otherwise a git checkout stamps a
// pseudo-version and the plain build would not print "(devel)".
func TestVersion(t *testing.T) {
	stamped := filepath.Join(t.TempDir(), "drainit")
	build := exec.Command("go", "build", "-buildvcs=false", "-ldflags", "-X main.version=v9.8.7", "-o", stamped, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, c := range []struct {
		bin, want string
	}{
		{drainitBin, "drainit (devel)\n"},
		{stamped, "drainit v9.8.7\n"},
	} {
		for _, arg := range []string{"version", "--version"} {
			out, err := exec.Command(c.bin, arg).Output()
			if err != nil {
				t.Fatalf("%s %s: %v", c.bin, arg, err)
			}
			if string(out) != c.want {
				t.Errorf("%s %s printed %q, want %q", filepath.Base(filepath.Dir(c.bin)), arg, out, c.want)
			}
		}
	}
}
