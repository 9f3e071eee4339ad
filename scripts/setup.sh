#!/usr/bin/env bash
# Installs what building and testing Gleaner needs on a fresh machine.
# Idempotent: safe to run before every build.
set -euo pipefail
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi
