package main_test

import (
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// apiServer is a stand-in for the Kubernetes API server on 127.0.0.1: it
// answers every patch of a pod with status and reports what it was sent.
// The real server is in hack/kube/e2e/deletioncost.
type apiServer struct {
	srv     *httptest.Server
	kubeDir string // token and ca.crt for drainit's --kube-dir
	patches chan patch
}

type patch struct {
	path, contentType, auth, cost string
}

func newAPIServer(t *testing.T, status int) *apiServer {
	t.Helper()
	a := &apiServer{patches: make(chan patch, 100), kubeDir: t.TempDir()}
	a.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Metadata struct{ Annotations map[string]string }
		}
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &body)
		a.patches <- patch{r.Method + " " + r.URL.Path, r.Header.Get("Content-Type"), r.Header.Get("Authorization"),
			body.Metadata.Annotations["controller.kubernetes.io/pod-deletion-cost"]}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"kind":"Status"}`))
	}))
	a.srv.StartTLS()
	t.Cleanup(a.srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.srv.Certificate().Raw})
	for f, v := range map[string][]byte{"ca.crt": ca, "token": []byte("test-token\n")} {
		if err := os.WriteFile(filepath.Join(a.kubeDir, f), v, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return a
}

// env is what the kubelet and the downward API give the pod web-0.
func (a *apiServer) env() []string {
	host, port, _ := net.SplitHostPort(a.srv.Listener.Addr().String())
	return []string{"KUBERNETES_SERVICE_HOST=" + host, "KUBERNETES_SERVICE_PORT=" + port,
		"POD_NAME=web-0", "POD_NAMESPACE=shop"}
}

// next waits for the next patch.
func (a *apiServer) next(t *testing.T) patch {
	t.Helper()
	select {
	case p := <-a.patches:
		return p
	case <-time.After(long):
		t.Fatal("no patch of the pod reached the API server")
		return patch{}
	}
}

// waitCost waits for a patch that sets the cost to want.
func (a *apiServer) waitCost(t *testing.T, want string) patch {
	t.Helper()
	for {
		if p := a.next(t); p.cost == want {
			return p
		}
	}
}

func touch(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// With --deletion-cost the annotation follows the held locks from the
// start, before any drain: 0 at once, then each change.
func TestDeletionCostFollowsLocks(t *testing.T) {
	for _, m := range []mode{{pid1: true}, {}} {
		t.Run(m.String(), func(t *testing.T) {
			t.Parallel()
			api := newAPIServer(t, http.StatusOK)
			dir := lockDir(t)
			touch(t, dir+"/before.lock") // a job the app started at once
			p := start(t, m, opts{env: append(helper("signals", "HELPER_EXIT_ON=15"), api.env()...)},
				"--deletion-cost", "--deletion-cost-interval", "100ms", "--kube-dir", api.kubeDir,
				"--lock", dir+"/*.lock", "--", selfBin)
			first := api.next(t)
			want := patch{"PATCH /api/v1/namespaces/shop/pods/web-0", "application/merge-patch+json", "Bearer test-token", "1"}
			if first != want {
				t.Fatalf("first request %+v, want %+v", first, want)
			}
			p.waitLine(`pod-deletion-cost written; it follows the held locks from now on .*cost=1`, long)
			p.waitSeen(`^ready`, long)
			touch(t, dir+"/a.lock")
			api.waitCost(t, "2")
			if err := os.Remove(dir + "/before.lock"); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(dir + "/a.lock"); err != nil {
				t.Fatal(err)
			}
			api.waitCost(t, "0")

			p.signal(syscall.SIGTERM)
			p.waitLine(`^signal 15$`, long)
			if code := p.wait(long); code != 0 {
				t.Fatalf("exit code %d", code)
			}
		})
	}
}

// An API server that refuses (403: no Role) or never answers changes
// nothing in the drain: one warn line, and the stop goes as without the
// feature while a write is in flight. (That the exit does not wait for the
// write at all is podcost's TestReturnsWithWriteInFlight.)
func TestDeletionCostFailuresLeaveTheDrainAlone(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int // 0: the server never answers
		warn   string
	}{
		{"forbidden", http.StatusForbidden, `warn: cannot set pod-deletion-cost: the pod's service account may not patch pods \(403 Forbidden\): bind it to a Role`},
		{"hanging", 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var api *apiServer
			if tc.status != 0 {
				api = newAPIServer(t, tc.status)
			} else {
				api = newHangingAPIServer(t)
			}
			dir := lockDir(t)
			touch(t, dir+"/job.lock")
			p := start(t, mode{pid1: true}, opts{env: append(helper("signals", "HELPER_EXIT_ON=15"), api.env()...)},
				"--deletion-cost", "--kube-dir", api.kubeDir, "--lock", dir+"/*.lock", "--", selfBin)
			api.next(t)
			if tc.warn != "" {
				p.waitLine(tc.warn, long)
			}
			p.waitSeen(`^ready`, long)
			p.signal(syscall.SIGTERM)
			p.waitLine(`draining by=SIGTERM locks="1 `, long)
			if err := os.Remove(dir + "/job.lock"); err != nil {
				t.Fatal(err)
			}
			p.waitLine(`^signal 15$`, long)
			if code := p.wait(long); code != 0 {
				t.Fatalf("exit code %d", code)
			}
			if n := strings.Count(p.transcript(), " warn: "); tc.status != 0 && n != 1 {
				t.Errorf("%d warn lines, want 1", n)
			}
		})
	}
}

// newHangingAPIServer accepts patches and never answers them until the
// client goes away.
func newHangingAPIServer(t *testing.T) *apiServer {
	a := newAPIServer(t, http.StatusOK)
	inner := a.srv.Config.Handler
	a.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inner.ServeHTTP(discard{}, r) // report it
		<-r.Context().Done()
	})
	return a
}

type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}

// Process jobs count like locks, found by a /proc scan every
// --deletion-cost-interval while the app runs.
func TestDeletionCostCountsProcessJobs(t *testing.T) {
	for _, m := range []mode{{pid1: true}, {}} {
		t.Run(m.String(), func(t *testing.T) {
			t.Parallel()
			api := newAPIServer(t, http.StatusOK)
			dir := lockDir(t)
			touch(t, dir+"/l.lock")
			finish := filepath.Join(t.TempDir(), "finish")
			word := jobWord()
			p := start(t, m, opts{env: append(pjobEnv(word, finish), api.env()...)},
				append([]string{"--deletion-cost", "--deletion-cost-interval", "100ms", "--kube-dir", api.kubeDir,
					"--lock", dir + "/*.lock", "--job", word, "--"}, app(child("$W", "0s", "1"))...)...)
			p.waitSeen(`^pjob 1 started`, long)
			api.waitCost(t, "2")
			touch(t, finish)
			p.waitSeen(`^pjob 1 done`, long)
			api.waitCost(t, "1")
			if err := os.Remove(dir + "/l.lock"); err != nil {
				t.Fatal(err)
			}
			api.waitCost(t, "0")
			p.signal(syscall.SIGTERM)
			p.waitLine(`^signal 15$`, long)
			if code := p.wait(long); code != 0 {
				t.Fatalf("exit code %d", code)
			}
		})
	}
}
