package podcost_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drainit/drainit/internal/testkit"
	"github.com/drainit/drainit/supervisor/podcost"
)

// patience bounds every wait for an event that should come.
const patience = 10 * time.Second

// request is one PATCH the fake API server received.
type request struct {
	at          time.Time
	path        string
	contentType string
	token       string
	cost        string // the annotation's value in the patch
}

// apiServer is a fake kube-apiserver over TLS that records every request
// and answers with whatever respond says.
type apiServer struct {
	srv  *httptest.Server
	reqs chan request

	mu      sync.Mutex
	respond func(request) int // status code; 0 hangs until the request is cancelled
}

func newAPIServer(t *testing.T, ln net.Listener) *apiServer {
	t.Helper()
	a := &apiServer{reqs: make(chan request, 1000), respond: func(request) int { return 200 }}
	a.srv = httptest.NewUnstartedServer(http.HandlerFunc(a.serve))
	if ln != nil {
		a.srv.Listener.Close()
		a.srv.Listener = ln
	}
	a.srv.StartTLS()
	t.Cleanup(a.srv.Close)
	return a
}

func (a *apiServer) serve(w http.ResponseWriter, r *http.Request) {
	var patch struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
	}
	body, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(body, &patch)
	req := request{
		at:          time.Now(),
		path:        r.Method + " " + r.URL.Path,
		contentType: r.Header.Get("Content-Type"),
		token:       strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "),
		cost:        patch.Metadata.Annotations["controller.kubernetes.io/pod-deletion-cost"],
	}
	a.mu.Lock()
	respond := a.respond
	a.mu.Unlock()
	code := respond(req)
	a.reqs <- req
	if code == 0 {
		<-r.Context().Done()
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if code != 200 {
		_, _ = io.WriteString(w, `{"kind":"Status","message":"fake refusal `+strconv.Itoa(code)+`"}`)
		return
	}
	_, _ = io.WriteString(w, `{"kind":"Pod"}`)
}

func (a *apiServer) setRespond(f func(request) int) {
	a.mu.Lock()
	a.respond = f
	a.mu.Unlock()
}

// next waits for the next request.
func (a *apiServer) next(t *testing.T) request {
	t.Helper()
	select {
	case r := <-a.reqs:
		return r
	case <-time.After(patience):
		t.Fatal("no request reached the API server")
		return request{}
	}
}

// until waits for a request with the given cost and returns every request
// up to and including it.
func (a *apiServer) until(t *testing.T, cost string) []request {
	t.Helper()
	var got []request
	for {
		r := a.next(t)
		got = append(got, r)
		if r.cost == cost {
			return got
		}
	}
}

// kubeDir writes what the kubelet mounts: token, ca.crt and namespace.
func kubeDir(t *testing.T, a *apiServer, token string) string {
	t.Helper()
	dir := t.TempDir()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.srv.Certificate().Raw})
	writeFile(t, filepath.Join(dir, "ca.crt"), string(ca))
	writeFile(t, filepath.Join(dir, "token"), token)
	writeFile(t, filepath.Join(dir, "namespace"), "shop\n")
	return dir
}

// writeFile replaces a file by rename, as the kubelet's atomic writer does.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// warnings returns the warn lines logged so far.
func warnings(logs *testkit.Lines) []string { return logs.Matching("level=WARN") }

// run starts podcost.Run against a and returns the counts channel and the
// log lines; Run's end is checked at cleanup.
func run(t *testing.T, c podcost.Config) (chan<- int, *testkit.Lines) {
	t.Helper()
	logs := testkit.NewLines()
	c.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	counts := make(chan int)
	done := make(chan error, 1)
	go func() { done <- podcost.Run(ctx, c, counts) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v, want nil when ctx ends", err)
			}
		case <-time.After(patience):
			t.Error("Run did not return after ctx ended")
		}
	})
	return counts, logs
}

