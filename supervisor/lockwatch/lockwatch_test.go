package lockwatch_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/drainit/drainit/supervisor/lockwatch"
)

func TestInitialSnapshot(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a := write(t, dir+"/a.lock", "")
	b := write(t, dir+"/b.lock", "job 7\n")
	write(t, dir+"/notes.txt", "")
	mkdir(t, dir+"/d.lock") // a directory is never a lock
	if err := os.Symlink(dir+"/d.lock", dir+"/to-dir.lock"); err != nil {
		t.Fatal(err)
	}
	dangling := dir + "/dangling.lock"
	if err := os.Symlink(dir+"/nowhere", dangling); err != nil {
		t.Fatal(err)
	}

	want := []string{a, b, dangling}
	slices.Sort(want)
	opts := lockwatch.Options{Patterns: []string{dir + "/*.lock"}}
	if got := lockwatch.Scan(opts); !slices.Equal(got, want) {
		t.Errorf("Scan = %q, want %q", got, want)
	}
	ch := watch(t, opts)
	s, ok := next(t, ch, patience)
	if !ok || !slices.Equal(s, want) {
		t.Fatalf("first snapshot = %q, want %q", s, want)
	}
	quiet(t, ch)
}

func TestEmptyFirstSnapshotIsSent(t *testing.T) {
	t.Parallel()
	ch := watch(t, lockwatch.Options{Patterns: []string{t.TempDir() + "/*.lock"}})
	s, ok := next(t, ch, patience)
	if !ok || len(s) != 0 {
		t.Fatalf("first snapshot = %q, %v; want an empty one", s, ok)
	}
}

func TestCreateAndRemove(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ch := watch(t, lockwatch.Options{Patterns: []string{dir + "/*.lock"}})
	waitFor(t, ch)

	a := write(t, dir+"/a.lock", "")
	waitFor(t, ch, a)
	b := write(t, dir+"/b.lock", "123\n")
	waitFor(t, ch, a, b)
	write(t, dir+"/c.txt", "") // not a match: no snapshot
	quiet(t, ch)
	remove(t, a)
	waitFor(t, ch, b)
	remove(t, b)
	waitFor(t, ch)
}

// Writers that create a temporary name and rename it into place.
func TestRenameInAndOut(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ch := watch(t, lockwatch.Options{Patterns: []string{dir + "/*.lock"}})
	waitFor(t, ch)

	tmp := write(t, dir+"/.tmp", "")
	lock := dir + "/job.lock"
	if err := os.Rename(tmp, lock); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ch, lock)
	if err := os.Rename(lock, dir+"/job.done"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ch)
}

func TestDirectoryCreatedLater(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, sub string }{
		{"parent exists", "lock"},
		{"three levels missing", "app/var/lock"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			ch := watch(t, lockwatch.Options{Patterns: []string{root + "/" + tc.sub + "/*.lock"}})
			waitFor(t, ch)

			mkdir(t, root+"/"+tc.sub)
			f := write(t, root+"/"+tc.sub+"/x.lock", "")
			waitFor(t, ch, f)
			remove(t, f)
			waitFor(t, ch)
		})
	}
}

// A lock file created together with its directory, before any watch could
// be set on it, is found by the rescan the directory's creation causes.
func TestDirectoryCreatedWithLockInside(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	ch := watch(t, lockwatch.Options{Patterns: []string{root + "/lock/*.lock"}})
	waitFor(t, ch)

	// Built aside and renamed in, so the directory appears already holding it.
	write(t, root+"/staging/x.lock", "")
	if err := os.Rename(root+"/staging", root+"/lock"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ch, root+"/lock/x.lock")
}

func TestDirectoryRemovedAndRecreated(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	lockDir := root + "/lock"
	x := write(t, lockDir+"/x.lock", "")
	ch := watch(t, lockwatch.Options{Patterns: []string{lockDir + "/*.lock"}})
	waitFor(t, ch, x)

	for i := range 3 {
		remove(t, lockDir)
		waitFor(t, ch)
		mkdir(t, lockDir)
		y := write(t, lockDir+"/y"+strconv.Itoa(i)+".lock", "")
		waitFor(t, ch, y)
	}
}

// The parent of the lock directory goes away too, so the watch must climb
// up to the nearest ancestor that is left, and come back down.
func TestAncestorRemovedAndRecreated(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	x := write(t, root+"/app/lock/x.lock", "")
	ch := watch(t, lockwatch.Options{Patterns: []string{root + "/app/lock/*.lock"}})
	waitFor(t, ch, x)

	remove(t, root+"/app")
	waitFor(t, ch)
	mkdir(t, root+"/app")
	mkdir(t, root+"/app/lock")
	y := write(t, root+"/app/lock/y.lock", "")
	waitFor(t, ch, y)
}

