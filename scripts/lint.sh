#!/usr/bin/env bash
# Runs golangci-lint (.golangci.yml) at the pinned version, installing it with
# `go install` into GOPATH/bin when that version is not there yet. The first
# install compiles it (a few minutes on 2 cores); later runs reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."
version=v2.15.0
bin="$(go env GOPATH)/bin/golangci-lint"
if ! "$bin" version --short 2>/dev/null | grep -qx "${version#v}"; then
  echo "lint: installing golangci-lint ${version}"
  GOBIN="$(dirname "$bin")" go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@${version}"
fi
exec "$bin" run "$@" ./...
