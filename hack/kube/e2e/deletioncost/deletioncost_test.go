// Package deletioncost_test runs drainit --deletion-cost against a real
// kube-apiserver and kube-controller-manager, started by
// hack/local-cluster.sh, and checks
// what matters: a ReplicaSet scale-down removes the idle pods and keeps the
// busy ones. Each pod is played by a drainit process with its own lock
// directory and service-account token.
//
// Its pods are never scheduled (a scheduler name no scheduler answers to),
// so the node's kubelet leaves them alone and they rank as unassigned
// pods alike.
//
// Run it with `hack/local-cluster.sh test`. Without the cluster (no
// DRAINIT_KUBE_SERVER) every test skips, or fails under DRAINIT_TEST_STRICT=1.
package deletioncost_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/drainit/drainit/hack/kube/e2e/internal/within"
	"github.com/drainit/drainit/internal/testkit"
)

const (
	annotation = "controller.kubernetes.io/pod-deletion-cost"
	patience   = 60 * time.Second
	// request bounds one API request: a server that takes a connection
	// and never answers fails the test that asked, with the request in
	// its message, instead of stalling the run until go test's -timeout.
	request = 30 * time.Second
	// The cluster has a scheduler and a kubelet; these tests' pods must
	// stay unassigned: assigned pods rank above unassigned ones in a
	// scale-down whatever their cost, and the kubelet would run them.
	unscheduled = "drainit-test-nobody"
)

// cluster is the one local-cluster.sh started, as its env file describes.
type cluster struct {
	dir, server, ca, audit string
	kube                   *kubernetes.Clientset // each request bounded by request
	watch                  *kubernetes.Clientset // for watches, bounded by their context
}

func connect(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{
		dir:    os.Getenv("DRAINIT_KUBE_DIR"),
		server: os.Getenv("DRAINIT_KUBE_SERVER"),
		ca:     os.Getenv("DRAINIT_KUBE_CA"),
		audit:  os.Getenv("DRAINIT_KUBE_AUDIT"),
	}
	if c.server == "" {
		testkit.SkipOrFail(t, "no cluster: run hack/local-cluster.sh test (DRAINIT_KUBE_SERVER is not set)")
	}
	cfg := &rest.Config{
		Host:            c.server,
		BearerToken:     os.Getenv("DRAINIT_KUBE_TOKEN"),
		TLSClientConfig: rest.TLSClientConfig{CAFile: c.ca},
		QPS:             100, Burst: 200,
	}
	var err error
	if c.watch, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Timeout = request
	if c.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	return c
}

// namespace creates a namespace of its own for the test, with the service
// account "drainit" bound to a Role that allows only patch on pods, and
// the service account "no-role" bound to nothing.
func (c *cluster) namespace(t *testing.T, name string) string {
	t.Helper()
	ctx := context.Background()
	ns := fmt.Sprintf("%s-%d", name, time.Now().UnixNano()%1e6)
	must{t}.do(c.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: meta(ns)}, metav1.CreateOptions{}))
	t.Cleanup(func() {
		_ = c.kube.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	for _, sa := range []string{"drainit", "no-role"} {
		must{t}.do(c.kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: meta(sa)}, metav1.CreateOptions{}))
	}
	must{t}.do(c.kube.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: meta("pod-deletion-cost"),
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"patch"}}},
	}, metav1.CreateOptions{}))
	c.bind(t, ns, "drainit")
	return ns
}

func (c *cluster) bind(t *testing.T, ns, sa string) {
	t.Helper()
	must{t}.do(c.kube.RbacV1().RoleBindings(ns).Create(context.Background(), &rbacv1.RoleBinding{
		ObjectMeta: meta(sa + "-pod-deletion-cost"),
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa}},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "pod-deletion-cost"},
	}, metav1.CreateOptions{}))
}

