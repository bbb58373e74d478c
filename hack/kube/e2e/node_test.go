// Package e2e_test runs the Apache + mod_php example (Dockerfile.example,
// drainit-example/demo-web:test) on a real Kubernetes node started by
// hack/local-cluster.sh, with the manifests of examples/kubernetes as they
// are written (only the image swapped, and imagePullPolicy: Never since
// nothing can be pulled here): the kubelet itself runs the pods, sends the
// stop signal, runs the preStop hook, enforces the grace period and shows
// the logs.
//
// Each stopped pod is followed from the node: its container's PID 1 by a
// pidfd (the exit, to the millisecond: the API's finishedAt has seconds
// only), and the app's own jobs.log, read every 50 ms through
// /proc/PID/root while the container runs (a job appends "done ID TIME"
// just before it removes its lock, so the last line of a drained pod comes
// at least Apache's graceful stop before the exit). The exit code and
// reason are the kubelet's, from the pod's status.
//
// Run it with `hack/local-cluster.sh test`. Without the cluster (no
// DRAINIT_KUBE_SERVER) every test skips, or fails under DRAINIT_TEST_STRICT=1.
package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	watchtools "k8s.io/client-go/tools/watch"
	"sigs.k8s.io/yaml"

	"github.com/drainit/drainit/hack/kube/e2e/internal/within"
	"github.com/drainit/drainit/internal/testkit"
)

const (
	// Image is the example's image, built from Dockerfile.example by the
	// tests of examples/apache-php.
	Image = "drainit-example/demo-web:test"
	// NoEntrypoint is the same app the way deployment-prestop.yaml expects
	// it: drainit only copied in, php:apache's own ENTRYPOINT and
	// STOPSIGNAL (SIGWINCH, Apache's graceful stop) left in place.
	NoEntrypoint = "drainit-example/demo-web:test-no-drainit-entrypoint"

	costAnnotation = "controller.kubernetes.io/pod-deletion-cost"
	long           = 2 * time.Minute
	// request bounds one API request or kubectl call: a server that takes
	// a connection and never answers fails the test that asked, with the
	// request in its message, instead of stalling the run until go test's
	// -timeout.
	request = 30 * time.Second
	lockDir = "/app/demo-web/public/lock"
	jobsLog = "/app/demo-web/jobs.log"
)

var root = func() string { p, _ := filepath.Abs("../../.."); return p }()

type cluster struct {
	kube   *kubernetes.Clientset // each request bounded by request
	stream *kubernetes.Clientset // for watches and logs, bounded by their context
	dir    string                // DRAINIT_KUBE_DIR: containerd's socket is there
}

func connect(t *testing.T) *cluster {
	t.Helper()
	if os.Getenv("DRAINIT_KUBE_SERVER") == "" || os.Getenv("KUBECONFIG") == "" {
		testkit.SkipOrFail(t, "no cluster: run hack/local-cluster.sh test (DRAINIT_KUBE_SERVER is not set)")
	}
	if err := images(); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	c := &cluster{dir: os.Getenv("DRAINIT_KUBE_DIR")}
	if c.stream, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Timeout = request
	if c.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	return c
}

// images builds what is missing and loads both images into the node.
var images = sync.OnceValue(func() error {
	if within.Run(exec.Command("docker", "image", "inspect", Image), time.Minute) != nil {
		// The apache-php tests build it from Dockerfile.example (and the
		// stand-ins for its bases: minutes the first time).
		build := exec.Command("go", "test", "-count=1", "-run", "TestDockerStopKeepsJobs", "./examples/apache-php/")
		build.Dir = root
		if out, err := within.CombinedOutput(build, 18*time.Minute); err != nil {
			return fmt.Errorf("building %s with the apache-php tests: %v\n%s", Image, err, out)
		}
	}
	// The image's own Dockerfile.example, undone: what an image whose
	// ENTRYPOINT cannot change looks like, with drainit copied in.
	build := exec.Command("docker", "build", "-q", "-t", NoEntrypoint, "-")
	build.Stdin = strings.NewReader("FROM " + Image + "\n" +
		"ENTRYPOINT [\"docker-php-entrypoint\"]\nCMD [\"apache2-foreground\"]\nSTOPSIGNAL SIGWINCH\n")
	if out, err := within.CombinedOutput(build, 3*time.Minute); err != nil {
		return fmt.Errorf("docker build %s: %v\n%s", NoEntrypoint, err, out)
	}
	load := exec.Command(filepath.Join(root, "hack/local-cluster.sh"), "load", Image, NoEntrypoint)
	if out, err := within.CombinedOutput(load, 3*time.Minute); err != nil {
		return fmt.Errorf("local-cluster.sh load: %v\n%s", err, out)
	}
	return nil
})

