#!/usr/bin/env bash
# Builds the container image from Dockerfile (what `make image` runs).
#
#   scripts/image.sh [build]        scripts/build.sh for linux/amd64, then the image,
#                                   tagged rabbitmq-queue-exporter:<VERSION> and :latest
#   scripts/image.sh engine ARGS…   runs the engine the build uses, with the same
#                                   settings: `scripts/image.sh engine run …`
#
# Engine: CONTAINER_ENGINE (docker or podman) when set; else docker when its daemon
# answers; else podman. podman runs with a containers.conf and storage.conf this
# script writes (runc, cgroupfs, no default ulimits, vfs storage under
# RQE_PODMAN_DIR, default /var/tmp/rabbitmq-queue-exporter-podman-<uid>): the
# settings that work in sandboxes where crun fails on cgroups and rlimits, kept out
# of the machine's own podman configuration and image store. Set CONTAINERS_CONF
# or CONTAINERS_STORAGE_CONF yourself to use your own podman setup instead.
#
# Base image: the Dockerfile's (quay.io/prometheus/busybox-linux-amd64:latest), pulled
# when absent. Where it cannot be pulled (no registry access), a stand-in of the same
# name is imported from a tiny root filesystem: busybox from Debian's busybox-static,
# /etc/passwd and /etc/group with nobody (65534), the host's CA bundle. It carries
# the label io.rabbitmq-queue-exporter.stand-in, which the built image inherits.
# The next build that can pull replaces it with the real one.
#
# Idempotent: the binary takes the commit's date as build date, so a second run
# of the same sources builds the same binary and reuses the cached image layer
# and the base image; the previous build's image, untagged, is removed.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"

image="rabbitmq-queue-exporter"
os=linux
arch=amd64
# The base image as the Dockerfile names it, so the two cannot drift apart.
base="$(awk '$1 == "FROM" { print $2; exit }' Dockerfile)"
base="${base//\$\{OS\}/${os}}"
base="${base//\$\{ARCH\}/${arch}}"
stand_in_label="io.rabbitmq-queue-exporter.stand-in"
iid_file=".build/image.iid"

die() {
  echo "image.sh: $*" >&2
  exit 1
}

# podman_setup writes the podman configuration (when the caller has not chosen
# one) and exports its location.
podman_setup() {
  if [[ -n "${CONTAINERS_CONF:-}" || -n "${CONTAINERS_STORAGE_CONF:-}" ]]; then
    return
  fi
  local uid dir run
  uid="$(id -u)"
  dir="${RQE_PODMAN_DIR:-/var/tmp/rabbitmq-queue-exporter-podman-${uid}}"
  # Run state and sockets want a short path (unix socket paths are limited to
  # 108 bytes) that does not outlive a reboot, one per store.
  local key
  key="$(printf '%s' "${dir}" | cksum | cut -d' ' -f1)"
  if [[ "${uid}" == 0 ]]; then
    run="/run/rqe-podman/${key}"
  else
    run="${XDG_RUNTIME_DIR:-/tmp}/rqe-podman-${uid}/${key}"
  fi
  mkdir -p "${dir}"
  local runtime=""
  # Debian's podman prefers crun, which fails in sandboxes without cgroup and
  # rlimit rights; runc works there.
  if command -v runc >/dev/null 2>&1; then
    runtime='runtime = "runc"'
  fi
  local conf="${dir}/containers.conf" storage="${dir}/storage.conf" tmp
  tmp="$(mktemp "${dir}/.conf.XXXXXX")"
  cat >"${tmp}" <<EOF
# Written by scripts/image.sh (rewritten on every run).
[containers]
# The defaults raise RLIMIT_NOFILE above what a sandbox may allow.
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "${run}/tmp"
${runtime}
EOF
  mv -f "${tmp}" "${conf}"
  tmp="$(mktemp "${dir}/.conf.XXXXXX")"
  cat >"${tmp}" <<EOF
# Written by scripts/image.sh (rewritten on every run).
[storage]
# vfs needs no overlay mounts, which nested sandboxes may refuse.
driver = "vfs"
graphroot = "${dir}/storage"
runroot = "${run}/storage"
EOF
  mv -f "${tmp}" "${storage}"
  export CONTAINERS_CONF="${conf}" CONTAINERS_STORAGE_CONF="${storage}"
}

# pick_engine sets engine to docker or podman.
pick_engine() {
  engine="${CONTAINER_ENGINE:-}"
  if [[ -z "${engine}" ]]; then
    if command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1; then
      engine=docker
    elif command -v podman >/dev/null 2>&1; then
      engine=podman
    else
      die "no working docker engine and no podman (install one; scripts/test-deps.sh installs podman as root)"
    fi
  fi
  case "${engine}" in
    docker) ;;
    podman) podman_setup ;;
    *) die "CONTAINER_ENGINE must be docker or podman, not '${engine}'" ;;
  esac
}

