package e2e_test

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drainit/drainit/internal/testkit"
)

// long bounds every wait for something that should come soon.
const long = 60 * time.Second

// tiniStatic is Debian's static tini (package tini), which runs in a
// FROM scratch image.
const tiniStatic = "/usr/bin/tini-static"

var binDir string // static drainit and demo, built once in TestMain

func TestMain(m *testing.M) {
	if err := testkit.ResetSignals(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "drainit-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	for _, p := range []string{"cmd/drainit", "examples/demo"} {
		build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, filepath.Base(p)), "github.com/drainit/drainit/"+p)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building", p, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	images.Range(func(_, v any) bool {
		if img := v.(*image); img.name != "" {
			exec.Command("docker", "rmi", "-f", img.name).Run()
		}
		return true
	})
	os.RemoveAll(dir)
	os.Exit(code)
}

// skipOrFail skips a test that cannot run here, or fails it in CI.
var skipOrFail = testkit.SkipOrFail

var (
	needDocker = testkit.NeedDocker
	docker     = testkit.Docker
)

func unique(prefix string) string {
	var b [4]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// image is a test image built at most once per run.
type image struct {
	once sync.Once
	name string
	err  error
}

var images sync.Map // kind → *image

// testImage returns the FROM scratch image whose PID 1 is init: "drainit"
// (the ENTRYPOINT and STOPSIGNAL of Dockerfile.example) or "tini" (Debian's
// tini-static, the way `docker run --init` would run the app).
func testImage(t *testing.T, init string) string {
	t.Helper()
	needDocker(t)
	if init == "tini" {
		if _, err := os.Stat(tiniStatic); err != nil {
			skipOrFail(t, "no "+tiniStatic+": apt-get install tini")
		}
	}
	v, _ := images.LoadOrStore(init, &image{})
	img := v.(*image)
	img.once.Do(func() { img.name, img.err = buildImage(init) })
	if img.err != nil {
		t.Fatal(img.err)
	}
	return img.name
}

// buildImage builds the image; it must not end the test (it runs in a
// sync.Once shared by every test).
func buildImage(init string) (string, error) {
	ctx, err := os.MkdirTemp("", "drainit-e2e-ctx")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(ctx)
	// An empty directory in the context: COPY keeps it, and a scratch
	// image has no mkdir to RUN.
	if err := os.MkdirAll(filepath.Join(ctx, "app", "lock"), 0o755); err != nil {
		return "", err
	}
	files := []string{filepath.Join(binDir, "demo")}
	var head string
	switch init {
	case "drainit":
		src, err := os.ReadFile("../../Dockerfile.example")
		if err != nil {
			return "", err
		}
		d, err := checkDockerfile(string(src))
		if err != nil {
			return "", fmt.Errorf("Dockerfile.example: %v", err)
		}
		files = append(files, filepath.Join(binDir, "drainit"))
		ep := jsonArray(d.entrypoint)
		head = fmt.Sprintf("STOPSIGNAL %s\nENTRYPOINT %s\n", d.stopSignal, ep)
	case "tini":
		files = append(files, tiniStatic)
		head = "STOPSIGNAL SIGTERM\nENTRYPOINT [\"tini-static\", \"--\"]\n"
	}
	for _, f := range files {
		if err := copyFile(f, filepath.Join(ctx, filepath.Base(f))); err != nil {
			return "", err
		}
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	dockerfile := "FROM scratch\n" +
		"COPY " + strings.Join(names, " ") + " /usr/local/bin/\n" +
		"COPY app /app\n" +
		"ENV PATH=/usr/local/bin DEMO_ADDR=0.0.0.0:8080 DEMO_LOCKS=/app/lock DRAINIT_LOCK=/app/lock/*.lock\n" +
		head +
		"CMD [\"demo\"]\n"
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return "", err
	}
	name := unique("drainit-e2e-" + init + ":")
	out, err := exec.Command("docker", "build", "-q", "-t", name, ctx).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("docker build:\n%s\n%v\n%s", dockerfile, err, out)
	}
	return name, nil
}

func jsonArray(a []string) string {
	q := make([]string, len(a))
	for i, s := range a {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o755)
}

// container is a running test container and its log, read as it comes.
type container struct {
	t    *testing.T
	name string
	port string // host side, 127.0.0.1:N

	mu    sync.Mutex
	lines []logLine
	seen  int // lines already matched by waitLine
	more  chan struct{}
	ended chan struct{} // the log stream ended: the container is gone
}

type logLine struct {
	at   time.Time // when the engine got it
	text string
}

