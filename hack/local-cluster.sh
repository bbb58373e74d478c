#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, for drainit's tests
# and for a person who wants to see the kubelet stop drainit's pods:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd
# (CRI), runc and the kubelet, with pods on a bridge of their own.
#
#   local-cluster.sh up            start it, or find it running; wait for the
#                                  node to be Ready; print `export KUBECONFIG=…`
#   local-cluster.sh load IMAGE…   copy images from the local Docker engine
#                                  into the node (pods then use them with
#                                  imagePullPolicy: Never; nothing is pulled)
#   local-cluster.sh down          stop what `up` started, unmount, remove its
#                                  iptables rules and its bridge
#   local-cluster.sh build         build or find the Kubernetes binaries, print
#                                  their directory
#   local-cluster.sh test [FLAGS]  up, run the tests of kube/e2e (go test FLAGS),
#                                  then down unless the cluster was up before
#
# Debian's packages do most of it (etcd-server, containerd 1.6, runc,
# containernetworking-plugins, iptables; `up` installs what is missing); the
# four Kubernetes binaries are built from k8s.io/kubernetes by the module
# kube/build, in one `go build` (15-22 minutes on 2 cores the first time),
# and cached in ${XDG_CACHE_HOME:-~/.cache}/drainit-kube/KEY, KEY naming the
# Kubernetes version, the Go version and kube/build/go.sum. A warm `up` takes
# about 10 s.
#
# Everything lives in ${DRAINIT_CLUSTER_DIR:-/tmp/drainit-cluster}:
# admin.kubeconfig, each component's log and pid file, `env` (what the tests
# read), containerd's root (its images stay there between `down` and `up`).
# Each `up` starts a fresh cluster (etcd's data is new); `down` keeps the
# logs. Docker's own containerd is left alone: this one has its own socket,
# root and state, and runc its own root.
#
# The network: the bridge drainit0 holds the node's address, 10.244.0.1,
# where the API server listens (6443) and the kubelet serves (10250); pods
# get 10.244.0.10 and up on it, reachable from the host. Pods reach the API
# server as in any cluster, through the `kubernetes` Service, 10.96.0.1:443:
# with no kube-proxy, one DNAT rule in nat PREROUTING (pods on the bridge)
# and one in nat OUTPUT (the host and hostNetwork pods) send that address to
# the API server. Nothing listens on another interface.
set -euo pipefail
shopt -s inherit_errexit
hack=$(cd "$(dirname "$0")" && pwd)
dir=${DRAINIT_CLUSTER_DIR:-/tmp/drainit-cluster}
bins=(kube-apiserver kube-controller-manager kube-scheduler kubelet)
node=drainit-node
bridge=drainit0
node_ip=10.244.0.1
subnet=10.244.0.0/24
service_ip=10.96.0.1
api_port=6443
# Tagged by its source, so that a change to it makes a new image.
pause=drainit-test/pause:$(sha256sum "$hack/kube/pause/main.go" | cut -c1-12)
# The order `down` stops them in: the kubelet first, so that it restarts
# nothing; containerd last, after its containers are gone.
components=(kubelet kube-scheduler kube-controller-manager kube-apiserver etcd)

log() { echo "local-cluster: $*" >&2; }

k8s_version() {
	grep -Eo 'k8s.io/kubernetes v[0-9.]+' "$hack/kube/build/go.mod" | head -1 | cut -d' ' -f2
}

