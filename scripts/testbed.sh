#!/usr/bin/env bash
# Idempotent RabbitMQ test bed for the exporter's integration tests.
#
#   scripts/testbed.sh [primary]   primary node rabbit@localhost (AMQP 5672, management 15672, guest/guest)
#   scripts/testbed.sh second      second node rabbit2@localhost (AMQP 5673, management 15673, https 15674, exporter2)
#   scripts/testbed.sh cluster     a 3-node cluster rabbit3/4/5@localhost (user cluster), see below
#   scripts/testbed.sh all         primary, second and cluster
#   scripts/testbed.sh stop-second stop the second node
#   scripts/testbed.sh stop-member N   stop the rabbit application of cluster member N (3, 4 or 5)
#   scripts/testbed.sh start-member N  start it again
#   scripts/testbed.sh stop-cluster    shut the three cluster members down (VMs)
#   scripts/testbed.sh demo        primary plus a demo vhost with queues holding messages (for make run)
#   scripts/testbed.sh status      report what is up (read-only, no lock)
#
# Safe to run many times and concurrently: every mutating command holds one flock.
#
# The cluster: member N (3, 4, 5) is node rabbitN@localhost with its files in
# /var/tmp/rabbitmq-exporter-testbed/rabbitN, AMQP on 127.0.0.1:(5672+N), Erlang
# distribution on (25672+N), management on http://127.0.0.1:(15672+N) and the
# rabbitmq_prometheus plugin on port (15692+N): plain HTTP on rabbit3 and rabbit4,
# HTTPS only on rabbit5 (certificate from the second node's test CA, CN localhost),
# so /api/nodes names 'http/prometheus' for two members and 'https/prometheus' for
# one. User cluster/cluster-secret (administrator, all of /), no guest. rabbit4 and
# rabbit5 join rabbit3 (all nodes share the rabbitmq user's Erlang cookie).
# Members report stats every second (collect_statistics_interval; default 5 s) so
# tests see counts sooner. stop-member/start-member use rabbitmqctl stop_app/start_app
# (the VM stays up) and return once another member's /api/nodes shows the change
# (for start: running with its prometheus context). A member stopped that way is
# marked (app-stopped in its directory), so `cluster` restarts its app at once.
# Members boot in parallel; a cold `cluster` takes about 45 s, a warm one under 1 s.
# The primary also runs rabbitmq_prometheus (default port 15692).
set -euo pipefail

# Debian keeps the RabbitMQ CLIs and epmd in sbin; test runners often lack it in PATH.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

WAIT_SECONDS="${TESTBED_WAIT_SECONDS:-180}"
# su (which Debian's rabbitmq-server uses to drop to the rabbitmq user) resets the
# soft open-files limit to 1024; a member recovering the differential test's 10k
# durable queues then crawls (RabbitMQ wants one handle per queue), so the node's
# env file raises the soft limit to the hard one.
# shellcheck disable=SC2016 # expanded by the node's shell when it reads its env file
RAISE_FD_LIMIT='ulimit -n "$(ulimit -H -n)" 2>/dev/null || true'
LOCK_FILE="/run/lock/rabbitmq-exporter-testbed.lock"
[ -d /run/lock ] && [ -w /run/lock ] || LOCK_FILE="/var/tmp/rabbitmq-exporter-testbed.lock"

PRIMARY_NODE="rabbit@localhost"
PRIMARY_MGMT="http://127.0.0.1:15672"
PRIMARY_AMQP_PORT=5672

SECOND_NODE="rabbit2@localhost"
SECOND_BASE="/var/tmp/rabbitmq-exporter-testbed/rabbit2"
SECOND_MGMT="http://127.0.0.1:15673"
SECOND_AMQP_PORT=5673
SECOND_DIST_PORT=25673
SECOND_MGMT_PORT=15673
SECOND_TLS_PORT=15674
SECOND_TLS_DIR="$SECOND_BASE/tls"
SECOND_USER="exporter2"
SECOND_PASS="exporter2-secret"

TESTBED_DIR="/var/tmp/rabbitmq-exporter-testbed"
PRIMARY_PROM_PORT=15692
# Cluster members are named rabbitN; every port is a base plus N (see the header).
CLUSTER_MEMBERS=(rabbit3 rabbit4 rabbit5)
CLUSTER_SEED=rabbit3
CLUSTER_TLS_MEMBER=rabbit5
CLUSTER_USER="cluster"
CLUSTER_PASS="cluster-secret"

log() { printf 'testbed: %s\n' "$*"; }
die() {
	printf 'testbed: ERROR: %s\n' "$*" >&2
	exit 1
}

# RABBITMQ_* from the caller would redirect the primary's CLI calls to another node
# (or make the second node inherit the primary's files), so every call starts clean.
clean_env() {
	local v args=()
	for v in $(compgen -e); do
		case "$v" in RABBITMQ_* | NODENAME | NODE_PORT | CONFIG_FILE) args+=(-u "$v") ;; esac
	done
	env "${args[@]}" "$@"
}

