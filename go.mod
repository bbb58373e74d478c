module github.com/drainit/drainit

go 1.26.8

require (
	github.com/fsnotify/fsnotify v1.10.1 // indirect
	github.com/oklog/run v1.2.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
)
