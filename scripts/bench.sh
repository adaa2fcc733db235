#!/usr/bin/env bash
# Issue 4 benchmark: whole-process scrapes of the exporter against a fake
# management API at 1k/10k/100k queues (plain, and gzip as Prometheus asks by
# default: issue 11), against a fake rabbitmq_prometheus endpoint (issue 9) and
# against the local RabbitMQ with both sources and the broker's CPU per scrape,
# then the Go micro-benchmarks. Prints the tables and the target verdicts.
#
#   ./scripts/bench.sh          both parts (about 3-4 minutes)
#   ./scripts/bench.sh e2e      whole-process table only
#   ./scripts/bench.sh go       go test -bench only
#
# Environment (optional):
#   GO          go command (default go)
#   SIZES       queue counts for the fake broker (default "1000 10000 100000")
#   RUNS        measured rounds per size at least (default 9; medians are reported)
#   MIN_TIME    rounds continue until this long was spent per size (default 2s, at most 200 rounds)
#   REAL        auto (default: if 127.0.0.1:15672 answers), yes, no
#   REAL_URL    management API of the real broker (default http://127.0.0.1:15672)
#   REAL_USER / REAL_PASSWORD   (default guest / guest)
#   BENCHTIME   go test -benchtime (default 1s)
#   PLUGIN_STYLES / PLUGIN_SIZES   fake plugin rows (default "raw escaped" / "10000 100000")
#   PLUGIN_FIELDS      space-separated --queue.fields lists for more fake plugin rows (default none), e.g.
#                      "messages,messages_ready,messages_unacknowledged,consumers,head_message_timestamp"
#   REAL_PLUGIN_URL    the real broker's rabbitmq_prometheus (default http://127.0.0.1:15692)
#   REAL_PLUGIN_ALLOW  --probe.allowed-targets for the plugin-source exporter (default the local plugin port)
#   EXPORTER    an exporter binary to measure instead of building this tree (A/B comparisons)
#   KEEP        directory to keep results, answers and logs in (default: removed)
#
# Only loopback addresses are used; every process started here is stopped on exit.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"

GO="${GO:-go}"
SIZES="${SIZES:-1000 10000 100000}"
RUNS="${RUNS:-9}"
MIN_TIME="${MIN_TIME:-2s}"
REAL="${REAL:-auto}"
REAL_URL="${REAL_URL:-http://127.0.0.1:15672}"
REAL_USER="${REAL_USER:-guest}"
REAL_PASSWORD="${REAL_PASSWORD:-guest}"
BENCHTIME="${BENCHTIME:-1s}"
PLUGIN_STYLES="${PLUGIN_STYLES:-raw escaped}"
PLUGIN_SIZES="${PLUGIN_SIZES:-10000 100000}"
PLUGIN_FIELDS="${PLUGIN_FIELDS:-}"
REAL_PLUGIN_URL="${REAL_PLUGIN_URL:-http://127.0.0.1:15692}"
REAL_PLUGIN_ALLOW="${REAL_PLUGIN_ALLOW:-(localhost|127\.0\.0\.1):15692}"
part="${1:-all}"
case "${part}" in all | e2e | go) ;; *)
  echo "usage: $0 [all|e2e|go]" >&2
  exit 2
  ;;
esac

work="$(mktemp -d "${TMPDIR:-/tmp}/rqe-bench.XXXXXX")"
pids=()

stop_pid() {
  local pid="$1"
  kill "${pid}" 2>/dev/null || return 0
  # Give it a moment to finish in-flight requests, then insist.
  for _ in $(seq 50); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.1; done
  kill -9 "${pid}" 2>/dev/null || true
  wait "${pid}" 2>/dev/null || true
}

cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do stop_pid "${pid}"; done
  if [[ -n "${KEEP:-}" ]]; then
    mkdir -p "${KEEP}" && cp -r "${work}/." "${KEEP}/" && echo "results kept in ${KEEP}" >&2
  fi
  rm -rf "${work}"
  exit "${status}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# bounded runs a command with a time limit, so no step can hang the benchmark.
