package supervisor

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// createMarker creates the drain marker without following a symlink planted
// in its place. One that already exists is fine: it says the same thing.
func createMarker(path string) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	if err != nil {
		return &os.PathError{Op: "create", Path: path, Err: err}
	}
	return unix.Close(fd)
}