# ldflags: stripped, and the version the binaries report (the node's
# kubelet version, the API server's /version), which Kubernetes' own build
# sets the same way.
ldflags() {
	local v minor
	v=$(k8s_version)
	minor=${v#v1.}
	minor=${minor%%.*}
	echo "-s -w -X k8s.io/component-base/version.gitVersion=$v -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
}

bindir() {
	echo "${XDG_CACHE_HOME:-$HOME/.cache}/drainit-kube/$(k8s_version)-$(go env GOVERSION)-$(go env GOARCH)-$( (cat "$hack/kube/build/go.sum"; ldflags) | sha256sum | cut -c1-12)"
}

build() {
	local bin b start=$SECONDS missing=0
	bin=$(bindir)
	for b in "${bins[@]}"; do [ -x "$bin/$b" ] || missing=1; done
	if [ $missing = 1 ]; then
		log "building ${bins[*]} (15-22 min on 2 cores the first time; cached in $bin)"
		rm -rf "$bin.tmp" && mkdir -p "$bin.tmp"
		# nice: it takes both cores for half an hour on a machine others use.
		(cd "$hack/kube/build" && CGO_ENABLED=0 nice -n 10 go build -trimpath -ldflags="$(ldflags)" -o "$bin.tmp/" \
			"${bins[@]/#/k8s.io/kubernetes/cmd/}") >&2
		rm -rf "$bin" && mv "$bin.tmp" "$bin"
		log "built in $((SECONDS - start))s"
	fi
	echo "$bin"
}

# deps installs what is missing from Debian's packages. kubectl: any one
# within a few minor versions of the server will do; Debian's is old.
deps() {
	local need=()
	command -v etcd >/dev/null || need+=(etcd-server)
	command -v kubectl >/dev/null || need+=(kubernetes-client)
	command -v containerd >/dev/null || need+=(containerd)
	command -v ctr >/dev/null || need+=(containerd)
	command -v runc >/dev/null || need+=(runc)
	[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
	command -v iptables >/dev/null || need+=(iptables)
	command -v openssl >/dev/null || need+=(openssl)
	command -v curl >/dev/null || need+=(curl)
	command -v docker >/dev/null || need+=(docker.io)
	if [ ${#need[@]} -gt 0 ]; then
		log "installing ${need[*]}"
		apt-get update -qq
		# Where systemd runs, the etcd-server package starts its own etcd
		# on 2379; ours picks free ports and does not mind.
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
	fi
}

# freeports N prints N distinct TCP ports on 127.0.0.1 that nothing
# listens on.
freeports() {
	local p got=" "
	while [ "$(wc -w <<<"$got")" -lt "$1" ]; do
		p=$((20000 + RANDOM % 30000))
		case "$got" in *" $p "*) continue ;; esac
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			got="$got$p "
		fi
	done
	# shellcheck disable=SC2086 # unquoted: one line, single spaces
	echo $got
}

# alive NAME: the process of NAME.pid runs, and is NAME (not a reused pid).
alive() {
	local pid
	pid=$(cat "$dir/$1.pid" 2>/dev/null) || return 1
	[ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$1"
}

# spawn NAME COMMAND…: start COMMAND in a session of its own (it outlives
# this script and a Ctrl-C typed into it), logging to NAME.log.
spawn() {
	local name=$1
	shift
	setsid "$@" >>"$dir/$name.log" 2>&1 </dev/null &
	echo $! >"$dir/$name.pid"
}

# stop NAME: TERM, up to 10 s, then KILL; by the pid in NAME.pid only.
stop() {
	local pid i
	alive "$1" || {
		rm -f "$dir/$1.pid"
		return 0
	}
	pid=$(cat "$dir/$1.pid")
	kill "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null || true
	rm -f "$dir/$1.pid"
}

# until_ok SECONDS WHAT COMMAND…: poll COMMAND every 0.2 s until it
# succeeds; after SECONDS, say what did not happen and fail.
until_ok() {
	local secs=$1 what=$2 end
	shift 2
	end=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		if [ $SECONDS -ge $end ]; then
			log "$what: not after ${secs}s"
			return 1
		fi
		sleep 0.2
	done
}

ctr_() { ctr -a "$dir/containerd/containerd.sock" -n k8s.io "$@"; }
kc() { kubectl --kubeconfig "$dir/admin.kubeconfig" "$@"; }

certs() {
	[ -f "$dir/pki/apiserver.crt" ] && return
	local p=$dir/pki
	mkdir -p "$p"
	openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=drainit-test-ca \
		-keyout "$p/ca.key" -out "$p/ca.crt" 2>/dev/null
	openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver \
		-keyout "$p/apiserver.key" -out "$p/apiserver.csr" 2>/dev/null
	# 10.96.0.1: the `kubernetes` Service, the name pods use (drainit
	# --deletion-cost checks the certificate against that address).
	printf 'subjectAltName=IP:%s,IP:%s,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n' \
		"$service_ip" "$node_ip" >"$p/san.ext"
	openssl x509 -req -in "$p/apiserver.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial \
		-days 30 -extfile "$p/san.ext" -out "$p/apiserver.crt" 2>/dev/null
	openssl genrsa -out "$p/sa.key" 2048 2>/dev/null
	openssl rsa -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
}

# The two DNAT rules that stand in for kube-proxy's one Service.
nat_rules() {
	echo "PREROUTING -d $service_ip/32 -p tcp --dport 443 -m comment --comment drainit-local-cluster -j DNAT --to-destination $node_ip:$api_port"
	echo "OUTPUT -d $service_ip/32 -p tcp --dport 443 -m comment --comment drainit-local-cluster -j DNAT --to-destination $node_ip:$api_port"
}

network_up() {
	if ! ip link show "$bridge" >/dev/null 2>&1; then
		ip link add "$bridge" type bridge
	fi
	ip addr replace "$node_ip/24" dev "$bridge"
	ip link set "$bridge" up
	local rule
	while read -r rule; do
		# shellcheck disable=SC2086 # a rule is its words
		iptables -t nat -C $rule 2>/dev/null || iptables -t nat -I $rule
	done < <(nat_rules)
	mkdir -p "$dir/cni"
	rm -rf "$dir/cni-ipam"
	cat >"$dir/cni/10-drainit.conflist" <<-EOF
		{
		  "cniVersion": "0.4.0",
		  "name": "drainit",
		  "plugins": [{
		    "type": "bridge", "bridge": "$bridge",
		    "isGateway": true, "isDefaultGateway": true, "ipMasq": false, "hairpinMode": true,
		    "ipam": {
		      "type": "host-local", "dataDir": "$dir/cni-ipam",
		      "ranges": [[{"subnet": "$subnet", "rangeStart": "10.244.0.10", "gateway": "$node_ip"}]]
		    }
		  }]
		}
	EOF
}


network_down() {
	local rule
	while read -r rule; do
		# shellcheck disable=SC2086
		while iptables -t nat -C $rule 2>/dev/null; do iptables -t nat -D $rule; done
	done < <(nat_rules)
	if ip link show "$bridge" >/dev/null 2>&1; then
		ip link del "$bridge"
	fi
}

containerd_up() {
	local c=$dir/containerd
	mkdir -p "$c"
	# restrict_oom_score_adj: this VM gives root no CAP_SYS_RESOURCE, and
	# runc cannot lower a sandbox's oom_score_adj without it (every sandbox
	# then fails with "can't get final child's PID from pipe: EOF").
	cat >"$c/config.toml" <<-EOF
		version = 2
		root = "$c/root"
		state = "$c/state"
		[grpc]
		  address = "$c/containerd.sock"
		[plugins."io.containerd.internal.v1.opt"]
		  path = "$c/opt"
		[plugins."io.containerd.grpc.v1.cri"]
		  sandbox_image = "docker.io/$pause"
		  restrict_oom_score_adj = true
		  netns_mounts_under_state_dir = true
		  [plugins."io.containerd.grpc.v1.cri".containerd]
		    default_runtime_name = "runc"
		    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
		      runtime_type = "io.containerd.runc.v2"
		      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
		        Root = "$c/runc"
		  [plugins."io.containerd.grpc.v1.cri".cni]
		    bin_dir = "/usr/lib/cni"
		    conf_dir = "$dir/cni"
	EOF
	spawn containerd containerd --config "$c/config.toml"
	until_ok 30 "containerd answering on $c/containerd.sock" ctr_ version
}

# The pause image, the sandbox of every pod: a tiny static Go program
# (kube/pause), FROM scratch, built here since nothing can be pulled.
pause_image() {
	if ! docker image inspect "$pause" >/dev/null 2>&1; then
		local ctx
		ctx=$(mktemp -d /tmp/drainit-pause.XXXXXX)
		(cd "$hack/kube/pause" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$ctx/pause" .)
		printf 'FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n' >"$ctx/Dockerfile"
		local out
		out=$(docker build -q -t "$pause" "$ctx" 2>&1) || {
			log "docker build $pause: $out"
			return 1
		}
		rm -rf "$ctx"
	fi
	load "$pause"
}

# load IMAGE…: docker save | ctr import, skipped for an image whose Docker
# id the node already has (a label records it).
load() {
	local img id ref have
	for img in "$@"; do
		id=$(docker image inspect -f '{{.Id}}' "$img") || {
			log "load: no image $img in the local Docker engine"
			return 1
		}
		ref=$img
		case "${img%%/*}" in *.* | *:* | localhost) ;; *) ref=docker.io/$img ;; esac
		case "$ref" in */*/*) ;; docker.io/*) ref=docker.io/library/${ref#docker.io/} ;; esac
		have=$(ctr_ images ls "name==$ref" 2>/dev/null | awk 'NR > 1 { print $NF }' | tr ',' '\n' |
			sed -n 's/^drainit.docker-id=//p')
		if [ "$have" = "$id" ]; then
			continue
		fi
		log "loading $img into the node"
		docker save "$img" | ctr_ images import - >/dev/null
		ctr_ images label "$ref" "drainit.docker-id=$id" >/dev/null
	done
}

up() {
	local bin start=$SECONDS token etcd_port peer_port c running=1
	for c in containerd "${components[@]}"; do alive "$c" || running=0; done
	if [ $running = 1 ] && kc get --raw /readyz >/dev/null 2>&1; then
		log "already up in $dir"
		ready
		echo "export KUBECONFIG=$dir/admin.kubeconfig"
		return
	fi
	deps
	bin=$(build)
	# Whatever a half-done up or a crash left behind goes first.
	down >/dev/null 2>&1 || true
	mkdir -p "$dir"
	rm -rf "$dir/etcd" "$dir/kubelet" "$dir"/*.log "$dir/audit.log"
	certs
	read -r etcd_port peer_port <<<"$(freeports 2)"
	token=$(openssl rand -hex 16)
	echo "$token,admin,admin,system:masters" >"$dir/tokens.csv"
	cat >"$dir/admin.kubeconfig" <<-EOF
		apiVersion: v1
		kind: Config
		clusters: [{name: drainit, cluster: {server: "https://$node_ip:$api_port", certificate-authority: "$dir/pki/ca.crt"}}]
		users: [{name: admin, user: {token: "$token"}}]
		contexts: [{name: drainit, context: {cluster: drainit, user: admin, namespace: default}}]
		current-context: drainit
	EOF
	# One audit event per patch of a pod: the deletion-cost tests count
	# drainit's writes with it.
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

	network_up
	containerd_up
	pause_image

	spawn etcd etcd --name drainit-local --data-dir "$dir/etcd" \
		--listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
		--listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
		--initial-cluster "drainit-local=http://127.0.0.1:$peer_port"

	# A script, so that a test that stops the API server can start it again.
	cat >"$dir/start-apiserver" <<-EOF
		#!/bin/sh
		setsid "$bin/kube-apiserver" \\
		  --etcd-servers=http://127.0.0.1:$etcd_port \\
		  --bind-address=$node_ip --advertise-address=$node_ip --secure-port=$api_port \\
		  --tls-cert-file="$dir/pki/apiserver.crt" --tls-private-key-file="$dir/pki/apiserver.key" \\
		  --client-ca-file="$dir/pki/ca.crt" \\
		  --token-auth-file="$dir/tokens.csv" --authorization-mode=RBAC \\
		  --service-account-issuer=https://kubernetes.default.svc.cluster.local \\
		  --service-account-key-file="$dir/pki/sa.pub" --service-account-signing-key-file="$dir/pki/sa.key" \\
		  --service-cluster-ip-range=10.96.0.0/16 \\
		  --kubelet-preferred-address-types=InternalIP \\
		  --audit-policy-file="$dir/audit-policy.yaml" --audit-log-path="$dir/audit.log" \\
		  --audit-log-mode=blocking >>"$dir/kube-apiserver.log" 2>&1 </dev/null &
		echo \$! >"$dir/kube-apiserver.pid"
	EOF
	chmod +x "$dir/start-apiserver"
	"$dir/start-apiserver"
	until_ok 120 "kube-apiserver ready (see $dir/kube-apiserver.log)" kc get --raw /readyz

	# nodelifecycle: without it the node keeps its not-ready taint.
	# root-ca-cert-publisher: every pod's service-account volume needs the
	# kube-root-ca.crt ConfigMap.
	spawn kube-controller-manager "$bin/kube-controller-manager" --kubeconfig="$dir/admin.kubeconfig" \
		--bind-address=127.0.0.1 --secure-port=0 --leader-elect=false \
		--controllers=replicaset,deployment,serviceaccount,serviceaccount-token,namespace,garbagecollector,nodelifecycle,root-ca-cert-publisher,podgc \
		--service-account-private-key-file="$dir/pki/sa.key" --root-ca-file="$dir/pki/ca.crt" \
		--use-service-account-credentials=false
	spawn kube-scheduler "$bin/kube-scheduler" --kubeconfig="$dir/admin.kubeconfig" \
		--bind-address=127.0.0.1 --secure-port=0 --leader-elect=false

	kubelet_up "$bin"
	ready

	cat >"$dir/env" <<-EOF
		DRAINIT_KUBE_DIR=$dir
		DRAINIT_KUBE_SERVER=https://$node_ip:$api_port
		DRAINIT_KUBE_TOKEN=$token
		DRAINIT_KUBE_CA=$dir/pki/ca.crt
		DRAINIT_KUBE_AUDIT=$dir/audit.log
		DRAINIT_KUBE_NODE=$node
		KUBECONFIG=$dir/admin.kubeconfig
	EOF
	log "up in $((SECONDS - start))s: node $node Ready, API server https://$node_ip:$api_port, logs in $dir"
	echo "export KUBECONFIG=$dir/admin.kubeconfig"
}

kubelet_up() {
	local bin=$1 k=$dir/kubelet
	mkdir -p "$k"
	# failCgroupV1: false: kubelet 1.35 and later refuse cgroup v1 without
	# it. cgroupDriver: containerd 1.6 lacks the CRI RuntimeConfig call that
	# would tell the kubelet, so it is taken from here. The kubelet serves
	# on the node's address only, to the API server (logs, exec).
	# imageGCHighThresholdPercent: 100: the images were loaded, not pulled,
	# and must stay however full the disk gets. makeIPTablesUtilChains:
	# false: the host's iptables are Docker's and ours, not the kubelet's.
	cat >"$dir/kubelet.yaml" <<-EOF
		apiVersion: kubelet.config.k8s.io/v1beta1
		kind: KubeletConfiguration
		failCgroupV1: false
		cgroupDriver: cgroupfs
		containerRuntimeEndpoint: unix://$dir/containerd/containerd.sock
		address: $node_ip
		readOnlyPort: 0
		healthzBindAddress: 127.0.0.1
		authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
		authorization: {mode: AlwaysAllow}
		failSwapOn: false
		resolvConf: /etc/resolv.conf
		imageGCHighThresholdPercent: 100
		imageGCLowThresholdPercent: 99
		evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
		serializeImagePulls: false
		makeIPTablesUtilChains: false
		podLogsDir: $dir/pod-logs
	EOF
	spawn kubelet "$bin/kubelet" --config="$dir/kubelet.yaml" --kubeconfig="$dir/admin.kubeconfig" \
		--root-dir="$k" --hostname-override="$node" --node-ip="$node_ip"
}

# ready: the node is Ready and schedulable, and the default namespace has
# what a pod needs (its service account, kube-root-ca.crt).
ready() {
	until_ok 120 "node $node Ready (see $dir/kubelet.log)" node_ready
	until_ok 60 "node $node without taints (nodelifecycle)" no_taints
	until_ok 60 "service account default" kc get serviceaccount default
	until_ok 60 "ConfigMap kube-root-ca.crt" kc get configmap kube-root-ca.crt
}
node_ready() {
	[ "$(kc get node "$node" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ]
}
no_taints() {
	[ -z "$(kc get node "$node" -o 'jsonpath={.spec.taints}')" ]
}

no_tasks() { [ -z "$(ctr_ tasks ls -q)" ]; }

down() {
	local c id ids mnt
	for c in "${components[@]}"; do stop "$c"; done
	# The pods' containers, sandboxes last: their tasks killed, then
	# deleted, so that every shim exits; the CNI leftovers (veths, the
	# IPAM files) go with the bridge and the netns mounts below.
	if alive containerd; then
		ids=$(ctr_ tasks ls -q 2>/dev/null || true)
		for id in $ids; do ctr_ tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true; done
		# containerd's CRI deletes a task once it has exited; what is left
		# after that is deleted here.
		until_ok 10 "the tasks of killed containers gone" no_tasks || true
		for id in $(ctr_ tasks ls -q 2>/dev/null || true); do
			ctr_ tasks delete -f "$id" >/dev/null 2>&1 || true
		done
		for id in $(ctr_ containers ls -q 2>/dev/null || true); do
			ctr_ containers delete "$id" >/dev/null 2>&1 || true
		done
	fi
	stop containerd
	# The kubelet makes its root dir rshared and mounts every pod's volumes
	# under it; containerd mounts rootfs, shm and netns under its state.
	# Deepest first, or the parents are busy.
	awk -v d="$dir/" 'index($5, d) == 1 { print length($5), $5 }' /proc/self/mountinfo |
		sort -rn | cut -d' ' -f2- | while read -r mnt; do
		umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
	done
	network_down
	rm -rf "$dir/kubelet" "$dir/pod-logs" "$dir/containerd/state" "$dir/cni-ipam"
	log "down; logs kept in $dir"
}

run_tests() {
	local rc was_up=1 c
	for c in containerd "${components[@]}"; do alive "$c" || was_up=0; done
	# Global, not local: the EXIT trap runs after this function returns.
	[ $was_up = 1 ] || trap down EXIT
	up >/dev/null
	set -a
	# shellcheck disable=SC1091
	. "$dir/env"
	set +a
	# -p 1: one package at a time; the deletion-cost tests stop and restart
	# the API server, which the node's tests must not see. Each package
	# takes a few minutes (more when the node suite must first build the
	# example's image); the tests bound each request and command, so
	# -timeout is only the last resort against a hang.
	local out=$dir/go-test.log
	set +e
	(cd "$hack/kube/e2e" && go vet ./... && go test -p 1 -count=1 -timeout 30m "$@" ./...) 2>&1 | tee "$out"
	rc=${PIPESTATUS[0]}
	set -e
	if [ "$rc" -ne 0 ]; then
		for c in kubelet containerd kube-apiserver kube-controller-manager kube-scheduler; do
			echo "== the end of $dir/$c.log" >&2
			tail -15 "$dir/$c.log" >&2 || true
		done
		"$hack/what-failed.sh" "$out" >&2
	fi
	return "$rc"
}

case "${1:-}" in
up) up ;;
test)
	shift
	run_tests "$@"
	;;
down) down ;;
build) build ;;
load)
	shift
	[ $# -gt 0 ] || {
		echo "usage: local-cluster.sh load IMAGE…" >&2
		exit 2
	}
	alive containerd || {
		log "the node is not up: run local-cluster.sh up first"
		exit 1
	}
	load "$@"
	;;
*)
	sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
	;;
esac
