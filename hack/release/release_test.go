// Package release_test checks a release as `make release` makes it
// (../release.sh): the files of dist/, both binaries run (the foreign one
// under qemu-user), the image, and that a second build from a copy of the
// source elsewhere, with a build cache of its own, gives the same bytes.
//
// It needs Go, make, git, sha256sum, the Docker engine and qemu-user-static
// from Debian (.ci/run installs it). Without Docker the image's checks skip
// and say why, without qemu the foreign binary's run; under
// DRAINIT_TEST_STRICT=1, as in CI, they fail instead.
package release_test

import (
	"archive/tar"
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

var arches = []string{"amd64", "arm64"}

// qemu runs a binary of the other architecture. Without binfmt_misc (as in
// a container) the emulated drainit's own children are started by the host
// kernel, so its app must be a host binary: /bin/sh is.
var qemu = map[string]string{"amd64": "qemu-x86_64-static", "arm64": "qemu-aarch64-static"}

// skipOrFail is internal/testkit's: a module of its own cannot import
// that internal package, so this is a copy; keep the two alike.
func skipOrFail(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("DRAINIT_TEST_STRICT") == "1" {
		t.Fatalf("cannot run (DRAINIT_TEST_STRICT=1 forbids skipping): %s", why)
	}
	t.Skip(why)
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// run runs a command in dir and returns its stdout; a failure fails the
// test with both outputs.
func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// A bad VERSION is one line on stderr that says how to mend it, and no
// build.
func TestBadVersion(t *testing.T) {
	root := repoRoot(t)
	for _, v := range []string{"", "1.2.3", "v1.2", "v01.2.3", "v1.2.3+meta", "v1.2.3-", "latest", "v1.2.3 v2.0.0", "v1.2.3'"} {
		dist := t.TempDir()
		check := func(what string, cmd *exec.Cmd) {
			t.Helper()
			var stdout, stderr bytes.Buffer
			cmd.Dir = root
			// An exported VERSION would be make's default: keep it out.
			cmd.Env = slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, "VERSION=") })
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("%s with version %q: want a failure, got %v\nstderr:\n%s", what, v, err, stderr.String())
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], "v0.1.0") {
				t.Errorf("%s with version %q: want one line showing a good version, got:\n%s", what, v, stderr.String())
			}
			if stdout.Len() > 0 {
				t.Errorf("%s with version %q printed on stdout:\n%s", what, v, stdout.String())
			}
		}
		check("make release", exec.Command("make", "--no-print-directory", "release", "VERSION="+v, "DIST="+dist))
		check("hack/release.sh", exec.Command("hack/release.sh", "--no-image", "--dist", dist, v))
		if entries, _ := os.ReadDir(dist); len(entries) > 0 {
			t.Errorf("version %q: dist is not empty: %v", v, entries)
		}
	}
	t.Run("missing", func(t *testing.T) {
		cmd := exec.Command("make", "--no-print-directory", "release")
		cmd.Dir = root
		cmd.Env = slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, "VERSION=") })
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "VERSION=''") || strings.Count(strings.TrimSpace(string(out)), "\n") > 0 {
			t.Errorf("make release without VERSION: want one line and a failure, got %v:\n%s", err, out)
		}
	})
}

