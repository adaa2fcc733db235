#!/usr/bin/env bash
# A 2-node RabbitMQ cluster whose members run on their own addresses, for the
# exporter's fault tests (issue 15, item 4): production-like discovery, where
# /api/nodes names rabbit6@m6 and the exporter dials m6:15692.
#
#   scripts/netns-cluster.sh up               create (or repair) network and cluster; idempotent
#   scripts/netns-cluster.sh down             stop the members, remove namespaces, bridge and names
#   scripts/netns-cluster.sh status           what is up (read-only, no lock)
#   scripts/netns-cluster.sh drop MEMBER      the member's link drops every packet (m6 or m7)
#   scripts/netns-cluster.sh restore MEMBER   its link carries packets again
#   scripts/netns-cluster.sh slow MEMBER KBIT  its plugin's answers leave at KBIT kbit/s (0: full speed)
#   scripts/netns-cluster.sh delay MEMBER MS  add MS ms latency with tc netem (0 removes it);
#                                             fails where the kernel has no netem
#
# Member mN (N = 6, 7) is node rabbitN@mN in network namespace rqe-mN with host
# name mN (its own UTS namespace) and address 10.77.0.N/24 on eth0, a veth whose
# root end rqe-mN hangs on bridge rqe-br0 (10.77.0.1/24) in the root namespace.
# Each member uses RabbitMQ's default ports on its own address: AMQP 5672,
# management 15672, rabbitmq_prometheus 15692, epmd 4369 (its own epmd, started
# in its namespace), distribution 25672. Names resolve everywhere through hosts
# files: /etc/netns/rqe-mN/hosts inside (ip netns exec bind-mounts it on
# /etc/hosts), and lines marked "# rqe-netns-cluster" in the root /etc/hosts.
# Files live in /var/tmp/rabbitmq-exporter-testbed/rabbitN (kept by down, so the
# next up is a warm start). User cluster/cluster-secret (administrator); rabbit7
# joins rabbit6; partitions heal by themselves (autoheal). A member whose peer
# lost its data (a directory removed by hand) is started again with an empty
# database and joins anew: the data is disposable test data.
#
# drop sets the root end of the member's veth down: packets to and from the
# member vanish, connections neither fail nor answer, as in a silent partition.
# Keep a drop under net_ticktime (60 s), or the members declare each other down
# (autoheal then restarts one of them after restore, and up waits for that).
#
# slow shapes only what the member's plugin port sends (htb, u32 on source port
# 15692, on the member's eth0): the exporter reads a trickle, while the
# members' own traffic (distribution, management) keeps full speed, so the
# cluster stays healthy and only the exporter's read is slow.
#
# Needs root (ip netns, mounts). A cold up takes about 30-60 s, a warm one about
# 1 s. Safe to run many times and concurrently: mutating commands hold one flock.
set -euo pipefail
# grep -q in a pipeline would exit at the first match and, with pipefail, turn
# the writer's SIGPIPE into a failure: pipelines here use grep >/dev/null.

export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

WAIT_SECONDS="${TESTBED_WAIT_SECONDS:-180}"
LOCK_FILE="/run/lock/rabbitmq-exporter-netns-cluster.lock"
[ -d /run/lock ] && [ -w /run/lock ] || LOCK_FILE="/var/tmp/rabbitmq-exporter-netns-cluster.lock"

MEMBERS=(m6 m7)
SEED=m6
BRIDGE=rqe-br0
BRIDGE_ADDR=10.77.0.1/24
NET_PREFIX=10.77.0
TESTBED_DIR=/var/tmp/rabbitmq-exporter-testbed
HOSTS_MARK="# rqe-netns-cluster"
CLUSTER_USER=cluster
CLUSTER_PASS=cluster-secret
AMQP_PORT=5672
MGMT_PORT=15672
PROM_PORT=15692
# shellcheck disable=SC2016 # expanded by the node's shell when it reads its env file
RAISE_FD_LIMIT='ulimit -n "$(ulimit -H -n)" 2>/dev/null || true'

log() { printf 'netns-cluster: %s\n' "$*"; }
die() {
	printf 'netns-cluster: ERROR: %s\n' "$*" >&2
	exit 1
}

