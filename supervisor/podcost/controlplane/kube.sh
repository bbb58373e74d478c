#!/usr/bin/env bash
# A real Kubernetes control plane on 127.0.0.1 for the deletion-cost tests:
# etcd (Debian's etcd-server), kube-apiserver and kube-controller-manager
# (built from k8s.io/kubernetes by the module ./build, cached), no scheduler, no
# kubelet: pods stay Pending, which is all a ReplicaSet scale-down needs.
#
#   kube.sh test [go test flags]  build, start in a temp dir, run this module's tests, stop
#   kube.sh build                 build or find the cached binaries, print their directory
#   kube.sh up DIR                start in DIR (kept running); DIR/env holds what tests read
#   kube.sh down DIR              stop what `up DIR` started
#
# DIR/start-apiserver starts kube-apiserver again after a test stopped it.
# The binaries are cached in ${XDG_CACHE_HOME:-~/.cache}/drainit-kube/KEY,
# KEY naming the Kubernetes version, Go version and build/go.sum.
set -euo pipefail
shopt -s inherit_errexit
here=$(cd "$(dirname "$0")" && pwd)

build() {
	local v key dir
	v=$(grep -Eo 'k8s.io/kubernetes v[0-9.]+' "$here/build/go.mod" | head -1 | cut -d' ' -f2)
	key="$v-$(go env GOVERSION)-$(go env GOARCH)-$(sha256sum "$here/build/go.sum" | cut -c1-12)"
	dir="${XDG_CACHE_HOME:-$HOME/.cache}/drainit-kube/$key"
	if [ ! -x "$dir/kube-apiserver" ] || [ ! -x "$dir/kube-controller-manager" ]; then
		echo "== building kube-apiserver and kube-controller-manager $v (minutes; cached in $dir)" >&2
		local start=$SECONDS
		mkdir -p "$dir.tmp"
		(cd "$here/build" && go build -trimpath -ldflags='-s -w' -o "$dir.tmp/" \
			k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager) >&2
		rm -rf "$dir" && mv "$dir.tmp" "$dir"
		echo "== built in $((SECONDS - start))s" >&2
	fi
	echo "$dir"
}