// A tree with uncommitted changes is refused, in one line that says how to
// go on, before any build: nothing in the binaries would tell that they
// are not the commit's.
func TestDirtyTree(t *testing.T) {
	src := copySource(t, repoRoot(t))
	git := func(args ...string) {
		run(t, src, nil, "git", append([]string{"-c", "user.name=release-check", "-c", "user.email=release-check@invalid"}, args...)...)
	}
	git("init", "-q")
	git("add", "-A")
	git("commit", "-q", "-m", "the source")
	if err := os.WriteFile(filepath.Join(src, "uncommitted.go"), []byte("package drainit\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dist := t.TempDir()
	var stderr bytes.Buffer
	cmd := exec.Command("hack/release.sh", "--no-image", "--dist", dist, "v0.1.0")
	cmd.Dir = src
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Errorf("hack/release.sh in a tree with changes: %v, want exit status 2", err)
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "--allow-dirty") {
		t.Errorf("want one line naming --allow-dirty, got:\n%s", stderr.String())
	}
	if entries, _ := os.ReadDir(dist); len(entries) > 0 {
		t.Errorf("dist is not empty: %v", entries)
	}
}

func TestRelease(t *testing.T) {
	for _, tool := range []string{"make", "git", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("no %s: %v", tool, err)
		}
	}
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	} else if runtime.GOARCH != "amd64" {
		skipOrFail(t, "a release has amd64 and arm64 binaries; this machine is "+runtime.GOARCH)
	}
	// Without qemu or Docker the rest is still checked; only what needs
	// them skips (or fails, under DRAINIT_TEST_STRICT=1).
	var noQEMU, noDocker string
	if _, err := exec.LookPath(qemu[other]); err != nil {
		noQEMU = fmt.Sprintf("no %s to run the %s binary: apt-get install qemu-user-static", qemu[other], other)
	}
	out, err := exec.Command("docker", "version", "-f", "{{.Server.Arch}}").CombinedOutput()
	if err != nil {
		noDocker = fmt.Sprintf("the Docker engine does not answer (%v): %s", err, bytes.TrimSpace(out))
	}
	engineArch := strings.TrimSpace(string(out))

	root := repoRoot(t)
	// Unique, so that runs side by side (or a developer's own release of
	// the same number) do not share a tag.
	version := fmt.Sprintf("v0.0.0-ci.%d", os.Getpid())
	tag := "drainit:" + version
	t.Cleanup(func() { exec.Command("docker", "rmi", "-f", tag).Run() })

	// A clean clone (CI's) builds as a release is made; a developer's
	// tree with changes needs ALLOW_DIRTY=1, and the record then says so.
	revision := strings.TrimSpace(run(t, root, nil, "git", "rev-parse", "HEAD"))
	makeArgs := []string{"--no-print-directory", "release", "VERSION=" + version}
	scriptArgs := []string{"--no-image"}
	if changes := strings.TrimSpace(run(t, root, nil, "git", "status", "--porcelain")); changes != "" {
		revision += "-dirty"
		makeArgs = append(makeArgs, "ALLOW_DIRTY=1")
		scriptArgs = append(scriptArgs, "--allow-dirty")
		t.Logf("the tree has changes: building with ALLOW_DIRTY=1, expecting revision %s:\n%s", revision, changes)
	}

	// Both builds under umask 077, which would leave the files unreadable
	// to others: the binaries, and the image's /drainit, must be 0755.
	umask := func(name string, args ...string) []string {
		return append([]string{"-c", `umask 077 && exec "$@"`, "sh", name}, args...)
	}
	dist := t.TempDir()
	start := time.Now()
	if noDocker == "" {
		run(t, root, nil, "sh", umask("make", append(makeArgs, "DIST="+dist)...)...)
		t.Logf("make %s: %v", strings.Join(makeArgs[1:], " "), time.Since(start).Round(time.Second))
	} else {
		run(t, root, nil, "sh", umask("hack/release.sh", append(scriptArgs, "--dist", dist, version)...)...)
		t.Logf("hack/release.sh %s %s (no Docker): %v", strings.Join(scriptArgs, " "), version, time.Since(start).Round(time.Second))
	}

	// The second build: another path, no .git, an empty build cache.
	start = time.Now()
	src := copySource(t, root)
	dist2 := t.TempDir()
	run(t, src, []string{"GOCACHE=" + t.TempDir()}, "sh", umask("hack/release.sh", "--no-image", "--dist", dist2, version)...)
	t.Logf("the second build, from %s with an empty GOCACHE: %v", src, time.Since(start).Round(time.Second))

	bin := func(arch string) string { return filepath.Join(dist, "drainit-"+version+"-linux-"+arch) }
	binaries := []string{"drainit-" + version + "-linux-amd64", "drainit-" + version + "-linux-arm64"}
	names := append([]string{"BUILDINFO", "SHA256SUMS"}, binaries...)

	t.Run("files", func(t *testing.T) {
		var got []string
		entries, err := os.ReadDir(dist)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			got = append(got, e.Name())
		}
		if !slices.Equal(got, names) {
			t.Errorf("dist holds %v, want %v", got, names)
		}
		// 0755 whatever the umask: an image whose USER is not root runs
		// the binary it copies.
		for _, d := range []string{dist, dist2} {
			for _, name := range names {
				want := os.FileMode(0o644)
				if slices.Contains(binaries, name) {
					want = 0o755
				}
				fi, err := os.Stat(filepath.Join(d, name))
				if err != nil {
					t.Error(err)
				} else if fi.Mode() != want {
					t.Errorf("%s: mode %v, want %v", filepath.Join(d, name), fi.Mode(), want)
				} else if want == 0o755 && d == dist {
					t.Logf("%s: %d bytes (%.2f MB)", name, fi.Size(), float64(fi.Size())/1e6)
				}
			}
		}
	})

	// BUILDINFO names the commit and the toolchain; the copy without .git
	// cannot name its commit, and says so.
	t.Run("buildinfo", func(t *testing.T) {
		bi, err := buildinfo.ReadFile(bin("amd64"))
		if err != nil {
			t.Fatal(err)
		}
		for d, rev := range map[string]string{dist: revision, dist2: "unknown"} {
			got, err := os.ReadFile(filepath.Join(d, "BUILDINFO"))
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("version %s\nrevision %s\ngo %s\n", version, rev, bi.GoVersion)
			if string(got) != want {
				t.Errorf("%s/BUILDINFO:\n%s\nwant:\n%s", d, got, want)
			}
		}
	})

	t.Run("checksums", func(t *testing.T) {
		out := run(t, dist, nil, "sha256sum", "-c", "--strict", "SHA256SUMS")
		for _, arch := range arches {
			if !strings.Contains(out, filepath.Base(bin(arch))+": OK") {
				t.Errorf("sha256sum -c did not check %s:\n%s", filepath.Base(bin(arch)), out)
			}
		}
		if n := strings.Count(out, ": OK"); n != 2 {
			t.Errorf("sha256sum -c checked %d files, want 2:\n%s", n, out)
		}
	})

	t.Run("reproducible", func(t *testing.T) {
		for _, name := range append([]string{"SHA256SUMS"}, binaries...) {
			a, errA := os.ReadFile(filepath.Join(dist, name))
			b, errB := os.ReadFile(filepath.Join(dist2, name))
			if err := errors.Join(errA, errB); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a, b) {
				t.Errorf("%s differs between the two builds (%d and %d bytes): something outside the source and the Go version reaches the bytes", name, len(a), len(b))
			}
		}
	})

	for _, arch := range arches {
		t.Run("static/"+arch, func(t *testing.T) { checkELF(t, bin(arch), arch) })
	}

	for _, arch := range arches {
		t.Run("run/"+arch, func(t *testing.T) {
			emulated := arch != runtime.GOARCH
			if emulated && noQEMU != "" {
				skipOrFail(t, noQEMU)
			}
			command := func(args ...string) *exec.Cmd {
				if emulated {
					return exec.Command(qemu[arch], append([]string{bin(arch)}, args...)...)
				}
				return exec.Command(bin(arch), args...)
			}
			for _, word := range []string{"--version", "version"} {
				out, err := command(word).Output()
				if err != nil || string(out) != "drainit "+version+"\n" {
					t.Errorf("drainit %s: got %q (%v), want %q", word, out, err, "drainit "+version+"\n")
				}
			}

			// The app's exit code passes through.
			var stderr bytes.Buffer
			cmd := command("--", "/bin/sh", "-c", "exit 7")
			cmd.Stderr = &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 7 {
				t.Errorf("drainit -- sh -c 'exit 7': got %v, want exit status 7\n%s", err, stderr.String())
			}
			// qemu-user does not emulate PR_SET_CHILD_SUBREAPER (EINVAL),
			// and drainit says so; natively it becomes a subreaper.
			const noSubreaper = "warn: not PID 1 and cannot become a subreaper"
			if emulated && !strings.Contains(stderr.String(), noSubreaper) {
				t.Errorf("under %s: no %q; if qemu now emulates the subreaper, drop this check and the README's note:\n%s", qemu[arch], noSubreaper, stderr.String())
			}
			if !emulated && (!strings.Contains(stderr.String(), "mode=subreaper") || strings.Contains(stderr.String(), "warn:")) {
				t.Errorf("natively: want mode=subreaper and no warning:\n%s", stderr.String())
			}
			t.Logf("drainit -- sh -c 'exit 7' (%s%s):\n%s", arch, map[bool]string{true: ", under " + qemu[arch]}[emulated], stderr.String())
		})
	}

	t.Run("image", func(t *testing.T) {
		if noDocker != "" {
			skipOrFail(t, noDocker)
		}
		checkImage(t, root, tag, version, revision, engineArch, bin(engineArch))
	})
	t.Run("copy-from", func(t *testing.T) {
		if noDocker != "" {
			skipOrFail(t, noDocker)
		}
		checkCopyFrom(t, tag, version)
	})
}

