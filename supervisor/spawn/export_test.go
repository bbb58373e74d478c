package spawn

// SetShell replaces /bin/sh for a test, as a FROM scratch image would
// lack it, and returns a function that puts it back.
func SetShell(path string) (restore func()) {
	old := shell
	shell = path
	return func() { shell = old }
}
