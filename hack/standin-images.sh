#!/usr/bin/env bash
# Local stand-ins for the upstream base images of Dockerfile.example, made
# from Debian's packages, for machines that cannot pull from a registry:
#
#   drainit-standin/debian:bookworm   debootstrap --variant=minbase, docker import
#   drainit-standin/golang:VERSION    that base with this machine's Go toolchain
#                                     (VERSION is `go env GOVERSION`, e.g. go1.26.8)
#                                     and its local CAs (/usr/local/share/ca-certificates)
#   drainit-standin/php:8.2-apache    that base with Debian's Apache 2.4 (prefork)
#                                     and mod_php 8.2, laid out like php:apache
#
#   standin-images.sh build   build what is missing or out of date; print
#                             "GO_IMAGE=… PHP_IMAGE=…", the build args of
#                             Dockerfile.example that swap its bases for these
#   standin-images.sh rm      remove them
#
# An image is reused while its drainit.standin label matches the hash of
# its recipe below, so a warm run takes a second; a cold one takes minutes
# (debootstrap about 2, apt inside the php build about 4).
#
# php:apache's STOPSIGNAL, ENTRYPOINT, CMD, DocumentRoot, log symlinks and
# apache2-foreground are reproduced on purpose: the example must meet the
# same traps as on the real base (SIGWINCH as the stop signal above all).
set -euo pipefail
shopt -s inherit_errexit

suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
debian=drainit-standin/debian:$suite
golang=drainit-standin/golang:$(go env GOVERSION)
php=drainit-standin/php:8.2-apache

log() { echo "standin-images: $*" >&2; }

# current TAG HASH: true when TAG exists and was made from the recipe HASH.
current() {
	[ "$(docker image inspect -f '{{index .Config.Labels "drainit.standin"}}' "$1" 2>/dev/null)" = "$2" ]
}

debian_base() {
	local hash dir start=$SECONDS
	hash=$(echo "$suite $mirror minbase v1" | sha256sum | cut -c1-16)
	current "$debian" "$hash" && return
	command -v debootstrap >/dev/null || {
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
	}
	log "building $debian with debootstrap (about 2 minutes)"
	dir=$(mktemp -d /tmp/standin-debian.XXXXXX)
	trap 'rm -rf "$dir"' RETURN
	debootstrap --variant=minbase "$suite" "$dir" "$mirror" >/dev/null
	# Keep the image small and apt quiet, as Debian's own images do.
	rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/archives/*.deb
	tar -C "$dir" -c . | docker import \
		-c "LABEL drainit.standin=$hash" -c 'CMD ["bash"]' \
		-c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		- "$debian" >/dev/null
	log "$debian built in $((SECONDS - start))s"
}

golang_recipe() {
	cat <<EOF
FROM $debian
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates git \\
 && rm -rf /var/lib/apt/lists/*
COPY go /usr/local/go
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates >/dev/null
ENV GOPATH=/go PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /go
EOF
}

golang_image() {
	local hash ctx root start=$SECONDS
	root=$(go env GOROOT)
	ctx=$(mktemp -d /tmp/standin-golang.XXXXXX)
	trap 'rm -rf "$ctx"' RETURN
	# This machine's own CAs go in too: where egress passes through a
	# TLS-inspecting proxy, `go mod download` in the build trusts it as the
	# go command here does.
	mkdir "$ctx/ca"
	cp /usr/local/share/ca-certificates/*.crt "$ctx/ca/" 2>/dev/null || true
	hash=$( (golang_recipe; go env GOVERSION; cat "$ctx"/ca/*; docker image inspect -f '{{.Id}}' "$debian") | sha256sum | cut -c1-16)
	current "$golang" "$hash" && return
	log "building $golang from $root"
	golang_recipe >"$ctx/Dockerfile"
	echo "LABEL drainit.standin=$hash" >>"$ctx/Dockerfile"
	# The toolchain goes in as it is here, without its own tests.
	tar -C "$ctx" -c Dockerfile ca -C "$(dirname "$root")" --exclude=go/test \
		--transform "s,^$(basename "$root"),go," "$(basename "$root")" |
		docker build -t "$golang" - >&2
	log "$golang built in $((SECONDS - start))s"
}

php_recipe() {
	cat <<'EOF'
FROM drainit-standin/debian:bookworm
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      apache2 libapache2-mod-php8.2 php8.2-cli \
 && rm -rf /var/lib/apt/lists/* \
 && a2dismod -q mpm_event && a2enmod -q mpm_prefork php8.2 \
 && ln -sfT /dev/stdout /var/log/apache2/access.log \
 && ln -sfT /dev/stderr /var/log/apache2/error.log \
 && ln -sfT /dev/stdout /var/log/apache2/other_vhosts_access.log \
 && chown -R www-data:www-data /var/www/html
# php:apache's two scripts, rewritten: the entrypoint runs apache2-foreground
# when the command is only flags, and apache2-foreground starts Apache in the
# foreground with Debian's envvars, after removing a stale pid file.
RUN printf '%s\n' '#!/bin/sh' 'set -e' \
      'if [ "${1#-}" != "$1" ]; then set -- apache2-foreground "$@"; fi' \
      'exec "$@"' >/usr/local/bin/docker-php-entrypoint \
 && printf '%s\n' '#!/bin/bash' 'set -e' \
      '. /etc/apache2/envvars' \
      'rm -f "$APACHE_PID_FILE"' \
      'mkdir -p "$APACHE_RUN_DIR" "$APACHE_LOCK_DIR" "$APACHE_LOG_DIR"' \
      'exec apache2 -DFOREGROUND "$@"' >/usr/local/bin/apache2-foreground \
 && chmod +x /usr/local/bin/docker-php-entrypoint /usr/local/bin/apache2-foreground
WORKDIR /var/www/html
EXPOSE 80
STOPSIGNAL SIGWINCH
ENTRYPOINT ["docker-php-entrypoint"]
CMD ["apache2-foreground"]
EOF
}

php_image() {
	local hash start=$SECONDS
	hash=$( (php_recipe; docker image inspect -f '{{.Id}}' "$debian") | sha256sum | cut -c1-16)
	current "$php" "$hash" && return
	log "building $php (apt inside the build: minutes)"
	(php_recipe; echo "LABEL drainit.standin=$hash") | docker build -t "$php" - >&2
	log "$php built in $((SECONDS - start))s"
}

case "${1:-}" in
build)
	debian_base
	golang_image
	php_image
	echo "GO_IMAGE=$golang PHP_IMAGE=$php"
	;;
rm)
	docker rmi -f "$php" "$golang" "$debian" >/dev/null 2>&1 || true
	;;
*)
	sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
	;;
esac