// copySource copies the files git knows of (tracked, or new and not
// ignored) to a new directory, without .git.
func copySource(t *testing.T, root string) string {
	t.Helper()
	dst := t.TempDir()
	list := run(t, root, nil, "git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	for _, name := range strings.Split(strings.TrimRight(list, "\x00"), "\x00") {
		from, to := filepath.Join(root, name), filepath.Join(dst, name)
		fi, err := os.Lstat(from)
		if errors.Is(err, os.ErrNotExist) {
			continue // deleted in the work tree, not yet in a commit
		} else if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(from)
			if err == nil {
				err = os.Symlink(target, to)
			}
			if err != nil {
				t.Fatal(err)
			}
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(from)
			if err == nil {
				err = os.WriteFile(to, b, fi.Mode().Perm())
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	return dst
}

// checkELF: static (no interpreter, no dynamic section), stripped (no
// symbol table, no DWARF), of the right machine, built with the release's
// settings and no VCS stamp.
func checkELF(t *testing.T, path, arch string) {
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	machine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]
	if f.Machine != machine || f.Class != elf.ELFCLASS64 || f.Type != elf.ET_EXEC {
		t.Errorf("%s: %v %v %v, want %v ELFCLASS64 ET_EXEC", path, f.Machine, f.Class, f.Type, machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s: has %v: dynamically linked", path, p.Type)
		}
	}
	for _, s := range f.Sections {
		if s.Name == ".interp" || s.Name == ".dynamic" || s.Name == ".symtab" ||
			strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_") {
			t.Errorf("%s: has section %s: not static and stripped", path, s.Name)
		}
	}
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	for k, want := range map[string]string{"CGO_ENABLED": "0", "-trimpath": "true", "GOOS": "linux", "GOARCH": arch} {
		if settings[k] != want {
			t.Errorf("%s: built with %s=%q, want %q", path, k, settings[k], want)
		}
	}
	for k := range settings {
		if strings.HasPrefix(k, "vcs") {
			t.Errorf("%s: carries %s=%s: the commit must not reach the bytes", path, k, settings[k])
		}
	}
	if bi.Path != "github.com/drainit/drainit/cmd/drainit" {
		t.Errorf("%s: main package %s", path, bi.Path)
	}
}

