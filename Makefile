# Two commands matter: `make run` and `make test` (see README.md).
GO        ?= go
BIN       := .build/$(shell $(GO) env GOOS)-$(shell $(GO) env GOARCH)/rabbitmq_queue_exporter
FUZZTIME  ?= 60s

.PHONY: all build image run test test-race test-brokers test-faults test-unit test-under-load lint bench fuzz soak resources testbed certs clean check-dockerfile bench-go

all: lint build test

build:
	GOOS=$(shell $(GO) env GOOS) GOARCH=$(shell $(GO) env GOARCH) ./scripts/build.sh

# Container image rabbitmq-queue-exporter:<VERSION> and :latest from Dockerfile,
# with docker, else podman (scripts/image.sh says how it picks and configures them).
image:
	./scripts/image.sh

check-dockerfile:
	./scripts/check-dockerfile.sh

# Runs the exporter against RABBITMQ_HOST (default localhost). When that is the
# local broker, testbed.sh first makes sure it runs with the management plugin.
run: build
	@case "$${RABBITMQ_HOST:-localhost}" in localhost|127.0.0.1|localhost:*|127.0.0.1:*|http://localhost*|http://127.0.0.1*) ./scripts/testbed.sh demo ;; esac
	$(BIN) $(ARGS)

# Every test: the test tools (scripts/test-deps.sh: promtool, chromium,
# shellcheck, podman, ...), lint, then the hermetic lane under the race
# detector (test-race) beside the broker lane (test-brokers: testbed.sh
# installs/starts/prepares the brokers, idempotently, then every test but the
# fault tests), since the one mostly computes while the other mostly waits
# for brokers; each lane's output is printed when it ends. Then the fault
# tests (test-faults: TestFault*, which stop, restart or freeze shared
# brokers), one package at a time. The fault pass also starts
# scripts/netns-cluster.sh's cluster on demand (as root; a running one is
# reused) and leaves it up.
test:
	./scripts/test-deps.sh
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory -j2 --output-sync=target test-race test-brokers
	$(MAKE) --no-print-directory test-faults

test-race:
	$(GO) test -count=1 -race -short ./...

test-brokers:
	./scripts/testbed.sh all
	RQE_TEST_BROKERS=1 $(GO) test -count=1 -timeout 20m -skip '^TestFault' ./...

test-faults:
	./scripts/testbed.sh all
	RQE_TEST_BROKERS=1 RQE_TEST_FAULTS=1 $(GO) test -count=1 -timeout 20m -p 1 -parallel 8 -run '^TestFault' ./...

# The hermetic lane: no broker, nothing installed or started.
test-unit:
	$(GO) test -count=1 ./...

# .ci/run on a fresh clone while rabbit2 churns queues and two busy loops
# run (scripts/test-under-load.sh); takes the machine for about 20 minutes.
test-under-load:
	./scripts/test-under-load.sh

# gofmt, go vet and golangci-lint (.golangci.yml) at the version scripts/lint.sh
# pins (the first run installs that version into GOPATH/bin); shellcheck on the
# scripts where it is installed.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	./scripts/lint.sh
	@if command -v shellcheck >/dev/null; then shellcheck scripts/*.sh .ci/run; else echo "lint: shellcheck not installed (scripts/test-deps.sh installs it): shell scripts not checked"; fi

bench:
	./scripts/bench.sh

# Go benchmarks only (-benchmem), without the whole-process table.
bench-go:
	./scripts/bench.sh go

fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzDecodeQueues -fuzztime=$(FUZZTIME) ./source/management/
	$(GO) test -run='^$$' -fuzz=FuzzParseTarget -fuzztime=$(FUZZTIME) ./internal/brokerhttp/
	$(GO) test -run='^$$' -fuzz=FuzzEscaping -fuzztime=$(FUZZTIME) ./queueset/
	$(GO) test -run='^$$' -fuzz=FuzzProbeQuery -fuzztime=$(FUZZTIME) ./web/
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=$(FUZZTIME) ./source/plugin/
	$(GO) test -run='^$$' -fuzz=FuzzNames -fuzztime=$(FUZZTIME) ./source/plugin/

certs:
	./scripts/gen-certs.sh

# Load/soak run against loopback fakes; stops by itself (default 60 s at 100 probes/s).
soak:
	./scripts/soak.sh $(SOAK_ARGS)

# Issue 10 resource figures at full size (fds, goroutines, peak RSS); CI runs smaller versions.
resources:
	./scripts/resources.sh

testbed:
	./scripts/testbed.sh all

clean:
	rm -rf .build
