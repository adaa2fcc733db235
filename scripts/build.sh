#!/usr/bin/env bash
# Build rabbitmq_queue_exporter without promu.
#
# Output: .build/${GOOS:-linux}-${GOARCH:-amd64}/rabbitmq_queue_exporter[.exe]
# (the layout promu uses, so the Prometheus-style Dockerfile can COPY it).
#
# Environment (all optional):
#   GOOS, GOARCH   target platform (default linux / amd64, what the Docker image needs)
#   GO             go command (default: `go` from PATH, else /usr/local/go/bin/go)
#   BUILD_DIR      output root (default .build)
#   VERSION_FILE   file holding the version (default VERSION)
#   REVISION       overrides `git rev-parse HEAD` (e.g. when .git is not available)
#   BRANCH         overrides the current git branch
#   BUILD_USER     overrides user@host
#   BUILD_DATE     overrides the build date (format 20060102-15:04:05);
#                  SOURCE_DATE_EPOCH is honoured when BUILD_DATE is unset
#   EXTRA_LDFLAGS  appended to -ldflags
#
# Works without git metadata: revision and branch become "unknown".
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"

binary="rabbitmq_queue_exporter"
pkg="./cmd/rabbitmq_queue_exporter"
version_pkg="github.com/prometheus/common/version"

if [[ -z "${GO:-}" ]]; then
  if command -v go >/dev/null 2>&1; then
    GO=go
  elif [[ -x /usr/local/go/bin/go ]]; then
    GO=/usr/local/go/bin/go
  else
    echo "build.sh: no go command found (set GO=/path/to/go)" >&2
    exit 1
  fi
fi

export GOOS="${GOOS:-linux}"
export GOARCH="${GOARCH:-amd64}"
export CGO_ENABLED=0

version_file="${VERSION_FILE:-VERSION}"
if [[ -r "${version_file}" ]]; then
  version="$(tr -d '[:space:]' <"${version_file}")"
else
  version=""
fi
version="${version:-unknown}"

git_ok() {
  command -v git >/dev/null 2>&1 && git rev-parse --is-inside-work-tree >/dev/null 2>&1
}

revision="${REVISION:-}"
if [[ -z "${revision}" ]]; then
  if git_ok; then
    # --verify -q prints nothing (instead of "HEAD") when there is no commit yet.
    revision="$(git rev-parse --verify -q HEAD 2>/dev/null || true)"
  fi
  revision="${revision:-unknown}"
fi

branch="${BRANCH:-}"
if [[ -z "${branch}" ]]; then
  if git_ok; then
    # symbolic-ref also works on a branch without commits; fails when detached.
    branch="$(git symbolic-ref --short -q HEAD 2>/dev/null || true)"
  fi
  branch="${branch:-unknown}"
fi

build_user="${BUILD_USER:-}"
if [[ -z "${build_user}" ]]; then
  user="${USER:-$(id -un 2>/dev/null || echo unknown)}"
  host="$(hostname 2>/dev/null || uname -n 2>/dev/null || echo unknown)"
  build_user="${user}@${host}"
fi

build_date="${BUILD_DATE:-}"
if [[ -z "${build_date}" ]]; then
  fmt='+%Y%m%d-%H:%M:%S'
  if [[ -n "${SOURCE_DATE_EPOCH:-}" ]]; then
    # GNU date, then BSD date.
    build_date="$(date -u -d "@${SOURCE_DATE_EPOCH}" "${fmt}" 2>/dev/null ||
      date -u -r "${SOURCE_DATE_EPOCH}" "${fmt}")"
  else
    build_date="$(date -u "${fmt}")"
  fi
fi

# ldflags -X values are split on spaces by the go command; keep them space free.
for v in version revision branch build_user build_date; do
  if [[ "${!v}" == *[[:space:]]* ]]; then
    echo "build.sh: ${v} contains whitespace: '${!v}'" >&2
    exit 1
  fi
done

ldflags="-X ${version_pkg}.Version=${version}"
ldflags+=" -X ${version_pkg}.Revision=${revision}"
ldflags+=" -X ${version_pkg}.Branch=${branch}"
ldflags+=" -X ${version_pkg}.BuildUser=${build_user}"
ldflags+=" -X ${version_pkg}.BuildDate=${build_date}"
if [[ -n "${EXTRA_LDFLAGS:-}" ]]; then
  ldflags+=" ${EXTRA_LDFLAGS}"
fi

out_dir="${BUILD_DIR:-.build}/${GOOS}-${GOARCH}"
out="${out_dir}/${binary}"
if [[ "${GOOS}" == "windows" ]]; then
  out+=".exe"
fi
mkdir -p "${out_dir}"

echo ">> building ${binary} ${version} (${revision}, ${branch}) for ${GOOS}/${GOARCH}" >&2
"${GO}" build \
  -trimpath \
  -buildvcs=false \
  -tags netgo \
  -ldflags "${ldflags}" \
  -o "${out}" \
  "${pkg}"
echo ">> wrote ${out}" >&2
