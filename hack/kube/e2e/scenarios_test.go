package e2e_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Apache's graceful stop (SIGWINCH) takes about a second; on a loaded
// machine more. A drained pod's container must exit within this of its
// last job.
const lingerMax = 3 * time.Second

func secondsEnv(t *testing.T, c *corev1.Container, name string) time.Duration {
	t.Helper()
	n, err := strconv.Atoi(env(c, name))
	if err != nil {
		t.Fatalf("%s in the manifest: %v", name, err)
	}
	return time.Duration(n) * time.Second
}

// TestScaleDownKeepsJobs: deployment.yaml's three pods, jobs on two, a
// scale-down to one. With --deletion-cost the ReplicaSet deletes the idle
// pod and the less busy one; the idle one goes once DRAINIT_DELAY is over,
// the busy one about a second after its job, and the busiest pod stays.
func TestScaleDownKeepsJobs(t *testing.T) {
	c := connect(t)
	n := c.namespace(t, "scale-down")
	n.kubectl(t, "apply", "-f", filepath.Join(root, "examples/kubernetes/rbac.yaml"))
	d := manifest(t, "deployment.yaml", Image)
	delay := secondsEnv(t, &d.Spec.Template.Spec.Containers[0], "DRAINIT_DELAY")
	n.deploy(t, d)
	pods := n.ready(t, "web", 3)
	var f []*pod
	for _, p := range pods {
		f = append(f, n.follow(t, p))
	}
	busy, busiest, idle := f[0], f[1], f[2]
	// Long enough to outlast the wait for the annotations and the delay.
	busy.start("busy-1", 20*time.Second)
	busiest.start("busiest-1", 20*time.Second)
	busiest.start("busiest-2", 24*time.Second)
	n.waitCosts(t, "web", map[string]string{busy.name: "1", busiest.name: "2", idle.name: "0"})

	stopped := n.scale(t, "web", 1)
	idle.wait(long)
	busy.wait(long)

	if took := idle.exit.Sub(stopped); took > delay+lingerMax {
		t.Errorf("the idle pod's container exited %v after the scale-down, want within DRAINIT_DELAY (%v) and Apache's stop", took, delay)
	} else {
		t.Logf("idle pod: exited %v after the scale-down (DRAINIT_DELAY %v)", took.Round(time.Millisecond), delay)
	}
	lost, linger := busy.lost()
	if lost > 0 {
		t.Errorf("the busy pod lost %d of its jobs; jobs.log:\n%s", lost, busy.jobsLog())
	} else if linger > lingerMax || linger < 0 {
		t.Errorf("the busy pod's container exited %v after its last job, want within %v", linger, lingerMax)
	} else {
		t.Logf("busy pod: exited %v after its last job", linger.Round(time.Millisecond))
	}
	for _, p := range []*pod{idle, busy} {
		s := n.terminated(t, p.name)
		if s.ExitCode != 0 || s.Reason != "Completed" {
			t.Errorf("pod %s: container ended with code %d, reason %q; want 0, Completed", p.name, s.ExitCode, s.Reason)
		}
		// drainit's termination message, which kubectl describe pod shows.
		if !strings.Contains(s.Message, "drainit: stop by SIGTERM") || !strings.Contains(s.Message, "none cut") {
			t.Errorf("pod %s: termination message %q, want drainit's summary of the stop with no job cut", p.name, s.Message)
		}
	}
	if s := n.terminated(t, busy.name); !strings.Contains(s.Message, "1 job finished") {
		t.Errorf("the busy pod's termination message %q does not count its job as finished", s.Message)
	}
	busy.wantLogs("draining", "released "+lockDir+"/busy-1.lock", "drain done", "stopping the app")
	idle.wantLogs("draining", "drain done")

	left := n.ready(t, "web", 1)
	if left[0].Name != busiest.name {
		t.Fatalf("pod %s was kept, want the busiest, %s", left[0].Name, busiest.name)
	}
	deadline := time.Now().Add(long)
	for {
		jobs, err := get(busiest.base + "/")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(jobs, "done busiest-1 ") && strings.Contains(jobs, "done busiest-2 ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the kept pod's jobs did not finish:\n%s", jobs)
		}
		time.Sleep(200 * time.Millisecond) // polling the jobs' end
	}
}