// token asks the API server for a token of service account sa, as the
// kubelet does for a projected token.
func (c *cluster) token(t *testing.T, ns, sa string) string {
	t.Helper()
	exp := int64(3600)
	tr, err := c.kube.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), sa,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}},
		metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// kubeDir writes what the kubelet mounts into a pod for service account sa.
func (c *cluster) kubeDir(t *testing.T, ns, sa string) string {
	t.Helper()
	dir := t.TempDir()
	ca, err := os.ReadFile(c.ca)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "ca.crt"), string(ca))
	writeFile(t, filepath.Join(dir, "namespace"), ns)
	writeFile(t, filepath.Join(dir, "token"), c.token(t, ns, sa))
	return dir
}

// writeFile replaces a file by rename, as the kubelet's atomic writer does.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

func meta(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: name} }

// must fails the test on the error of a call that returns (object, error):
// must{t}.do(c.kube...Create(...)).
type must struct{ t *testing.T }

func (m must) do(_ any, err error) {
	m.t.Helper()
	if err != nil {
		m.t.Fatal(err)
	}
}

// drainitBin is drainit, built by TestMain from this repository.
var drainitBin string

func TestMain(m *testing.M) {
	if err := testkit.ResetSignals(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "drainit-deletioncost")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	drainitBin = filepath.Join(dir, "drainit")
	build := exec.Command("go", "build", "-o", drainitBin, "./cmd/drainit")
	build.Dir = "../../../.."
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := within.CombinedOutput(build, 10*time.Minute); err != nil {
		fmt.Fprintf(os.Stderr, "building drainit: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// pod is one drainit --deletion-cost process playing the init of one pod:
// its app is a sleep, its jobs are the lock files the test writes.
type pod struct {
	name  string
	locks string // the lock directory
	n     int    // lock files held
	cmd   *exec.Cmd
	logs  *testkit.Lines
	stop  func()
}

// start runs drainit as the pod's ENTRYPOINT would, with the downward-API
// variables and the service-account files the kubelet provides.
func start(t *testing.T, c *cluster, ns, name, kubeDir string, interval time.Duration) *pod {
	t.Helper()
	u, err := url.Parse(c.server)
	if err != nil {
		t.Fatal(err)
	}
	p := &pod{name: name, locks: t.TempDir(), logs: testkit.NewLines()}
	p.cmd = exec.Command(drainitBin, "--deletion-cost", "--deletion-cost-interval", interval.String(),
		"--kube-dir", kubeDir, "--lock", p.locks+"/*.lock", "--log-level", "debug", "--", "sleep", "infinity")
	p.cmd.Env = append(os.Environ(), "KUBERNETES_SERVICE_HOST="+u.Hostname(), "KUBERNETES_SERVICE_PORT="+u.Port(),
		"POD_NAME="+name, "POD_NAMESPACE="+ns)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	// Killed after patience, drainit leaves its sleep holding the pipes:
	// Wait must not wait for them.
	p.cmd.WaitDelay = time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	var once sync.Once
	p.stop = func() {
		once.Do(func() {
			// No lock left, so the drain ends at once and the app stops.
			p.hold(t, 0)
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(patience):
				_ = p.cmd.Process.Kill()
				t.Errorf("drainit of %s did not exit within %v of SIGTERM", name, patience)
				<-done
			}
		})
	}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("log of %s:\n%s", name, strings.Join(p.logs.All(), ""))
		}
	})
	return p
}