func config(a *apiServer, dir string, interval time.Duration) podcost.Config {
	return podcost.Config{Interval: interval, KubeDir: dir, Server: a.srv.URL, Pod: "web-1", Namespace: "shop"}
}

// send gives Run a count and fails if Run does not take it promptly.
func send(t *testing.T, counts chan<- int, n int) {
	t.Helper()
	select {
	case counts <- n:
	case <-time.After(time.Second):
		t.Fatalf("Run did not take count %d within a second", n)
	}
}

func TestStartWrite(t *testing.T) {
	t.Parallel()
	a := newAPIServer(t, nil)
	counts, _ := run(t, config(a, kubeDir(t, a, "tok-1"), time.Hour))
	send(t, counts, 0)
	r := a.next(t)
	if r.path != "PATCH /api/v1/namespaces/shop/pods/web-1" {
		t.Errorf("request %q, want PATCH of the pod", r.path)
	}
	if r.contentType != "application/merge-patch+json" {
		t.Errorf("Content-Type %q, want application/merge-patch+json", r.contentType)
	}
	if r.token != "tok-1" {
		t.Errorf("bearer token %q, want tok-1", r.token)
	}
	if r.cost != "0" {
		t.Errorf("cost %q, want 0: the first value is written at start", r.cost)
	}
}

func TestWritesOnlyChanges(t *testing.T) {
	t.Parallel()
	a := newAPIServer(t, nil)
	counts, _ := run(t, config(a, kubeDir(t, a, "tok"), 10*time.Millisecond))
	for _, step := range []struct {
		send []int
		want string
	}{
		{[]int{2}, "2"},
		{[]int{2, 2, 2, 1}, "1"}, // a write of 2 here would arrive before 1
		{[]int{1, 3}, "3"},
		{[]int{3, 3, 0}, "0"},
	} {
		for _, n := range step.send {
			send(t, counts, n)
		}
		if r := a.next(t); r.cost != step.want {
			t.Fatalf("after %v: cost %q written, want %q", step.send, r.cost, step.want)
		}
	}
}

func TestRateLimitAndTrailingEdge(t *testing.T) {
	t.Parallel()
	const interval = 200 * time.Millisecond
	a := newAPIServer(t, nil)
	counts, _ := run(t, config(a, kubeDir(t, a, "tok"), interval))
	// The first write pays for the TLS handshake, so its arrival is late
	// against its start; gaps are measured from the second, which arrives
	// as soon as it starts.
	send(t, counts, 0)
	a.next(t)
	send(t, counts, 100)
	warm := a.next(t)
	start := time.Now()
	for n := 1; n <= 30; n++ {
		send(t, counts, n)
	}
	burst := time.Since(start)
	got := append([]request{warm}, a.until(t, "30")...)
	// A burst without a limit would arrive within a millisecond or two.
	for i := 1; i < len(got); i++ {
		if gap := got[i].at.Sub(got[i-1].at); gap < interval*3/4 {
			t.Errorf("writes %d and %d only %v apart, want ≥ %v", i-1, i, gap, interval)
		}
	}
	if max := 2 + int(burst/interval); len(got) > max {
		t.Errorf("%d writes for a burst of %v, want at most %d", len(got), burst, max)
	}
	// The trailing write is the last: a further change is the next write.
	send(t, counts, 7)
	if r := a.next(t); r.cost != "7" {
		t.Errorf("after the burst: cost %q written, want 7", r.cost)
	}
}

func TestTokenRereadWhenRotated(t *testing.T) {
	t.Parallel()
	a := newAPIServer(t, nil)
	dir := kubeDir(t, a, "old")
	counts, _ := run(t, config(a, dir, time.Millisecond))
	send(t, counts, 1)
	if r := a.next(t); r.token != "old" {
		t.Fatalf("token %q, want old", r.token)
	}
	writeFile(t, filepath.Join(dir, "token"), "new\n")
	send(t, counts, 2)
	if r := a.next(t); r.token != "new" {
		t.Fatalf("token %q after rotation, want new", r.token)
	}
}