// TestBusyPodsLast: --deletion-cost on real pods, with the RBAC of
// examples/kubernetes and the token the kubelet projects: of four pods, a
// scale-down to two keeps the two with jobs.
func TestBusyPodsLast(t *testing.T) {
	c := connect(t)
	n := c.namespace(t, "busy-last")
	n.kubectl(t, "apply", "-f", filepath.Join(root, "examples/kubernetes/rbac.yaml"))
	d := manifest(t, "deployment.yaml", Image)
	four := int32(4)
	d.Spec.Replicas = &four
	n.deploy(t, d)
	pods := n.ready(t, "web", 4)
	// Not the first two by name: the ReplicaSet's own order must not be
	// what keeps them.
	var busy, idle []string
	for i, p := range pods {
		if i == 1 || i == 3 {
			f := n.follow(t, p)
			f.start("job", 15*time.Second)
			busy = append(busy, p.Name)
		} else {
			idle = append(idle, p.Name)
		}
	}
	n.waitCosts(t, "web", map[string]string{busy[0]: "1", busy[1]: "1", idle[0]: "0", idle[1]: "0"})
	n.scale(t, "web", 2)
	var kept []string
	for _, p := range n.ready(t, "web", 2) {
		kept = append(kept, p.Name)
	}
	if !slices.Equal(kept, busy) {
		t.Fatalf("after scaling 4 to 2, pods %v remain, want the busy %v (idle: %v)", kept, busy, idle)
	}
}

// TestGraceBeforeSIGKILL: a job longer than terminationGracePeriodSeconds.
// drainit gives it up at its drain deadline, stops Apache and exits on its
// own, before the kubelet's SIGKILL: exit code 0, not 137. The grace is
// 15 s here instead of the manifest's 300 (and DRAINIT_GRACE with it, and
// DRAINIT_STOP_TIMEOUT within it), so that the test takes seconds.
func TestGraceBeforeSIGKILL(t *testing.T) {
	c := connect(t)
	n := c.namespace(t, "grace")
	n.kubectl(t, "apply", "-f", filepath.Join(root, "examples/kubernetes/rbac.yaml"))
	d := manifest(t, "deployment.yaml", Image)
	one, grace := int32(1), int64(15)
	d.Spec.Replicas = &one
	d.Spec.Template.Spec.TerminationGracePeriodSeconds = &grace
	ct := &d.Spec.Template.Spec.Containers[0]
	setEnv(ct, "DRAINIT_GRACE", "15")
	setEnv(ct, "DRAINIT_STOP_TIMEOUT", "5")
	n.deploy(t, d)
	p := n.follow(t, n.ready(t, "web", 1)[0])
	p.start("long", 120*time.Second)
	if st := p.status(n, "running"); st.AppPID <= 1 || len(st.Jobs) != 0 {
		t.Errorf("drainit status before the stop: app pid %d, %d jobs; want the app's pid and no job (jobs are watched from the stop on)", st.AppPID, len(st.Jobs))
	}

	stopped := n.scale(t, "web", 0)
	// What a person asks a pod stuck in Terminating: kubectl exec POD --
	// drainit status, as text and as JSON.
	st := p.status(n, "draining")
	if len(st.Jobs) != 1 || st.Jobs[0].Lock != lockDir+"/long.lock" || st.Deadline == nil || st.StopSignalAt == nil {
		t.Errorf("drainit status while draining: %+v; want long.lock held, the stop and the deadline set", st)
	} else if left := time.Until(*st.Deadline); left <= 0 || left > time.Duration(grace)*time.Second {
		t.Errorf("drainit status: deadline %v away, want within the grace period", left)
	}
	text := n.kubectl(t, "exec", p.name, "--", "drainit", "status")
	for _, want := range []string{"draining", lockDir + "/long.lock", "left"} {
		if !strings.Contains(text, want) {
			t.Errorf("kubectl exec drainit status lacks %q:\n%s", want, text)
		}
	}
	t.Logf("kubectl exec %s -- drainit status:\n%s", p.name, text)

	p.wait(long)
	took := p.exit.Sub(stopped)
	s := n.terminated(t, p.name)
	t.Logf("termination message:\n%s", s.Message)
	for _, want := range []string{"1 cut at the drain deadline", lockDir + "/long.lock", "drainit exit code 0"} {
		if !strings.Contains(s.Message, want) {
			t.Errorf("termination message lacks %q:\n%s", want, s.Message)
		}
	}
	t.Logf("exited %v after the scale-down; code %d, reason %q", took.Round(time.Millisecond), s.ExitCode, s.Reason)
	// The kubelet sends SIGKILL no earlier than 15 s after the scale-down.
	if took >= time.Duration(grace)*time.Second {
		t.Errorf("the container exited %v after the scale-down, not before the grace period (%ds) ended", took, grace)
	}
	if s.ExitCode != 0 || s.Reason != "Completed" {
		t.Errorf("container ended with code %d, reason %q; want 0, Completed (137 is the kubelet's SIGKILL)", s.ExitCode, s.Reason)
	}
	p.wantLogs("drain deadline reached", lockDir+"/long.lock", "stopping the app")
}

