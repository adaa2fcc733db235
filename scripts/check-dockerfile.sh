#!/usr/bin/env bash
# Checks what building and running the image does not prove.
#
#   scripts/check-dockerfile.sh            # all checks
#   scripts/check-dockerfile.sh --no-build # without running the builder stage
#
# `make image` builds Dockerfile for real and the container test
# (cmd/rabbitmq_queue_exporter/container_test.go) runs the result, which proves
# Dockerfile itself: its instructions, the binary's path, .dockerignore keeping
# .build/linux-amd64/, a static binary with version information, USER nobody,
# the entrypoint. What remains here concerns the builds no test runs, because
# this machine cannot pull their base images or has no such platform:
#   1. Dockerfile.source (needs the golang image): its final stage is
#      Dockerfile's apart from where the binary comes from; its golang tag,
#      go.mod and .promu.yml name the same Go version; its builder stage's RUN
#      commands, run here in a copy of the build context as .dockerignore
#      filters it (approximately: GNU tar excludes) and without .git, build
#      .build/linux-amd64/ (so .dockerignore keeps the sources they need).
#   2. The arm64 build (Dockerfile with --build-arg ARCH=arm64):
#      .dockerignore keeps .build/linux-arm64/.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"

do_build=1
for arg in "$@"; do
  case "${arg}" in
    --no-build) do_build=0 ;;
    -h | --help)
      sed -n '2,5p' "$0"
      exit 0
      ;;
    *)
      echo "unknown argument: ${arg}" >&2
      exit 2
      ;;
  esac
done

binary="rabbitmq_queue_exporter"
failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}
ok() { echo "ok:   $*"; }

# A Dockerfile's instructions one per line: continuations joined, comments and
# blank lines dropped, runs of blanks squeezed.
instructions() {
  awk '
    /^[[:space:]]*#/ { next }
    {
      line = $0
      sub(/[[:space:]]+$/, "", line)
      if (line ~ /\\$/) { sub(/\\$/, "", line); buf = buf line " "; next }
      buf = buf line
      gsub(/[[:space:]]+/, " ", buf)
      sub(/^ /, "", buf); sub(/ $/, "", buf)
      if (buf != "") print buf
      buf = ""
    }
  ' "$1"
}

# The instructions of the last stage, from its FROM on.
last_stage() {
  instructions "$1" | awk '/^FROM /{ n = 0 } { s[n++] = $0 } END { for (i = 0; i < n; i++) print s[i] }'
}

# The instructions of the stage named builder.
builder_stage() {
  instructions "$1" | awk '/^FROM / { in_b = ($NF == "builder") } in_b'
}

src=Dockerfile.source
workdir="$(builder_stage "${src}" | sed -n 's/^WORKDIR //p' | head -n1)"

echo ">> ${src}: final stage"
if diff -u <(last_stage Dockerfile) \
  <(last_stage "${src}" | sed "s#^COPY --from=builder ${workdir}/#COPY #") >&2; then
  ok "${src}'s final stage is Dockerfile's (binary from the builder's ${workdir}/)"
else
  fail "${src}'s final stage differs from Dockerfile's (diff above)"
fi

echo ">> Go versions"
golang_tag="$(builder_stage "${src}" | sed -n 's/^FROM .*golang:\([0-9][0-9.]*\).*/\1/p')"
mod_go="$(awk '$1 == "go" { print $2; exit }' go.mod)"
mod_minor="$(cut -d. -f1,2 <<<"${mod_go}")"
promu_go="$(awk '/^go:/ { in_go = 1; next } in_go && /^[^ ]/ { in_go = 0 } in_go && $1 == "version:" { print $2; exit }' .promu.yml)"
if [[ -n "${golang_tag}" && "${golang_tag}" == "${mod_minor}" ]]; then
  ok "${src}: golang:${golang_tag} matches go.mod (go ${mod_go})"
else
  fail "${src}: builder image golang:${golang_tag:-?} does not match go.mod (go ${mod_go:-?})"
fi
if [[ "${promu_go}" == "${mod_minor}" ]]; then
  ok ".promu.yml: go ${promu_go} matches go.mod"
else
  fail ".promu.yml: go ${promu_go:-?} does not match go.mod (go ${mod_go:-?})"
fi

echo ">> .dockerignore"
patterns="$(grep -v '^[[:space:]]*\(#\|$\)' .dockerignore)"
# Later lines win: the re-inclusion must follow the last .build exclusion.
last_exclude="$({ grep -nxE '/?\.build(/|/\*\*?)?' <<<"${patterns}" || true; } | tail -n1 | cut -d: -f1)"
keep="$({ grep -nxE '!/?\.build/linux-arm64/?' <<<"${patterns}" || true; } | tail -n1 | cut -d: -f1)"
if [[ -n "${keep}" && "${keep}" -gt "${last_exclude:-0}" ]]; then
  ok ".dockerignore keeps .build/linux-arm64/"
else
  fail ".dockerignore must keep .build/linux-arm64/ (!.build/linux-arm64/ after the .build/ exclusion)"
fi

if ((do_build)); then
  echo ">> ${src}: builder stage's RUN commands in a copy of the build context"
  if [[ -z "${GO:-}" ]]; then
    if command -v go >/dev/null 2>&1; then GO="$(command -v go)"; else GO=/usr/local/go/bin/go; fi
  fi
  ctx="$(mktemp -d "${TMPDIR:-/tmp}/check-dockerfile.XXXXXX")"
  trap 'rm -rf "${ctx}"' EXIT
  excludes=(--exclude=.git)
  while IFS= read -r pat; do
    pat="${pat#/}"
    pat="${pat%/}"
    [[ -n "${pat}" ]] && excludes+=("--exclude=${pat}")
  done < <(grep -v '^[[:space:]]*\(#\|!\|$\)' .dockerignore || true)
  tar -C "${repo_root}" "${excludes[@]}" -cf - . | tar -C "${ctx}" -xf -
  # The builder's ARG values for linux/amd64, empty REVISION and BRANCH (the
  # defaults), and the go command in PATH as in the golang image.
  built=1
  while IFS= read -r cmd; do
    echo "   RUN ${cmd}"
    if ! (cd "${ctx}" && env -u GOOS -u GOARCH -u REVISION -u BRANCH OS=linux ARCH=amd64 REVISION= BRANCH= \
      PATH="$(dirname "${GO}"):${PATH}" bash -ec "${cmd}"); then
      fail "${src}: RUN ${cmd}"
      built=0
      break
    fi
  done < <(builder_stage "${src}" | sed -n 's/^RUN //p')
  if ((built)); then
    if [[ -x "${ctx}/.build/linux-amd64/${binary}" ]]; then
      ok "${src}: the builder stage builds .build/linux-amd64/${binary} without .git"
    else
      fail "${src}: the builder stage left no .build/linux-amd64/${binary}"
    fi
  fi
fi

if ((failures > 0)); then
  echo "check-dockerfile: ${failures} problem(s)" >&2
  exit 1
fi
echo "check-dockerfile: all checks passed"