# Everything that must differ from the primary. Defaults derived from the node name
# (pid file, feature-flags file, plugins expand dir, mnesia dir) would already be
# distinct, but pinning them under SECOND_BASE keeps the whole node in one directory.
second_env() {
	clean_env \
		RABBITMQ_NODENAME="$SECOND_NODE" \
		RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
		RABBITMQ_NODE_PORT="$SECOND_AMQP_PORT" \
		RABBITMQ_DIST_PORT="$SECOND_DIST_PORT" \
		RABBITMQ_CONF_ENV_FILE="$SECOND_BASE/rabbitmq-env.conf" \
		RABBITMQ_CONFIG_FILE="$SECOND_BASE/rabbitmq.conf" \
		RABBITMQ_ADVANCED_CONFIG_FILE="$SECOND_BASE/advanced.config" \
		RABBITMQ_ENABLED_PLUGINS_FILE="$SECOND_BASE/enabled_plugins" \
		RABBITMQ_MNESIA_BASE="$SECOND_BASE/mnesia" \
		RABBITMQ_LOG_BASE="$SECOND_BASE/log" \
		RABBITMQ_PID_FILE="$SECOND_BASE/rabbit2.pid" \
		RABBITMQ_FEATURE_FLAGS_FILE="$SECOND_BASE/feature_flags" \
		RABBITMQ_PLUGINS_EXPAND_DIR="$SECOND_BASE/plugins-expand" \
		"$@"
}

is_member() { case "$1" in rabbit3 | rabbit4 | rabbit5) return 0 ;; *) return 1 ;; esac; }
member_n() { echo "${1#rabbit}"; }
member_base() { echo "$TESTBED_DIR/$1"; }
member_amqp_port() { echo $((5672 + $(member_n "$1"))); }
member_dist_port() { echo $((25672 + $(member_n "$1"))); }
member_mgmt_port() { echo $((15672 + $(member_n "$1"))); }
member_prom_port() { echo $((15692 + $(member_n "$1"))); }
member_prom_url() {
	local scheme=http
	[ "$1" = "$CLUSTER_TLS_MEMBER" ] && scheme=https
	echo "$scheme://localhost:$(member_prom_port "$1")"
}

# member_env rabbitN CMD...: like second_env, for a cluster member.
member_env() {
	local which="$1" base
	shift
	base="$(member_base "$which")"
	clean_env \
		RABBITMQ_NODENAME="$which@localhost" \
		RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
		RABBITMQ_NODE_PORT="$(member_amqp_port "$which")" \
		RABBITMQ_DIST_PORT="$(member_dist_port "$which")" \
		RABBITMQ_CONF_ENV_FILE="$base/rabbitmq-env.conf" \
		RABBITMQ_CONFIG_FILE="$base/rabbitmq.conf" \
		RABBITMQ_ADVANCED_CONFIG_FILE="$base/advanced.config" \
		RABBITMQ_ENABLED_PLUGINS_FILE="$base/enabled_plugins" \
		RABBITMQ_MNESIA_BASE="$base/mnesia" \
		RABBITMQ_LOG_BASE="$base/log" \
		RABBITMQ_PID_FILE="$base/$which.pid" \
		RABBITMQ_FEATURE_FLAGS_FILE="$base/feature_flags" \
		RABBITMQ_PLUGINS_EXPAND_DIR="$base/plugins-expand" \
		"$@"
}

# node_env primary|second|rabbitN CMD...: run a RabbitMQ CLI for that node. fd 9 (the
# lock) is closed because a started node, or an epmd daemon spawned by any CLI call,
# would otherwise inherit it and hold the lock for its whole life.
node_env() {
	local which="$1"
	shift
	if [ "$which" = second ]; then
		second_env "$@" 9>&-
	elif is_member "$which"; then
		member_env "$which" "$@" 9>&-
	else
		clean_env "$@" 9>&-
	fi
}

node_name() {
	if [ "$1" = second ]; then
		echo "$SECOND_NODE"
	elif is_member "$1"; then
		echo "$1@localhost"
	else
		echo "$PRIMARY_NODE"
	fi
}

# http_code URL USER PASS: status of GET URL/api/overview, 000 when nothing answers.
http_code() {
	curl -s -o /dev/null -w '%{http_code}' --max-time 5 -u "$2:$3" "$1/api/overview" 2>/dev/null || true
}

api_code() {
	if [ "$1" = second ]; then
		http_code "$SECOND_MGMT" "$SECOND_USER" "$SECOND_PASS"
	elif is_member "$1"; then
		http_code "$(mgmt_url "$1")" "$CLUSTER_USER" "$CLUSTER_PASS"
	else
		http_code "$PRIMARY_MGMT" guest guest
	fi
}

