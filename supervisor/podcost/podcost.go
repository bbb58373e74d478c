// Package podcost keeps a pod's controller.kubernetes.io/pod-deletion-cost
// annotation equal to the number of jobs it runs, so that a ReplicaSet
// scale-down, which deletes the pods of lowest cost first, removes idle pods
// and leaves the busy ones alone. Without it the choice among equally ready
// pods is effectively random and a busy pod is as likely to go as an idle one.
// It talks to the API server the way an in-cluster client does, but with one
// JSON merge patch over HTTP/1.1 and crypto/tls instead of client-go (which
// would make drainit about five times as big).
// It is best effort: a failure is warned about once and retried, and never
// reaches the caller.
package podcost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// annotation is the pod annotation a ReplicaSet ranks its pods by when it
// scales down (beta, on by default since Kubernetes 1.22): lower goes first.
const annotation = "controller.kubernetes.io/pod-deletion-cost"

// What a zero field of Config stands for.
const (
	// DefaultKubeDir is where the kubelet mounts a pod's service-account
	// credentials.
	DefaultKubeDir = "/var/run/secrets/kubernetes.io/serviceaccount"
	// DefaultInterval is the least time between two writes: the
	// Kubernetes docs advise against frequent updates of a pod.
	DefaultInterval = 5 * time.Second
	// The downward-API variables that hold the pod's name and namespace
	// in the Kubernetes documentation's examples.
	DefaultPodVar       = "POD_NAME"
	DefaultNamespaceVar = "POD_NAMESPACE"
)

// Config says where the API server, the pod and its credentials are.
type Config struct {
	Interval  time.Duration // least time between two writes (default 5s); the last value is always written
	KubeDir   string        // token, ca.crt, namespace; default /var/run/secrets/kubernetes.io/serviceaccount
	Server    string        // https://host:port; from KUBERNETES_SERVICE_HOST/PORT when empty
	Pod       string        // $PodVar, else HOSTNAME
	Namespace string        // $NamespaceVar, else the namespace file
	Log       *slog.Logger  // nil discards

	// The downward-API variables FromEnv reads the pod's name and
	// namespace from; DefaultPodVar and DefaultNamespaceVar when empty.
	PodVar, NamespaceVar string
}

// FromEnv fills the empty fields of c from the environment and c.KubeDir the
// way an in-cluster client does. Its error names what is missing and how to
// provide it; it also fails when the token or the CA cannot be read, since
// then no write could ever succeed.
func FromEnv(c Config, getenv func(string) string) (Config, error) {
	if c.Interval < 0 {
		return c, fmt.Errorf("deletion-cost interval %v is negative: give a duration such as 5s", c.Interval)
	}
	c.defaults()
	if c.Server == "" {
		host, port := getenv("KUBERNETES_SERVICE_HOST"), getenv("KUBERNETES_SERVICE_PORT")
		if host == "" || port == "" {
			return c, errors.New("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set: " +
				"run inside a Kubernetes pod, or set both to the API server's address")
		}
		c.Server = "https://" + net.JoinHostPort(host, port)
	}
	if u, err := url.Parse(c.Server); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return c, fmt.Errorf("API server %q is not a URL such as https://10.96.0.1:443", c.Server)
	}
	if c.Pod == "" {
		c.Pod = getenv(c.PodVar)
	}
	if c.Pod == "" {
		c.Pod = getenv("HOSTNAME")
	}
	if c.Pod == "" {
		return c, fmt.Errorf("the pod's name is unknown: set %s from the downward API "+
			"(env: - name: %[1]s, valueFrom: {fieldRef: {fieldPath: metadata.name}})", c.PodVar)
	}
	if c.Namespace == "" {
		c.Namespace = getenv(c.NamespaceVar)
	}
	if c.Namespace == "" {
		b, err := os.ReadFile(filepath.Join(c.KubeDir, "namespace"))
		if err != nil {
			return c, fmt.Errorf("the pod's namespace is unknown: set %s from the downward API "+
				"(fieldRef: {fieldPath: metadata.namespace}) or mount the service-account token: %v", c.NamespaceVar, err)
		}
		c.Namespace = strings.TrimSpace(string(b))
	}
	for _, f := range []string{"token", "ca.crt"} {
		if _, err := os.Stat(filepath.Join(c.KubeDir, f)); err != nil {
			return c, fmt.Errorf("no service-account %s: mount one (automountServiceAccountToken must not be false) "+
				"or point --kube-dir at a directory that holds token and ca.crt: %v", f, err)
		}
	}
	return c, nil
}