# It runs in the background and is waited for, so that an interrupt reaches the
# traps at once and cleanup stops it too (timeout passes the signal on).
bounded() {
  local limit="$1"
  shift
  timeout --kill-after=5 "${limit}" "$@" &
  local pid=$!
  pids+=("${pid}")
  wait "${pid}"
}

# start_exporter LOG PORT USER PASSWORD ARGS...: starts the built exporter on
# 127.0.0.1:PORT with the credentials in its environment (as an operator would)
# and sets started_pid; cleanup stops it.
start_exporter() {
  local log="$1" port="$2" u="$3" p="$4"
  shift 4
  RABBITMQ_USER="${u}" RABBITMQ_PASSWORD="${p}" "${work}/bin/rabbitmq_queue_exporter" \
    --no-metrics.queues --web.listen-address="127.0.0.1:${port}" --log.level=warn "$@" >"${work}/${log}" 2>&1 &
  started_pid=$!
  pids+=("${started_pid}")
}

e2e() {
  echo "== building (go build -o ${work}/bin)" >&2
  mkdir -p "${work}/bin" "${work}/answers"
  if [[ -n "${EXPORTER:-}" ]]; then
    cp "${EXPORTER}" "${work}/bin/rabbitmq_queue_exporter"
  else
    "${GO}" build -o "${work}/bin/rabbitmq_queue_exporter" ./cmd/rabbitmq_queue_exporter
  fi
  "${GO}" build -o "${work}/bin/fakebroker" ./internal/tools/fakebroker
  "${GO}" build -o "${work}/bin/benchscrape" ./internal/tools/benchscrape
  local bin="${work}/bin" results="${work}/results.jsonl"
  local user="bench" password
  password="pw-$RANDOM$RANDOM"

  for n in ${SIZES}; do
    echo "== ${n} queues: fresh fake broker and exporter" >&2
    local bport eport
    bport="$("${bin}/benchscrape" freeport)"
    "${bin}/fakebroker" -listen "127.0.0.1:${bport}" -queues "${n}" -vhosts 10 -user "${user}" -password "${password}" \
      >"${work}/fakebroker-${n}.log" 2>&1 &
    local bpid=$!
    pids+=("${bpid}")
    eport="$("${bin}/benchscrape" freeport)"
    start_exporter "exporter-${n}.log" "${eport}" "${user}" "${password}" --rabbitmq.host="127.0.0.1:${bport}"
    local epid="${started_pid}"
    bounded 40 "${bin}/benchscrape" wait "http://127.0.0.1:${bport}/stats" "http://127.0.0.1:${eport}/-/healthy"
    bounded 120 "${bin}/benchscrape" fake -exporter "http://127.0.0.1:${eport}" -broker "http://127.0.0.1:${bport}" \
      -user "${user}" -password "${password}" -pid "${epid}" -queues "${n}" -runs "${RUNS}" -min-time "${MIN_TIME}" \
      -save "${work}/answers" -out "${results}"
    stop_pid "${epid}"
    stop_pid "${bpid}"
  done

  # Issue 9: the plugin source against a fake rabbitmq_prometheus endpoint, in
  # 3.10's raw labels and 4.x's escaped ones (endpoint configured, so no discovery).
  for fields in "" ${PLUGIN_FIELDS}; do
  for style in ${PLUGIN_STYLES}; do
    for n in ${PLUGIN_SIZES}; do
      echo "== plugin source, ${style} labels, ${n} queues${fields:+, fields ${fields}}: fresh fake plugin and exporter" >&2
      local bport pport eport
      bport="$("${bin}/benchscrape" freeport)"
      pport="$("${bin}/benchscrape" freeport)"
      "${bin}/fakebroker" -listen "127.0.0.1:${bport}" -plugin-listen "127.0.0.1:${pport}" -plugin-style "${style}" \
        -queues "${n}" -vhosts 10 -stream-every 0 -user "${user}" -password "${password}" ${fields:+-fields "${fields}"} \
        >"${work}/fakeplugin-${style}-${n}.log" 2>&1 &
      local bpid=$!
      pids+=("${bpid}")
      eport="$("${bin}/benchscrape" freeport)"
      start_exporter "exporter-plugin-${style}-${n}.log" "${eport}" "${user}" "${password}" \
        --rabbitmq.host="127.0.0.1:${bport}" --rabbitmq.source=prometheus --rabbitmq.plugin-endpoints="http://127.0.0.1:${pport}" \
        ${fields:+--queue.fields="${fields}"}
      local epid="${started_pid}"
      bounded 40 "${bin}/benchscrape" wait "http://127.0.0.1:${bport}/stats" "http://127.0.0.1:${eport}/-/healthy"
      bounded 120 "${bin}/benchscrape" plugin-fake -exporter "http://127.0.0.1:${eport}" -plugin "http://127.0.0.1:${pport}" \
        -style "${style}" -pid "${epid}" -queues "${n}" -runs "${RUNS}" -min-time "${MIN_TIME}" -out "${results}" \
        ${fields:+-fields "${fields}"}
      stop_pid "${epid}"
      stop_pid "${bpid}"
    done
  done
  done

  local largest
  largest="$(echo "${SIZES}" | tr ' ' '\n' | sort -n | tail -1)"
  promtool_check "${work}/answers/scrape-${largest}" "${largest}"

  if real_broker_wanted; then
    echo "== real broker at ${REAL_URL}" >&2
    ensure_bench_vhost
    local eport
    eport="$("${bin}/benchscrape" freeport)"
    start_exporter exporter-real.log "${eport}" "${REAL_USER}" "${REAL_PASSWORD}" \
      --rabbitmq.host="${REAL_URL}" --probe.default-timeout=60s
    local epid="${started_pid}"
    bounded 40 "${bin}/benchscrape" wait "http://127.0.0.1:${eport}/-/healthy"
    # Issue 9: a second exporter reading the same broker through its
    # rabbitmq_prometheus plugin, and the broker's CPU per call of each.
    local plugin_args=() pport_real pid_real
    if [[ -n "$(real_plugin_url)" ]]; then
      pport_real="$("${bin}/benchscrape" freeport)"
      start_exporter exporter-real-plugin.log "${pport_real}" "${REAL_USER}" "${REAL_PASSWORD}" \
        --rabbitmq.host="${REAL_URL}" --rabbitmq.source=prometheus --probe.allowed-targets="${REAL_PLUGIN_ALLOW}" \
        --probe.default-timeout=60s
      pid_real="${started_pid}"
      bounded 40 "${bin}/benchscrape" wait "http://127.0.0.1:${pport_real}/-/healthy"
      plugin_args=(-plugin-exporter "http://127.0.0.1:${pport_real}" -plugin "${REAL_PLUGIN_URL}")
    fi
    local broker_pid
    broker_pid="$(real_broker_pid)"
    if [[ -n "${broker_pid}" ]]; then
      plugin_args+=(-broker-pid "${broker_pid}")
    fi
    bounded 300 "${bin}/benchscrape" real -exporter "http://127.0.0.1:${eport}" -broker "${REAL_URL}" \
      -user "${REAL_USER}" -password "${REAL_PASSWORD}" -pid "${epid}" -runs 7 -min-runs 3 -budget 120s \
      "${plugin_args[@]}" -out "${results}"
    stop_pid "${epid}"
    [[ -z "${pid_real:-}" ]] || stop_pid "${pid_real}"
  fi

  echo
  "${bin}/benchscrape" report "${results}"
  if [[ -f "${work}/promtool.txt" ]]; then
    cat "${work}/promtool.txt"
  fi
}

