#!/usr/bin/env bash
# A release of drainit (issue 18); `make release VERSION=vX.Y.Z` runs it.
#
#   hack/release.sh [--dist DIR] [--no-image] [--allow-dirty] vX.Y.Z
#
# Into DIR (dist/ by default):
#   drainit-vX.Y.Z-linux-amd64, drainit-vX.Y.Z-linux-arm64
#       static (CGO off), stripped, -trimpath, `drainit --version` prints
#       "drainit vX.Y.Z". Byte-identical from any copy of the same source
#       built with the same Go toolchain, wherever it lies and whatever the
#       build cache holds: everything else that reaches the bytes is pinned
#       below, and the git commit is not among it.
#   SHA256SUMS   `sha256sum -c SHA256SUMS` in DIR checks both
#   BUILDINFO    the version, the commit (git rev-parse HEAD, "-dirty" when
#       the tree has changes, "unknown" outside a git checkout) and the Go
#       toolchain: what to check out and build with to get the same bytes.
#       Not in SHA256SUMS: a tarball of the same commit makes the same
#       binaries and SHA256SUMS but cannot name its commit.
# Then, with the local Docker engine, the image drainit:vX.Y.Z: FROM
# scratch, only /drainit (the binary of the engine's own architecture), the
# OCI labels of hack/release/Dockerfile. --no-image skips it.
#
# A tree with uncommitted changes (git status) is refused unless
# --allow-dirty: nothing in the binaries could tell such a build from the
# commit's. HEAD not tagged vX.Y.Z is a warning only (release candidates,
# CI's own checks). The Go toolchain is the one go.mod names (its toolchain
# line, else its go line): GOTOOLCHAIN downloads it if the local Go is
# another, so a newer Go on one machine does not make other bytes.
#
# Other releases' files in DIR are left alone. hack/release/release_test.go
# checks all of the above, and CI runs it.
set -euo pipefail
shopt -s inherit_errexit

die() {
	echo "release: $*" >&2
	exit 2
}
log() { echo "release: $*" >&2; }

usage="hack/release.sh [--dist DIR] [--no-image] [--allow-dirty] vX.Y.Z"
dist=dist image=1 allow_dirty=0
while [ $# -gt 0 ]; do
	case $1 in
	--dist)
		[ $# -ge 2 ] || die "--dist needs a directory: $usage"
		dist=$2
		shift 2
		;;
	--no-image)
		image=0
		shift
		;;
	--allow-dirty)
		allow_dirty=1
		shift
		;;
	-*) die "unknown flag $1: $usage" ;;
	*) break ;;
	esac