// manifest reads a Deployment of examples/kubernetes as written, and swaps
// its image for one on the node.
func manifest(t *testing.T, file, image string) *appsv1.Deployment {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "examples/kubernetes", file))
	if err != nil {
		t.Fatal(err)
	}
	var d appsv1.Deployment
	if err := yaml.UnmarshalStrict(b, &d); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	c := &d.Spec.Template.Spec.Containers[0]
	c.Image, c.ImagePullPolicy = image, corev1.PullNever
	return &d
}

func env(c *corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

func setEnv(c *corev1.Container, name, value string) {
	for i := range c.Env {
		if c.Env[i].Name == name {
			c.Env[i].Value = value
			return
		}
	}
	c.Env = append(c.Env, corev1.EnvVar{Name: name, Value: value})
}

// ns is one test's namespace, with a watch on its pods that remembers how
// each container ended.
type ns struct {
	c    *cluster
	name string

	mu      sync.Mutex
	ended   map[string]*corev1.ContainerStateTerminated
	history map[string][]string // each watch event of each pod, to tell what went wrong
}

func (c *cluster) namespace(t *testing.T, prefix string) *ns {
	t.Helper()
	ctx := context.Background()
	n := &ns{c: c, name: fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1e6), ended: map[string]*corev1.ContainerStateTerminated{}, history: map[string][]string{}}
	if _, err := c.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n.name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A retrying watch: a watch the server ends early must not lose the
	// one status update that tells how a container ended.
	wctx, cancel := context.WithCancel(ctx)
	list, err := c.kube.CoreV1().Pods(n.name).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := watchtools.NewRetryWatcherWithContext(wctx, list.ResourceVersion, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return c.stream.CoreV1().Pods(n.name).Watch(ctx, o)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || ev.Type == watch.Error {
				continue
			}
			n.mu.Lock()
			h := fmt.Sprintf("%s %s phase=%s deleting=%v", time.Now().Format("15:04:05.000"), ev.Type, p.Status.Phase, p.DeletionTimestamp != nil)
			for _, s := range p.Status.ContainerStatuses {
				h += fmt.Sprintf(" %+v", s.State)
				if s.State.Terminated != nil {
					n.ended[p.Name] = s.State.Terminated
				}
			}
			n.history[p.Name] = append(n.history[p.Name], h)
			n.mu.Unlock()
		}
	}()
	// Each test leaves the node empty for the next: its pods hold CPU
	// requests until they are gone. They are deleted with a second's grace
	// (jobs left running do not matter now), before the namespace: the
	// namespace controller would wait out their 300 s.
	t.Cleanup(func() {
		defer cancel()
		if t.Failed() {
			out, _ := within.CombinedOutput(exec.Command("kubectl", "-n", n.name, "get", "pods,events", "-o", "wide"), request)
			t.Logf("kubectl get pods,events:\n%s", out)
		}
		one := int64(1)
		pods := c.kube.CoreV1().Pods(n.name)
		_ = c.kube.AppsV1().Deployments(n.name).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		deadline := time.Now().Add(long)
		for {
			_ = pods.DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &one}, metav1.ListOptions{})
			list, err := pods.List(ctx, metav1.ListOptions{})
			if err == nil && len(list.Items) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("the pods of namespace %s not gone within %v", n.name, long)
				break
			}
			time.Sleep(200 * time.Millisecond) // polling the kubelet's progress
		}
		_ = c.kube.CoreV1().Namespaces().Delete(ctx, n.name, metav1.DeleteOptions{})
	})
	return n
}

func (n *ns) kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := within.CombinedOutput(exec.Command("kubectl", append([]string{"-n", n.name}, args...)...), request)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (n *ns) deploy(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	if _, err := n.c.kube.AppsV1().Deployments(n.name).Create(context.Background(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// ready waits until the Deployment's label selects want pods, each Ready
// and none terminating, and returns them sorted by name.
func (n *ns) ready(t *testing.T, app string, want int) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	deadline := time.Now().Add(long)
	for {
		pods = n.pods(t, app)
		ok := len(pods) == want
		for _, p := range pods {
			ok = ok && isReady(p)
		}
		if ok {
			return pods
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d ready pods of %s not there within %v: %v", want, app, long, describe(pods))
		}
		time.Sleep(200 * time.Millisecond) // polling the kubelet's progress
	}
}

func (n *ns) pods(t *testing.T, app string) []corev1.Pod {
	t.Helper()
	list, err := n.c.kube.CoreV1().Pods(n.name).List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		t.Fatal(err)
	}
	var pods []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			pods = append(pods, p)
		}
	}
	slices.SortFunc(pods, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	return pods
}

func isReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func describe(pods []corev1.Pod) string {
	var s []string
	for _, p := range pods {
		s = append(s, fmt.Sprintf("%s(%s ready=%v cost=%q)", p.Name, p.Status.Phase, isReady(p), p.Annotations[costAnnotation]))
	}
	return strings.Join(s, " ")
}

// waitCosts waits until each named pod's deletion-cost annotation is as
// wanted: drainit --deletion-cost wrote it from inside the pod.
func (n *ns) waitCosts(t *testing.T, app string, want map[string]string) {
	t.Helper()
	deadline := time.Now().Add(long)
	for {
		pods := n.pods(t, app)
		ok := true
		for _, p := range pods {
			if w, in := want[p.Name]; in && p.Annotations[costAnnotation] != w {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("deletion costs not %v within %v: %v", want, long, describe(pods))
		}
		time.Sleep(200 * time.Millisecond) // polling drainit's writes
	}
}

func (n *ns) scale(t *testing.T, deployment string, replicas int) time.Time {
	t.Helper()
	at := time.Now()
	n.kubectl(t, "scale", "deployment/"+deployment, "--replicas="+strconv.Itoa(replicas))
	return at
}

// terminated is how the kubelet says the pod's container ended.
func (n *ns) terminated(t *testing.T, pod string) *corev1.ContainerStateTerminated {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n.mu.Lock()
		s := n.ended[pod]
		n.mu.Unlock()
		if s != nil {
			return s
		}
		if time.Now().After(deadline) {
			n.mu.Lock()
			h := strings.Join(n.history[pod], "\n")
			n.mu.Unlock()
			t.Fatalf("pod %s: no terminated state seen in its status; its watch events:\n%s", pod, h)
		}
		time.Sleep(50 * time.Millisecond) // the watch fills it in
	}
}

// client closes each connection after its request: an idle keep-alive
// connection would hold an Apache child, and Apache's graceful stop waits
// for its children.
var client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}

func get(url string) (string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return string(b), err
}

// pod is one pod followed from the node while it runs and stops.
type pod struct {
	t          *testing.T
	name, base string // base: http://POD-IP, the pod's IP on the node's bridge
	jobs       []string

	exited chan struct{}
	exit   time.Time // its container's PID 1 exited, by the node's clock
	mu     sync.Mutex
	log    string // jobs.log, as last read
	logs   strings.Builder
	logsOK chan struct{}
}

// follow starts following p's container: its PID 1, its jobs.log, and its
// kubectl logs.
func (n *ns) follow(t *testing.T, p corev1.Pod) *pod {
	t.Helper()
	if len(p.Status.ContainerStatuses) != 1 {
		t.Fatalf("pod %s has %d container statuses, want 1", p.Name, len(p.Status.ContainerStatuses))
	}
	id := strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "containerd://")
	pid := n.c.taskPID(t, id)
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatalf("pidfd_open %d (pod %s): %v", pid, p.Name, err)
	}
	f := &pod{t: t, name: p.Name, base: "http://" + p.Status.PodIP, exited: make(chan struct{}), logsOK: make(chan struct{})}
	go func() {
		defer close(f.exited)
		defer unix.Close(fd)
		path := fmt.Sprintf("/proc/%d/root%s", pid, jobsLog)
		for {
			if b, err := os.ReadFile(path); err == nil {
				f.mu.Lock()
				f.log = string(b)
				f.mu.Unlock()
			}
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if n, _ := unix.Poll(fds, 50); n > 0 {
				f.exit = time.Now()
				return
			}
		}
	}()
	logs, stop := context.WithCancel(context.Background())
	t.Cleanup(stop) // a stream that outlives wait's patience
	go func() {
		defer close(f.logsOK)
		s, err := n.c.stream.CoreV1().Pods(n.name).GetLogs(p.Name, &corev1.PodLogOptions{Follow: true}).Stream(logs)
		if err != nil {
			f.mu.Lock()
			f.logs.WriteString("(kubectl logs: " + err.Error() + ")")
			f.mu.Unlock()
			return
		}
		defer s.Close()
		sc := bufio.NewScanner(s)
		for sc.Scan() {
			f.mu.Lock()
			f.logs.WriteString(sc.Text() + "\n")
			f.mu.Unlock()
		}
	}()
	return f
}

