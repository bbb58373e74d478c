package status_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/drainit/drainit/internal/testkit"
	"github.com/drainit/drainit/supervisor/status"
)

var (
	t0   = time.Date(2026, 12, 6, 23, 40, 1, 500_000_000, time.UTC)
	stop = t0
	dl   = t0.Add(39 * time.Second)
)

func draining() status.State {
	return status.State{
		Phase: status.Draining, PID: 1, AppPID: 7,
		Jobs: []status.Job{
			{PID: 123, Command: "php job.php 42", Since: t0.Add(2 * time.Second)},
			{Lock: "/app/lock/a.lock", Since: t0},
		},
		StopSignalAt: &stop, Deadline: &dl,
		Writer: status.Writer{PIDNSDev: 4, PIDNSIno: 4026531836, StartTicks: 1234},
	}
}

// The file's shape is the contract DESIGN.md states, to the byte.
func TestEncodeShape(t *testing.T) {
	b, err := status.Encode(draining())
	if err != nil {
		t.Fatal(err)
	}
	want := `{"phase":"draining","pid":1,"app_pid":7,"jobs":[{"pid":123,"command":"php job.php 42","since":"2026-12-06T23:40:03.5Z"},{"lock":"/app/lock/a.lock","since":"2026-12-06T23:40:01.5Z"}],"stop_signal_at":"2026-12-06T23:40:01.5Z","deadline":"2026-12-06T23:40:40.5Z","writer":{"pid_ns_dev":4,"pid_ns_ino":4026531836,"start_ticks":1234}}` + "\n"
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	b, _ = status.Encode(status.State{Phase: status.Running, PID: 1, AppPID: 7})
	if want := `{"phase":"running","pid":1,"app_pid":7,"jobs":[],"stop_signal_at":null,"deadline":null,"writer":{"pid_ns_dev":0,"pid_ns_ino":0,"start_ticks":0}}` + "\n"; string(b) != want {
		t.Errorf("running: got %s", b)
	}
}

// Times are RFC 3339, in UTC, whatever zone and monotonic reading they
// carried.
func TestEncodeTimes(t *testing.T) {
	local := time.Now().In(time.FixedZone("X", 3600))
	st := status.State{Phase: status.Draining, PID: 1, StopSignalAt: &local, Deadline: &local}
	b, _ := status.Encode(st)
	var raw struct {
		StopSignalAt string `json:"stop_signal_at"`
	}
	json.Unmarshal(b, &raw)
	got, err := time.Parse(time.RFC3339, raw.StopSignalAt)
	if err != nil || !got.Equal(local) || !strings.HasSuffix(raw.StopSignalAt, "Z") {
		t.Errorf("%q: %v", raw.StopSignalAt, err)
	}
}

// self is this test process as the writer of a state file.
func self(t *testing.T) status.Writer {
	t.Helper()
	w, err := status.Self()
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// Write and Read round-trip; this test process stands for a drainit.
func TestWriteRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "state.json")
	st := draining()
	st.PID, st.Writer = os.Getpid(), self(t)
	written, err := status.Write(path, st)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o644 || !os.SameFile(fi, written) {
		t.Fatalf("%v %v, written %v", fi, err, written)
	}
	got, err := status.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Phase != st.Phase || len(got.Jobs) != 2 || got.Jobs[0].PID != 123 || got.Jobs[1].Lock != "/app/lock/a.lock" || !got.Deadline.Equal(dl) {
		t.Errorf("%+v", got)
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
}

func TestReadNone(t *testing.T) {
	dir := t.TempDir()
	if _, err := status.Read(filepath.Join(dir, "none.json")); !errors.Is(err, status.ErrNone) {
		t.Errorf("no file: %v", err)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte("not json"), 0o644)
	if _, err := status.Read(bad); err == nil || errors.Is(err, status.ErrNone) {
		t.Errorf("garbage: %v", err)
	}
	// A file that does not say which drainit wrote it cannot be checked.
	st := draining()
	st.PID, st.Writer = os.Getpid(), status.Writer{}
	anon := filepath.Join(dir, "anon.json")
	if _, err := status.Write(anon, st); err != nil {
		t.Fatal(err)
	}
	if _, err := status.Read(anon); err == nil || errors.Is(err, status.ErrNone) || !strings.Contains(err.Error(), "not a drainit state file") {
		t.Errorf("no writer: %v", err)
	}
}