# promtool_check validates the largest answer in both negotiated formats.
# promtool's linter reads the text format only, so the OpenMetrics answer is
# checked with its final "# EOF" line removed (every other line is valid text
# format for these gauges); benchscrape already checked that line.
promtool_check() {
  local base="$1" n="$2" out="${work}/promtool.txt"
  if ! command -v promtool >/dev/null; then
    echo "  promtool not installed (apt-get install -y prometheus): output validity not checked" >"${out}"
    return
  fi
  {
    for f in prom openmetrics; do
      local problems status=0
      if [[ "${f}" == openmetrics ]]; then
        problems="$(sed '$d' "${base}.${f}" | promtool check metrics 2>&1)" || status=$?
      else
        problems="$(promtool check metrics <"${base}.${f}" 2>&1)" || status=$?
      fi
      if [[ ${status} -eq 0 && -z "${problems}" ]]; then
        echo "  met: promtool check metrics clean at ${n} queues (${f}, $(wc -c <"${base}.${f}") bytes)"
      else
        echo "  MISSED: promtool check metrics at ${n} queues (${f}) exit ${status}:"
        echo "${problems}" | head -20 | sed 's/^/    /'
      fi
    done
  } >"${out}"
}

real_broker_wanted() {
  case "${REAL}" in
  no) return 1 ;;
  yes) return 0 ;;
  esac
  if curl -fsS -m 5 -o /dev/null -u "${REAL_USER}:${REAL_PASSWORD}" "${REAL_URL}/api/overview" 2>/dev/null; then
    return 0
  fi
  echo "== no broker at ${REAL_URL}: skipping the real-broker comparison (REAL=yes to insist)" >&2
  return 1
}

