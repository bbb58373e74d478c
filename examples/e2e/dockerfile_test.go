package e2e_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line int
	cmd  string // upper case: FROM, ENTRYPOINT, …
	args string
}

// parseDockerfile reads the instructions of a Dockerfile: comments and
// blank lines dropped, lines ending in a backslash joined to the next.
func parseDockerfile(src string) []instruction {
	var out []instruction
	var cur strings.Builder
	start := 0
	for i, l := range strings.Split(src, "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "#") || (t == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(t, `\`) {
			cur.WriteString(strings.TrimSuffix(t, `\`) + " ")
			continue
		}
		cur.WriteString(t)
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, instruction{start, strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

// finalStage is the instructions from the last FROM on.
func finalStage(ins []instruction) []instruction {
	for i := len(ins) - 1; i >= 0; i-- {
		if ins[i].cmd == "FROM" {
			return ins[i:]
		}
	}
	return nil
}

// exampleDockerfile is what a user copies; what it runs, the test image runs.
type exampleDockerfile struct {
	entrypoint []string
	stopSignal string
	env        string // the ENV instructions' text, joined
}

// checkDockerfile checks what can be checked of a Dockerfile without
// building it, and returns its final stage's ENTRYPOINT and STOPSIGNAL.
func checkDockerfile(src string) (exampleDockerfile, error) {
	var d exampleDockerfile
	all := parseDockerfile(src)
	for _, in := range all {
		if in.cmd == "ENTRYPOINT" && !strings.HasPrefix(in.args, "[") {
			return d, fmt.Errorf("line %d: shell-form ENTRYPOINT %q makes /bin/sh PID 1, which swallows signals; use the JSON form [\"drainit\", \"--\"]", in.line, in.args)
		}
	}
	final := finalStage(all)
	if final == nil {
		return d, fmt.Errorf("no FROM")
	}
	copied := false
	for _, in := range final {
		switch in.cmd {
		case "ENTRYPOINT":
			d.entrypoint = nil
			if err := json.Unmarshal([]byte(in.args), &d.entrypoint); err != nil {
				return d, fmt.Errorf("line %d: ENTRYPOINT %s is not a JSON array of strings: %v", in.line, in.args, err)
			}
		case "STOPSIGNAL":
			d.stopSignal = in.args
		case "ENV":
			d.env += in.args + "\n"
		case "COPY":
			if strings.Contains(in.args, "--from=") && strings.Contains(in.args, "drainit") {
				copied = true
			}
		}
	}
	if !copied {
		return d, fmt.Errorf("the final stage copies no drainit binary from a build stage (COPY --from=… drainit)")
	}
	if len(d.entrypoint) < 2 || path.Base(d.entrypoint[0]) != "drainit" || d.entrypoint[1] != "--" {
		return d, fmt.Errorf("ENTRYPOINT %q: want [\"drainit\", \"--\"], so that drainit is PID 1 and CMD is the app", d.entrypoint)
	}
	if d.stopSignal == "" {
		return d, fmt.Errorf("no STOPSIGNAL: the base image's (SIGWINCH for php:apache, SIGQUIT for php-fpm and nginx) would reach the app at once instead of starting the drain; set STOPSIGNAL SIGTERM")
	}
	if s := strings.TrimPrefix(strings.ToUpper(d.stopSignal), "SIG"); s != "TERM" && s != "INT" && !strings.Contains(d.env, "DRAINIT_DRAIN_ON") {
		return d, fmt.Errorf("STOPSIGNAL %s does not start the drain: use SIGTERM, or list it in DRAINIT_DRAIN_ON", d.stopSignal)
	}
	for _, v := range []string{"DRAINIT_LOCK=", "DRAINIT_GRACE="} {
		if !strings.Contains(d.env, v) {
			return d, fmt.Errorf("no ENV %s…: set it in the image", v)
		}
	}
	for _, in := range final {
		if in.cmd == "CMD" && !strings.HasPrefix(in.args, "[") {
			return d, fmt.Errorf("line %d: shell-form CMD %q runs the app under /bin/sh -c; use the JSON form", in.line, in.args)
		}
	}
	return d, nil
}

func readExample(t *testing.T) exampleDockerfile {
	t.Helper()
	src, err := os.ReadFile("../../Dockerfile.example")
	if err != nil {
		t.Fatal(err)
	}
	d, err := checkDockerfile(string(src))
	if err != nil {
		t.Fatalf("Dockerfile.example: %v", err)
	}
	return d
}

func TestDockerfileExample(t *testing.T) {
	d := readExample(t)
	if d.stopSignal != "SIGTERM" {
		t.Errorf("STOPSIGNAL %s, want SIGTERM spelled out", d.stopSignal)
	}
	if !strings.Contains(d.env, "DRAINIT_GRACE=300") {
		t.Errorf("ENV: want DRAINIT_GRACE=300, the first user's terminationGracePeriodSeconds:\n%s", d.env)
	}
	// The tests swap the bases for local stand-ins through these build
	// arguments; what a user copies must keep the real ones by default.
	src, err := os.ReadFile("../../Dockerfile.example")
	if err != nil {
		t.Fatal(err)
	}
	args := map[string]string{}
	for _, in := range parseDockerfile(string(src)) {
		if k, v, ok := strings.Cut(in.args, "="); in.cmd == "ARG" && ok {
			args[k] = v
		}
	}
	for k, want := range map[string]string{"GO_IMAGE": "golang:1.26", "PHP_IMAGE": "php:8.3-apache"} {
		if args[k] != want {
			t.Errorf("ARG %s=%q, want the upstream base %q by default", k, args[k], want)
		}
	}
}

// The checker must be able to fail: each case is one mistake.
func TestDockerfileCheckerCatches(t *testing.T) {
	good := "FROM golang AS drainit\nRUN go build\nFROM php:apache\nCOPY --from=drainit /drainit /usr/local/bin/drainit\n" +
		"ENV DRAINIT_LOCK=/app/lock/*.lock \\\n    DRAINIT_GRACE=300\nSTOPSIGNAL SIGTERM\nENTRYPOINT [\"drainit\", \"--\"]\nCMD [\"apache2-foreground\"]\n"
	if _, err := checkDockerfile(good); err != nil {
		t.Fatalf("the good one fails: %v", err)
	}
	cases := []struct{ name, old, new, want string }{
		{"shell-form entrypoint", `ENTRYPOINT ["drainit", "--"]`, `ENTRYPOINT drainit -- apache2-foreground`, "shell-form ENTRYPOINT"},
		{"no drainit in entrypoint", `ENTRYPOINT ["drainit", "--"]`, `ENTRYPOINT ["tini", "--"]`, "want"},
		{"no --", `ENTRYPOINT ["drainit", "--"]`, `ENTRYPOINT ["drainit"]`, "want"},
		{"no stopsignal", "STOPSIGNAL SIGTERM\n", "", "no STOPSIGNAL"},
		{"stopsignal that does not drain", "STOPSIGNAL SIGTERM", "STOPSIGNAL SIGWINCH", "does not start the drain"},
		{"no copy", "COPY --from=drainit /drainit /usr/local/bin/drainit\n", "", "copies no drainit"},
		{"no grace", "    DRAINIT_GRACE=300", "    DRAINIT_X=1", "DRAINIT_GRACE"},
		{"shell-form cmd", `CMD ["apache2-foreground"]`, "CMD apache2-foreground", "shell-form CMD"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(good, c.old) {
				t.Fatalf("no %q to replace", c.old)
			}
			_, err := checkDockerfile(strings.Replace(good, c.old, c.new, 1))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one about %q", err, c.want)
			}
		})
	}
}