// Run keeps the pod's deletion cost equal to the latest value received on
// counts (the number of held locks), clamped to int32. It writes the first
// value at once, so a restarted container does not keep its predecessor's
// cost; after that only a changed value, at most once per c.Interval (from
// the end of one write to the start of the next), and the last value of a
// burst always (trailing edge). Writes happen beside the loop that reads
// counts, so a slow or unreachable API server never blocks the sender. Failures are warned about once per kind and retried with
// exponential backoff up to six intervals.
//
// Run returns nil when ctx ends. Closing counts means no more values: the
// last one is still written. It returns an error at once, before reading
// counts, only when c lacks the server, the pod or the namespace, which
// FromEnv guarantees.
func Run(ctx context.Context, c Config, counts <-chan int) error {
	if c.Server == "" || c.Pod == "" || c.Namespace == "" {
		return errors.New("podcost: Config needs Server, Pod and Namespace (see FromEnv)")
	}
	c.defaults()
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("pod", c.Namespace+"/"+c.Pod)
	p := newPatcher(c)

	type result struct {
		cost int32
		err  error
	}
	results := make(chan result, 1) // buffered: a write finishing after ctx ends must not leak its goroutine
	var (
		want, have int32
		haveWant   bool // a first value has arrived
		synced     bool // the server holds have, as far as we know
		wrote      bool // a write has succeeded
		inflight   bool
		next       time.Time // earliest start of the next write
		backoff    time.Duration
		warned     = map[string]bool{} // failure kinds warned about since the last success
		maxBackoff = 6 * c.Interval
		wake       = time.NewTimer(time.Hour)
		wakeC      <-chan time.Time
	)
	wake.Stop()
	defer wake.Stop()
	for {
		wakeC = nil
		if haveWant && !inflight && (!synced || want != have) {
			if d := time.Until(next); d > 0 {
				wake.Reset(d)
				wakeC = wake.C
			} else {
				inflight = true
				go func(v int32) { results <- result{v, p.patch(ctx, v)} }(want)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case n, ok := <-counts:
			if !ok {
				counts = nil
				continue
			}
			want, haveWant = clamp(n), true
		case <-wakeC:
		case r := <-results:
			inflight = false
			if r.err == nil {
				switch {
				case len(warned) > 0:
					log.Info("pod-deletion-cost written again", "cost", r.cost)
					clear(warned)
				case !wrote:
					// Once at info: the feature works, its Role included.
					log.Info("pod-deletion-cost written; it follows the held locks from now on",
						"cost", r.cost, "interval", c.Interval)
				default:
					log.Debug("pod-deletion-cost written", "cost", r.cost)
				}
				wrote = true
				have, synced, backoff = r.cost, true, 0
				// The interval counts from the end of a write, so that
				// the server sees no two writes closer than Interval
				// even when one was slow to arrive.
				next = time.Now().Add(c.Interval)
				continue
			}
			if ctx.Err() != nil {
				return nil
			}
			// What the server holds after a failure (a timeout may have
			// applied) is unknown: write again even if want goes back.
			synced = false
			backoff = min(max(2*backoff, c.Interval), maxBackoff)
			next = time.Now().Add(backoff)
			var f *failure
			if !errors.As(r.err, &f) {
				f = &failure{kind: "other", msg: r.err.Error()}
			}
			if !warned[f.kind] {
				warned[f.kind] = true
				log.Warn("cannot set pod-deletion-cost: "+f.msg+"; retrying with backoff", f.attrs...)
			} else {
				log.Debug("pod-deletion-cost write failed again", append([]any{"err", f.msg}, f.attrs...)...)
			}
		}
	}
}

// defaults fills the fields whose zero value means "the usual".
func (c *Config) defaults() {
	if c.KubeDir == "" {
		c.KubeDir = DefaultKubeDir
	}
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.PodVar == "" {
		c.PodVar = DefaultPodVar
	}
	if c.NamespaceVar == "" {
		c.NamespaceVar = DefaultNamespaceVar
	}
}

// clamp fits n into the annotation's type, an int32.
func clamp(n int) int32 {
	return int32(min(max(n, math.MinInt32), math.MaxInt32))
}