# real_plugin_url prints REAL_PLUGIN_URL when the broker's rabbitmq_prometheus answers.
# A 10k-queue broker that just populated can take a minute to render it.
real_plugin_url() {
  if curl -fsS -m 120 -o /dev/null "${REAL_PLUGIN_URL}/metrics/detailed?family=queue_coarse_metrics" 2>/dev/null; then
    echo "${REAL_PLUGIN_URL}"
  else
    echo "== no rabbitmq_prometheus at ${REAL_PLUGIN_URL}: no plugin rows (scripts/testbed.sh enables it)" >&2
  fi
}

# real_broker_pid prints the local broker's OS process id, for its CPU per call;
# nothing when rabbitmqctl cannot ask it (not root, or a remote broker).
real_broker_pid() {
  local p
  p="$(timeout 30 rabbitmqctl -q eval 'os:getpid().' 2>/dev/null | tr -d '"' || true)"
  if [[ "${p}" =~ ^[0-9]+$ && -r "/proc/${p}/stat" ]]; then
    echo "${p}"
  else
    echo "== broker process not found (rabbitmqctl eval as root): no broker-CPU table" >&2
  fi
}

# ensure_bench_vhost re-creates the 10k-queue vhost only when it is missing or short.
ensure_bench_vhost() {
  local count
  count="$(curl -fsS -m 60 -u "${REAL_USER}:${REAL_PASSWORD}" \
    "${REAL_URL}/api/queues/bench?columns=name&disable_stats=true" 2>/dev/null | grep -o '"name"' | wc -l || true)"
  if [[ "${count:-0}" -lt 10000 ]]; then
    echo "   vhost bench has ${count:-0} queues; populating 10000 (idempotent)" >&2
    bounded 300 "${GO}" run ./internal/tools/populate -queues 10000 >&2
  fi
}

go_benchmarks() {
  echo "== go test -bench (benchtime ${BENCHTIME}, -benchmem)" >&2
  local pkgs=(
    "./queueset:BenchmarkQueueSet|BenchmarkQueueSetWriteTo|BenchmarkClientGolang"
    "./web:BenchmarkProbe|BenchmarkGzipAnswer"
    "./source/management:BenchmarkDecodeQueues/lean/.*/scanner"
    "./source/plugin:BenchmarkParse/.*/(queueset|nop)$"
    "./source/plugin:BenchmarkParseFields"
  )
  for spec in "${pkgs[@]}"; do
    local pkg="${spec%%:*}" re="${spec#*:}"
    bounded 240 "${GO}" test -run '^$' -bench "${re}" -benchmem -benchtime "${BENCHTIME}" -count 1 "${pkg}" |
      grep -E '^(Benchmark|ok|FAIL|---)' || true
  done
}

case "${part}" in
e2e) e2e ;;
go) go_benchmarks ;;
all)
  e2e
  echo
  go_benchmarks
  ;;
esac