member_n() { echo "${1#m}"; }
member_ns() { echo "rqe-$1"; }
member_veth() { echo "rqe-$1"; }
member_ip() { echo "$NET_PREFIX.$(member_n "$1")"; }
member_node() { echo "rabbit$(member_n "$1")@$1"; }
member_base() { echo "$TESTBED_DIR/rabbit$(member_n "$1")"; }
member_log() { echo "$(member_base "$1")/log/$(member_node "$1").log"; }

member_arg() {
	case "${1:-}" in m6 | m7) echo "$1" ;; *) die "member must be m6 or m7, not '${1:-}'" ;; esac
}

# in_ns MEMBER CMD...: run CMD in the member's network namespace under its own
# host name, with no RABBITMQ_* from the caller, the node's files pinned under its
# directory (as scripts/testbed.sh does for its members) and fd 9 (the lock)
# closed, so that a node or epmd started here does not hold the lock for life.
in_ns() {
	local m="$1" base v unset=()
	shift
	base="$(member_base "$m")"
	for v in $(compgen -e); do
		case "$v" in RABBITMQ_* | NODENAME | NODE_PORT | CONFIG_FILE) unset+=(-u "$v") ;; esac
	done
	# shellcheck disable=SC2016 # expanded by the inner sh
	ip netns exec "$(member_ns "$m")" unshare --uts -- \
		env "${unset[@]}" \
		RABBITMQ_NODENAME="$(member_node "$m")" \
		RABBITMQ_CONF_ENV_FILE="$base/rabbitmq-env.conf" \
		RABBITMQ_CONFIG_FILE="$base/rabbitmq.conf" \
		RABBITMQ_ENABLED_PLUGINS_FILE="$base/enabled_plugins" \
		RABBITMQ_MNESIA_BASE="$base/mnesia" \
		RABBITMQ_LOG_BASE="$base/log" \
		RABBITMQ_PID_FILE="$base/rabbit$(member_n "$m").pid" \
		RABBITMQ_FEATURE_FLAGS_FILE="$base/feature_flags" \
		RABBITMQ_PLUGINS_EXPAND_DIR="$base/plugins-expand" \
		sh -c 'hostname "$1" && shift && exec "$@"' sh "$m" "$@" 9>&-
}

ctl() {
	local m="$1"
	shift
	in_ns "$m" rabbitmqctl -q -n "$(member_node "$m")" "$@"
}

ns_exists() { ip netns list 2>/dev/null | grep "^$(member_ns "$1")\( \|$\)" >/dev/null; }

# tcp_open HOST PORT: something accepts connections there (from the root namespace).
# shellcheck disable=SC2016 # expanded by the inner bash
tcp_open() { timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null; }

# api_code MEMBER [PATH]: HTTP status of the member's management API, 000 when
# nothing answers.
api_code() {
	curl -s -o /dev/null -w '%{http_code}' --max-time 5 -u "$CLUSTER_USER:$CLUSTER_PASS" \
		"http://$(member_ip "$1"):$MGMT_PORT${2:-/api/overview}" 2>/dev/null || true
}

# registered MEMBER: the member's VM is up (possibly booting), per its own epmd.
registered() {
	ns_exists "$1" || return 1
	ip netns exec "$(member_ns "$1")" epmd -names 2>/dev/null 9>&- |
		grep "^name rabbit$(member_n "$1") at port " >/dev/null
}