// hold makes the pod hold n locks, as n running jobs would.
func (p *pod) hold(t *testing.T, n int) {
	t.Helper()
	for ; p.n < n; p.n++ {
		if err := os.WriteFile(fmt.Sprintf("%s/job-%d.lock", p.locks, p.n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for ; p.n > n; p.n-- {
		if err := os.Remove(fmt.Sprintf("%s/job-%d.lock", p.locks, p.n-1)); err != nil {
			t.Fatal(err)
		}
	}
}

// warnings returns the warn lines but those of timeouts: on a loaded
// machine the real API server may take longer than podcost's 5s timeout
// for a patch, a second kind of failure, warned about once too.
func warnings(logs *testkit.Lines) []string {
	var w []string
	for _, line := range logs.Matching(" warn: ") {
		if !strings.Contains(line, "did not answer within") {
			w = append(w, line)
		}
	}
	return w
}

// waitPods lists the namespace's pods until ok says yes, watching between
// lists, and returns the last list.
func (c *cluster) waitPods(t *testing.T, ns, what string, ok func([]corev1.Pod) bool) []corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	var pods []corev1.Pod
	for {
		list, err := c.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		pods = nil
		for _, p := range list.Items {
			if p.DeletionTimestamp == nil {
				pods = append(pods, p)
			}
		}
		if ok(pods) {
			return pods
		}
		w, err := c.watch.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		select {
		case <-w.ResultChan():
		case <-ctx.Done():
		}
		w.Stop()
		if ctx.Err() != nil {
			t.Fatalf("waiting for %s: %v; pods: %v", what, ctx.Err(), costs(pods))
		}
	}
}

// costs maps the pods' names to their annotation ("" when unset).
func costs(pods []corev1.Pod) map[string]string {
	m := map[string]string{}
	for _, p := range pods {
		m[p.Name] = p.Annotations[annotation]
	}
	return m
}

func names(pods []corev1.Pod) []string {
	var n []string
	for _, p := range pods {
		n = append(n, p.Name)
	}
	slices.Sort(n)
	return n
}

// waitCosts waits until the pods named in want carry those costs.
func (c *cluster) waitCosts(t *testing.T, ns string, want map[string]string) {
	t.Helper()
	c.waitPods(t, ns, fmt.Sprintf("costs %v", want), func(pods []corev1.Pod) bool {
		got := costs(pods)
		for name, cost := range want {
			if got[name] != cost {
				return false
			}
		}
		return true
	})
}

func (c *cluster) scale(t *testing.T, ns, rs string, n int) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, n)
	if _, err := c.kube.AppsV1().ReplicaSets(ns).Patch(context.Background(), rs, types.MergePatchType,
		[]byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestScaleDownKeepsBusyPods is the test that matters: of a ReplicaSet's
// four pods, two run jobs; a scale-down to two deletes the idle ones. Then
// the jobs move to new pods, the annotations follow within the interval,
// and the next scale-down follows them.
func TestScaleDownKeepsBusyPods(t *testing.T) {
	c := connect(t)
	ns := c.namespace(t, "scale")
	const interval = time.Second
	labels := map[string]string{"app": "web"}
	replicas := int32(4)
	must{t}.do(c.kube.AppsV1().ReplicaSets(ns).Create(context.Background(), &appsv1.ReplicaSet{
		ObjectMeta: meta("web"),
		Spec: appsv1.ReplicaSetSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ServiceAccountName: "drainit",
					// Never runs: no scheduler takes it, no kubelet
					// sees it. Pending pods are ranked by cost like
					// running ones.
					SchedulerName: unscheduled,
					Containers:    []corev1.Container{{Name: "web", Image: "registry.example.com/web:1.0", ImagePullPolicy: corev1.PullNever}},
				},
			},
		},
	}, metav1.CreateOptions{}))
	pods := c.waitPods(t, ns, "4 pods", func(p []corev1.Pod) bool { return len(p) == 4 })

	// Each pod gets its own token, as each pod's kubelet would mount.
	running := map[string]*pod{}
	run := func(name string) *pod {
		p := start(t, c, ns, name, c.kubeDir(t, ns, "drainit"), interval)
		running[name] = p
		return p
	}
	busy, idle := names(pods)[:2], names(pods)[2:]
	for _, n := range busy {
		run(n).hold(t, 2)
	}
	for _, n := range idle {
		run(n).hold(t, 0)
	}
	c.waitCosts(t, ns, map[string]string{busy[0]: "2", busy[1]: "2", idle[0]: "0", idle[1]: "0"})

	c.scale(t, ns, "web", 2)
	left := c.waitPods(t, ns, "2 pods", func(p []corev1.Pod) bool { return len(p) == 2 })
	if got := names(left); !slices.Equal(got, busy) {
		t.Fatalf("after scaling to 2, pods %v remain, want the busy %v (idle were %v)", got, busy, idle)
	}
	for _, n := range idle {
		running[n].stop() // its pod is gone
	}

	// Scale up again; the jobs move from the old pods to the new ones.
	c.scale(t, ns, "web", 4)
	pods = c.waitPods(t, ns, "4 pods again", func(p []corev1.Pod) bool { return len(p) == 4 })
	var fresh []string
	for _, n := range names(pods) {
		if !slices.Contains(busy, n) {
			fresh = append(fresh, n)
		}
	}
	for _, n := range fresh {
		run(n).hold(t, 0)
	}
	c.waitCosts(t, ns, map[string]string{fresh[0]: "0", fresh[1]: "0"})
	moved := time.Now()
	for _, n := range fresh {
		running[n].hold(t, 1)
	}
	for _, n := range busy {
		running[n].hold(t, 0)
	}
	c.waitCosts(t, ns, map[string]string{fresh[0]: "1", fresh[1]: "1", busy[0]: "0", busy[1]: "0"})
	// Each pod wrote less than an interval before, so the change may wait
	// up to one interval; the rest is the API server and the watch, which
	// on a loaded CI machine can take seconds (seen: 4.5s at load 50).
	took := time.Since(moved)
	t.Logf("annotations followed the jobs after %v (interval %v)", took.Round(time.Millisecond), interval)
	if took > interval+10*time.Second {
		t.Errorf("annotations followed the jobs after %v, want within about %v", took, interval)
	}

	c.scale(t, ns, "web", 2)
	left = c.waitPods(t, ns, "2 pods", func(p []corev1.Pod) bool { return len(p) == 2 })
	if got := names(left); !slices.Equal(got, fresh) {
		t.Fatalf("after the jobs moved and scaling to 2, pods %v remain, want the now busy %v", got, fresh)
	}
}

