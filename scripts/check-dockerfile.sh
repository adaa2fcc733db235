#!/usr/bin/env bash
# Verify Dockerfile and Dockerfile.source without a Docker engine.
#
#   scripts/check-dockerfile.sh            # lint + run the builder stage's build
#   scripts/check-dockerfile.sh --no-build # lint only
#
# 1. Lint: the instructions the Prometheus-style image needs, generic
#    Dockerfile pitfalls (ARGs not re-declared in a stage, shell-form
#    ENTRYPOINT, ADD, MAINTAINER, ...), Dockerfile.source's final stage being
#    the same as Dockerfile's, Go versions matching go.mod and .promu.yml, and
#    .dockerignore keeping what the builds need. hadolint is run as well when
#    it is installed (it is not packaged by Debian 12).
# 2. Build: copy the build context (honouring .dockerignore, approximately:
#    GNU tar exclude patterns) to a temporary directory and run there what
#    Dockerfile.source's builder stage runs (go mod download, scripts/build.sh
#    for linux/amd64, no .git), then check that the binary is where both
#    Dockerfiles COPY it from, is static, carries the version ldflags and runs.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"

do_build=1
for arg in "$@"; do
  case "${arg}" in
    --no-build) do_build=0 ;;
    -h | --help)
      sed -n '2,6p' "$0"
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
note() { echo "note: $*"; }

# Print a Dockerfile's instructions one per line: continuation lines joined,
# comments and blank lines dropped, runs of blanks squeezed.
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
    END {
      if (buf != "") { gsub(/[[:space:]]+/, " ", buf); print buf }
    }
  ' "$1"
}

# Instructions of the last stage (from its FROM on).
last_stage() {
  instructions "$1" | awk '/^FROM /{ n = 0; delete s } { s[n++] = $0 } END { for (i = 0; i < n; i++) print s[i] }'
}

has_instr() { # file, exact instruction line
  instructions "$1" | grep -qxF -- "$2"
}

