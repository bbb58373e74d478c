package lockwatch

import (
	"log/slog"
	"testing"
)

// BenchmarkRelevant is the test every inotify event goes through before it
// may cause a rescan: a lock file's event must, a log file written beside
// the lock directory must not.
func BenchmarkRelevant(b *testing.B) {
	var pats []pattern
	for _, g := range []string{"/app/lock/*.lock", "/srv/*/lock/*.lock"} {
		p, err := compile(g)
		if err != nil {
			b.Fatal(err)
		}
		pats = append(pats, p)
	}
	w := &watcher{log: slog.New(slog.DiscardHandler), pats: pats}
	for _, tc := range []struct {
		name, path string
		want       bool
	}{
		{"lock-file", "/app/lock/job-12345.lock", true},
		{"glob-dir-lock-file", "/srv/queue7/lock/job-12345.lock", true},
		{"other-file", "/app/storage.log", false},
		{"deep-other", "/srv/queue7/cache/x/y/z", false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if w.relevant(tc.path) != tc.want {
					b.Fatalf("relevant(%q) != %v", tc.path, tc.want)
				}
			}
		})
	}
}