// TestRateLimitAndTrailingWrite sends a burst of counts spread over a few
// intervals and counts the patches the API server received, in its audit
// log and through a watch: at most one per interval, and the last value
// lands.
func TestRateLimitAndTrailingWrite(t *testing.T) {
	c := connect(t)
	ns := c.namespace(t, "burst")
	name := "web-0"
	c.bare(t, ns, name)
	const interval = time.Second
	p := start(t, c, ns, name, c.kubeDir(t, ns, "drainit"), interval)
	p.hold(t, 0)
	c.waitCosts(t, ns, map[string]string{name: "0"})

	// Record every change of the annotation.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type change struct {
		at   time.Time
		cost string
	}
	changes := make(chan change, 1000)
	w, err := c.watch.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	ended := make(chan string, 1) // why the watch ended early
	go func() {
		last := ""
		for ev := range w.ResultChan() {
			if ev.Type == watch.Error {
				ended <- fmt.Sprintf("%v", ev.Object)
				return
			}
			if pod, ok := ev.Object.(*corev1.Pod); ok && pod.Annotations[annotation] != last {
				last = pod.Annotations[annotation]
				changes <- change{time.Now(), last}
			}
		}
		ended <- "the server closed it"
	}()
	select { // the watch's first event: the pod as it is, cost 0
	case <-changes:
	case why := <-ended:
		t.Fatalf("the watch of pod %s ended before its first event: %s", name, why)
	case <-time.After(patience):
		t.Fatalf("the watch of pod %s sent no first event within %v", name, patience)
	}

	start := time.Now()
	const burst = 60
	tick := time.NewTicker(interval / 20) // paces the burst over about three intervals
	defer tick.Stop()
	for n := 1; n <= burst; n++ {
		<-tick.C
		p.hold(t, n)
	}
	took := time.Since(start)
	var got []change
	deadline := time.After(patience)
	for len(got) == 0 || got[len(got)-1].cost != strconv.Itoa(burst) {
		select {
		case ch := <-changes:
			got = append(got, ch)
		case why := <-ended:
			t.Fatalf("the watch of pod %s ended (%s) before the last value %d; changes seen: %v", name, why, burst, got)
		case <-deadline:
			t.Fatalf("the last value %d did not land; changes seen: %v", burst, got)
		}
	}
	if limit := 2 + int(took/interval); len(got) > limit {
		t.Errorf("%d writes for a burst over %v, want at most %d: %v", len(got), took, limit, got)
	}
	// The audit log sees every request, a patch that changed nothing too:
	// the first write plus the changes, no more, and no two received
	// closer than the interval.
	user := "system:serviceaccount:" + ns + ":drainit"
	want := 1 + len(got)
	var received []time.Time
	for end := time.Now().Add(10 * time.Second); ; {
		if received = c.auditPatches(t, ns, name, user); len(received) >= want || time.Now().After(end) {
			break
		}
		time.Sleep(100 * time.Millisecond) // polling a file another process appends to
	}
	if len(received) != want {
		t.Errorf("the audit log has %d patches of %s by %s, want %d (the first write and %d changes)",
			len(received), name, user, want, len(got))
	}
	for i := 1; i < len(received); i++ {
		if gap := received[i].Sub(received[i-1]); gap < interval {
			t.Errorf("patches %d and %d received %v apart, want at least %v", i-1, i, gap, interval)
		}
	}
	t.Logf("burst of %d counts over %v: %d writes", burst, took.Round(time.Millisecond), len(got))
}