// way is one way to stop the example's pods, for the side-by-side.
type way struct {
	name   string
	image  string
	file   string
	change func(*corev1.Container)
	drains bool // keeps every job
}

var ways = []way{
	{"Apache as PID 1 (command: apache2-foreground)", Image, "deployment.yaml",
		func(c *corev1.Container) { c.Command = []string{"apache2-foreground"} }, false},
	{"the seed's preStop loop (bash, sleep 10), Apache as PID 1", NoEntrypoint, "deployment-prestop.yaml",
		func(c *corev1.Container) {
			c.Lifecycle.PreStop.Exec.Command = []string{"bash", "-c",
				"while ls " + lockDir + "/*.lock; do sleep 10; done > /proc/1/fd/1"}
		}, true},
	{"preStop: drainit wait (deployment-prestop.yaml)", NoEntrypoint, "deployment-prestop.yaml", nil, true},
	{"drainit as ENTRYPOINT (deployment.yaml)", Image, "deployment.yaml", nil, true},
}

// TestStopsSideBySide stops three busy pods (jobs of 8, 10 and 12 s, one
// per pod) each way, with a scale-down to zero, and tells jobs lost and
// each pod's time from its last job to its container's exit: the
// real-kubelet rows of BENCHMARKS.md (go test -v prints the table).
func TestStopsSideBySide(t *testing.T) {
	c := connect(t)
	var table []string
	for i, w := range ways {
		ok := t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Logf("way: %s", w.name)
			n := c.namespace(t, "side-"+strconv.Itoa(i))
			n.kubectl(t, "apply", "-f", filepath.Join(root, "examples/kubernetes/rbac.yaml"))
			d := manifest(t, w.file, w.image)
			if w.change != nil {
				w.change(&d.Spec.Template.Spec.Containers[0])
			}
			n.deploy(t, d)
			app := d.Spec.Selector.MatchLabels["app"]
			var f []*pod
			for j, p := range n.ready(t, app, 3) {
				f = append(f, n.follow(t, p))
				f[j].start(fmt.Sprintf("job-%d", j), time.Duration(8+2*j)*time.Second)
			}
			stopped := n.scale(t, d.Name, 0)
			var lost, jobs int
			var lingers, stops []time.Duration
			var codes []string
			for _, p := range f {
				p.wait(long)
				l, linger := p.lost()
				lost += l
				jobs += len(p.jobs)
				if linger >= 0 {
					lingers = append(lingers, linger)
				}
				stops = append(stops, p.exit.Sub(stopped))
				s := n.terminated(t, p.name)
				codes = append(codes, strconv.Itoa(int(s.ExitCode)))
				after := "– (no job finished)"
				if linger >= 0 {
					after = linger.Round(time.Millisecond).String()
				}
				t.Logf("pod %s: lost %d, last job → exit %s, scale-down → exit %v, exit code %d (%s)",
					p.name, l, after, p.exit.Sub(stopped).Round(time.Millisecond), s.ExitCode, s.Reason)
			}
			if w.drains {
				if lost > 0 {
					t.Errorf("%d of %d jobs lost", lost, jobs)
				}
			} else if lost != jobs {
				t.Errorf("%d of %d jobs lost, want all: Apache as PID 1 takes its jobs down with it", lost, jobs)
			}
			switch w.name {
			case ways[2].name:
				for _, p := range f {
					p.wantLogs("waiting for", "no lock held")
				}
			case ways[3].name:
				for _, p := range f {
					p.wantLogs("draining", "drain done")
				}
			}
			if w.drains && w.name != ways[1].name {
				for _, l := range lingers {
					if l > lingerMax {
						t.Errorf("a container exited %v after its last job, want within %v", l, lingerMax)
					}
				}
			}
			table = append(table, fmt.Sprintf("| %s | %d/%d | %s | %s | %s |", w.name, lost, jobs,
				median(lingers), median(stops), strings.Join(codes, ", ")))
		})
		if !ok {
			break
		}
	}
	t.Logf("\n| way | jobs lost | last job → container exit, median | scale-down → container exit, median | exit codes |\n|---|--:|--:|--:|--|\n%s",
		strings.Join(table, "\n"))
}

func median(d []time.Duration) string {
	if len(d) == 0 {
		return "–"
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return fmt.Sprintf("%.2f s", s[len(s)/2].Seconds())
}
