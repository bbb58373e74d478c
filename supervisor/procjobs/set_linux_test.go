package procjobs_test

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/drainit/drainit/internal/testkit"
	"github.com/drainit/drainit/supervisor/procjobs"
)

// The zero Set, without pidfds, is the diff of one scan against the last:
// PIDs in order, and a PID on another process (another start time) is
// the old job ended and a new one added.
func TestSetUpdate(t *testing.T) {
	var s procjobs.Set
	a, b, c := procjobs.Proc{PID: 30, Start: 1, Cmd: "a"}, procjobs.Proc{PID: 10, Start: 1, Cmd: "b"}, procjobs.Proc{PID: 20, Start: 1, Cmd: "c"}
	reused := procjobs.Proc{PID: 10, Start: 2, Cmd: "b again"}
	for _, step := range []struct {
		found        []procjobs.Proc
		added, ended []int // PIDs
		names        []string
	}{
		{found: []procjobs.Proc{a, b}, added: []int{10, 30}, names: []string{"pid 10 (b)", "pid 30 (a)"}},
		{found: []procjobs.Proc{a, b}, names: []string{"pid 10 (b)", "pid 30 (a)"}},
		{found: []procjobs.Proc{c, b}, added: []int{20}, ended: []int{30}, names: []string{"pid 10 (b)", "pid 20 (c)"}},
		{found: []procjobs.Proc{reused, c}, added: []int{10}, ended: []int{10}, names: []string{"pid 10 (b again)", "pid 20 (c)"}},
		{found: nil, ended: []int{10, 20}, names: []string{}},
	} {
		added, ended := s.Update(step.found)
		if !slices.Equal(pidsOf(added), step.added) || !slices.Equal(pidsOf(ended), step.ended) {
			t.Fatalf("update to %v: added %v, ended %v; want %v, %v", step.found, added, ended, step.added, step.ended)
		}
		if got := s.Names(); !slices.Equal(got, step.names) || s.Len() != len(step.names) {
			t.Fatalf("update to %v: holds %v (%d), want %v", step.found, got, s.Len(), step.names)
		}
		for _, p := range step.found {
			if !s.Has(p.ID()) {
				t.Fatalf("update to %v: %v missing", step.found, p)
			}
		}
	}
	if s.Has(b.ID()) {
		t.Error("the reused PID's first job is still held")
	}
}

// End lets go of a job whose exit the reaper or a pidfd saw, once.
func TestSetEnd(t *testing.T) {
	var s procjobs.Set
	p := procjobs.Proc{PID: 10, Start: 1, Cmd: "a"}
	s.Update([]procjobs.Proc{p})
	if got, ok := s.End(10); !ok || got != p {
		t.Fatalf("End(10) = %v, %v; want %v", got, ok, p)
	}
	if _, ok := s.End(10); ok {
		t.Fatal("a job ended twice")
	}
	if added, ended := s.Update(nil); len(added)+len(ended) != 0 {
		t.Fatalf("after End, an empty scan: added %v, ended %v", added, ended)
	}
}

// A nil *Set is the drain without rules for process jobs: it holds
// nothing, and its C never delivers.
func TestNilSet(t *testing.T) {
	var s *procjobs.Set
	for range s.All() {
		t.Error("a nil set yields a job")
	}
	if _, ok := s.End(1); ok || s.Len() != 0 || s.Names() != nil || s.Has(procjobs.ID{PID: 1}) || s.C() != nil {
		t.Error("a nil set holds something")
	}
}

// With pidfds a job's end is reported on C; a job whose PID names another
// process by the time it is watched is not added. The Reaper's children
// need no pidfd: the same job then is added, its end left to the reaper.
func TestSetWatchesExits(t *testing.T) {
	s := procjobs.Set{}
	if err := s.WatchExits(); err != nil {
		testkit.SkipOrFail(t, fmt.Sprintf("no pidfds here (pidfd_open needs Linux 5.3): %v", err))
	}
	defer s.Close()
	a := sleeper(t, "1007")
	found := procjobs.Scan(procjobs.Rules{Match: []*regexp.Regexp{regexp.MustCompile(`^sleep 1007 `)}}, procjobs.Scope{Self: os.Getpid()})
	if len(found) != 1 {
		t.Fatalf("scan found %v", found)
	}
	other := found[0]
	other.Start++
	if added, _ := s.Update([]procjobs.Proc{other}); len(added) != 0 {
		t.Fatalf("added %v, a process that is not the one scanned", added)
	}
	if added, _ := s.Update(found); !slices.Equal(added, found) {
		t.Fatalf("added %v, want %v", added, found)
	}
	a.Process.Kill()
	select {
	case pid := <-s.C():
		if _, ok := s.End(pid); !ok || pid != a.Process.Pid {
			t.Fatalf("exit of %d (a job: %v), want %d", pid, ok, a.Process.Pid)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit reported")
	}
	a.Wait()

	adopter := procjobs.Set{Reaper: os.Getpid()}
	if err := adopter.WatchExits(); err != nil {
		t.Fatal(err)
	}
	defer adopter.Close()
	if added, _ := adopter.Update([]procjobs.Proc{other}); len(added) != 1 {
		t.Fatalf("added %v, want the reaper's child though it has ended: no pidfd is asked about it", added)
	}
	adopter.Close()
	if adopter.C() != nil || adopter.Len() != 1 {
		t.Errorf("after Close: C %v, %d jobs; want nil and the job kept", adopter.C(), adopter.Len())
	}
}
