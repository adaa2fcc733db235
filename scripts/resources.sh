#!/usr/bin/env bash
# Issue 10 resource figures at full size: runs the resource tests of
# cmd/rabbitmq_queue_exporter/resources_test.go against the built binary with
# RQE_FULL_SIZE=1 (512 MiB listing limits and a 530 MB body, the wait for the
# 30 s idle-connection timeout) and prints what they measured. About 2 minutes;
# the exporter under test peaks at about 1.6 GB of RSS.
#
#   ./scripts/resources.sh              every resource test
#   ./scripts/resources.sh TestReload   only tests matching a -run pattern
#
# Only loopback addresses are used; the tests stop every process they start.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
GO="${GO:-go}"
tests="${1:-^(TestReloadClosesOldConnections|TestManyBrokersBoundedConnections|TestConcurrentLargeProbesBoundedMemory|TestNeverReadingClientsCutOff|TestFailingProbeMemoryBoundedByLimit)$}"
# The exporter's own log lines (time=…) only matter when a test fails; go
# test's exit status is the script's.
RQE_FULL_SIZE=1 "$GO" test -count=1 -v -timeout 15m -run "${tests}" ./cmd/rabbitmq_queue_exporter/ 2>&1 |
	grep -v -E '^[[:space:]]+time='