# registered NODE: the node's VM is up (possibly still booting). epmd needs no cookie
# and answers in milliseconds, unlike a CLI round trip.
registered() {
	local short="${1%@*}"
	epmd -names 2>/dev/null | grep -q "^name ${short} at port "
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

require_root() {
	[ "$(id -u)" = 0 ] || die "$1 needs root (run: sudo $0 ${ARGS[*]:-})"
}

ensure_packages() {
	local missing=()
	command -v curl >/dev/null 2>&1 || missing+=(curl)
	command -v jq >/dev/null 2>&1 || missing+=(jq)
	if ! dpkg-query -W -f='${Status}' rabbitmq-server 2>/dev/null | grep -q 'install ok installed'; then
		missing+=(rabbitmq-server)
	fi
	[ "${#missing[@]}" -eq 0 ] && return 0
	require_root "installing ${missing[*]}"
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# fd 9 closed: the package's postinst may start a node that would keep the lock.
	apt-get update -q >/dev/null 9>&- || die "apt-get update failed"
	apt-get install -y -q "${missing[@]}" >/dev/null 9>&- || die "apt-get install ${missing[*]} failed"
}

# write_file PATH CONTENT: write only when different; returns 0 if it changed.
write_file() {
	if [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; then
		return 1
	fi
	printf '%s\n' "$2" >"$1.tmp"
	chown rabbitmq:rabbitmq "$1.tmp"
	mv -f "$1.tmp" "$1"
	return 0
}

# ensure_second_tls: a test CA and a server certificate (localhost, 127.0.0.1)
# for the second node's TLS management listener; made once, kept afterwards.
ensure_second_tls() {
	[ -s "$SECOND_TLS_DIR/server.pem" ] && [ -s "$SECOND_TLS_DIR/ca.pem" ] && return 0
	command -v openssl >/dev/null 2>&1 || die "openssl missing (apt-get install openssl)"
	install -d -o rabbitmq -g rabbitmq -m 0755 "$SECOND_TLS_DIR"
	local d="$SECOND_TLS_DIR"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
		-subj "/CN=rabbitmq-exporter testbed CA" -keyout "$d/ca-key.pem" -out "$d/ca.pem" 2>/dev/null
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=localhost" \
		-keyout "$d/server-key.pem" -out "$d/server.csr" 2>/dev/null
	printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$d/ext.cnf"
	openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca-key.pem" -CAcreateserial \
		-days 3650 -extfile "$d/ext.cnf" -out "$d/server.pem" 2>/dev/null
	rm -f "$d/server.csr" "$d/ext.cnf"
	chown -R rabbitmq:rabbitmq "$d"
	chmod 0644 "$d"/*.pem
	log "second: made test CA and TLS certificate in $d"
}

# demo: a demo vhost with a few queues holding messages, for `make run`. Each
# queue has x-max-length equal to its message count, so publishing the same
# number again on every run keeps the counts exact (idempotent).
demo_queues() {
	local base="$PRIMARY_MGMT/api" auth="guest:guest" q n
	curl -fsS -u "$auth" -X PUT -H 'content-type: application/json' "$base/vhosts/demo" -d '{}' >/dev/null
	curl -fsS -u "$auth" -X PUT -H 'content-type: application/json' "$base/permissions/demo/guest" \
		-d '{"configure":".*","write":".*","read":".*"}' >/dev/null
	for spec in orders:12 payments:3 emails:0 audit.log:42; do
		q="${spec%%:*}"
		n="${spec##*:}"
		curl -fsS -u "$auth" -X PUT -H 'content-type: application/json' "$base/queues/demo/$q" \
			-d "{\"durable\":true,\"arguments\":{\"x-max-length\":$((n > 0 ? n : 1000))}}" >/dev/null
		for _ in $(seq 1 "$n"); do
			curl -fsS -u "$auth" -X POST -H 'content-type: application/json' "$base/exchanges/demo/amq.default/publish" \
				-d "{\"properties\":{},\"routing_key\":\"$q\",\"payload\":\"demo\",\"payload_encoding\":\"string\"}" >/dev/null
		done
	done
	log "demo: vhost demo with queues orders (12), payments (3), emails (0), audit.log (42)"
}

# prepare_second: directories and config of the second node; returns 0 if config changed.
prepare_second() {
	local changed=1
	install -d -o rabbitmq -g rabbitmq -m 0755 /var/tmp/rabbitmq-exporter-testbed
	install -d -o rabbitmq -g rabbitmq -m 0755 "$SECOND_BASE" "$SECOND_BASE/mnesia" "$SECOND_BASE/log"
	ensure_second_tls
	# No guest: the two nodes must have different credentials. The management API
	# also listens with TLS (certificate from a test CA) for https probe tests.
	write_file "$SECOND_BASE/rabbitmq.conf" "listeners.tcp.local = 127.0.0.1:$SECOND_AMQP_PORT
management.tcp.ip = 127.0.0.1
management.tcp.port = $SECOND_MGMT_PORT
management.ssl.ip = 127.0.0.1
management.ssl.port = $SECOND_TLS_PORT
management.ssl.cacertfile = $SECOND_TLS_DIR/ca.pem
management.ssl.certfile = $SECOND_TLS_DIR/server.pem
management.ssl.keyfile = $SECOND_TLS_DIR/server-key.pem
default_vhost = /
default_user = $SECOND_USER
default_pass = $SECOND_PASS
default_user_tags.administrator = true
default_permissions.configure = .*
default_permissions.read = .*
default_permissions.write = .*
loopback_users = none" && changed=0
	# Same Erlang distribution settings as /etc/rabbitmq/rabbitmq-env.conf, minus NODENAME.
	write_file "$SECOND_BASE/rabbitmq-env.conf" "ERL_EPMD_ADDRESS=127.0.0.1
export ERL_FLAGS=\"-kernel inet_dist_use_interface {127,0,0,1}\"
$RAISE_FD_LIMIT" && changed=0
	if [ ! -f "$SECOND_BASE/enabled_plugins" ]; then
		write_file "$SECOND_BASE/enabled_plugins" "[rabbitmq_management]." || true
	fi
	chown -R rabbitmq:rabbitmq "$SECOND_BASE"
	return $changed
}

# node_log WHICH: the path of the node's log file.
node_log() {
	if [ "$1" = second ]; then
		echo "$SECOND_BASE/log/$SECOND_NODE.log"
	elif is_member "$1"; then
		echo "$(member_base "$1")/log/$1@localhost.log"
	else
		echo "/var/log/rabbitmq/$PRIMARY_NODE.log"
	fi
}

log_hint() { echo "see $(node_log "$1")"; }

# log_tail WHICH: the node's last log lines, so that a CI failure shows its cause.
log_tail() {
	local f
	f="$(node_log "$1")"
	[ -r "$f" ] || return 0
	printf 'testbed: last lines of %s:\n' "$f"
	tail -n 8 "$f" | cut -c1-300 | sed 's/^/  | /'
}

start_node() {
	local which="$1" node
	node="$(node_name "$which")"
	log "$which: starting $node"
	node_env "$which" rabbitmq-server -detached >/dev/null 2>&1 ||
		die "$which: rabbitmq-server -detached failed for $node; $(log_hint "$which")"
}

# boot_state WHICH: booting, core_started, ready, stopping or stopped (also before
# the boot began); unknown when the node does not answer.
boot_state() {
	node_env "$1" rabbitmqctl -q -n "$(node_name "$1")" eval 'rabbit_boot_state:get().' 2>/dev/null || echo unknown
}

app_running() {
	node_env "$1" rabbitmq-diagnostics -q -n "$(node_name "$1")" check_running >/dev/null 2>&1
}

amqp_port() {
	if [ "$1" = second ]; then
		echo "$SECOND_AMQP_PORT"
	elif is_member "$1"; then
		member_amqp_port "$1"
	else
		echo "$PRIMARY_AMQP_PORT"
	fi
}

ensure_plugin() {
	local which="$1" node
	node="$(node_name "$which")"
	if node_env "$which" rabbitmq-plugins -q -n "$node" is_enabled rabbitmq_management >/dev/null 2>&1; then
		return 0
	fi
	log "$which: enabling rabbitmq_management on $node"
	node_env "$which" rabbitmq-plugins -q -n "$node" enable rabbitmq_management >/dev/null ||
		die "$which: could not enable rabbitmq_management on $node"
}

# wait_ready WHICH: start the node if needed and wait until the management API answers
# 200 with the node's credentials and AMQP accepts connections (the management listener
# starts a moment before the AMQP one). Returns 1 on HTTP 401.
# rabbitmqctl await_startup is not used: during boot a single call blocked for ~20 s.
wait_ready() {
	local which="$1" node code=000 now t0 started=no plugin_checked=no kicked=no state lines=0 restarts=0
	node="$(node_name "$which")"
	t0=$(date +%s)
	while :; do
		now=$(date +%s)
		if [ $((now - t0)) -ge "$WAIT_SECONDS" ]; then
			if registered "$node"; then state="is up"; else state="never registered with epmd"; fi
			log_tail "$which" >&2
			die "$which: $node not ready within ${WAIT_SECONDS}s (node $state, boot state $(boot_state "$which"), management API last answered HTTP $code); $(log_hint "$which")"
		fi
		code="$(api_code "$which")"
		if [ "$code" = 200 ] && port_open "$(amqp_port "$which")"; then
			return 0
		fi
		[ "$code" = 401 ] && return 1
		if ! registered "$node"; then
			# Started once only, unless its log says the VM halted: on a loaded machine
			# the VM may take 20 s or more to register with epmd, and a second start
			# would race the first.
			if [ "$started" = yes ] && [ "$restarts" -lt 3 ] &&
				tail -n "+$((lines + 1))" "$(node_log "$which")" 2>/dev/null | grep -E 'Application rabbit exited|BOOT FAILED' >/dev/null; then
				# Its VM halted during boot, e.g. members booting together asked a
				# peer for feature flags it did not have yet (3.10:
				# incompatible_feature_flags). A later start succeeds.
				restarts=$((restarts + 1))
				log "$which: $node halted during boot, starting it again ($restarts/3)"
				sleep 3
				started=no
			fi
			if [ "$started" = no ]; then
				lines="$(wc -l 2>/dev/null <"$(node_log "$which")" || echo 0)"
				start_node "$which"
				started=yes
			fi
		elif [ "$code" = 000 ] && { [ "$started" = no ] || [ $((now - t0)) -ge 5 ]; }; then
			# The VM is up but nothing listens on the management port: either it is
			# still booting, the plugin is off, or the app was stopped (stop_app).
			if app_running "$which"; then
				if [ "$plugin_checked" = no ]; then
					ensure_plugin "$which"
					plugin_checked=yes
				fi
			elif [ "$kicked" = no ] && { stopped_on_purpose "$which" ||
				{ [ $((now - t0)) -ge 30 ] && [ "$(boot_state "$which")" = stopped ]; }; }; then
				# Only a stopped app is started: one still booting (recovering queues,
				# waiting for its peers' tables) must be left alone.
				log "$which: rabbit application not running on $node, starting it"
				node_env "$which" rabbitmqctl -q -n "$node" start_app >/dev/null 2>&1 || true
				is_member "$which" && rm -f "$(member_base "$which")/app-stopped"
				kicked=yes
			fi
		fi
		sleep 1
	done
}

# repair_second_users: default_user only applies when the database is first created,
# so an older data directory may lack exporter2 or still have guest.
repair_second_users() {
	local ctl=(node_env second rabbitmqctl -q -n "$SECOND_NODE")
	if [ "$(api_code second)" != 200 ]; then
		log "second: (re)creating user $SECOND_USER"
		"${ctl[@]}" add_user "$SECOND_USER" "$SECOND_PASS" >/dev/null 2>&1 ||
			"${ctl[@]}" change_password "$SECOND_USER" "$SECOND_PASS" >/dev/null ||
			die "second: could not set up user $SECOND_USER"
		"${ctl[@]}" set_user_tags "$SECOND_USER" administrator >/dev/null
		"${ctl[@]}" set_permissions -p / "$SECOND_USER" '.*' '.*' '.*' >/dev/null
	fi
	if [ "$(http_code "$SECOND_MGMT" guest guest)" = 200 ]; then
		log "second: deleting user guest"
		"${ctl[@]}" delete_user guest >/dev/null
	fi
}

mgmt_url() {
	if [ "$1" = second ]; then
		echo "$SECOND_MGMT"
	elif is_member "$1"; then
		echo "http://127.0.0.1:$(member_mgmt_port "$1")"
	else
		echo "$PRIMARY_MGMT"
	fi
}

ensure_node() {
	local which="$1" node changed=no
	node="$(node_name "$which")"
	if [ "$which" = second ]; then
		# Without root the config cannot be checked; a node that answers will do.
		if [ "$(id -u)" != 0 ] && [ "$(api_code second)" = 200 ]; then
			log "second: $node ready, management $SECOND_MGMT"
			return 0
		fi
		require_root "setting up the second node"
		prepare_second && changed=yes
	fi
	if [ "$changed" = no ] && [ "$(api_code "$which")" = 200 ] && port_open "$(amqp_port "$which")"; then
		log "$which: $node ready, management $(mgmt_url "$which")"
		return 0
	fi
	require_root "starting $node"
	if [ "$changed" = yes ] && registered "$node"; then
		log "$which: configuration changed, restarting $node"
		node_env "$which" rabbitmqctl -q -n "$node" shutdown >/dev/null 2>&1 || true
	fi
	if registered "$node"; then
		log "$which: $node is running, waiting for it"
	fi
	if ! wait_ready "$which"; then
		[ "$which" = second ] ||
			die "primary: guest/guest rejected by $PRIMARY_MGMT (HTTP 401); the primary must keep the default guest user"
		repair_second_users
		wait_ready second || die "second: $SECOND_USER still rejected (HTTP 401) after repair"
	fi
	if [ "$which" = second ]; then repair_second_users; fi
	log "$which: $node ready, management $(mgmt_url "$which")"
}

stop_second() {
	if ! registered "$SECOND_NODE"; then
		log "second: $SECOND_NODE not running"
		return 0
	fi
	require_root "stopping the second node"
	log "second: stopping $SECOND_NODE"
	# shutdown (unlike stop) returns only after the OS process exited.
	node_env second rabbitmqctl -q -n "$SECOND_NODE" shutdown >/dev/null 2>&1 || true
	local deadline=$(($(date +%s) + 30))
	while registered "$SECOND_NODE" || port_open "$SECOND_AMQP_PORT" || port_open "$SECOND_MGMT_PORT"; do
		[ "$(date +%s)" -lt "$deadline" ] || die "second: $SECOND_NODE still running 30s after shutdown"
		sleep 0.5
	done
	log "second: $SECOND_NODE stopped"
}

# ensure_primary_prometheus: the plugin source reads the primary's rabbitmq_prometheus
# (default port 15692); the Debian package does not enable it.
ensure_primary_prometheus() {
	port_open "$PRIMARY_PROM_PORT" && return 0
	require_root "enabling rabbitmq_prometheus on $PRIMARY_NODE"
	log "primary: enabling rabbitmq_prometheus on $PRIMARY_NODE"
	node_env primary rabbitmq-plugins -q -n "$PRIMARY_NODE" enable rabbitmq_prometheus >/dev/null ||
		die "primary: could not enable rabbitmq_prometheus on $PRIMARY_NODE"
	local deadline=$(($(date +%s) + WAIT_SECONDS))
	until port_open "$PRIMARY_PROM_PORT"; do
		[ "$(date +%s)" -lt "$deadline" ] || die "primary: prometheus port $PRIMARY_PROM_PORT not open ${WAIT_SECONDS}s after enabling the plugin"
		sleep 0.5
	done
}

# stopped_on_purpose WHICH: stop-member stopped this member's app (not a boot in progress).
stopped_on_purpose() { is_member "$1" && [ -e "$(member_base "$1")/app-stopped" ]; }

# prepare_member rabbitN: directories and config of a cluster member; returns 0 if
# the config changed.
prepare_member() {
	local which="$1" base changed=1 prom
	base="$(member_base "$which")"
	install -d -o rabbitmq -g rabbitmq -m 0755 "$TESTBED_DIR" "$SECOND_BASE"
	install -d -o rabbitmq -g rabbitmq -m 0755 "$base" "$base/mnesia" "$base/log"
	if [ "$which" = "$CLUSTER_TLS_MEMBER" ]; then
		# HTTPS only: with prometheus.ssl.* alone, 3.10 starts no plain listener
		# (rabbit_prometheus_app:start_configured_listener).
		ensure_second_tls
		prom="prometheus.ssl.ip = 127.0.0.1
prometheus.ssl.port = $(member_prom_port "$which")
prometheus.ssl.cacertfile = $SECOND_TLS_DIR/ca.pem
prometheus.ssl.certfile = $SECOND_TLS_DIR/server.pem
prometheus.ssl.keyfile = $SECOND_TLS_DIR/server-key.pem"
	else
		prom="prometheus.tcp.ip = 127.0.0.1
prometheus.tcp.port = $(member_prom_port "$which")"
	fi
	write_file "$base/rabbitmq.conf" "listeners.tcp.local = 127.0.0.1:$(member_amqp_port "$which")
management.tcp.ip = 127.0.0.1
management.tcp.port = $(member_mgmt_port "$which")
$prom
cluster_name = testbed-cluster
collect_statistics_interval = 1000
default_vhost = /
default_user = $CLUSTER_USER
default_pass = $CLUSTER_PASS
default_user_tags.administrator = true
default_permissions.configure = .*
default_permissions.read = .*
default_permissions.write = .*
loopback_users = none" && changed=0
	write_file "$base/rabbitmq-env.conf" "ERL_EPMD_ADDRESS=127.0.0.1
export ERL_FLAGS=\"-kernel inet_dist_use_interface {127,0,0,1}\"
$RAISE_FD_LIMIT" && changed=0
	write_file "$base/enabled_plugins" "[rabbitmq_management,rabbitmq_prometheus]." && changed=0
	chown -R rabbitmq:rabbitmq "$base"
	return $changed
}

# repair_member_users rabbitN: like repair_second_users. Users are cluster-wide once
# the member has joined, so after joining this only matters for the seed.
repair_member_users() {
	local which="$1" node url
	node="$(node_name "$which")"
	url="$(mgmt_url "$which")"
	local ctl=(node_env "$which" rabbitmqctl -q -n "$node")
	if [ "$(api_code "$which")" != 200 ]; then
		log "cluster: (re)creating user $CLUSTER_USER on $node"
		"${ctl[@]}" add_user "$CLUSTER_USER" "$CLUSTER_PASS" >/dev/null 2>&1 ||
			"${ctl[@]}" change_password "$CLUSTER_USER" "$CLUSTER_PASS" >/dev/null ||
			die "cluster: could not set up user $CLUSTER_USER on $node"
		"${ctl[@]}" set_user_tags "$CLUSTER_USER" administrator >/dev/null
		"${ctl[@]}" set_permissions -p / "$CLUSTER_USER" '.*' '.*' '.*' >/dev/null
	fi
	if [ "$(http_code "$url" guest guest)" = 200 ]; then
		log "cluster: deleting user guest on $node"
		"${ctl[@]}" delete_user guest >/dev/null
	fi
}

# member_up rabbitN CHANGED: the member's VM and app run (standalone or clustered),
# restarted first when its config changed. Runs in a subshell per member.
member_up() {
	local which="$1" changed="$2" node
	node="$(node_name "$which")"
	if [ "$changed" = yes ] && registered "$node"; then
		log "$which: configuration changed, restarting $node"
		node_env "$which" rabbitmqctl -q -n "$node" shutdown >/dev/null 2>&1 || true
	fi
	# A VM that starts boots its app: a stop-member mark from before is stale.
	registered "$node" || rm -f "$(member_base "$which")/app-stopped"
	if ! wait_ready "$which"; then
		repair_member_users "$which"
		wait_ready "$which" || die "$which: $CLUSTER_USER still rejected (HTTP 401) after repair"
	fi
	rm -f "$(member_base "$which")/app-stopped"
	wait_port "$which" "$(member_prom_port "$which")" "prometheus plugin"
}

wait_port() {
	local deadline=$(($(date +%s) + WAIT_SECONDS))
	until port_open "$2"; do
		[ "$(date +%s)" -lt "$deadline" ] || die "$1: $3 port $2 not open within ${WAIT_SECONDS}s; $(log_hint "$1")"
		sleep 0.5
	done
}

# node_states WHICH: "name running prom" lines from WHICH's /api/nodes, empty if it
# does not answer; prom is "prom" when the node's contexts name a prometheus
# listener, else "-". A node's contexts appear only with its first stats report,
# a few seconds after its app started, so "true -" is a member still settling.
node_states() {
	curl -fs --max-time 5 -u "$CLUSTER_USER:$CLUSTER_PASS" "$(mgmt_url "$1")/api/nodes?columns=name,running,contexts" 2>/dev/null |
		jq -r '.[] | "\(.name) \(.running) \(if any(.contexts[]?; (.protocol // "") | test("prometheus")) then "prom" else "-" end)"' 2>/dev/null || true
}

# cluster_ok: every member answers and sees all three members running, each with
# its prometheus listener listed.
cluster_ok() {
	local m states want
	want="$(printf '%s@localhost true prom\n' "${CLUSTER_MEMBERS[@]}")"
	for m in "${CLUSTER_MEMBERS[@]}"; do
		[ "$(api_code "$m")" = 200 ] && port_open "$(member_amqp_port "$m")" && port_open "$(member_prom_port "$m")" || return 1
		states="$(node_states "$m" | sort)"
		[ "$states" = "$want" ] || return 1
	done
}

# join_seed rabbitN: make the member part of the seed's cluster unless it already is
# (its own /api/nodes lists the seed). A member with state from another cluster that
# cannot join is reset, and the seed forgets its old incarnation.
join_seed() {
	local which="$1" node seed out
	node="$(node_name "$which")"
	seed="$(node_name "$CLUSTER_SEED")"
	node_states "$which" | grep -q "^$seed " && return 0
	local ctl=(node_env "$which" rabbitmqctl -q -n "$node")
	log "cluster: $node joining $seed"
	"${ctl[@]}" stop_app >/dev/null || die "cluster: stop_app failed on $node"
	if ! "${ctl[@]}" join_cluster "$seed" >/dev/null 2>&1; then
		log "cluster: $node could not join $seed, resetting it"
		"${ctl[@]}" reset >/dev/null 2>&1 || "${ctl[@]}" force_reset >/dev/null ||
			die "cluster: could not reset $node"
		node_env "$CLUSTER_SEED" rabbitmqctl -q -n "$seed" forget_cluster_node "$node" >/dev/null 2>&1 || true
		out="$("${ctl[@]}" join_cluster "$seed" 2>&1)" ||
			die "cluster: $node cannot join $seed: $out (to start over: $0 stop-cluster; rm -rf $TESTBED_DIR/rabbit[345])"
	fi
	"${ctl[@]}" start_app >/dev/null || die "cluster: start_app failed on $node; $(log_hint "$which")"
	wait_ready "$which" || die "cluster: $node rejects $CLUSTER_USER (HTTP 401) after joining"
}

# wait_seen OBSERVER NODE RUNNING: until OBSERVER's /api/nodes lists NODE with
# running RUNNING (true/false); for true also with its prometheus context.
wait_seen() {
	local deadline=$(($(date +%s) + WAIT_SECONDS)) want="$2 $3 "
	[ "$3" = true ] && want="$2 true prom"
	until node_states "$1" | grep -q "^$want"; do
		[ "$(date +%s)" -lt "$deadline" ] ||
			die "cluster: $1 did not report $2 running=$3 within ${WAIT_SECONDS}s (saw: $(node_states "$1" | tr '\n' ' '))"
		sleep 0.5
	done
}

ensure_cluster() {
	local m changed pids=() failed=0
	if [ "$(id -u)" != 0 ] && cluster_ok; then
		log "cluster: ${CLUSTER_MEMBERS[*]} ready, management $(mgmt_url "$CLUSTER_SEED")"
		return 0
	fi
	require_root "setting up the cluster"
	for m in "${CLUSTER_MEMBERS[@]}"; do
		changed=no
		prepare_member "$m" && changed=yes
		[ "$changed" = no ] && ! stopped_on_purpose "$m" && [ "$(api_code "$m")" = 200 ] &&
			port_open "$(member_amqp_port "$m")" && continue
		# In parallel: boots overlap, and members restarting from an existing cluster
		# wait for each other's tables, so one at a time could stall.
		member_up "$m" "$changed" &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p" || failed=1; done
	[ "$failed" = 0 ] || die "cluster: a member did not start (see above)"
	repair_member_users "$CLUSTER_SEED"
	if cluster_ok; then
		log "cluster: ${CLUSTER_MEMBERS[*]} ready, management $(mgmt_url "$CLUSTER_SEED")"
		return 0
	fi
	# Joins to one seed may run concurrently (each is a schema change on the seed).
	pids=()
	for m in "${CLUSTER_MEMBERS[@]}"; do
		[ "$m" = "$CLUSTER_SEED" ] && continue
		join_seed "$m" &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p" || failed=1; done
	[ "$failed" = 0 ] || die "cluster: a member did not join (see above)"
	for m in "${CLUSTER_MEMBERS[@]}"; do
		wait_port "$m" "$(member_prom_port "$m")" "prometheus plugin"
		wait_seen "$CLUSTER_SEED" "$(node_name "$m")" true
	done
	cluster_ok || die "cluster: members do not all see each other running: $(node_states "$CLUSTER_SEED" | tr '\n' ' ')"
	log "cluster: ${CLUSTER_MEMBERS[*]} ready, management $(mgmt_url "$CLUSTER_SEED")"
}

# member_arg N: validates N and prints rabbitN.
member_arg() {
	case "${1:-}" in 3 | 4 | 5) echo "rabbit$1" ;; *) die "member must be 3, 4 or 5, not '${1:-}'" ;; esac
}

# observer WHICH: another member whose management API answers.
observer() {
	local m
	for m in "${CLUSTER_MEMBERS[@]}"; do
		[ "$m" != "$1" ] && [ "$(api_code "$m")" = 200 ] && echo "$m" && return 0
	done
	die "cluster: no member other than $1 answers; run $0 cluster"
}

stop_member() {
	local which="$1" node other
	node="$(node_name "$which")"
	registered "$node" || die "cluster: $node is not running; run $0 cluster"
	require_root "stopping $node"
	other="$(observer "$which")"
	log "cluster: stopping the rabbit application on $node"
	: >"$(member_base "$which")/app-stopped"
	node_env "$which" rabbitmqctl -q -n "$node" stop_app >/dev/null || die "cluster: stop_app failed on $node"
	wait_seen "$other" "$node" false
	log "cluster: $node stopped (application), $other reports running=false"
}

start_member() {
	local which="$1" node other
	node="$(node_name "$which")"
	registered "$node" || die "cluster: $node is not running; run $0 cluster"
	require_root "starting $node"
	other="$(observer "$which")"
	log "cluster: starting the rabbit application on $node"
	node_env "$which" rabbitmqctl -q -n "$node" start_app >/dev/null 2>&1 || true
	rm -f "$(member_base "$which")/app-stopped"
	wait_ready "$which" || die "cluster: $node rejects $CLUSTER_USER (HTTP 401)"
	wait_port "$which" "$(member_prom_port "$which")" "prometheus plugin"
	wait_seen "$other" "$node" true
	log "cluster: $node started, $other reports running=true"
}

# stop_cluster: shut every member's VM down, all at once (a member shut down alone
# while the others run is fine too; they wait for each other's tables only when
# all restart together, which ensure_cluster does in parallel).
stop_cluster() {
	local m pids=()
	for m in "${CLUSTER_MEMBERS[@]}"; do
		registered "$(node_name "$m")" || continue
		require_root "stopping the cluster"
		log "cluster: stopping $(node_name "$m")"
		node_env "$m" rabbitmqctl -q -n "$(node_name "$m")" shutdown >/dev/null 2>&1 &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p" || true; done
	for m in "${CLUSTER_MEMBERS[@]}"; do
		local deadline=$(($(date +%s) + 30))
		while registered "$(node_name "$m")" || port_open "$(member_amqp_port "$m")"; do
			[ "$(date +%s)" -lt "$deadline" ] || die "cluster: $(node_name "$m") still running 30s after shutdown"
			sleep 0.5
		done
		rm -f "$(member_base "$m")/app-stopped"
	done
	log "cluster: stopped"
}

status_line() {
	local which="$1" node amqp_port mgmt state amqp code extra=""
	node="$(node_name "$which")"
	amqp_port="$(amqp_port "$which")"
	mgmt="$(mgmt_url "$which")"
	if registered "$node"; then state="node up"; else state="node down"; fi
	if port_open "$amqp_port"; then amqp="amqp :$amqp_port open"; else amqp="amqp :$amqp_port closed"; fi
	code="$(api_code "$which")"
	if is_member "$which"; then
		if port_open "$(member_prom_port "$which")"; then extra=", prometheus $(member_prom_url "$which") open"; else extra=", prometheus $(member_prom_url "$which") closed"; fi
		stopped_on_purpose "$which" && extra="$extra, app stopped by stop-member"
	elif [ "$which" = primary ]; then
		if port_open "$PRIMARY_PROM_PORT"; then extra=", prometheus :$PRIMARY_PROM_PORT open"; else extra=", prometheus :$PRIMARY_PROM_PORT closed"; fi
	fi
	printf '%-8s %-18s %-9s %-19s management %s -> HTTP %s%s\n' "$which" "$node" "$state" "$amqp" "$mgmt" "$code" "$extra"
}

ARGS=("$@")
cmd="${1:-primary}"
case "$cmd" in
status)
	command -v curl >/dev/null 2>&1 || die "curl missing (run $0 to install it)"
	status_line primary
	status_line second
	for m in "${CLUSTER_MEMBERS[@]}"; do status_line "$m"; done
	exit 0
	;;
primary | second | cluster | all | stop-second | stop-cluster | demo) ;;
stop-member | start-member) member="$(member_arg "${2:-}")" ;;
-h | --help | help)
	sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
	exit 0
	;;
*) die "unknown command '$cmd' (use primary, second, cluster, all, stop-second, stop-member N, start-member N, stop-cluster, demo or status)" ;;
esac

# World-readable and opened read-only (enough for flock), so non-root callers can
# share a lock file root created.
[ -e "$LOCK_FILE" ] || (umask 022 && : >>"$LOCK_FILE") 2>/dev/null || true
exec 9<"$LOCK_FILE" || die "cannot open lock file $LOCK_FILE"
flock -w 300 9 || die "timed out waiting for lock $LOCK_FILE"

case "$cmd" in
primary)
	ensure_packages
	ensure_node primary
	ensure_primary_prometheus
	;;
second)
	ensure_packages
	ensure_node second
	;;
cluster)
	ensure_packages
	ensure_cluster
	;;
all)
	ensure_packages
	ensure_node primary
	ensure_primary_prometheus
	ensure_node second
	ensure_cluster
	;;
stop-cluster)
	stop_cluster
	;;
stop-member)
	stop_member "$member"
	;;
start-member)
	start_member "$member"
	;;
stop-second)
	stop_second
	;;
demo)
	ensure_packages
	ensure_node primary
	ensure_primary_prometheus
	demo_queues
	;;
esac