// TestFailuresWarnedOnceAndRetried fails the first writes in each way the
// API server can, and checks that each kind is warned about once, retried,
// and that the value lands once the server accepts it.
func TestFailuresWarnedOnceAndRetried(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int // 0: hang past the timeout
		want   string
	}{
		{"unauthorized", 401, "401 Unauthorized"},
		{"forbidden", 403, "verbs: [patch]"},
		{"not found", 404, "POD_NAME"},
		{"server error", 500, "500 Internal Server Error"},
		{"timeout", 0, "did not answer within 500ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.status == 0 {
				// Only here: a loaded machine can take 100ms for a
				// handshake, and each timeout costs a new connection.
				defer podcost.SetRequestTimeout(500 * time.Millisecond)()
			}
			a := newAPIServer(t, nil)
			const failures = 4
			var mu sync.Mutex
			n := 0
			a.setRespond(func(request) int {
				mu.Lock()
				defer mu.Unlock()
				if n++; n <= failures {
					return tc.status
				}
				return 200
			})
			counts, logs := run(t, config(a, kubeDir(t, a, "tok"), 5*time.Millisecond))
			send(t, counts, 3)
			for i := 0; i < failures; i++ {
				if r := a.next(t); r.cost != "3" {
					t.Fatalf("attempt %d wrote %q, want 3", i, r.cost)
				}
			}
			send(t, counts, 4) // taken at once while retries back off
			a.until(t, "4")
			logs.Wait(t, patience, "written again")
			// On a loaded machine a write may also time out: a second
			// kind, warned about once too. Nothing else may appear.
			var mine []string
			for _, w := range warnings(logs) {
				switch {
				case strings.Contains(w, tc.want):
					mine = append(mine, w)
				case !strings.Contains(w, "did not answer within"):
					t.Errorf("unexpected warning: %s", w)
				}
			}
			if len(mine) != 1 {
				t.Fatalf("%d warn lines for %d failures of one kind, want 1:\n%s", len(mine), failures, strings.Join(mine, ""))
			}
			if !strings.Contains(mine[0], "retrying") {
				t.Errorf("warning %q does not say it retries", mine[0])
			}
		})
	}
}

// A server that is not an API server, and a token that would break the
// request, are each warned about with what to check.
func TestNotAnAPIServerAndBadToken(t *testing.T) {
	t.Parallel()
	t.Run("not HTTP", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_, _ = c.Write([]byte("SSH-2.0-OpenSSH_9.2\r\n"))
				c.Close()
			}
		}()
		dir := kubeDir(t, newAPIServer(t, nil), "tok")
		counts, logs := run(t, podcost.Config{Interval: 5 * time.Millisecond, KubeDir: dir,
			Server: "http://" + ln.Addr().String(), Pod: "web-1", Namespace: "shop"})
		send(t, counts, 1)
		logs.Wait(t, patience, "does not answer like an API server")
	})
	t.Run("token of two lines", func(t *testing.T) {
		t.Parallel()
		a := newAPIServer(t, nil)
		counts, logs := run(t, config(a, kubeDir(t, a, "tok\r\nX-Evil: 1"), 5*time.Millisecond))
		send(t, counts, 1)
		logs.Wait(t, patience, "must be one line")
		select {
		case r := <-a.reqs:
			t.Fatalf("a request was sent with the bad token: %+v", r)
		default:
		}
	})
}