// auditPatches returns when the API server received each patch of pod
// ns/name by user, from its audit log.
func (c *cluster) auditPatches(t *testing.T, ns, name, user string) []time.Time {
	t.Helper()
	f, err := os.Open(c.audit)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var received []time.Time
	s := bufio.NewScanner(f)
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		var ev struct {
			Verb      string    `json:"verb"`
			Received  time.Time `json:"requestReceivedTimestamp"`
			Stage     string    `json:"stage"`
			User      struct{ Username string }
			ObjectRef struct{ Resource, Namespace, Name string }
		}
		if json.Unmarshal(s.Bytes(), &ev) != nil {
			continue
		}
		if ev.Verb == "patch" && ev.Stage == "ResponseComplete" && ev.User.Username == user &&
			ev.ObjectRef.Resource == "pods" && ev.ObjectRef.Namespace == ns && ev.ObjectRef.Name == name {
			received = append(received, ev.Received)
		}
	}
	return received
}

// bare creates a pod outside any controller.
func (c *cluster) bare(t *testing.T, ns, name string) {
	t.Helper()
	must{t}.do(c.kube.CoreV1().Pods(ns).Create(context.Background(), &corev1.Pod{
		ObjectMeta: meta(name),
		Spec: corev1.PodSpec{
			ServiceAccountName: "drainit",
			SchedulerName:      unscheduled,
			Containers:         []corev1.Container{{Name: "web", Image: "registry.example.com/web:1.0", ImagePullPolicy: corev1.PullNever}},
		},
	}, metav1.CreateOptions{}))
}