# write_file PATH CONTENT [OWNER]: write only when different; returns 0 if it changed.
write_file() {
	if [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; then
		return 1
	fi
	printf '%s\n' "$2" >"$1.tmp"
	[ -z "${3:-}" ] || chown "$3" "$1.tmp"
	mv -f "$1.tmp" "$1"
	return 0
}

require_root() {
	[ "$(id -u)" = 0 ] || die "$1 needs root"
}

check_tools() {
	local t
	for t in ip unshare curl jq epmd rabbitmq-server rabbitmqctl; do
		command -v "$t" >/dev/null 2>&1 || die "$t missing (scripts/testbed.sh installs RabbitMQ, curl and jq; ip is iproute2)"
	done
}

hosts_lines() {
	local m
	for m in "${MEMBERS[@]}"; do printf '%s %s\n' "$(member_ip "$m")" "$m"; done
}

# ensure_names: the members' names in every namespace's hosts file. The root
# /etc/hosts gets marked lines, rewritten in place (it may be a bind mount).
ensure_names() {
	local m want cur
	for m in "${MEMBERS[@]}"; do
		install -d -m 0755 "/etc/netns/$(member_ns "$m")"
		write_file "/etc/netns/$(member_ns "$m")/hosts" "127.0.0.1 localhost
::1 localhost ip6-localhost ip6-loopback
$(hosts_lines)" || true
	done
	want="$(hosts_lines | sed "s/\$/ $HOSTS_MARK/")"
	cur="$(grep -F -- "$HOSTS_MARK" /etc/hosts || true)"
	[ "$cur" = "$want" ] && return 0
	log "writing ${MEMBERS[*]} into /etc/hosts"
	{
		grep -v -F -- "$HOSTS_MARK" /etc/hosts || true
		printf '%s\n' "$want"
	} >/etc/hosts.rqe-netns.tmp
	cat /etc/hosts.rqe-netns.tmp >/etc/hosts
	rm -f /etc/hosts.rqe-netns.tmp
}

remove_names() {
	local m
	for m in "${MEMBERS[@]}"; do rm -rf "/etc/netns/$(member_ns "$m")"; done
	rmdir /etc/netns 2>/dev/null || true
	grep -q -F -- "$HOSTS_MARK" /etc/hosts || return 0
	grep -v -F -- "$HOSTS_MARK" /etc/hosts >/etc/hosts.rqe-netns.tmp || true
	cat /etc/hosts.rqe-netns.tmp >/etc/hosts
	rm -f /etc/hosts.rqe-netns.tmp
}

# ensure_net: bridge, namespaces, veths and addresses; every link up (so up also
# undoes a drop).
ensure_net() {
	local m ns veth
	if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
		log "creating bridge $BRIDGE ($BRIDGE_ADDR)"
		ip link add "$BRIDGE" type bridge
	fi
	ip -o addr show dev "$BRIDGE" | grep " ${BRIDGE_ADDR} " >/dev/null || ip addr add "$BRIDGE_ADDR" dev "$BRIDGE"
	ip link set "$BRIDGE" up
	for m in "${MEMBERS[@]}"; do
		ns="$(member_ns "$m")"
		veth="$(member_veth "$m")"
		ns_exists "$m" || {
			log "creating network namespace $ns"
			ip netns add "$ns"
		}
		if ! ip link show "$veth" >/dev/null 2>&1; then
			# A namespace left with a half pair would refuse a new eth0.
			ip -n "$ns" link del eth0 >/dev/null 2>&1 || true
			ip link add "$veth" type veth peer name eth0 netns "$ns"
		fi
		ip link set "$veth" master "$BRIDGE"
		ip link set "$veth" up
		ip -n "$ns" -o addr show dev eth0 | grep " $(member_ip "$m")/24 " >/dev/null ||
			ip -n "$ns" addr add "$(member_ip "$m")/24" dev eth0
		ip -n "$ns" link set lo up
		ip -n "$ns" link set eth0 up
	done
}

# prepare_member MEMBER: its directory and config; returns 0 if the config changed.
prepare_member() {
	local m="$1" base changed=1
	base="$(member_base "$m")"
	install -d -o rabbitmq -g rabbitmq -m 0755 "$TESTBED_DIR" "$base" "$base/mnesia" "$base/log"
	write_file "$base/rabbitmq.conf" "listeners.tcp.default = $AMQP_PORT
management.tcp.port = $MGMT_PORT
prometheus.tcp.port = $PROM_PORT
cluster_name = netns-cluster
cluster_partition_handling = autoheal
collect_statistics_interval = 1000
default_vhost = /
default_user = $CLUSTER_USER
default_pass = $CLUSTER_PASS
default_user_tags.administrator = true
default_permissions.configure = .*
default_permissions.read = .*
default_permissions.write = .*
loopback_users = none" rabbitmq:rabbitmq && changed=0
	write_file "$base/rabbitmq-env.conf" "$RAISE_FD_LIMIT" rabbitmq:rabbitmq && changed=0
	write_file "$base/enabled_plugins" "[rabbitmq_management,rabbitmq_prometheus]." rabbitmq:rabbitmq && changed=0
	chown -R rabbitmq:rabbitmq "$base"
	return $changed
}

log_tail() {
	local f
	f="$(member_log "$1")"
	[ -r "$f" ] || return 0
	printf 'netns-cluster: last lines of %s:\n' "$f" >&2
	tail -n 8 "$f" | cut -c1-300 | sed 's/^/  | /' >&2
}

# member_ready MEMBER: management answers 200 and AMQP and the plugin accept
# connections, all at the member's own address.
member_ready() {
	[ "$(api_code "$1")" = 200 ] && tcp_open "$(member_ip "$1")" "$AMQP_PORT" &&
		tcp_open "$(member_ip "$1")" "$PROM_PORT"
}

# repair_user MEMBER: default_user applies only to a fresh database.
repair_user() {
	local m="$1"
	log "$m: (re)creating user $CLUSTER_USER"
	ctl "$m" add_user "$CLUSTER_USER" "$CLUSTER_PASS" >/dev/null 2>&1 ||
		ctl "$m" change_password "$CLUSTER_USER" "$CLUSTER_PASS" >/dev/null ||
		die "$m: could not set up user $CLUSTER_USER"
	ctl "$m" set_user_tags "$CLUSTER_USER" administrator >/dev/null
	ctl "$m" set_permissions -p / "$CLUSTER_USER" '.*' '.*' '.*' >/dev/null
}

# member_up MEMBER CHANGED: start the member (once) and wait until it is ready;
# bounded by WAIT_SECONDS. Runs in a subshell per member.
member_up() {
	local m="$1" changed="$2" node t0 started=no repaired=no kicked=no afresh=no code lines=0 restarts=0
	node="$(member_node "$m")"
	if [ "$changed" = yes ] && registered "$m"; then
		log "$m: configuration changed, restarting $node"
		ctl "$m" shutdown >/dev/null 2>&1 || true
	fi
	t0=$(date +%s)
	until member_ready "$m"; do
		if [ $(($(date +%s) - t0)) -ge "$WAIT_SECONDS" ]; then
			log_tail "$m"
			die "$m: $node not ready within ${WAIT_SECONDS}s (management answered HTTP $(api_code "$m")); see $(member_log "$m")"
		fi
		code="$(api_code "$m")"
		if ! registered "$m"; then
			if [ "$started" = yes ] && [ "$afresh" = no ] &&
				tail -n "+$((lines + 1))" "$(member_log "$m")" 2>/dev/null | grep inconsistent_cluster >/dev/null; then
				# Its peer lost its data (a directory removed by hand) and disowns it; the
				# VM exited. Test data is disposable: start it empty, join_seed follows.
				log "$m: its peer disowns it (inconsistent_cluster), starting it with an empty database"
				rm -rf "$(member_base "$m")/mnesia"
				install -d -o rabbitmq -g rabbitmq -m 0755 "$(member_base "$m")/mnesia"
				started=no afresh=yes
			elif [ "$started" = yes ] && [ "$restarts" -lt 3 ] &&
				tail -n "+$((lines + 1))" "$(member_log "$m")" 2>/dev/null | grep -E 'Application rabbit exited|BOOT FAILED' >/dev/null; then
				# Its VM halted during boot: members booting together can ask a peer
				# for its feature flags before the peer has any (3.10 exits with
				# incompatible_feature_flags, {badmap,undefined}). A later start,
				# with the peer further on, succeeds.
				restarts=$((restarts + 1))
				log "$m: $node halted during boot ($(tail -n "+$((lines + 1))" "$(member_log "$m")" | grep -oE 'Application rabbit exited with reason: .{0,60}|BOOT FAILED' | head -n 1)), starting it again ($restarts/3)"
				sleep 3
				started=no
			fi
			# Started once only (unless it halted, above): a slow VM registers late, a
			# second start would race it.
			if [ "$started" = no ]; then
				lines="$(wc -l 2>/dev/null <"$(member_log "$m")" || echo 0)"
				log "$m: starting $node at $(member_ip "$m")"
				in_ns "$m" rabbitmq-server -detached >/dev/null 2>&1 ||
					die "$m: rabbitmq-server -detached failed; see $(member_log "$m")"
				started=yes
			fi
		elif [ "$code" = 401 ] && [ "$repaired" = no ]; then
			repair_user "$m"
			repaired=yes
		elif [ "$code" = 000 ] && [ "$kicked" = no ] && [ $(($(date +%s) - t0)) -ge 30 ] &&
			[ "$(ctl "$m" eval 'rabbit_boot_state:get().' 2>/dev/null)" = stopped ]; then
			# Only a stopped app (a join that failed half way) is started; one still
			# booting or waiting for its peer's tables is left alone.
			log "$m: rabbit application not running, starting it"
			ctl "$m" start_app >/dev/null 2>&1 || true
			kicked=yes
		fi
		sleep 1
	done
}

# node_states MEMBER: "name running prom" lines from the member's /api/nodes.
node_states() {
	curl -fs --max-time 5 -u "$CLUSTER_USER:$CLUSTER_PASS" \
		"http://$(member_ip "$1"):$MGMT_PORT/api/nodes?columns=name,running,contexts" 2>/dev/null |
		jq -r '.[] | "\(.name) \(.running) \(if any(.contexts[]?; (.protocol // "") | test("prometheus")) then "prom" else "-" end)"' 2>/dev/null || true
}

cluster_want() {
	local m
	for m in "${MEMBERS[@]}"; do printf '%s true prom\n' "$(member_node "$m")"; done
}

# cluster_ok: every member is ready and sees every member running with its
# prometheus listener.
cluster_ok() {
	local m want
	want="$(cluster_want | sort)"
	for m in "${MEMBERS[@]}"; do
		member_ready "$m" || return 1
		[ "$(node_states "$m" | sort)" = "$want" ] || return 1
	done
}

# join_seed MEMBER: make the member part of the seed's cluster unless it is.
join_seed() {
	local m="$1" seed out
	seed="$(member_node "$SEED")"
	node_states "$m" | grep "^$seed " >/dev/null && return 0
	log "$m: $(member_node "$m") joining $seed"
	ctl "$m" stop_app >/dev/null || die "$m: stop_app failed"
	if ! ctl "$m" join_cluster "$seed" >/dev/null 2>&1; then
		log "$m: could not join $seed, resetting it"
		ctl "$m" reset >/dev/null 2>&1 || ctl "$m" force_reset >/dev/null || die "$m: could not reset"
		ctl "$SEED" forget_cluster_node "$(member_node "$m")" >/dev/null 2>&1 || true
		out="$(ctl "$m" join_cluster "$seed" 2>&1)" ||
			die "$m: cannot join $seed: $out (to start over: $0 down; rm -rf $(member_base "$m"))"
	fi
	ctl "$m" start_app >/dev/null || die "$m: start_app failed; see $(member_log "$m")"
}

wait_cluster() {
	local t0 m
	t0=$(date +%s)
	until cluster_ok; do
		if [ $(($(date +%s) - t0)) -ge "$WAIT_SECONDS" ]; then
			for m in "${MEMBERS[@]}"; do log "$m sees: $(node_states "$m" | tr '\n' ' ')" >&2; done
			die "members do not all see each other running within ${WAIT_SECONDS}s"
		fi
		sleep 1
	done
}

cluster_up() {
	local m i changed pids=() failed=0 t0
	t0=$(date +%s)
	local changes=()
	ensure_names
	ensure_net
	for m in "${MEMBERS[@]}"; do
		changed=no
		prepare_member "$m" && changed=yes
		changes+=("$changed")
	done
	if [[ " ${changes[*]} " != *" yes "* ]] && cluster_ok; then
		log "ready: $(cluster_want | cut -d' ' -f1 | tr '\n' ' ')(management http://$SEED:$MGMT_PORT)"
		return 0
	fi
	for i in "${!MEMBERS[@]}"; do
		# In parallel: members restarting from an existing cluster wait for each
		# other's tables.
		member_up "${MEMBERS[$i]}" "${changes[$i]}" &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p" || failed=1; done
	[ "$failed" = 0 ] || die "a member did not start (see above)"
	for m in "${MEMBERS[@]}"; do
		[ "$m" = "$SEED" ] || join_seed "$m"
	done
	for m in "${MEMBERS[@]}"; do member_up "$m" no; done
	wait_cluster
	log "ready after $(($(date +%s) - t0))s: $(cluster_want | cut -d' ' -f1 | tr '\n' ' ')(management http://$SEED:$MGMT_PORT)"
}

cluster_down() {
	local m ns pid pids=() deadline
	for m in "${MEMBERS[@]}"; do
		registered "$m" || continue
		log "$m: stopping $(member_node "$m")"
		ctl "$m" shutdown >/dev/null 2>&1 &
		pids+=($!)
	done
	for pid in "${pids[@]}"; do wait "$pid" || true; done
	for m in "${MEMBERS[@]}"; do
		ns="$(member_ns "$m")"
		ns_exists "$m" || continue
		# What is left in the namespace is what up started there (epmd).
		deadline=$(($(date +%s) + 30))
		while [ -n "$(ip netns pids "$ns" 2>/dev/null)" ]; do
			for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
			[ "$(date +%s)" -lt "$deadline" ] || die "$ns: processes $(ip netns pids "$ns" | tr '\n' ' ')still run 30s after shutdown"
			sleep 0.5
		done
		ip link del "$(member_veth "$m")" >/dev/null 2>&1 || true
		ip netns del "$ns"
		log "$m: namespace $ns removed"
	done
	ip link del "$BRIDGE" >/dev/null 2>&1 || true
	remove_names
	log "down (files kept in $TESTBED_DIR/rabbit6, rabbit7)"
}

set_link() {
	local m="$1" state="$2" veth
	veth="$(member_veth "$m")"
	ip link show "$veth" >/dev/null 2>&1 || die "$m: no link $veth; run $0 up"
	ip link set "$veth" "$state"
}

restore_member() {
	local m="$1" t0
	set_link "$m" up
	t0=$(date +%s)
	# The bridge port forwards again after its (zero) forward delay; wait until the
	# member's plugin accepts connections, so the caller starts from a link that works.
	until tcp_open "$(member_ip "$m")" "$PROM_PORT"; do
		[ $(($(date +%s) - t0)) -lt 60 ] || die "$m: plugin at $(member_ip "$m"):$PROM_PORT unreachable 60s after restore"
		sleep 0.2
	done
	log "$m: link $(member_veth "$m") restored"
}

delay_member() {
	local m="$1" ms="$2" veth out
	veth="$(member_veth "$m")"
	case "$ms" in '' | *[!0-9]*) die "delay takes milliseconds, not '$ms'" ;; esac
	ip link show "$veth" >/dev/null 2>&1 || die "$m: no link $veth; run $0 up"
	if [ "$ms" = 0 ]; then
		tc qdisc del dev "$veth" root >/dev/null 2>&1 || true
		log "$m: no added latency"
		return 0
	fi
	out="$(tc qdisc replace dev "$veth" root netem delay "${ms}ms" 2>&1)" ||
		die "$m: tc netem failed: $out (the kernel needs the netem qdisc, sch_netem)"
	log "$m: ${ms} ms added on $veth"
}

