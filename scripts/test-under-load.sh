#!/usr/bin/env bash
# make test-under-load: .ci/run on a fresh clone of the committed HEAD while
# the machine is busy the way contributors' laptops and shared CI runners
# are: another RabbitMQ node (the test second node, rabbit2) declares and
# deletes tens of thousands of queues in a loop (internal/tools/churn), and
# two busy loops take the cores. The load is bounded in time (LOAD_MINUTES,
# default 40) and stopped when .ci/run ends, whatever happens; the times of
# the run and of the load's cycles are printed at the end.
#
# It takes the machine for the length of a full run (about 20 minutes on 2
# cores): do not start it beside other heavy work.
#
# Environment: LOAD_MINUTES (default 40), CHURN_QUEUES (queues per cycle,
# default 20000), BUSY_LOOPS (default 2), KEEP=1 keeps the temporary
# directory (clone and logs), RUN (default ./.ci/run: the command run in the
# clone, e.g. RUN='go test ./internal/testbed/' to try the load itself).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"
GO="${GO:-go}"
load_minutes="${LOAD_MINUTES:-40}"
churn_queues="${CHURN_QUEUES:-20000}"
busy_loops="${BUSY_LOOPS:-2}"
run="${RUN:-./.ci/run}"

work="$(mktemp -d "${TMPDIR:-/tmp}/rqe-under-load.XXXXXX")"
pids=()
stop_load() {
  local p
  for p in "${pids[@]}"; do
    kill "${p}" 2>/dev/null || true
  done
  # churn deletes its vhost on SIGTERM; give it the time that takes.
  for p in "${pids[@]}"; do
    wait "${p}" 2>/dev/null || true
  done
  pids=()
}
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  stop_load
  if [[ "${KEEP:-}" == 1 ]]; then
    echo "test-under-load: kept ${work}" >&2
  else
    rm -rf "${work}"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo ">> fresh clone of $(git rev-parse --short HEAD) into ${work}/clone" >&2
git clone -q "${repo_root}" "${work}/clone"

# The brokers must be up before the load starts (.ci/run would start them
# itself, but after the load began).
./scripts/testbed.sh all
"${GO}" build -o "${work}/churn" ./internal/tools/churn

echo ">> load: churn of ${churn_queues} queues on rabbit2, ${busy_loops} busy loops, at most ${load_minutes} min" >&2
"${work}/churn" -queues "${churn_queues}" -duration "${load_minutes}m" >"${work}/churn.log" 2>&1 &
pids+=("$!")
for _ in $(seq "${busy_loops}"); do
  (
    end=$((SECONDS + load_minutes * 60))
    while ((SECONDS < end)); do :; done
  ) &
  pids+=("$!")
done

start=$(date +%s)
set +e
(cd "${work}/clone" && bash -c "${run}") 2>&1 | tee "${work}/ci.log"
rc=${PIPESTATUS[0]}
set -e
elapsed=$(($(date +%s) - start))
stop_load

echo
echo "test-under-load: ${run} exited ${rc} after $((elapsed / 60)) min $((elapsed % 60)) s under load (load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
echo "test-under-load: package times:"
grep -E '^(ok|FAIL|---) ' "${work}/ci.log" | grep -E '^(ok|FAIL)' || true
echo "test-under-load: churn on rabbit2:"
tail -n 5 "${work}/churn.log"
exit "${rc}"
