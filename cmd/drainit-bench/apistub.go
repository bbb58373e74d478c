package main

import (
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
)

// apiStub stands in for the Kubernetes API server on 127.0.0.1 for an
// idle drainit --deletion-cost: it accepts every patch of a pod.
type apiStub struct {
	*httptest.Server
	dir     string        // token and ca.crt, for --kube-dir
	env     []string      // what the kubelet and the downward API would set
	patched chan struct{} // receives once per patch, when the buffer has room
}

func startAPIStub(dir string) (*apiStub, error) {
	patched := make(chan struct{}, 1)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"kind":"Pod"}`))
		select {
		case patched <- struct{}{}:
		default:
		}
	}))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		srv.Close()
		return nil, err
	}
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	for f, b := range map[string][]byte{"ca.crt": ca, "token": []byte("bench")} {
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			srv.Close()
			return nil, err
		}
	}
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	return &apiStub{Server: srv, dir: dir, patched: patched, env: []string{"KUBERNETES_SERVICE_HOST=" + host,
		"KUBERNETES_SERVICE_PORT=" + port, "POD_NAME=bench-0", "POD_NAMESPACE=bench"}}, nil
}
