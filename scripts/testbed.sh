#!/usr/bin/env bash
# Idempotent RabbitMQ test bed for the exporter's integration tests.
#
#   scripts/testbed.sh [primary]   primary node rabbit@localhost (AMQP 5672, management 15672, guest/guest)
#   scripts/testbed.sh second      second node rabbit2@localhost (AMQP 5673, management 15673, https 15674, exporter2)
#   scripts/testbed.sh all         both
#   scripts/testbed.sh stop-second stop the second node
#   scripts/testbed.sh demo        primary plus a demo vhost with queues holding messages (for make run)
#   scripts/testbed.sh status      report what is up (read-only, no lock)
#
# Safe to run many times and concurrently: every mutating command holds one flock.
set -euo pipefail

# Debian keeps the RabbitMQ CLIs and epmd in sbin; test runners often lack it in PATH.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

WAIT_SECONDS="${TESTBED_WAIT_SECONDS:-90}"
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

# node_env primary|second CMD...: run a RabbitMQ CLI for that node. fd 9 (the lock) is
# closed because a started node, or an epmd daemon spawned by any CLI call, would
# otherwise inherit it and hold the lock for its whole life.
node_env() {
	local which="$1"
	shift
	if [ "$which" = second ]; then second_env "$@" 9>&-; else clean_env "$@" 9>&-; fi
}

node_name() { if [ "$1" = second ]; then echo "$SECOND_NODE"; else echo "$PRIMARY_NODE"; fi; }

# http_code URL USER PASS: status of GET URL/api/overview, 000 when nothing answers.
http_code() {
	curl -s -o /dev/null -w '%{http_code}' --max-time 5 -u "$2:$3" "$1/api/overview" 2>/dev/null || true
}

api_code() {
	if [ "$1" = second ]; then
		http_code "$SECOND_MGMT" "$SECOND_USER" "$SECOND_PASS"
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
export ERL_FLAGS=\"-kernel inet_dist_use_interface {127,0,0,1}\"" && changed=0
	if [ ! -f "$SECOND_BASE/enabled_plugins" ]; then
		write_file "$SECOND_BASE/enabled_plugins" "[rabbitmq_management]." || true
	fi
	chown -R rabbitmq:rabbitmq "$SECOND_BASE"
	return $changed
}

log_hint() {
	if [ "$1" = second ]; then
		echo "see $SECOND_BASE/log/$SECOND_NODE.log"
	else
		echo "see /var/log/rabbitmq/$PRIMARY_NODE.log"
	fi
}

start_node() {
	local which="$1" node
	node="$(node_name "$which")"
	log "$which: starting $node"
	node_env "$which" rabbitmq-server -detached >/dev/null 2>&1 ||
		die "$which: rabbitmq-server -detached failed for $node; $(log_hint "$which")"
}

app_running() {
	node_env "$1" rabbitmq-diagnostics -q -n "$(node_name "$1")" check_running >/dev/null 2>&1
}

amqp_port() { if [ "$1" = second ]; then echo "$SECOND_AMQP_PORT"; else echo "$PRIMARY_AMQP_PORT"; fi; }

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
	local which="$1" node code=000 now t0 started=no plugin_checked=no kicked=no state
	node="$(node_name "$which")"
	t0=$(date +%s)
	while :; do
		now=$(date +%s)
		if [ $((now - t0)) -ge "$WAIT_SECONDS" ]; then
			if registered "$node"; then state="is up"; else state="never registered with epmd"; fi
			die "$which: $node not ready within ${WAIT_SECONDS}s (node $state, management API last answered HTTP $code); $(log_hint "$which")"
		fi
		code="$(api_code "$which")"
		if [ "$code" = 200 ] && port_open "$(amqp_port "$which")"; then
			return 0
		fi
		[ "$code" = 401 ] && return 1
		if ! registered "$node"; then
			# Started once only: on a loaded machine the VM may take 20 s or more to
			# register with epmd, and a second start would race the first.
			if [ "$started" = no ]; then
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
			elif [ "$kicked" = no ] && [ $((now - t0)) -ge 30 ]; then
				log "$which: rabbit application not running on $node, starting it"
				node_env "$which" rabbitmqctl -q -n "$node" start_app >/dev/null 2>&1 || true
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

mgmt_url() { if [ "$1" = second ]; then echo "$SECOND_MGMT"; else echo "$PRIMARY_MGMT"; fi; }

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

status_line() {
	local which="$1" node amqp_port mgmt state amqp code
	node="$(node_name "$which")"
	if [ "$which" = second ]; then amqp_port=$SECOND_AMQP_PORT mgmt=$SECOND_MGMT; else amqp_port=$PRIMARY_AMQP_PORT mgmt=$PRIMARY_MGMT; fi
	if registered "$node"; then state="node up"; else state="node down"; fi
	if port_open "$amqp_port"; then amqp="amqp :$amqp_port open"; else amqp="amqp :$amqp_port closed"; fi
	code="$(api_code "$which")"
	printf '%-8s %-18s %-9s %-19s management %s -> HTTP %s\n' "$which" "$node" "$state" "$amqp" "$mgmt" "$code"
}

ARGS=("$@")
cmd="${1:-primary}"
case "$cmd" in
status)
	command -v curl >/dev/null 2>&1 || die "curl missing (run $0 to install it)"
	status_line primary
	status_line second
	exit 0
	;;
primary | second | all | stop-second | demo) ;;
-h | --help | help)
	sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
	exit 0
	;;
*) die "unknown command '$cmd' (use primary, second, all, stop-second, demo or status)" ;;
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
	;;
second)
	ensure_packages
	ensure_node second
	;;
all)
	ensure_packages
	ensure_node primary
	ensure_node second
	;;
stop-second)
	stop_second
	;;
demo)
	ensure_packages
	ensure_node primary
	demo_queues
	;;
esac