func TestGlobInDirectoryParts(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	one := write(t, root+"/a/lock/1.lock", "")
	write(t, root+"/a/other/9.lock", "")    // wrong middle directory
	mkdir(t, root+"/a/lock/sub.lock")       // a directory, not a lock
	write(t, root+"/a/lock/sub.lock/x", "") // too deep
	write(t, root+"/file/lock", "")         // not under a directory match
	opts := lockwatch.Options{Patterns: []string{root + "/*/lock/*.lock"}}
	if got := lockwatch.Scan(opts); !slices.Equal(got, []string{one}) {
		t.Errorf("Scan = %q, want %q", got, []string{one})
	}
	ch := watch(t, opts)
	waitFor(t, ch, one)

	// A new match for the glob part, created after the watch started.
	mkdir(t, root+"/b")
	mkdir(t, root+"/b/lock")
	two := write(t, root+"/b/lock/2.lock", "")
	waitFor(t, ch, one, two)
	three := write(t, root+"/a/lock/3.lock", "")
	waitFor(t, ch, one, two, three)

	remove(t, root+"/a")
	waitFor(t, ch, two)
	remove(t, two)
	waitFor(t, ch)
}

func TestTwoPatterns(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	a := write(t, root+"/jobs/a.lock", "")
	both := write(t, root+"/jobs/both.pid.lock", "")
	opts := lockwatch.Options{Patterns: []string{
		root + "/jobs/*.lock",
		root + "/jobs/*.pid.lock", // overlaps the first: counted once
		root + "/cron/*.pid",
	}}
	want := []string{a, both}
	if got := lockwatch.Scan(opts); !slices.Equal(got, want) {
		t.Errorf("Scan = %q, want %q", got, want)
	}
	ch := watch(t, opts)
	waitFor(t, ch, want...)

	c := write(t, root+"/cron/c.pid", "")
	waitFor(t, ch, c, a, both)
	remove(t, both)
	waitFor(t, ch, c, a)
	remove(t, a)
	waitFor(t, ch, c)
	remove(t, c)
	waitFor(t, ch)
}

func TestLiteralPattern(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	ch := watch(t, lockwatch.Options{Patterns: []string{root + "/run/app.lock"}})
	waitFor(t, ch)
	f := write(t, root+"/run/app.lock", "")
	waitFor(t, ch, f)
	remove(t, f)
	waitFor(t, ch)
}

// A receiver that does not read for a while gets the newest state next,
// not a backlog of the states in between.
func TestSlowReceiverGetsNewest(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ch := watch(t, lockwatch.Options{Patterns: []string{dir + "/*.lock"}})

	var want []string
	for i := range 50 {
		want = append(want, write(t, dir+"/"+strconv.Itoa(i)+".lock", ""))
	}
	slices.Sort(want)
	got := 0
	deadline := time.Now().Add(patience)
	for {
		s, ok := next(t, ch, time.Until(deadline))
		if !ok {
			t.Fatalf("no snapshot with all 50 locks")
		}
		got++
		if slices.Equal(s, want) {
			break
		}
	}
	quiet(t, ch)
	// The first snapshot may predate some files; the rest is coalesced.
	// 50 separate snapshots would mean no coalescing at all.
	if got >= 50 {
		t.Errorf("%d snapshots for 50 files created unread", got)
	}
}

func TestBadPattern(t *testing.T) {
	t.Parallel()
	err := lockwatch.Watch(context.Background(), lockwatch.Options{Patterns: []string{"/app/[.lock"}}, make(chan []string))
	if !errors.Is(err, filepath.ErrBadPattern) {
		t.Errorf("Watch = %v, want %v", err, filepath.ErrBadPattern)
	}
}

// Not parallel: it counts goroutines, so nothing else may run meanwhile.
func TestNoGoroutineLeft(t *testing.T) {
	before := runtime.NumGoroutine()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan []string, 1)
	done := make(chan error)
	go func() {
		done <- lockwatch.Watch(ctx, lockwatch.Options{Patterns: []string{dir + "/*/x/*.lock"}, Poll: time.Millisecond}, out)
	}()
	<-out
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Goroutines that have returned may take a moment to be counted out.
	deadline := time.Now().Add(patience)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines before Watch, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		runtime.Gosched()
	}
}

func TestFixedDir(t *testing.T) {
	for glob, want := range map[string]string{
		"/app/lock/*.lock":        "/app/lock",
		"/app/lock/job.lock":      "/app/lock",
		"/app/*/lock/*.lock":      "/app",
		"/app/lock/../run/*.lock": "/app/run",
		"/*.lock":                 "/",
		"/[ab]/x.lock":            "/",
		"/app/[":                  "",
	} {
		if got := lockwatch.FixedDir(glob); got != want {
			t.Errorf("FixedDir(%q) = %q, want %q", glob, got, want)
		}
	}
}
