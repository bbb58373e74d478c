// Package kubernetes_test checks the example manifests with the real
// Kubernetes API types: each decodes strictly (an unknown or duplicated
// field is an error, as `kubectl apply --validate=strict` would say), and
// drainit's budget agrees with the pod's.
//
// It is a module of its own so that the main module does not depend on
// k8s.io; run it with `cd examples/kubernetes && go test ./...`.
package kubernetes_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/yaml"
)

func TestManifests(t *testing.T) {
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 2 {
		t.Fatalf("found %d manifests, want the drainit-as-ENTRYPOINT and the preStop ones at least", len(files))
	}
	kinds := map[string]int{}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			docs, err := decodeAll(data)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range docs {
				kind, err := check(d)
				if err != nil {
					t.Error(err)
				}
				kinds[kind]++
			}
		})
	}
	if kinds["entrypoint"] == 0 || kinds["prestop"] == 0 {
		t.Errorf("want at least one Deployment of each way to run drainit, got %v", kinds)
	}
}

// The checker must be able to fail: each of these is one mistake.
func TestCheckerCatches(t *testing.T) {
	good, err := os.ReadFile("deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	prestop, err := os.ReadFile("deployment-prestop.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, base, old, new, want string
	}{
		{"unknown field", "good", "terminationGracePeriodSeconds: 300", "terminationGracePeriodSeconds: 300\n      terminationGracePeriod: 300", "unknown field"},
		{"misplaced field", "good", "      containers:", "      preStop: {}\n      containers:", "unknown field"},
		{"duplicate field", "good", "  replicas: 3", "  replicas: 3\n  replicas: 4", "already set"},
		{"grace disagrees", "good", `value: "300" # = terminationGracePeriodSeconds`, `value: "30"`, "DRAINIT_GRACE"},
		{"grace missing", "good", "            - name: DRAINIT_GRACE\n              value: \"300\" # = terminationGracePeriodSeconds\n", "", "DRAINIT_GRACE"},
		{"stop timeout too long", "good", `value: "20"`, `value: "300"`, "DRAINIT_STOP_TIMEOUT"},
		{"command replaces drainit", "good", "          ports:", "          command: [apache2-foreground]\n          ports:", "command"},
		{"cost without account", "good", "      serviceAccountName: web\n", "", "serviceAccountName"},
		{"cost without token", "good", "      serviceAccountName: web\n", "      serviceAccountName: web\n      automountServiceAccountToken: false\n", "no token"},
		{"cost without pod name", "good", "fieldPath: metadata.name\n", "fieldPath: metadata.uid\n", "POD_NAME"},
		{"timeout not shorter", "prestop", `- "280"`, `- "300"`, "--timeout"},
		{"no timeout", "prestop", "                  - --timeout\n                  - \"280\"\n", "", "--timeout"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := string(good)
			if c.base == "prestop" {
				src = string(prestop)
			}
			if !strings.Contains(src, c.old) {
				t.Fatalf("the manifest no longer contains %q: update this case", c.old)
			}
			src = strings.Replace(src, c.old, c.new, 1)
			docs, err := decodeAll([]byte(src))
			for _, d := range docs {
				if err == nil {
					_, err = check(d)
				}
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one about %q", err, c.want)
			}
		})
	}
}

// scheme knows the kinds the manifests may hold; a kind it does not know
// is an error, so add its group here.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{appsv1.AddToScheme, corev1.AddToScheme, rbacv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

var strict = serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()

