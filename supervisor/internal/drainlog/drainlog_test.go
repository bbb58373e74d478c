package drainlog_test

import (
	"strings"
	"testing"

	"github.com/drainit/drainit/supervisor/internal/drainlog"
)

func TestDiff(t *testing.T) {
	released, added := drainlog.Diff([]string{"a", "b", "d"}, []string{"b", "c", "d", "e"})
	if strings.Join(released, ",") != "a" || strings.Join(added, ",") != "c,e" {
		t.Fatalf("released %q, added %q", released, added)
	}
	released, added = drainlog.Diff(nil, nil)
	if released != nil || added != nil {
		t.Fatal("diff of nothing")
	}
}