// A process is alive as the writer of a file only with the PID, the PID
// namespace and the start time the file names: a PID that cannot exist is
// gone, one with another start time is reused (drainit lock or drainit
// wait can get a dead drainit's), and one in another namespace names
// another process altogether.
func TestAlive(t *testing.T) {
	me := self(t)
	if err := status.Alive(os.Getpid(), me); err != nil {
		t.Errorf("this process: %v", err)
	}
	if err := status.Alive(testkit.ImpossiblePID(t), me); err == nil || !strings.Contains(err.Error(), "gone: no process") {
		t.Errorf("a PID above pid_max: %v", err)
	}
	reused := me
	reused.StartTicks++
	if err := status.Alive(os.Getpid(), reused); err == nil || !strings.Contains(err.Error(), "another process, started at another time") {
		t.Errorf("another start time: %v", err)
	}
	elsewhere := me
	elsewhere.PIDNSIno++
	if err := status.Alive(os.Getpid(), elsewhere); err == nil || !strings.Contains(err.Error(), "another drainit, in another PID namespace") {
		t.Errorf("another PID namespace: %v", err)
	}
}

func TestText(t *testing.T) {
	time.Local = time.UTC
	now := t0.Add(12 * time.Second)
	var b bytes.Buffer
	status.Text(&b, draining(), now)
	want := `phase:     draining: the app runs on while drainit waits for its jobs
drainit:   pid 1
app:       pid 7
stop:      12s ago (23:40:01 UTC)
left:      27s until the drain deadline (23:40:40 UTC): the app gets its stop signal then, whatever is held
jobs:      2 jobs held:
  /app/lock/a.lock  held 12s
  pid 123 (php job.php 42)  held 10s
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}

	st := draining()
	st.Phase = status.Stopping
	final := t0.Add(59 * time.Second)
	st.Deadline = &final
	b.Reset()
	status.Text(&b, st, t0.Add(70*time.Second))
	for _, s := range []string{"phase:     stopping", "left:      none: 11s ago was the final deadline (23:41:00 UTC): every process left is killed and drainit exits then at the latest\n", "jobs:      2 jobs still held when the drain ended, cut by the stop:"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("stopping: no %q in:\n%s", s, b.String())
		}
	}

	b.Reset()
	status.Text(&b, status.State{Phase: status.Running, PID: 1, AppPID: 7}, now)
	if strings.Contains(b.String(), "stop:") || strings.Contains(b.String(), "left:") || !strings.Contains(b.String(), "jobs:      watched from the stop on") {
		t.Errorf("running:\n%s", b.String())
	}
}

// Thousands of locks do not bury the report: the oldest are listed, the
// rest counted.
func TestTextManyJobs(t *testing.T) {
	st := draining()
	st.Jobs = nil
	for i := range 5000 {
		st.Jobs = append(st.Jobs, status.Job{Lock: "/l/" + time.Duration(i).String(), Since: t0.Add(time.Duration(i) * time.Millisecond)})
	}
	var b bytes.Buffer
	status.Text(&b, st, t0.Add(time.Minute))
	if n := strings.Count(b.String(), "\n"); n > 40 {
		t.Errorf("%d lines", n)
	}
	if !strings.Contains(b.String(), "  /l/0s  held 1m0s\n") || !strings.Contains(b.String(), "… and 4970 more") {
		t.Errorf("%s", b.String())
	}
}

func TestJSONReport(t *testing.T) {
	var b bytes.Buffer
	if err := status.JSON(&b, draining(), t0.Add(12*time.Second)); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Jobs []map[string]any `json:"jobs"`
		Now  time.Time        `json:"now"`
		Ago  *float64         `json:"stop_seconds_ago"`
		Left *float64         `json:"left_seconds"`
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%v:\n%s", err, b.String())
	}
	if len(got.Jobs) != 2 || got.Jobs[0]["held_seconds"] != 10.0 || got.Jobs[0]["pid"] != 123.0 || got.Jobs[1]["lock"] != "/app/lock/a.lock" || got.Jobs[1]["held_seconds"] != 12.0 {
		t.Errorf("jobs: %v", got.Jobs)
	}
	if _, ok := got.Jobs[1]["pid"]; ok {
		t.Errorf("a lock with a pid: %v", got.Jobs[1])
	}
	if got.Ago == nil || *got.Ago != 12 || got.Left == nil || *got.Left != 27 || !got.Now.Equal(t0.Add(12*time.Second)) {
		t.Errorf("%s", b.String())
	}
	b.Reset()
	status.JSON(&b, status.State{Phase: status.Running, PID: 1, AppPID: 7}, t0)
	if !strings.Contains(b.String(), `"jobs": []`) || !strings.Contains(b.String(), `"left_seconds": null`) || !strings.Contains(b.String(), `"deadline": null`) {
		t.Errorf("running:\n%s", b.String())
	}
}