// decodeAll decodes every document of a YAML stream twice, with the API
// machinery's strict deserializer and with sigs.k8s.io/yaml's strict
// unmarshalling into the typed struct, and returns the typed objects.
func decodeAll(data []byte) ([]runtime.Object, error) {
	var objs []runtime.Object
	for i, doc := range bytes.Split(data, []byte("\n---")) {
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, gvk, err := strict.Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		again, err := scheme.New(*gvk)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if err := yaml.UnmarshalStrict(doc, again); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		objs = append(objs, obj)
	}
	return objs, nil
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

// check returns which way a Deployment runs drainit, "entrypoint" or
// "prestop", or what is wrong with its budget; other kinds pass.
func check(obj runtime.Object) (string, error) {
	d, ok := obj.(*appsv1.Deployment)
	if !ok {
		return "", nil // decoded strictly; drainit's settings live in Deployments
	}
	spec := d.Spec.Template.Spec
	tgps := 30 * time.Second // the API's default
	if spec.TerminationGracePeriodSeconds != nil {
		tgps = time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	}
	kind := ""
	for _, c := range spec.Containers {
		where := fmt.Sprintf("%s: container %s", d.Name, c.Name)
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
			if err := checkWait(where, c.Lifecycle.PreStop, tgps); err != nil {
				return "", err
			}
			kind = "prestop"
			continue
		}
		env := map[string]string{}
		fields := map[string]string{} // variables from the downward API: name → field path
		for _, e := range c.Env {
			env[e.Name] = e.Value
			if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
				fields[e.Name] = e.ValueFrom.FieldRef.FieldPath
			}
		}
		if len(env) == 0 || !hasDrainit(env) {
			continue
		}
		if len(c.Command) > 0 {
			return "", fmt.Errorf("%s: command %v replaces the image's ENTRYPOINT, drainit; set args instead", where, c.Command)
		}
		g, ok := env["DRAINIT_GRACE"]
		if !ok {
			return "", fmt.Errorf("%s: no DRAINIT_GRACE: drainit's default 30s would not match terminationGracePeriodSeconds %v", where, tgps)
		}
		grace, err := duration(g)
		if err != nil {
			return "", fmt.Errorf("%s: DRAINIT_GRACE: %v", where, err)
		}
		if grace != tgps {
			return "", fmt.Errorf("%s: DRAINIT_GRACE %v, terminationGracePeriodSeconds %v: make them equal", where, grace, tgps)
		}
		stop := 10 * time.Second
		if s, ok := env["DRAINIT_STOP_TIMEOUT"]; ok {
			if stop, err = duration(s); err != nil {
				return "", fmt.Errorf("%s: DRAINIT_STOP_TIMEOUT: %v", where, err)
			}
		}
		if stop+time.Second >= grace {
			return "", fmt.Errorf("%s: DRAINIT_STOP_TIMEOUT %v leaves no time to drain in DRAINIT_GRACE %v", where, stop, grace)
		}
		if env["DRAINIT_LOCK"] == "" {
			return "", fmt.Errorf("%s: no DRAINIT_LOCK: drainit would wait for no job", where)
		}
		if err := checkDeletionCost(where, spec, env, fields); err != nil {
			return "", err
		}
		kind = "entrypoint"
	}
	if kind == "" {
		return "", fmt.Errorf("%s: no container runs drainit (DRAINIT_GRACE and the others) or drainit wait as its preStop hook", d.Name)
	}
	return kind, nil
}

// checkDeletionCost checks what DRAINIT_DELETION_COST needs from the pod:
// a service account whose token is mounted, and its name and namespace.
func checkDeletionCost(where string, spec corev1.PodSpec, env, fields map[string]string) error {
	switch strings.ToLower(env["DRAINIT_DELETION_COST"]) {
	case "", "0", "f", "false", "no", "n", "off":
		return nil
	}
	if spec.ServiceAccountName == "" || spec.ServiceAccountName == "default" {
		return fmt.Errorf("%s: DRAINIT_DELETION_COST with the default service account, which may not patch pods; set serviceAccountName to the one rbac.yaml binds", where)
	}
	if spec.AutomountServiceAccountToken != nil && !*spec.AutomountServiceAccountToken {
		return fmt.Errorf("%s: DRAINIT_DELETION_COST with automountServiceAccountToken: false: drainit has no token to write with", where)
	}
	if fields["POD_NAME"] != "metadata.name" {
		return fmt.Errorf("%s: DRAINIT_DELETION_COST without POD_NAME from fieldRef metadata.name", where)
	}
	if fields["POD_NAMESPACE"] != "metadata.namespace" {
		return fmt.Errorf("%s: DRAINIT_DELETION_COST without POD_NAMESPACE from fieldRef metadata.namespace", where)
	}
	return nil
}

func hasDrainit(env map[string]string) bool {
	for k := range env {
		if strings.HasPrefix(k, "DRAINIT_") {
			return true
		}
	}
	return false
}

// checkWait checks a preStop hook that runs drainit wait: it watches a
// lock and gives up before the kubelet's SIGKILL.
func checkWait(where string, h *corev1.LifecycleHandler, tgps time.Duration) error {
	if h.Exec == nil || len(h.Exec.Command) < 2 || filepath.Base(h.Exec.Command[0]) != "drainit" || h.Exec.Command[1] != "wait" {
		return fmt.Errorf("%s: the preStop hook is not `drainit wait`", where)
	}
	flags := map[string]string{}
	args := h.Exec.Command[2:]
	for i := 0; i < len(args); i++ {
		name, val, ok := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		if !ok && i+1 < len(args) {
			i++
			val = args[i]
		}
		flags[name] = val
	}
	if flags["lock"] == "" {
		return fmt.Errorf("%s: drainit wait without --lock waits for nothing", where)
	}
	t, ok := flags["timeout"]
	if !ok {
		return fmt.Errorf("%s: drainit wait without --timeout: the kubelet kills the app mid-request when the hook outlives terminationGracePeriodSeconds", where)
	}
	timeout, err := duration(t)
	if err != nil {
		return fmt.Errorf("%s: --timeout: %v", where, err)
	}
	if timeout >= tgps {
		return fmt.Errorf("%s: drainit wait --timeout %v must be shorter than terminationGracePeriodSeconds %v, so the app still gets its stop", where, timeout, tgps)
	}
	return nil
}

// duration reads a value the way drainit does: plain seconds or Go syntax.
func duration(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(s)
}