// run starts a container of img, detached, with the demo's port published
// on the loopback only.
func run(t *testing.T, img string, env ...string) *container {
	t.Helper()
	c := &container{t: t, name: unique("drainit-e2e-"), more: make(chan struct{}, 1), ended: make(chan struct{})}
	args := []string{"run", "-d", "--name", c.name, "-p", "127.0.0.1::8080"}
	for _, e := range env {
		args = append(args, "-e", e)
	}
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", c.name).Run() })
	docker(t, append(args, img)...)
	c.follow()
	c.waitLine("listening on")
	c.port = strings.Split(docker(t, "port", c.name, "8080/tcp"), "\n")[0]
	return c
}

// follow reads `docker logs -f` into c.lines until the container is gone.
func (c *container) follow() {
	cmd := exec.Command("docker", "logs", "-f", "-t", c.name)
	r, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cmd.Process.Kill() })
	go func() { w.CloseWithError(cmd.Wait()) }()
	go func() {
		defer close(c.ended)
		s := bufio.NewScanner(r)
		for s.Scan() {
			ts, text, _ := strings.Cut(s.Text(), " ")
			at, _ := time.Parse(time.RFC3339Nano, ts)
			c.mu.Lock()
			c.lines = append(c.lines, logLine{at, text})
			c.mu.Unlock()
			select {
			case c.more <- struct{}{}:
			default:
			}
		}
	}()
}

// waitLine waits for the next line, after those already matched, that
// contains s.
func (c *container) waitLine(s string) logLine {
	c.t.Helper()
	deadline := time.After(long)
	ended := false
	for {
		c.mu.Lock()
		for i := c.seen; i < len(c.lines); i++ {
			if strings.Contains(c.lines[i].text, s) {
				c.seen = i + 1
				l := c.lines[i]
				c.mu.Unlock()
				return l
			}
		}
		c.mu.Unlock()
		if ended {
			c.t.Fatalf("%s: the log ended without %q:\n%s", c.name, s, c.transcript())
		}
		select {
		case <-c.more:
		case <-c.ended:
			ended = true // look once more: the last lines came before the end
		case <-deadline:
			c.t.Fatalf("%s: no %q in the log after %v:\n%s", c.name, s, long, c.transcript())
		}
	}
}

// find returns the first line containing s, wherever it is.
func (c *container) find(s string) (logLine, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.lines {
		if strings.Contains(l.text, s) {
			return l, true
		}
	}
	return logLine{}, false
}

func (c *container) transcript() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, l := range c.lines {
		fmt.Fprintf(&b, "%s %s\n", l.at.Format("15:04:05.000"), l.text)
	}
	return b.String()
}

// waitEnd waits until the whole log has been read: the container is gone.
func (c *container) waitEnd() {
	c.t.Helper()
	select {
	case <-c.ended:
	case <-time.After(long):
		c.t.Fatalf("%s: the log did not end:\n%s", c.name, c.transcript())
	}
}

// startJob asks the demo to start a job and waits until it has said so,
// which it does once its lock file exists.
func (c *container) startJob(name, kind string, seconds float64) {
	c.t.Helper()
	u := fmt.Sprintf("http://%s/jobs?name=%s&kind=%s&seconds=%g", c.port, name, kind, seconds)
	resp, err := http.Post(u, "", nil)
	if err != nil {
		c.t.Fatalf("%s: %v\n%s", u, err, c.transcript())
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		c.t.Fatalf("%s: %s: %s", u, resp.Status, body)
	}
	c.waitLine("job " + name + " started")
}

// stop runs docker stop -t timeout and returns when it returned.
func (c *container) stop(timeout int) time.Time {
	c.t.Helper()
	docker(c.t, "stop", "-t", strconv.Itoa(timeout), c.name)
	return time.Now()
}

func (c *container) exitCode() int {
	c.t.Helper()
	n, err := strconv.Atoi(docker(c.t, "inspect", "-f", "{{.State.ExitCode}}", c.name))
	if err != nil {
		c.t.Fatal(err)
	}
	return n
}

// finishedAt is when the container's PID 1 exited, as the engine saw it.
func (c *container) finishedAt() time.Time {
	c.t.Helper()
	at, err := time.Parse(time.RFC3339Nano, docker(c.t, "inspect", "-f", "{{.State.FinishedAt}}", c.name))
	if err != nil {
		c.t.Fatal(err)
	}
	return at
}

// before fails unless the line containing a comes before the one with b.
func (c *container) before(a, b string) {
	c.t.Helper()
	c.mu.Lock()
	ia, ib := -1, -1
	for i, l := range c.lines {
		if ia < 0 && strings.Contains(l.text, a) {
			ia = i
		}
		if ib < 0 && strings.Contains(l.text, b) {
			ib = i
		}
	}
	c.mu.Unlock()
	if ia < 0 || ib < 0 || ia > ib {
		c.t.Errorf("want %q before %q:\n%s", a, b, c.transcript())
	}
}
