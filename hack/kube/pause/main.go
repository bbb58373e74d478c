// Command pause is the sandbox process of every pod on the test node of
// hack/local-cluster.sh: it holds the pod's namespaces open and does
// nothing else, like Kubernetes' own pause, which cannot be pulled here.
// As PID 1 of a pod that shares its PID namespace it also reaps orphans.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			// The kubelet stops a sandbox only after its containers.
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
