# The everyday commands of the README, and the release (issue 18). The
# release's work is in hack/release.sh; this file only names things.
#
#   make build                     ./drainit, static, for this machine (the default)
#   make test                      the README's test suite (root and Docker for all of it)
#   make demo                      see drainit hold a stop for three jobs
#   make bench                     drainit beside tini and dumb-init (BENCHMARKS.md)
#   make release VERSION=v1.2.3    dist/ and the image drainit:v1.2.3
#                                  (ALLOW_DIRTY=1: from a tree with changes)
#   make release-check             what CI checks of a release (hack/release)
#   make clean                     remove ./drainit and dist/

VERSION ?=
ALLOW_DIRTY ?=
DIST ?= dist
# hack/release.sh checks the same pattern; checking it here too makes a bad
# VERSION one line from make, not the script's line and make's "Error 2".
SEMVER := ^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$$
# VERSION and DIST in single quotes for the shell, whatever they hold.
quote = '$(subst ','\'',$(1))'

.PHONY: build test demo bench release release-check clean

# First, so that a bare `make` builds rather than starting a 30-minute suite.
build:
	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o drainit ./cmd/drainit

test:
	go test -race -count=1 -timeout 30m ./...

demo:
	go run ./cmd/drainit-demo

bench:
	go run ./cmd/drainit-bench

release:
	$(if $(shell printf '%s\n' $(call quote,$(VERSION)) | grep -Ex '$(SEMVER)'),,$(error VERSION='$(VERSION)' is not a release version vX.Y.Z: run make release VERSION=v0.1.0))
	hack/release.sh $(if $(filter 1,$(ALLOW_DIRTY)),--allow-dirty) --dist $(call quote,$(DIST)) $(call quote,$(VERSION))

release-check:
	cd hack/release && go test -count=1 -v -timeout 20m .

clean:
	rm -rf drainit dist
