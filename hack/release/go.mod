// The checks of a release (../release.sh, `make release`): CI runs them.
// A module of its own so that the README's `go test ./...` does not build
// two releases and an image; it needs nothing outside the standard library.
module github.com/drainit/drainit/hack/release

go 1.26.8