// TestFailures: each way the real API server refuses is warned about once
// with the fix, retried, and mended without a restart.
func TestFailures(t *testing.T) {
	c := connect(t)
	const interval = 200 * time.Millisecond

	t.Run("403 without the Role", func(t *testing.T) {
		ns := c.namespace(t, "forbidden")
		c.bare(t, ns, "web-0")
		p := start(t, c, ns, "web-0", c.kubeDir(t, ns, "no-role"), interval)
		p.hold(t, 3)
		p.logs.Wait(t, patience, "warn:", "403", "verbs: [patch]")
		c.bind(t, ns, "no-role")
		c.waitCosts(t, ns, map[string]string{"web-0": "3"})
		p.logs.Wait(t, patience, "written again")
		if w := warnings(p.logs); len(w) != 1 {
			t.Errorf("%d warn lines besides timeouts, want 1:\n%s", len(w), strings.Join(w, ""))
		}
	})

	t.Run("404 no such pod", func(t *testing.T) {
		ns := c.namespace(t, "notfound")
		p := start(t, c, ns, "web-late", c.kubeDir(t, ns, "drainit"), interval)
		p.hold(t, 4)
		p.logs.Wait(t, patience, "warn:", "404", "POD_NAME")
		c.bare(t, ns, "web-late")
		c.waitCosts(t, ns, map[string]string{"web-late": "4"})
		p.logs.Wait(t, patience, "written again")
		if w := warnings(p.logs); len(w) != 1 {
			t.Errorf("%d warn lines besides timeouts, want 1:\n%s", len(w), strings.Join(w, ""))
		}
	})

	t.Run("401 then the token rotates", func(t *testing.T) {
		ns := c.namespace(t, "rotate")
		c.bare(t, ns, "web-0")
		dir := c.kubeDir(t, ns, "drainit")
		good, err := os.ReadFile(filepath.Join(dir, "token"))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "token"), "not-a-token")
		p := start(t, c, ns, "web-0", dir, interval)
		p.hold(t, 5)
		p.logs.Wait(t, patience, "warn:", "401")
		writeFile(t, filepath.Join(dir, "token"), string(good))
		c.waitCosts(t, ns, map[string]string{"web-0": "5"})
		p.logs.Wait(t, patience, "written again")
	})
}

// TestExampleManifests: every manifest in examples/kubernetes passes
// kubectl apply --dry-run=server.
func TestExampleManifests(t *testing.T) {
	c := connect(t)
	_ = c
	files, err := filepath.Glob("../../../../examples/kubernetes/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no manifests in examples/kubernetes")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			out, err := within.CombinedOutput(exec.Command("kubectl", "apply", "--dry-run=server", "-f", f), patience)
			if err != nil {
				t.Fatalf("kubectl apply --dry-run=server -f %s: %v\n%s", f, err, out)
			}
			t.Logf("%s", out)
		})
	}
}

// TestServerStopped stops the real API server mid-run: counts are still
// taken, the failure is warned about once, and the last value lands when
// the server is back. It runs last: everything else needs the server.
func TestServerStopped(t *testing.T) {
	c := connect(t)
	ns := c.namespace(t, "stopped")
	c.bare(t, ns, "web-0")
	p := start(t, c, ns, "web-0", c.kubeDir(t, ns, "drainit"), 200*time.Millisecond)
	p.hold(t, 1)
	c.waitCosts(t, ns, map[string]string{"web-0": "1"})

	pidFile := filepath.Join(c.dir, "kube-apiserver.pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	proc, err := os.FindProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := proc.Kill(); err != nil {
		t.Fatalf("stopping kube-apiserver %d: %v", pid, err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = within.Run(exec.Command(filepath.Join(c.dir, "start-apiserver")), patience)
		}
	})
	for n := 2; n <= 50; n++ {
		p.hold(t, n) // taken at once, server or not
	}
	p.logs.Wait(t, patience, "warn:", "unreachable")

	if out, err := within.CombinedOutput(exec.Command(filepath.Join(c.dir, "start-apiserver")), patience); err != nil {
		t.Fatalf("start-apiserver: %v\n%s", err, out)
	}
	restarted = true
	c.waitReady(t)
	c.waitCosts(t, ns, map[string]string{"web-0": "50"})
	p.logs.Wait(t, patience, "written again")
	if w := warnings(p.logs); len(w) > 2 {
		// unreachable while down; a timeout or a 5xx while it starts
		t.Errorf("%d warn lines for one outage, want at most 2:\n%s", len(w), strings.Join(w, ""))
	}
}

func (c *cluster) waitReady(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for {
		body, err := c.kube.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && string(body) == "ok" {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("kube-apiserver not ready again: %v %s", err, body)
		case <-time.After(200 * time.Millisecond): // polling another process's readiness
		}
	}
}