func docker(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, "", nil, "docker", args...)
}

// checkImage: the labels (revision as BUILDINFO's, taken before the
// build), the entrypoint, one layer holding /drainit alone
// and byte for byte the release binary, and the image answers --version.
func checkImage(t *testing.T, root, tag, version, revision, engineArch, binary string) {
	var images []struct {
		Architecture, Os string
		Config           struct {
			Entrypoint, Cmd []string
			Labels          map[string]string
		}
		RootFS struct{ Layers []string }
	}
	if err := json.Unmarshal([]byte(docker(t, "image", "inspect", tag)), &images); err != nil || len(images) != 1 {
		t.Fatalf("docker image inspect %s: %v", tag, err)
	}
	img := images[0]
	licenses := "NOASSERTION" // no LICENSE file yet: SPDX's "nothing stated"
	if _, err := os.Stat(filepath.Join(root, "LICENSE")); err == nil {
		licenses = img.Config.Labels["org.opencontainers.image.licenses"]
		if licenses == "" || licenses == "NOASSERTION" {
			t.Errorf("there is a LICENSE file, and the licenses label is %q", licenses)
		}
	}
	for k, want := range map[string]string{
		"org.opencontainers.image.version":  version,
		"org.opencontainers.image.source":   "https://github.com/drainit/drainit",
		"org.opencontainers.image.licenses": licenses,
		"org.opencontainers.image.revision": revision,
	} {
		if got := img.Config.Labels[k]; got != want {
			t.Errorf("label %s=%q, want %q", k, got, want)
		}
	}
	if !slices.Equal(img.Config.Entrypoint, []string{"/drainit"}) || len(img.Config.Cmd) > 0 {
		t.Errorf("entrypoint %q cmd %q, want [/drainit] and none", img.Config.Entrypoint, img.Config.Cmd)
	}
	if img.Architecture != engineArch || img.Os != "linux" {
		t.Errorf("image for %s/%s, want linux/%s", img.Os, img.Architecture, engineArch)
	}
	if len(img.RootFS.Layers) != 1 {
		t.Errorf("%d layers, want 1", len(img.RootFS.Layers))
	}

	// docker save: the files of every layer.
	files := map[string][]byte{}
	var manifest []struct{ Layers []string }
	save := exec.Command("docker", "save", tag)
	archive, err := save.Output()
	if err != nil {
		t.Fatalf("docker save %s: %v", tag, err)
	}
	blobs := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		blobs[h.Name] = b
	}
	if err := json.Unmarshal(blobs["manifest.json"], &manifest); err != nil || len(manifest) != 1 {
		t.Fatalf("docker save %s: manifest.json: %v", tag, err)
	}
	var modes []string
	for _, layer := range manifest[0].Layers {
		lr := tar.NewReader(bytes.NewReader(blobs[layer]))
		for {
			h, err := lr.Next()
			if err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("layer %s: %v", layer, err)
			}
			b, err := io.ReadAll(lr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = b
			modes = append(modes, fmt.Sprintf("%s %v", h.Name, h.FileInfo().Mode()))
		}
	}
	want, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || !bytes.Equal(files["drainit"], want) {
		t.Errorf("the image holds %v; want /drainit alone, the same bytes as %s", modes, binary)
	}
	if !slices.Equal(modes, []string{"drainit -rwxr-xr-x"}) {
		t.Errorf("the image's files: %v, want [drainit -rwxr-xr-x]", modes)
	}

	if out := docker(t, "run", "--rm", "--network", "none", tag, "--version"); out != "drainit "+version+"\n" {
		t.Errorf("docker run %s --version: %q", tag, out)
	}
}

