module github.com/drainit/drainit

go 1.26.8

require (
	github.com/fsnotify/fsnotify v1.10.1
	github.com/oklog/run v1.2.0
	golang.org/x/sys v0.50.0
)