# Generic checks that hadolint would mostly do as well.
lint_generic() {
  local file="$1" line keyword stage=0 seen_from=0 last=""
  local -A global_args=() stage_vars=()
  while IFS= read -r line; do
    keyword="${line%% *}"
    keyword="${keyword^^}"
    last="${keyword}"
    case "${keyword}" in
      FROM)
        seen_from=1
        stage=$((stage + 1))
        stage_vars=()
        local ref
        # shellcheck disable=SC2016 # literal ${VAR} references are searched for
        for ref in $(grep -o '\${\?[A-Za-z_][A-Za-z0-9_]*' <<<"${line}" | tr -d '${' || true); do
          case "${ref}" in
            BUILDPLATFORM | BUILDOS | BUILDARCH | BUILDVARIANT | TARGETPLATFORM | TARGETOS | TARGETARCH | TARGETVARIANT) ;;
            *) [[ -n "${global_args[${ref}]:-}" ]] || fail "${file}: FROM uses \$${ref}, not declared by an ARG before the first FROM" ;;
          esac
        done
        if [[ "${line}" =~ :latest ]] && [[ ! "${line}" =~ quay\.io/prometheus/busybox- ]]; then
          fail "${file}: unpinned :latest base image: ${line}"
        fi
        ;;
      ARG)
        local name="${line#ARG }"
        name="${name%%=*}"
        if ((seen_from)); then stage_vars[${name}]=1; else global_args[${name}]=1; fi
        ;;
      ENV)
        local kv="${line#ENV }"
        stage_vars[${kv%%[= ]*}]=1
        ;;
      ADD) fail "${file}: use COPY instead of ADD: ${line}" ;;
      MAINTAINER) fail "${file}: MAINTAINER is deprecated, use LABEL maintainer=...: ${line}" ;;
      ENTRYPOINT | CMD)
        local args="${line#* }"
        if [[ ! "${args}" =~ ^\[\ *\"[^\"]+\"(\ *,\ *\"[^\"]*\")*\ *\]$ ]]; then
          fail "${file}: ${keyword} must use the exec (JSON) form: ${line}"
        fi
        ;;
      WORKDIR)
        [[ "${line#WORKDIR }" == /* ]] || fail "${file}: WORKDIR must be absolute: ${line}"
        ;;
    esac
    if [[ "${keyword}" != FROM && "${keyword}" != ARG ]] && ((seen_from)); then
      # Variables used in a stage must be declared in that stage (global ARGs
      # are only visible to FROM lines unless re-declared).
      local ref
      # shellcheck disable=SC2016 # literal ${VAR} references are searched for
      for ref in $(grep -o '\${[A-Za-z_][A-Za-z0-9_]*' <<<"${line}" | tr -d '${' || true); do
        case "${keyword}" in
          RUN) [[ -n "${stage_vars[${ref}]:-}" ]] || note "${file}: RUN uses \${${ref}} not declared in its stage (fine if set by the shell)" ;;
          *) [[ -n "${stage_vars[${ref}]:-}" ]] || fail "${file}: ${keyword} uses \${${ref}} which is not declared (ARG/ENV) in stage ${stage}" ;;
        esac
      done
    fi
    if [[ "${line}" =~ (^|[[:space:]])sudo[[:space:]] ]]; then
      fail "${file}: do not use sudo: ${line}"
    fi
  done < <(instructions "${file}")
  [[ "${last}" == ENTRYPOINT || "${last}" == CMD ]] ||
    fail "${file}: the last instruction should be ENTRYPOINT or CMD (is ${last})"
  # USER nobody must come after the COPY of the binary (so that the final
  # image runs unprivileged) and before ENTRYPOINT.
  local order
  order="$(last_stage "${file}" | awk '{ print $1 }' | tr '\n' ' ')"
  [[ "${order}" =~ COPY.*USER.*ENTRYPOINT ]] ||
    fail "${file}: final stage must COPY the binary, then USER, then ENTRYPOINT (order: ${order})"
}

echo ">> linting Dockerfile"
f=Dockerfile
# shellcheck disable=SC2016 # the Dockerfile lines contain literal ${OS}/${ARCH}
if [[ ! -f "${f}" ]]; then
  fail "${f} missing"
else
  lint_generic "${f}"
  for want in \
    'ARG ARCH="amd64"' \
    'ARG OS="linux"' \
    'FROM quay.io/prometheus/busybox-${OS}-${ARCH}:latest' \
    "COPY .build/\${OS}-\${ARCH}/${binary} /bin/${binary}" \
    'EXPOSE 9419' \
    'USER nobody' \
    "ENTRYPOINT [\"/bin/${binary}\"]"; do
    if has_instr "${f}" "${want}"; then ok "${f}: ${want}"; else fail "${f}: missing instruction: ${want}"; fi
  done
  label="$(instructions "${f}" | grep '^LABEL ' || true)"
  for key in maintainer description; do
    if grep -q "${key}=\"[^\"]\+\"" <<<"${label}"; then ok "${f}: LABEL ${key}"; else fail "${f}: LABEL ${key}=... missing"; fi
  done
  n_from="$(instructions "${f}" | grep -c '^FROM ' || true)"
  [[ "${n_from}" == 1 ]] || fail "${f}: expected a single stage, found ${n_from} FROM lines"
fi

echo ">> linting Dockerfile.source"
g=Dockerfile.source
if [[ ! -f "${g}" ]]; then
  fail "${g} missing"
else
  lint_generic "${g}"
  builder_from="$(instructions "${g}" | grep -E '^FROM .* AS builder$' || true)"
  if [[ -z "${builder_from}" ]]; then
    fail "${g}: no 'FROM golang:<version> AS builder' stage"
  else
    ok "${g}: ${builder_from}"
  fi
  golang_tag="$(sed -n 's/.*golang:\([0-9][0-9.]*\).*/\1/p' <<<"${builder_from}")"
  mod_go="$(awk '$1 == "go" { print $2; exit }' go.mod 2>/dev/null || true)"
  mod_minor="$(cut -d. -f1,2 <<<"${mod_go}")"
  promu_go="$(awk '/^go:/ { in_go = 1; next } in_go && /^[^ ]/ { in_go = 0 } in_go && $1 == "version:" { print $2; exit }' .promu.yml 2>/dev/null || true)"
  if [[ -n "${golang_tag}" && "${golang_tag}" == "${mod_minor}" ]]; then
    ok "${g}: golang:${golang_tag} matches go.mod (go ${mod_go})"
  else
    fail "${g}: builder image golang:${golang_tag:-?} does not match go.mod (go ${mod_go:-?})"
  fi
  if [[ -n "${promu_go}" && "${promu_go}" == "${mod_minor}" ]]; then
    ok ".promu.yml: go version ${promu_go} matches go.mod"
  else
    fail ".promu.yml: go version ${promu_go:-?} does not match go.mod (go ${mod_go:-?})"
  fi
  if instructions "${g}" | grep -E '^RUN .*scripts/build\.sh' >/dev/null; then
    ok "${g}: builder runs scripts/build.sh"
  else
    fail "${g}: builder stage does not run scripts/build.sh (it must build like 'make build')"
  fi
  workdir="$(instructions "${g}" | sed -n 's/^WORKDIR //p' | head -n1)"
  want_copy="COPY --from=builder ${workdir}/.build/\${OS}-\${ARCH}/${binary} /bin/${binary}"
  if has_instr "${g}" "${want_copy}"; then ok "${g}: ${want_copy}"; else fail "${g}: missing: ${want_copy}"; fi
  # The final stage must be Dockerfile's, apart from where the binary comes from.
  if [[ -f "${f}" ]]; then
    if diff -u \
      <(last_stage "${f}") \
      <(last_stage "${g}" | sed "s#^COPY --from=builder ${workdir}/#COPY #") >/dev/null; then
      ok "${g}: final stage identical to ${f}'s"
    else
      fail "${g}: final stage differs from ${f}'s:"
      diff -u <(last_stage "${f}") <(last_stage "${g}" | sed "s#^COPY --from=builder ${workdir}/#COPY #") >&2 || true
    fi
  fi
fi

echo ">> checking .dockerignore"
if [[ ! -f .dockerignore ]]; then
  fail ".dockerignore missing"
else
  patterns="$(grep -v '^[[:space:]]*\(#\|$\)' .dockerignore)"
  for needed in go.mod go.sum VERSION scripts cmd; do
    if grep -qxE "/?${needed}/?" <<<"${patterns}"; then fail ".dockerignore excludes ${needed}"; fi
  done
  # Later lines win: the re-inclusion must come after the last .build exclusion.
  last_exclude="$(grep -nxE '/?\.build(/|/\*\*?)?' <<<"${patterns}" | tail -n1 | cut -d: -f1)"
  for plat in linux-amd64 linux-arm64; do
    keep="$(grep -nxE "!/?\.build/${plat}/?" <<<"${patterns}" | tail -n1 | cut -d: -f1)"
    if [[ -n "${keep}" && "${keep}" -gt "${last_exclude:-0}" ]]; then
      ok ".dockerignore keeps .build/${plat}/"
    else
      fail ".dockerignore must keep .build/${plat}/ (add !.build/${plat}/ after the .build/ exclusion)"
    fi
  done
fi

if command -v hadolint >/dev/null 2>&1; then
  echo ">> hadolint"
  hadolint --ignore DL3007 Dockerfile Dockerfile.source || fail "hadolint reported problems"
else
  note "hadolint not installed (not packaged by Debian 12); built-in checks only"
fi

if ((do_build)); then
  echo ">> running the builder stage of Dockerfile.source without Docker"
  GO="${GO:-}"
  if [[ -z "${GO}" ]]; then
    if command -v go >/dev/null 2>&1; then GO=go; else GO=/usr/local/go/bin/go; fi
  fi
  export GO
  ctx="$(mktemp -d "${TMPDIR:-/tmp}/check-dockerfile.XXXXXX")"
  trap 'rm -rf "${ctx}"' EXIT

  # Build context: the repository minus .dockerignore's exclusions.
  tar_excludes=()
  while IFS= read -r pat; do
    pat="${pat#/}"
    pat="${pat%/}"
    [[ -n "${pat}" ]] && tar_excludes+=("--exclude=${pat}")
  done < <(grep -v '^[[:space:]]*\(#\|!\|$\)' .dockerignore 2>/dev/null || true)
  tar_excludes+=("--exclude=.git") # never needed; also keeps the copy cheap
  tar -C "${repo_root}" "${tar_excludes[@]}" -cf - . | tar -C "${ctx}" -xf -
  [[ -d "${ctx}/.git" ]] && fail "build context contains .git"

  # WORKDIR /src; COPY go.mod go.sum ./; RUN go mod download; COPY . .;
  # RUN GOOS=linux GOARCH=amd64 bash ./scripts/build.sh
  if (cd "${ctx}" && "${GO}" mod download) && ok "go mod download" &&
    (cd "${ctx}" && env -u REVISION -u BRANCH GOOS=linux GOARCH=amd64 bash ./scripts/build.sh); then
    out="${ctx}/.build/linux-amd64/${binary}"
    if [[ -x "${out}" ]]; then
      ok "built .build/linux-amd64/${binary} (the path both Dockerfiles COPY from)"
      info="$("${GO}" version -m "${out}")"
      if grep -q 'CGO_ENABLED=0' <<<"${info}"; then ok "CGO_ENABLED=0 (static binary for busybox)"; else fail "binary not built with CGO_ENABLED=0"; fi
      if command -v file >/dev/null 2>&1; then
        if file "${out}" | grep -q 'statically linked'; then ok "file: statically linked"; else fail "file: $(file -b "${out}")"; fi
      fi
      # -trimpath keeps -ldflags out of the build info, so the version
      # variables are checked through the binary's --version output
      # (prometheus/common/version.Print).
      want_version="$(tr -d '[:space:]' <VERSION)"
      if [[ "$(uname -s)-$(uname -m)" == Linux-x86_64 ]]; then
        if "${out}" --help >/dev/null 2>&1; then ok "${binary} --help runs"; else fail "${binary} --help failed"; fi
        v_out="$("${out}" --version 2>&1 || true)"
        for re in \
          "version ${want_version//./\\.} " \
          'revision: unknown\b' \
          'branch: unknown\b' \
          'build user: +[^ @]+@[^ @]+$' \
          'build date: +[0-9]{8}-[0-9]{2}:[0-9]{2}:[0-9]{2}$'; do
          if grep -qE -- "${re}" <<<"${v_out}"; then
            ok "--version matches /${re}/"
          else
            fail "--version does not match /${re}/ (ldflags not applied?): ${v_out}"
          fi
        done
      elif grep -aqF -- "${want_version}" "${out}"; then
        note "cannot run a linux/amd64 binary here; the version string is present in it"
      else
        fail "version ${want_version} not found in the binary"
      fi
    else
      fail "scripts/build.sh did not produce .build/linux-amd64/${binary}"
    fi
  else
    fail "builder stage commands failed (go mod download / scripts/build.sh)"
  fi
fi

if ((failures > 0)); then
  echo "check-dockerfile: ${failures} problem(s)" >&2
  exit 1
fi
echo "check-dockerfile: all checks passed"