# deps installs etcd and kubectl from Debian when they are missing.
deps() {
	local need=()
	command -v etcd >/dev/null || need+=(etcd-server)
	command -v kubectl >/dev/null || need+=(kubernetes-client)
	command -v openssl >/dev/null || need+=(openssl)
	command -v curl >/dev/null || need+=(curl)
	if [ ${#need[@]} -gt 0 ]; then
		apt-get update -qq
		# The package's own etcd service, where systemd runs it, listens on
		# 2379; ours picks free ports and does not mind.
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
	fi
}

# freeports N prints N distinct TCP ports on 127.0.0.1 that nothing
# listens on.
freeports() {
	local p got=" "
	while [ $(wc -w <<<"$got") -lt "$1" ]; do
		p=$((20000 + RANDOM % 30000))
		case "$got" in *" $p "*) continue ;; esac
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			got="$got$p "
		fi
	done
	echo $got
}

# waitfor URL TOKEN SECONDS LOG: until URL answers 200 (curl -k: readiness only).
waitfor() {
	local i
	for ((i = 0; i < $3 * 10; i++)); do
		if curl -skf -m 2 -H "Authorization: Bearer $2" "$1" >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	echo "kube.sh: $1 not ready after $3s; the end of $4:" >&2
	tail -30 "$4" >&2
	return 1
}

up() {
	local dir=$1 bin etcd_port peer_port api_port token
	bin=$(build)
	deps
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	read -r etcd_port peer_port api_port <<<"$(freeports 3)"
	token=$(openssl rand -hex 16)

	# Serving certificate for 127.0.0.1 signed by a CA of our own, and the
	# service-account signing key pair.
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=drainit-test-ca \
		-keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
	openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver \
		-keyout "$dir/apiserver.key" -out "$dir/apiserver.csr" 2>/dev/null
	printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$dir/san.ext"
	openssl x509 -req -in "$dir/apiserver.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
		-days 2 -extfile "$dir/san.ext" -out "$dir/apiserver.crt" 2>/dev/null
	openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null
	openssl rsa -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null
	echo "$token,admin,admin,system:masters" >"$dir/tokens.csv"

	# One audit event per patch of a pod, to count writes.
	cat >"$dir/audit-policy.yaml" <<-EOF
		apiVersion: audit.k8s.io/v1
		kind: Policy
		omitStages: [RequestReceived]
		rules:
		- level: Metadata
		  verbs: [patch]
		  resources: [{group: "", resources: [pods]}]
		- level: None
	EOF

	cat >"$dir/kubeconfig" <<-EOF
		apiVersion: v1
		kind: Config
		clusters: [{name: test, cluster: {server: "https://127.0.0.1:$api_port", certificate-authority: "$dir/ca.crt"}}]
		users: [{name: admin, user: {token: "$token"}}]
		contexts: [{name: test, context: {cluster: test, user: admin}}]
		current-context: test
	EOF

	etcd --name drainit-test --data-dir "$dir/etcd" \
		--listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
		--listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
		--initial-cluster "drainit-test=http://127.0.0.1:$peer_port" >"$dir/etcd.log" 2>&1 &
	echo $! >"$dir/etcd.pid"

	# --endpoint-reconciler-type=none: with 127.0.0.1 as its address the
	# apiserver would otherwise fail to write the kubernetes Endpoints.
	cat >"$dir/start-apiserver" <<-EOF
		#!/bin/sh
		exec >>"$dir/kube-apiserver.log" 2>&1
		"$bin/kube-apiserver" \\
		  --etcd-servers=http://127.0.0.1:$etcd_port \\
		  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port=$api_port \\
		  --endpoint-reconciler-type=none \\
		  --tls-cert-file="$dir/apiserver.crt" --tls-private-key-file="$dir/apiserver.key" \\
		  --client-ca-file="$dir/ca.crt" \\
		  --token-auth-file="$dir/tokens.csv" --authorization-mode=RBAC \\
		  --service-account-issuer=https://kubernetes.default.svc.cluster.local \\
		  --service-account-key-file="$dir/sa.pub" --service-account-signing-key-file="$dir/sa.key" \\
		  --service-cluster-ip-range=10.96.0.0/16 \\
		  --audit-policy-file="$dir/audit-policy.yaml" --audit-log-path="$dir/audit.log" \\
		  --audit-log-mode=blocking &
		echo \$! >"$dir/kube-apiserver.pid"
	EOF
	chmod +x "$dir/start-apiserver"
	"$dir/start-apiserver"
	waitfor "https://127.0.0.1:$api_port/readyz" "$token" 120 "$dir/kube-apiserver.log"

	"$bin/kube-controller-manager" --kubeconfig="$dir/kubeconfig" \
		--bind-address=127.0.0.1 --secure-port=0 \
		--controllers=replicaset,deployment,serviceaccount,serviceaccount-token,namespace,garbagecollector \
		--service-account-private-key-file="$dir/sa.key" --root-ca-file="$dir/ca.crt" \
		--use-service-account-credentials=false >"$dir/kube-controller-manager.log" 2>&1 &
	echo $! >"$dir/kube-controller-manager.pid"

	cat >"$dir/env" <<-EOF
		DRAINIT_KUBE_DIR=$dir
		DRAINIT_KUBE_SERVER=https://127.0.0.1:$api_port
		DRAINIT_KUBE_TOKEN=$token
		DRAINIT_KUBE_CA=$dir/ca.crt
		DRAINIT_KUBE_AUDIT=$dir/audit.log
		KUBECONFIG=$dir/kubeconfig
	EOF
	echo "== control plane up in $dir: https://127.0.0.1:$api_port (KUBECONFIG=$dir/kubeconfig)" >&2
}

down() {
	local dir=$1 f pid i
	for f in kube-controller-manager kube-apiserver etcd; do
		[ -f "$dir/$f.pid" ] || continue
		pid=$(cat "$dir/$f.pid")
		kill "$pid" 2>/dev/null || continue
		for ((i = 0; i < 100; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$pid" 2>/dev/null || true
	done
}

run_tests() {
	local rc=0
	# Global, not local: the EXIT trap runs after this function returns.
	test_dir=$(mktemp -d "${TMPDIR:-/tmp}/drainit-kube.XXXXXX")
	trap 'down "$test_dir"; rm -rf "$test_dir"' EXIT
	up "$test_dir"
	set -a
	# shellcheck disable=SC1091
	. "$test_dir/env"
	set +a
	(cd "$here" && go vet ./... && go test -count=1 "$@" ./...) || rc=$?
	if [ $rc -ne 0 ]; then
		for f in kube-apiserver kube-controller-manager; do
			echo "== the end of $f.log" >&2
			tail -20 "$test_dir/$f.log" >&2
		done
	fi
	return $rc
}

case "${1:-}" in
build) build ;;
up) up "${2:?kube.sh up DIR}" ;;
down) down "${2:?kube.sh down DIR}" ;;
test) shift; run_tests "$@" ;;
*)
	sed -n '2,13p' "$0" >&2
	exit 2
	;;
esac