has_image() { "${engine}" image inspect "$1" >/dev/null 2>&1; }

# stand_in imports the stand-in base image under the name ${base}.
stand_in() {
  local bb="${BUSYBOX:-/bin/busybox}"
  [[ -x "${bb}" ]] || die "${base} cannot be pulled and ${bb} is missing for a stand-in (apt-get install busybox-static)"
  # ldd succeeds only on dynamically linked programs, which the image cannot run.
  if ldd "${bb}" >/dev/null 2>&1; then
    die "${bb} is dynamically linked; the stand-in needs busybox-static"
  fi
  local root
  root="$(mktemp -d "${TMPDIR:-/tmp}/rqe-base.XXXXXX")"
  # shellcheck disable=SC2064 # expand now: root is local
  trap "rm -rf '${root}'" EXIT
  mkdir -p "${root}/rootfs"/{bin,etc/ssl/certs,home,root,tmp,var,proc,sys,dev}
  chmod 1777 "${root}/rootfs/tmp"
  chmod 0700 "${root}/rootfs/root"
  cp "${bb}" "${root}/rootfs/bin/busybox"
  local applet
  while IFS= read -r applet; do
    [[ "${applet}" == busybox ]] || ln -s busybox "${root}/rootfs/bin/${applet}"
  done < <("${bb}" --list)
  printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/home:/bin/false' >"${root}/rootfs/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' >"${root}/rootfs/etc/group"
  # As in the real base: TLS to https brokers needs the CA bundle.
  if [[ -r /etc/ssl/certs/ca-certificates.crt ]]; then
    cp /etc/ssl/certs/ca-certificates.crt "${root}/rootfs/etc/ssl/certs/"
  fi
  tar -C "${root}/rootfs" --numeric-owner --owner=0 --group=0 -cf "${root}/rootfs.tar" .
  local out
  out="$("${engine}" import --change "LABEL ${stand_in_label}=busybox-static" \
    "${root}/rootfs.tar" "${base}" 2>&1)" || die "importing the stand-in ${base}: ${out}"
  rm -rf "${root}"
  trap - EXIT
}

# ensure_base makes ${base} available: the local copy when it is the real one,
# else a fresh pull, else the (possibly new) stand-in.
ensure_base() {
  if has_image "${base}"; then
    local label
    label="$("${engine}" image inspect --format "{{index .Config.Labels \"${stand_in_label}\"}}" "${base}" 2>/dev/null || true)"
    if [[ -z "${label}" || "${label}" == "<no value>" ]]; then
      return
    fi
  fi
  local err
  if err="$(timeout 120 "${engine}" pull -q "${base}" 2>&1)"; then
    return
  fi
  has_image "${base}" || stand_in
  echo "image.sh: ${base} cannot be pulled (${err##*: }); using a local stand-in from busybox-static" >&2
}

build() {
  pick_engine
  # The commit's date as build date makes the binary, and so the image, the
  # same for the same sources: a rebuild reuses the cached layer.
  if [[ -z "${SOURCE_DATE_EPOCH:-}${BUILD_DATE:-}" ]] && git rev-parse --verify -q HEAD >/dev/null 2>&1; then
    SOURCE_DATE_EPOCH="$(git log -1 --format=%ct)"
    export SOURCE_DATE_EPOCH
  fi
  GOOS="${os}" GOARCH="${arch}" ./scripts/build.sh
  ensure_base
  local version pull
  version="$(tr -d '[:space:]' <VERSION)"
  case "${engine}" in
    docker) pull=--pull=false ;;
    podman) pull=--pull=never ;;
  esac
  mkdir -p .build
  local old=""
  [[ -r "${iid_file}" ]] && old="$(cat "${iid_file}")"
  rm -f "${iid_file}"
  echo ">> building ${image}:${version} with ${engine}" >&2
  "${engine}" build "${pull}" --iidfile "${iid_file}" \
    --build-arg OS="${os}" --build-arg ARCH="${arch}" \
    -t "${image}:${version}" -t "${image}:latest" -f Dockerfile . >&2
  # The previous build's image, now untagged, would pile up; one still in use
  # (a running container) stays.
  if [[ -n "${old}" && "${old}" != "$(cat "${iid_file}")" ]]; then
    "${engine}" rmi "${old}" >/dev/null 2>&1 || true
  fi
  local size
  size="$("${engine}" image inspect --format '{{.Size}}' "$(cat "${iid_file}")")"
  echo ">> ${image}:${version} and :latest, $(awk -v s="${size}" 'BEGIN { printf "%.1f MB", s / 1e6 }'), id in ${iid_file}" >&2
}

case "${1:-build}" in
  build) build ;;
  engine)
    shift
    pick_engine
    exec "${engine}" "$@"
    ;;
  -h | --help) sed -n '2,7p' "$0" ;;
  *) die "unknown command '$1' (build, engine)" ;;
esac