// checkCopyFrom builds the README's line into a FROM scratch image and runs
// drainit there as PID 1, drainit itself being the app.
func checkCopyFrom(t *testing.T, tag, version string) {
	ctx := t.TempDir()
	user := "drainit-release-check/copy-from:" + version
	t.Cleanup(func() { exec.Command("docker", "rmi", "-f", user).Run() })
	dockerfile := "FROM scratch\n" +
		"COPY --from=" + tag + " /drainit /usr/local/bin/drainit\n" +
		`ENTRYPOINT ["/usr/local/bin/drainit", "--"]` + "\n" +
		`CMD ["/usr/local/bin/drainit", "version"]` + "\n"
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	docker(t, "build", "-q", "-t", user, ctx)

	var stdout, stderr bytes.Buffer
	cmd := exec.Command("docker", "run", "--rm", "--network", "none", user)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stdout.String() != "drainit "+version+"\n" || !strings.Contains(stderr.String(), `mode="PID 1"`) {
		t.Errorf("docker run %s: %v; want drainit as PID 1 and its app printing the version\nstdout:\n%s\nstderr:\n%s", user, err, stdout.String(), stderr.String())
	}

	// The app's exit code as the container's: the app is drainit given a
	// flag it does not know (2), and drainit's log says the app exited so.
	stderr.Reset()
	cmd = exec.Command("docker", "run", "--rm", "--network", "none", user, "/usr/local/bin/drainit", "--no-such-flag")
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(stderr.String(), `app exited status="exit 2"`) {
		t.Errorf("docker run %s with an app that exits 2: %v\n%s", user, err, stderr.String())
	}
}
