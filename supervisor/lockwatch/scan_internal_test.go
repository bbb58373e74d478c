package lockwatch

import "testing"

func TestMatchesStart(t *testing.T) {
	t.Parallel()
	p, err := compile("/app/*/lock/*.lock")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		"/":                      true,
		"/app":                   true,
		"/app/web":               true,
		"/app/web/lock":          true,
		"/app/web/lock/a.lock":   true,
		"/app/web/lock/a.txt":    false, // a log written beside the locks
		"/app/web/logs":          false,
		"/srv":                   false,
		"/app/web/lock/a.lock/x": false,
	} {
		if got := p.matchesStart(name); got != want {
			t.Errorf("matchesStart(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestCompile(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"/app/[", "/", "/app/.."} {
		if _, err := compile(bad); err == nil {
			t.Errorf("compile(%q) = nil error", bad)
		}
	}
	p, err := compile("/app//lock/./x?.lock")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.parts) != 3 || p.parts[1] != "lock" || p.magic[1] || !p.magic[2] {
		t.Errorf("compile cut %q into %q %v", "/app//lock/./x?.lock", p.parts, p.magic)
	}
}
