#!/usr/bin/env bash
# Installs what building and testing Gleaner needs on a fresh machine.
# Idempotent: safe to run before every build.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi
# The Docker tests run containers made from Debian's static busybox.
if command -v docker >/dev/null 2>&1; then
  if [ ! -x /bin/busybox ] || ! dpkg -s busybox-static >/dev/null 2>&1; then
    sudo_=""
    [ "$(id -u)" = 0 ] || sudo_=sudo
    $sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq busybox-static >/dev/null
  fi
  bash scripts/test-image.sh
fi
