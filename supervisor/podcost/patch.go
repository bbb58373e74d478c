package podcost

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// requestTimeout bounds one write, so that a stalled API server shows up as
// a failure to warn about and retry rather than as silence. A patch of one
// annotation takes milliseconds on a healthy server.
var requestTimeout = 5 * time.Second

// failure is a write that did not land. kind groups failures that need the
// same fix, so that each is warned about once, not once per retry.
type failure struct {
	kind  string
	msg   string // what went wrong and how to mend it
	attrs []any
}

func (f *failure) Error() string { return f.msg }

// patcher writes the annotation. It is used by one write at a time.
type patcher struct {
	c       Config
	addr    string // host:port to dial
	head    string // the request line and the headers that do not change
	https   bool
	timeout time.Duration
	tls     *tls.Config // nil until the CA has been read

	token     string
	tokenStat os.FileInfo // of the file token was read from
}

func newPatcher(c Config) *patcher {
	u, _ := url.Parse(strings.TrimSuffix(c.Server, "/")) // FromEnv checked it
	p := &patcher{c: c, https: u.Scheme == "https", timeout: requestTimeout}
	port := u.Port()
	if port == "" {
		port = map[bool]string{true: "443", false: "80"}[p.https]
	}
	p.addr = net.JoinHostPort(u.Hostname(), port)
	path := u.EscapedPath() + "/api/v1/namespaces/" + url.PathEscape(c.Namespace) +
		"/pods/" + url.PathEscape(c.Pod) + "?fieldManager=drainit"
	p.head = "PATCH " + path + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUser-Agent: drainit\r\n" +
		"Content-Type: application/merge-patch+json\r\nAccept: application/json\r\n"
	return p
}

func (p *patcher) patch(ctx context.Context, cost int32) error {
	var tlsConf *tls.Config
	if p.https {
		var err error
		if tlsConf, err = p.tlsConfig(); err != nil {
			return err
		}
	}
	token, err := p.readToken()
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]any{
		"metadata": map[string]any{"annotations": map[string]string{annotation: strconv.Itoa(int(cost))}},
	})
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	resp, err := exchange(ctx, p.addr, tlsConf, p.head+"Authorization: Bearer "+token+"\r\n", body)
	if err != nil {
		return p.transportFailure(err)
	}
	if resp.code/100 == 2 {
		return nil
	}
	// The body of an error is a metav1.Status whose message says why.
	var status struct {
		Message string `json:"message"`
	}
	_ = json.Unmarshal(resp.body, &status)
	if status.Message == "" {
		status.Message = strings.TrimSpace(string(resp.body))
	}
	attrs := []any{"status", resp.code, "server", status.Message}
	switch resp.code {
	case 401:
		p.tokenStat = nil // read the token again even if the file looks unchanged
		return &failure{kind: "401", attrs: attrs, msg: fmt.Sprintf(
			"the API server rejects the token in %s (401 Unauthorized): mount a valid service-account token there",
			filepath.Join(p.c.KubeDir, "token"))}
	case 403:
		return &failure{kind: "403", attrs: attrs, msg: "the pod's service account may not patch pods (403 Forbidden): " +
			`bind it to a Role with the rule {apiGroups: [""], resources: [pods], verbs: [patch]} ` +
			"in namespace " + p.c.Namespace}
	case 404:
		return &failure{kind: "404", attrs: attrs, msg: "pod " + p.c.Namespace + "/" + p.c.Pod +
			" not found (404 Not Found): set " + p.c.PodVar + " and " + p.c.NamespaceVar +
			" from the downward API (fieldRef metadata.name and metadata.namespace)"}
	}
	return &failure{kind: strconv.Itoa(resp.code), attrs: attrs,
		msg: "the API server answered " + resp.status}
}

func (p *patcher) transportFailure(err error) error {
	attrs := []any{"server", p.c.Server, "err", err}
	var ne net.Error
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return &failure{kind: "timeout", attrs: attrs, msg: fmt.Sprintf(
			"the API server did not answer within %v", p.timeout)}
	case errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid) || errors.As(err, &verify):
		p.tls = nil // read ca.crt again: it may have been rotated
		return &failure{kind: "tls", attrs: attrs, msg: "the API server's certificate does not verify against " +
			filepath.Join(p.c.KubeDir, "ca.crt")}
	}
	if errors.Is(err, errMalformed) {
		return &failure{kind: "protocol", attrs: attrs, msg: "the server at " + p.c.Server +
			" does not answer like an API server (not HTTP/1.1); check KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT"}
	}
	return &failure{kind: "unreachable", attrs: attrs, msg: "the API server is unreachable"}
}

// tlsConfig is built on first use, and again after a certificate failure,
// from ca.crt.
func (p *patcher) tlsConfig() (*tls.Config, error) {
	if p.tls != nil {
		return p.tls, nil
	}
	file := filepath.Join(p.c.KubeDir, "ca.crt")
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, &failure{kind: "ca", msg: "cannot read the API server's CA", attrs: []any{"err", err}}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, &failure{kind: "ca", msg: "no PEM certificate in " + file}
	}
	host, _, _ := net.SplitHostPort(p.addr)
	p.tls = &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	return p.tls, nil
}

// readToken returns the bearer token, reading the file again when it has
// changed: the kubelet rotates projected tokens by swapping a symlink, which
// changes the file Stat follows to.
func (p *patcher) readToken() (string, error) {
	file := filepath.Join(p.c.KubeDir, "token")
	st, err := os.Stat(file)
	if err != nil {
		return "", &failure{kind: "token", msg: "cannot read the service-account token", attrs: []any{"err", err}}
	}
	if p.tokenStat != nil && os.SameFile(st, p.tokenStat) && st.ModTime().Equal(p.tokenStat.ModTime()) &&
		st.Size() == p.tokenStat.Size() {
		return p.token, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", &failure{kind: "token", msg: "cannot read the service-account token", attrs: []any{"err", err}}
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", &failure{kind: "token", msg: "the service-account token " + file + " is empty"}
	}
	if strings.ContainsFunc(tok, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		// It goes into a header line as it is.
		return "", &failure{kind: "token", msg: "the service-account token " + file +
			" holds a line break or a control character: it must be one line"}
	}
	p.token, p.tokenStat = tok, st
	return tok, nil
}