slow_member() {
	local m="$1" kbit="$2" ns out
	ns="$(member_ns "$m")"
	case "$kbit" in '' | *[!0-9]*) die "slow takes kbit/s, not '$kbit'" ;; esac
	ns_exists "$m" || die "$m: no namespace $ns; run $0 up"
	ip -n "$ns" link show eth0 >/dev/null 2>&1 || die "$m: no eth0 in $ns; run $0 up"
	ip netns exec "$ns" tc qdisc del dev eth0 root >/dev/null 2>&1 || true
	if [ "$kbit" = 0 ]; then
		ip -n "$ns" link set dev eth0 gso_max_size 65536
		log "$m: plugin answers at full speed"
		return 0
	fi
	# Without segmentation offload: a 64 KB segment would pass the shaper at
	# once on a fresh class's tokens, so a small answer would not be slowed.
	ip -n "$ns" link set dev eth0 gso_max_size 1500
	# One class for the plugin's port at the given rate (a burst of one packet),
	# everything else unshaped; the queue is long enough that nothing drops.
	out="$(ip netns exec "$ns" sh -c "
		tc qdisc add dev eth0 root handle 1: htb default 10 r2q 1 &&
		tc class add dev eth0 parent 1: classid 1:10 htb rate 10gbit &&
		tc class add dev eth0 parent 1: classid 1:20 htb rate ${kbit}kbit ceil ${kbit}kbit burst 1600 cburst 1600 &&
		tc qdisc add dev eth0 parent 1:20 pfifo limit 10000 &&
		tc filter add dev eth0 parent 1: protocol ip u32 match ip sport $PROM_PORT 0xffff flowid 1:20" 2>&1)" ||
		die "$m: tc failed: $out (the kernel needs the htb qdisc and the u32 filter)"
	log "$m: plugin answers leave at ${kbit} kbit/s"
}