done
[ $# -eq 1 ] || die "one version expected, got $#: $usage"
version=$1
# The Makefile checks the same pattern first, so that make prints one line.
# No build metadata (+...): a Docker tag cannot hold a '+'.
semver='^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$'
[[ $version =~ $semver ]] || die "version '$version' is not vX.Y.Z (v0.1.0, v0.1.0-rc.1): $usage"
case $dist in
/*) ;;
*) dist=$PWD/$dist ;;
esac
cd "$(dirname "$0")/.."

# A go.work in a parent directory would silently swap modules for what it
# uses; GOWORK=off builds from go.mod and go.sum alone (and the check after
# each build refuses a replaced module all the same).
export GOWORK=off
# The toolchain go.mod names, so that the Go installed here does not decide
# the bytes. The same version as the local Go costs nothing (no download).
toolchain=$(awk '$1 == "toolchain" { print $2; exit }' go.mod)
if [ -z "$toolchain" ]; then
	toolchain=go$(awk '$1 == "go" { print $2; exit }' go.mod)
fi
[[ $toolchain =~ ^go[0-9]+\.[0-9]+\.[0-9]+$ ]] ||
	die "go.mod names no Go release to build with ('$toolchain'): add a line such as 'toolchain go1.26.8'"
export GOTOOLCHAIN=$toolchain

# Ask the engine before the builds, so that a stopped one costs no minute.
if [ "$image" = 1 ]; then
	engine_arch=$(docker version -f '{{.Server.Arch}}' 2>/dev/null) ||
		die "the Docker engine does not answer: start it, or build the binaries alone with hack/release.sh --no-image $version"
	case $engine_arch in
	amd64 | arm64) ;;
	*) die "the Docker engine is $engine_arch, and a release has amd64 and arm64 only: use --no-image" ;;
	esac
fi

# The commit, for BUILDINFO and the image's revision label; only a
# checkout of this very directory counts, not a copy of the source inside
# some other repository. A tree with changes is refused before any build:
# the record would name a commit the binaries were not built from. dist/ is
# in .gitignore, so a release does not make the next one dirty.
revision=unknown
if [ "$(git rev-parse --show-toplevel 2>/dev/null)" = "$(pwd -P)" ]; then
	revision=$(git rev-parse HEAD)
	if [ -n "$(git status --porcelain)" ]; then
		[ "$allow_dirty" = 1 ] ||
			die "the tree has uncommitted changes (git status): commit or stash them, or build anyway with --allow-dirty (make release ALLOW_DIRTY=1), recorded as $revision-dirty"
		revision+=-dirty
	fi
fi

# The SPDX id of the image's licenses label. The repository has no LICENSE
# file yet, and NOASSERTION is SPDX's word for "nothing stated"; whoever
# adds one puts its id here, and a release refuses the mismatch meanwhile.
license=NOASSERTION
if [ "$image" = 1 ] && [ "$license" = NOASSERTION ]; then
	if [ -e LICENSE ]; then
		die "there is a LICENSE file but hack/release.sh labels the image licenses=NOASSERTION: set license= to its SPDX id"
	fi
	log "warning: no LICENSE file: the image is labelled licenses=NOASSERTION"
fi

if [ "$revision" = unknown ]; then
	log "warning: not a git checkout: BUILDINFO and the image's label say revision=unknown"
elif [[ $revision == *-dirty ]]; then
	log "warning: the tree has uncommitted changes (--allow-dirty): recorded as revision=$revision"
elif [ "$(git rev-parse -q --verify "refs/tags/$version^{commit}" || true)" != "$revision" ]; then
	log "warning: HEAD is not tagged $version: recorded as revision=$revision; tag it with git tag -a $version"
fi

mkdir -p "$dist"

# What would otherwise reach the bytes from the environment or a `go env -w`
# file: GOFLAGS (-race, -tags, -buildvcs), GOEXPERIMENT, GOFIPS140 and the
# instruction-set levels, whose defaults a newer Go may raise. -buildvcs=false
# keeps the commit and the tree's dirtiness out (a tarball of the same source
# must give the same bytes; the image's revision label carries the commit);
# -buildid= drops the build ID. An empty GOEXPERIMENT falls back to the go
# env file, hence the check of the embedded settings after each build, of
# the toolchain, and that no module was replaced (=> in go version -m).
# The mode is set, not left to the umask: an image whose USER is not root
# must still run /drainit.
build() {
	local arch=$1 out=$dist/drainit-$version-linux-$1 settings want
	env CGO_ENABLED=0 GOOS=linux GOARCH="$arch" GOAMD64=v1 GOARM64=v8.0 \
		GOFLAGS=-buildvcs=false GOEXPERIMENT= GOFIPS140=off \
		go build -trimpath -ldflags="-s -w -buildid= -X main.version=$version" \
		-o "$out" ./cmd/drainit
	# DefaultGODEBUG differs only with the toolchain, which is printed below.
	settings=$(go version -m "$out" | awk '$1 == "build" && $2 !~ /^DefaultGODEBUG=/ { print $2 }' | sort | tr '\n' ' ')
	case $arch in
	amd64) want="-buildmode=exe -compiler=gc -trimpath=true CGO_ENABLED=0 GOAMD64=v1 GOARCH=amd64 GOOS=linux " ;;
	arm64) want="-buildmode=exe -compiler=gc -trimpath=true CGO_ENABLED=0 GOARCH=arm64 GOARM64=v8.0 GOOS=linux " ;;
	esac
	[ "$settings" = "$want" ] ||
		die "$out was built with settings '$settings', not '$want': unset what adds the others (go env -u NAME, or the environment)"
	[ "$(go version "$out")" = "$out: $toolchain" ] ||
		die "$out was built with $(go version "$out" | awk '{ print $NF }'), not $toolchain"
	if go version -m "$out" | awk '$1 == "=>" { found = 1 } END { exit !found }'; then
		die "$out was built with replaced modules ($(go version -m "$out" | awk '$1 == "=>" { print $2 "@" $3 }' | tr '\n' ' ')): remove the replace directives from go.mod"
	fi
	chmod 0755 "$out"
}

start=$SECONDS
rm -f "$dist/drainit-$version-linux-amd64" "$dist/drainit-$version-linux-arm64" "$dist/SHA256SUMS" "$dist/BUILDINFO"
build amd64
build arm64
(cd "$dist" && sha256sum "drainit-$version-linux-amd64" "drainit-$version-linux-arm64" >SHA256SUMS)
printf 'version %s\nrevision %s\ngo %s\n' "$version" "$revision" "$toolchain" >"$dist/BUILDINFO"
chmod 0644 "$dist/SHA256SUMS" "$dist/BUILDINFO"
log "built $version from revision $revision with $toolchain in $((SECONDS - start))s, in $dist:"
(cd "$dist" && ls -l "drainit-$version-linux-amd64" "drainit-$version-linux-arm64" SHA256SUMS BUILDINFO) >&2

[ "$image" = 1 ] || exit 0

tag=drainit:$version
ctx=$(mktemp -d /tmp/drainit-release.XXXXXX)
trap 'rm -rf "$ctx"' EXIT
cp "$dist/drainit-$version-linux-$engine_arch" "$ctx/drainit"
chmod 0755 "$ctx/drainit" # cp gave it the umask's mode, and COPY keeps that
cp hack/release/Dockerfile "$ctx/Dockerfile"
# A rebuild of the same tag leaves the old image unnamed: remove it after.
old=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
docker build -q -t "$tag" \
	--build-arg VERSION="$version" \
	--build-arg REVISION="$revision" \
	--build-arg LICENSES="$license" \
	"$ctx" >/dev/null
new=$(docker image inspect -f '{{.Id}}' "$tag")
if [ -n "$old" ] && [ "$old" != "$new" ]; then
	docker rmi "$old" >/dev/null 2>&1 || true
fi
log "image $tag ($new), /drainit from drainit-$version-linux-$engine_arch"
