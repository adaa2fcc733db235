#!/usr/bin/env bash
# Soak test: build the exporter, start it on a free loopback port, drive it
# with internal/tools/soak (fake brokers in-process, 60 s at 100/s unless
# told otherwise) and stop it again, whatever happens.
#
#   scripts/soak.sh [soak flags]      e.g. scripts/soak.sh -duration 10m -rate 200
#
# Exit status is the soak tool's: 0 pass, 1 fail, 2 set-up error.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
GO="${GO:-go}"

work="$(mktemp -d)"
pid=""
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

BUILD_DIR="$work/build" GOOS="$("$GO" env GOOS)" GOARCH="$("$GO" env GOARCH)" ./scripts/build.sh
exporter="$(echo "$work"/build/*/rabbitmq_queue_exporter)"
"$GO" build -o "$work/soak" ./internal/tools/soak

# A free port from the kernel; the tiny race until the exporter binds it is harmless here.
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
	echo 19419)"
addr="127.0.0.1:$port"
# RABBITMQ_HOST points nowhere: only /probe is soaked.
RABBITMQ_HOST=127.0.0.1:1 "$exporter" --web.listen-address="$addr" --no-metrics.queues \
	--probe.allowed-targets='127\.0\.0\.1:.*' --log.level=warn >"$work/exporter.log" 2>&1 &
pid=$!
echo ">> exporter pid $pid on $addr (log: $work/exporter.log, removed at exit)" >&2

status=0
"$work/soak" -exporter "http://$addr" "$@" || status=$?
if ! kill -0 "$pid" 2>/dev/null; then
	echo ">> the exporter died during the soak:" >&2
	cat "$work/exporter.log" >&2
	status=1
elif grep -qi panic "$work/exporter.log"; then
	echo ">> the exporter log mentions a panic:" >&2
	cat "$work/exporter.log" >&2
	status=1
fi
exit "$status"