// TestUnreachableThenUp points Run at a port nothing listens on, then
// starts the API server there.
func TestUnreachableThenUp(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	// Any API server gives the CA; the real one comes up on addr later.
	ca := newAPIServer(t, nil)
	dir := kubeDir(t, ca, "tok")
	counts, logs := run(t, podcost.Config{Interval: 5 * time.Millisecond, KubeDir: dir,
		Server: "https://" + addr, Pod: "web-1", Namespace: "shop"})
	send(t, counts, 2)
	logs.Wait(t, patience, "unreachable")
	send(t, counts, 3)
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken by someone else meanwhile: %v", addr, err)
	}
	a := &apiServer{reqs: make(chan request, 1000), respond: func(request) int { return 200 }}
	a.srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(a.serve)},
		TLS: ca.srv.TLS}
	a.srv.StartTLS()
	t.Cleanup(a.srv.Close)
	a.until(t, "3")
	logs.Wait(t, patience, "written again")
	if w := warnings(logs); len(w) != 1 {
		t.Errorf("%d warn lines, want 1:\n%s", len(w), strings.Join(w, ""))
	}
}

// TestNeverBlocksCounts stalls the API server and checks that every count
// is still taken at once.
func TestNeverBlocksCounts(t *testing.T) {
	t.Parallel()
	a := newAPIServer(t, nil)
	release := make(chan struct{})
	a.setRespond(func(request) int {
		<-release
		return 200
	})
	counts, _ := run(t, config(a, kubeDir(t, a, "tok"), time.Millisecond))
	for n := range 2000 {
		send(t, counts, n)
	}
	close(release)
	a.until(t, "1999")
}

// TestReturnsWithWriteInFlight: when ctx ends, Run returns at once, not
// when a stalled write gives up, so that drainit's exit never waits for
// the API server. Not parallel: it lengthens the request timeout to an
// hour, which a Run that waited for a write not bound to ctx would show.
func TestReturnsWithWriteInFlight(t *testing.T) {
	defer podcost.SetRequestTimeout(time.Hour)()
	a := newAPIServer(t, nil)
	a.setRespond(func(request) int { return 0 }) // no answer until the client goes
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	counts := make(chan int)
	done := make(chan error, 1)
	go func() { done <- podcost.Run(ctx, config(a, kubeDir(t, a, "tok"), time.Millisecond), counts) }()
	send(t, counts, 1)
	a.next(t) // the write is in flight, and stays so
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil when ctx ends", err)
		}
	case <-time.After(patience):
		a.srv.CloseClientConnections() // or the server's Close would wait an hour too
		t.Fatal("Run waited for the write in flight after ctx ended")
	}
}

func TestClampsToInt32(t *testing.T) {
	t.Parallel()
	a := newAPIServer(t, nil)
	counts, _ := run(t, config(a, kubeDir(t, a, "tok"), time.Millisecond))
	send(t, counts, math.MaxInt)
	if r := a.next(t); r.cost != "2147483647" {
		t.Errorf("cost %q for MaxInt, want 2147483647", r.cost)
	}
	send(t, counts, math.MinInt)
	if r := a.next(t); r.cost != "-2147483648" {
		t.Errorf("cost %q for MinInt, want -2147483648", r.cost)
	}
}

func TestLastValueWrittenAfterCountsClose(t *testing.T) {
	t.Parallel()
	a := newAPIServer(t, nil)
	counts, _ := run(t, config(a, kubeDir(t, a, "tok"), 100*time.Millisecond))
	send(t, counts, 1)
	send(t, counts, 5)
	close(counts)
	a.until(t, "5")
}

func TestRunNeedsPodAndServer(t *testing.T) {
	t.Parallel()
	err := podcost.Run(context.Background(), podcost.Config{Server: "https://127.0.0.1:1"}, make(chan int))
	if err == nil {
		t.Fatal("Run without a pod returned nil, want an error")
	}
}