status() {
	local m state node amqp prom link
	if ip link show "$BRIDGE" >/dev/null 2>&1; then
		log "bridge $BRIDGE up ($BRIDGE_ADDR)"
	else
		log "bridge $BRIDGE absent"
	fi
	for m in "${MEMBERS[@]}"; do
		node="$(member_node "$m")"
		if ! ns_exists "$m"; then
			printf '%-3s %-11s namespace %s absent\n' "$m" "$node" "$(member_ns "$m")"
			continue
		fi
		link="$(ip -o link show "$(member_veth "$m")" 2>/dev/null | grep '[<,]UP[,>]' >/dev/null && echo up || echo down)"
		if [ "$(id -u)" != 0 ]; then
			state="node ? (epmd in the namespace needs root)"
		elif registered "$m"; then state="node up"; else state="node down"; fi
		if tcp_open "$(member_ip "$m")" "$AMQP_PORT"; then amqp=open; else amqp=closed; fi
		if tcp_open "$(member_ip "$m")" "$PROM_PORT"; then prom=open; else prom=closed; fi
		printf '%-3s %-11s %s link %s, %s, amqp %s:%s %s, management -> HTTP %s, prometheus :%s %s\n' \
			"$m" "$node" "$(member_ip "$m")" "$link" "$state" "$m" "$AMQP_PORT" "$amqp" "$(api_code "$m")" "$PROM_PORT" "$prom"
	done
}

