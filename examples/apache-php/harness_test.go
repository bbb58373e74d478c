package apachephp_test

import (
	"archive/tar"
	"bufio"
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

// Image is the example's image, built from Dockerfile.example as written,
// left tagged after the tests for the Kubernetes tests and for people.
const Image = "drainit-example/demo-web:test"

// long bounds every wait for something that should come soon.
const long = 60 * time.Second

// buildImage builds the stand-in bases (hack/standin-images.sh; minutes
// the first time, a second after) and then Dockerfile.example, with only
// its base images swapped by the build arguments it declares for this.
var buildImage = sync.OnceValue(func() error {
	out, err := exec.Command("../../hack/standin-images.sh", "build").Output()
	if err != nil {
		return fmt.Errorf("hack/standin-images.sh build: %v\n%s", err, stderrOf(err))
	}
	var args []string
	for _, kv := range strings.Fields(string(out)) {
		args = append(args, "--build-arg", kv)
	}
	ctx, err := os.MkdirTemp("", "drainit-apache-php")
	if err != nil {
		return err
	}
	defer os.RemoveAll(ctx)
	// The context a user has: the app, with drainit's source in ./drainit.
	copies := [][2]string{
		{"job.php", "job.php"}, {"public", "public"},
		{"../../go.mod", "drainit/go.mod"}, {"../../go.sum", "drainit/go.sum"},
		{"../../cmd", "drainit/cmd"}, {"../../signals", "drainit/signals"},
		{"../../supervisor", "drainit/supervisor"}, {"../../internal", "drainit/internal"},
	}
	for _, c := range copies {
		if err := copyInto(filepath.Join(ctx, c[1]), c[0]); err != nil {
			return fmt.Errorf("making the build context: %v", err)
		}
	}
	old, _ := exec.Command("docker", "image", "inspect", "-f", "{{.Id}}", Image).Output()
	args = append([]string{"build", "-q", "-f", "../../Dockerfile.example", "-t", Image}, args...)
	build := exec.Command("docker", append(args, ctx)...)
	out, err = build.CombinedOutput()
	if err != nil {
		return fmt.Errorf("docker %s: %v\n%s", strings.Join(build.Args[1:], " "), err, out)
	}
	// The image the tag named before, left untagged by this build, would
	// otherwise pile up run after run. One still in use stays (rmi fails).
	if id := strings.TrimSpace(string(old)); id != "" && id != strings.TrimSpace(string(out)) {
		exec.Command("docker", "rmi", id).Run()
	}
	return nil
})

// copyInto copies the file or tree src to dst.
func copyInto(dst, src string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return os.CopyFS(dst, os.DirFS(src))
	}
	b, err := os.ReadFile(src)
	if err == nil {
		err = os.MkdirAll(filepath.Dir(dst), 0o755)
	}
	if err == nil {
		err = os.WriteFile(dst, b, 0o644)
	}
	return err
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

func needImage(t testing.TB) {
	t.Helper()
	testkit.NeedDocker(t)
	if err := buildImage(); err != nil {
		t.Fatal(err)
	}
}

// container is one run of the example's image.
type container struct {
	t    testing.TB
	id   string
	base string // http://127.0.0.1:PORT
}

// run starts the image with docker run -d and the given docker options,
// and waits until Apache answers.
func run(t testing.TB, opts ...string) *container {
	t.Helper()
	args := append([]string{"run", "-d", "-p", "127.0.0.1::80"}, opts...)
	id := testkit.Docker(t, append(args, Image)...)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command("docker", "logs", id).CombinedOutput()
			t.Logf("docker logs:\n%s", out)
		}
		exec.Command("docker", "rm", "-f", id).Run()
	})
	port := strings.Split(testkit.Docker(t, "port", id, "80/tcp"), "\n")[0]
	c := &container{t: t, id: id, base: "http://" + port}
	deadline := time.Now().Add(long)
	for {
		if _, err := c.get("/"); err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("Apache did not answer on %s within %s", c.base, long)
		}
		time.Sleep(50 * time.Millisecond) // polling an answer, not a guess
	}
}

// client closes each connection after its request: an idle keep-alive
// connection would hold an Apache child, and Apache's graceful stop waits
// for its children, which would make the stop depend on the test's client.
var client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

func (c *container) get(path string) (string, error) {
	resp, err := client.Get(c.base + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
	}
	return string(b), err
}

// start starts job id for d through the app's own start.php, and waits
// until its lock file is there: the request returns before the job has
// made it (PHP's CLI takes a moment to start).
func (c *container) start(id string, d time.Duration) {
	c.t.Helper()
	if _, err := c.get(fmt.Sprintf("/start.php?id=%s&seconds=%d", id, int(d.Seconds()))); err != nil {
		c.t.Fatal(err)
	}
	deadline := time.Now().Add(long)
	for {
		jobs, err := c.get("/")
		if err != nil {
			c.t.Fatal(err)
		}
		if strings.Contains(jobs, "held "+id+"\n") {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("job %s made no lock within %s:\n%s", id, long, jobs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop runs docker stop -t grace (plus options) and returns when it did.
func (c *container) stop(grace int, opts ...string) time.Time {
	c.t.Helper()
	testkit.Docker(c.t, append(append([]string{"stop"}, opts...), "-t", strconv.Itoa(grace), c.id)...)
	return time.Now()
}

// done reads jobs.log out of the stopped container: each finished job's
// id and the time it finished, just before it removed its lock.
func (c *container) done() map[string]time.Time {
	c.t.Helper()
	out, err := exec.Command("docker", "cp", c.id+":/app/demo-web/jobs.log", "-").Output()
	if err != nil {
		c.t.Fatalf("docker cp jobs.log: %v %s", err, stderrOf(err))
	}
	tr := tar.NewReader(strings.NewReader(string(out)))
	if _, err := tr.Next(); err != nil {
		c.t.Fatal(err)
	}
	got := map[string]time.Time{}
	sc := bufio.NewScanner(tr)
	for sc.Scan() {
		var id string
		var at float64
		if _, err := fmt.Sscanf(sc.Text(), "done %s %f", &id, &at); err != nil {
			c.t.Fatalf("jobs.log: %q: %v", sc.Text(), err)
		}
		got[id] = time.Unix(0, int64(at*1e9))
	}
	return got
}

func (c *container) exitCode() int {
	c.t.Helper()
	n, err := strconv.Atoi(testkit.Docker(c.t, "inspect", "-f", "{{.State.ExitCode}}", c.id))
	if err != nil {
		c.t.Fatal(err)
	}
	return n
}

// finished is when the container's PID 1 exited, by the engine's clock.
func (c *container) finished() time.Time {
	c.t.Helper()
	at, err := time.Parse(time.RFC3339Nano, testkit.Docker(c.t, "inspect", "-f", "{{.State.FinishedAt}}", c.id))
	if err != nil {
		c.t.Fatal(err)
	}
	return at
}

func (c *container) logs() string {
	c.t.Helper()
	return testkit.Docker(c.t, "logs", c.id)
}
