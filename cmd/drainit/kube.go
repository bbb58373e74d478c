package main

import (
	"time"

	"github.com/drainit/drainit/supervisor"
	"github.com/drainit/drainit/supervisor/podcost"
)

// kubeFlags are the flags of --deletion-cost: keep the pod's
// controller.kubernetes.io/pod-deletion-cost equal to its held locks.
type kubeFlags struct {
	on            bool
	interval      time.Duration
	dir           string
	podVar, nsVar string
}

func (kf *kubeFlags) register(o *options) {
	o.boolean("deletion-cost", &kf.on, "keep the pod's pod-deletion-cost annotation equal to the number of held locks, so a scale-down removes idle pods first")
	o.duration("deletion-cost-interval", &kf.interval, podcost.DefaultInterval, 100*time.Millisecond, "least time between two writes of the annotation; the last value is always written")
	kf.dir = podcost.DefaultKubeDir
	o.path("kube-dir", &kf.dir, "where the service-account token, ca.crt and namespace are read")
	o.varName("pod-name-var", &kf.podVar, podcost.DefaultPodVar, "the variable holding the pod's name (downward API metadata.name)")
	o.varName("pod-namespace-var", &kf.nsVar, podcost.DefaultNamespaceVar, "the variable holding the pod's namespace (downward API metadata.namespace)")
}

// configure checks the settings of --deletion-cost against the environment
// and sets c.DeletionCost. What cannot work at all (not in a pod, no token)
// is refused here, at start; what can mend itself (a missing Role, a server
// down) is only warned about later.
func (kf *kubeFlags) configure(c *supervisor.Config, getenv func(string) string) error {
	if !kf.on {
		return nil
	}
	if len(c.Locks) == 0 {
		return usagef("--deletion-cost counts held locks, and no --lock is given; add --lock PATTERN (like /app/lock/*.lock)")
	}
	pc, err := podcost.FromEnv(podcost.Config{
		Interval: kf.interval, KubeDir: kf.dir, PodVar: kf.podVar, NamespaceVar: kf.nsVar,
	}, getenv)
	if err != nil {
		return usagef("--deletion-cost: %v", err)
	}
	c.DeletionCost = &pc
	return nil
}