cmd="${1:-}"
case "$cmd" in
status)
	status
	exit 0
	;;
up | down) ;;
drop | restore) member="$(member_arg "${2:-}")" ;;
delay | slow) member="$(member_arg "${2:-}")" ;;
-h | --help | help | '')
	sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
	exit 0
	;;
*) die "unknown command '$cmd' (use up, down, status, drop MEMBER, restore MEMBER, slow MEMBER KBIT or delay MEMBER MS)" ;;
esac

check_tools
if [ "$cmd" = up ] && [ "$(id -u)" != 0 ] && cluster_ok; then
	# Without root nothing can be checked or repaired; a cluster that answers will do.
	log "ready: $(cluster_want | cut -d' ' -f1 | tr '\n' ' ')(management http://$SEED:$MGMT_PORT)"
	exit 0
fi
require_root "$cmd"
[ -e "$LOCK_FILE" ] || (umask 022 && : >>"$LOCK_FILE") 2>/dev/null || true
exec 9<"$LOCK_FILE" || die "cannot open lock file $LOCK_FILE"
flock -w 300 9 || die "timed out waiting for lock $LOCK_FILE"

case "$cmd" in
up) cluster_up ;;
down) cluster_down ;;
drop)
	set_link "$member" down
	log "$member: link $(member_veth "$member") down, every packet dropped"
	;;
restore) restore_member "$member" ;;
delay) delay_member "$member" "${3:-}" ;;
slow) slow_member "$member" "${3:-}" ;;
esac