// taskPID asks the node's containerd for the host PID of a container's
// PID 1.
func (c *cluster) taskPID(t *testing.T, id string) int {
	t.Helper()
	out, err := within.Output(exec.Command("ctr", "-a", filepath.Join(c.dir, "containerd/containerd.sock"), "-n", "k8s.io", "tasks", "ls"), request)
	if err != nil {
		t.Fatalf("ctr tasks ls: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == id {
			pid, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("ctr tasks ls: %q", line)
			}
			return pid
		}
	}
	t.Fatalf("container %s not among containerd's tasks:\n%s", id, out)
	return 0
}

// start starts job id for d through the app's own start.php, and waits
// until its lock file is there (the request returns before the job has
// made it: PHP's CLI takes a moment to start).
func (p *pod) start(id string, d time.Duration) {
	p.t.Helper()
	if _, err := get(fmt.Sprintf("%s/start.php?id=%s&seconds=%d", p.base, id, int(d.Seconds()))); err != nil {
		p.t.Fatal(err)
	}
	p.jobs = append(p.jobs, id)
	deadline := time.Now().Add(long)
	for {
		jobs, err := get(p.base + "/")
		if err != nil {
			p.t.Fatal(err)
		}
		if strings.Contains(jobs, "held "+id+"\n") {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("job %s made no lock within %s:\n%s", id, long, jobs)
		}
		time.Sleep(20 * time.Millisecond) // polling the job's start
	}
}

// wait waits for the container to exit and its kubectl logs to end.
func (p *pod) wait(bound time.Duration) {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(bound):
		p.t.Fatalf("pod %s: container still running %v later", p.name, bound)
	}
	select {
	case <-p.logsOK:
	case <-time.After(30 * time.Second):
		p.t.Errorf("pod %s: kubectl logs did not end with the container", p.name)
	}
}

var doneLine = regexp.MustCompile(`(?m)^done (\S+) ([0-9.]+)$`)

func (p *pod) jobsLog() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log
}

// done is each finished job and when it finished, from jobs.log.
func (p *pod) done() map[string]time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	got := map[string]time.Time{}
	for _, m := range doneLine.FindAllStringSubmatch(p.log, -1) {
		at, _ := strconv.ParseFloat(m[2], 64)
		got[m[1]] = time.Unix(0, int64(at*1e9))
	}
	return got
}

// lost is how many of the pod's jobs never finished; linger is the time
// from its last job's end to the container's exit (negative when no job
// finished).
func (p *pod) lost() (lost int, linger time.Duration) {
	done := p.done()
	var last time.Time
	for _, id := range p.jobs {
		at, ok := done[id]
		if !ok {
			lost++
		} else if at.After(last) {
			last = at
		}
	}
	if last.IsZero() {
		return lost, -1
	}
	return lost, p.exit.Sub(last)
}

func (p *pod) kubectlLogs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// statusState is the part of drainit status --json that the tests read.
type statusState struct {
	Phase  string `json:"phase"`
	AppPID int    `json:"app_pid"`
	Jobs   []struct {
		Lock string `json:"lock"`
	} `json:"jobs"`
	StopSignalAt *time.Time `json:"stop_signal_at"`
	Deadline     *time.Time `json:"deadline"`
}

// status runs drainit status --json in p's container through kubectl exec
// until it reports phase (the stop reaches the container a moment after
// the scale-down), and returns what it said.
func (p *pod) status(n *ns, phase string) statusState {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := within.Output(exec.Command("kubectl", "-n", n.name, "exec", p.name, "--", "drainit", "status", "--json"), request)
		var st statusState
		if err == nil {
			if jerr := json.Unmarshal(out, &st); jerr != nil {
				p.t.Fatalf("drainit status --json in pod %s: %v\n%s", p.name, jerr, out)
			}
			if st.Phase == phase {
				return st
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("pod %s: drainit status did not say %q within 30s; last: %v %s", p.name, phase, err, out)
		}
		time.Sleep(100 * time.Millisecond) // polling for the phase
	}
}

// wantLogs checks that the kubectl logs of p hold each line part.
func (p *pod) wantLogs(parts ...string) {
	p.t.Helper()
	logs := p.kubectlLogs()
	for _, part := range parts {
		if !strings.Contains(logs, part) {
			p.t.Errorf("pod %s: kubectl logs lack %q:\n%s", p.name, part, logs)
		}
	}
}
