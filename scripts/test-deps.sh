#!/usr/bin/env bash
# Installs the tools the test suite runs besides the brokers (testbed.sh does
# those): promtool (Debian package prometheus), headless Chromium, shellcheck, and
# podman with runc and busybox-static for the container image test (runc: crun
# fails on this kind of sandbox; busybox-static: scripts/image.sh makes a stand-in
# base image from it where quay.io cannot be reached). Idempotent; does nothing
# when they are present.
set -euo pipefail
need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
# Debian's plain busybox package also ships /bin/busybox, but linked dynamically.
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || need+=(busybox-static)
if [ ${#need[@]} -eq 0 ]; then
  echo "test-deps: promtool, chromium, chromedriver, openssl, shellcheck, podman, runc and busybox present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "test-deps: need ${need[*]}; run as root or install them with apt-get" >&2
  exit 1
fi
echo "test-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d keeps the prometheus package from starting a server of its own.
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d.rqe && chmod +x /usr/sbin/policy-rc.d.rqe
had_policy=0; [ -e /usr/sbin/policy-rc.d ] && had_policy=1
[ $had_policy -eq 1 ] || cp /usr/sbin/policy-rc.d.rqe /usr/sbin/policy-rc.d
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
[ $had_policy -eq 1 ] || rm -f /usr/sbin/policy-rc.d
rm -f /usr/sbin/policy-rc.d.rqe
pkill -x prometheus 2>/dev/null || true
echo "test-deps: done"