func TestFromEnv(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, f := range []string{"token", "ca.crt"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	withNS := t.TempDir()
	for f, v := range map[string]string{"token": "x", "ca.crt": "x", "namespace": "from-file\n"} {
		if err := os.WriteFile(filepath.Join(withNS, f), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	inCluster := map[string]string{
		"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443",
		"POD_NAME": "web-7d9f-abcde", "POD_NAMESPACE": "shop", "HOSTNAME": "host",
	}
	with := func(m map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		in      podcost.Config
		env     map[string]string
		want    podcost.Config // Log and Interval unchecked
		wantErr string
	}{
		{"in cluster", podcost.Config{KubeDir: dir}, inCluster,
			podcost.Config{KubeDir: dir, Server: "https://10.96.0.1:443", Pod: "web-7d9f-abcde", Namespace: "shop"}, ""},
		{"IPv6 service host", podcost.Config{KubeDir: dir}, with(inCluster, "KUBERNETES_SERVICE_HOST", "fd00::1"),
			podcost.Config{KubeDir: dir, Server: "https://[fd00::1]:443", Pod: "web-7d9f-abcde", Namespace: "shop"}, ""},
		{"hostname and namespace file", podcost.Config{KubeDir: withNS}, with(inCluster, "POD_NAME", "", "POD_NAMESPACE", ""),
			podcost.Config{KubeDir: withNS, Server: "https://10.96.0.1:443", Pod: "host", Namespace: "from-file"}, ""},
		{"fields win", podcost.Config{KubeDir: dir, Server: "https://127.0.0.1:6443", Pod: "p", Namespace: "n"}, inCluster,
			podcost.Config{KubeDir: dir, Server: "https://127.0.0.1:6443", Pod: "p", Namespace: "n"}, ""},
		{"renamed variables", podcost.Config{KubeDir: dir, PodVar: "MY_POD", NamespaceVar: "MY_NS"},
			with(inCluster, "MY_POD", "mine", "MY_NS", "my-ns"),
			podcost.Config{KubeDir: dir, Server: "https://10.96.0.1:443", Pod: "mine", Namespace: "my-ns",
				PodVar: "MY_POD", NamespaceVar: "MY_NS"}, ""},
		{"renamed variable unset", podcost.Config{KubeDir: dir, PodVar: "MY_POD"}, with(inCluster, "HOSTNAME", ""),
			podcost.Config{}, "set MY_POD from the downward API"},
		{"not in a pod", podcost.Config{KubeDir: dir}, with(inCluster, "KUBERNETES_SERVICE_HOST", ""), podcost.Config{},
			"KUBERNETES_SERVICE_HOST"},
		{"bad server", podcost.Config{KubeDir: dir, Server: "10.0.0.1"}, inCluster, podcost.Config{}, "not a URL"},
		{"no pod name", podcost.Config{KubeDir: dir}, with(inCluster, "POD_NAME", "", "HOSTNAME", ""), podcost.Config{},
			"POD_NAME"},
		{"no namespace", podcost.Config{KubeDir: dir}, with(inCluster, "POD_NAMESPACE", ""), podcost.Config{},
			"POD_NAMESPACE"},
		{"no token", podcost.Config{KubeDir: t.TempDir()}, inCluster, podcost.Config{}, "no service-account token"},
		{"negative interval", podcost.Config{KubeDir: dir, Interval: -time.Second}, inCluster, podcost.Config{},
			"negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := podcost.FromEnv(tc.in, func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("FromEnv error %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Interval != 5*time.Second && tc.in.Interval == 0 {
				t.Errorf("Interval %v, want the 5s default", got.Interval)
			}
			if tc.want.PodVar == "" {
				tc.want.PodVar, tc.want.NamespaceVar = "POD_NAME", "POD_NAMESPACE"
			}
			got.Interval, got.Log = 0, nil
			if got != tc.want {
				t.Errorf("FromEnv = %+v, want %+v", got, tc.want)
			}
		})
	}
	// The default directory is the kubelet's.
	got, _ := podcost.FromEnv(podcost.Config{}, func(string) string { return "" })
	if got.KubeDir != "/var/run/secrets/kubernetes.io/serviceaccount" {
		t.Errorf("default KubeDir %q", got.KubeDir)
	}
}
