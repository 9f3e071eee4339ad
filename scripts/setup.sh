#!/usr/bin/env bash
# Installs what building and testing Gleaner needs on a fresh machine.
# Idempotent: safe to run before every build.
#
#   bash scripts/setup.sh          what the agent and its demo need
#   bash scripts/setup.sh --sdks   also what the test suite needs: the C and
#                                  Python plugin toolchains, and the servers
#                                  the delivery tests start (ClickHouse, an
#                                  S3 server)
#
# Tools built from crates.io go to a cache outside the checkout,
# $GLEANER_TOOLS (default ~/.cache/gleaner/tools), so that a fresh clone
# (CI's) reuses them instead of building them again.
set -euo pipefail
cd "$(dirname "$0")/.."
sdks=false
[ "${1:-}" = "--sdks" ] && sdks=true
tools="${GLEANER_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/gleaner/tools}"
mkdir -p "$tools"

sudo_=""
[ "$(id -u)" = 0 ] || sudo_=sudo
apt_updated=false
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! $apt_updated; then $sudo_ apt-get update -qq; apt_updated=true; fi
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${missing[@]}" >/dev/null
}

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi
# The Docker tests run containers made from Debian's static busybox, and
# build Gleaner's image (deploy/docker/build.sh: setcap from libcap2-bin).
if command -v docker >/dev/null 2>&1; then
  apt_install busybox-static libcap2-bin
  bash scripts/test-image.sh
fi

if $sdks; then
  # C plugins: Debian's clang, lld and wasi-libc, then `wasm-tools
  # component new` (built from crates.io into the tools cache).
  apt_install clang lld wasi-libc libclang-rt-14-dev-wasm32 make
  if [ "$("$tools/bin/wasm-tools" --version 2>/dev/null)" != "wasm-tools 1.262.0" ]; then
    cargo install --quiet --locked --root "$tools" wasm-tools@1.262.0 \
      --no-default-features --features component
  fi
  # Python plugins: componentize-py from PyPI, in a venv of its own.
  if [ "$("$tools/py/bin/componentize-py" --version 2>/dev/null)" != "componentize-py 0.25.1" ]; then
    # A bare Debian has python3 without its venv module.
    command -v python3 >/dev/null 2>&1 || apt_install python3
    python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
    python3 -m venv "$tools/py"
    "$tools/py/bin/pip" install --quiet --disable-pip-version-check componentize-py==0.25.1
  fi

  # Servers the delivery tests start: ClickHouse from Debian's packages,
  # an S3 server (s3s-fs, the s3s project's file-backed server) from
  # crates.io. A test that cannot find its server fails, naming this
  # script.
  apt_install clickhouse-server clickhouse-client
  if [ "$("$tools/bin/s3s-fs" --version 2>/dev/null)" != "s3s-fs 0.14.1" ]; then
    cargo install --quiet --locked --root "$tools" s3s-fs@0.14.1 --features binary
  fi
  # Kafka: tansu, a Kafka-compatible broker from crates.io (its memory://
  # storage needs the dynostore feature; a long build, done once into the
  # tools cache), and kafka-python from PyPI as the independent client the
  # tests read back with. tansu 0.6.0 takes --cert/--key but never serves
  # TLS, so the TLS tests put socat (OpenSSL) in front of it, as an SSL
  # listener.
  apt_install socat
  # promtool (Debian's prometheus package) checks the alert rules in
  # deploy/prometheus/.
  apt_install prometheus
  # The memory:// and s3:// stores (dynostore) keep no SCRAM users, so the
  # SASL tests use sqlite:// (libsql). The stamp says which features the
  # cached binary was built with.
  if [ "$("$tools/bin/tansu" --version 2>/dev/null)" != "tansu 0.6.0" ] \
    || [ "$(cat "$tools/tansu.features" 2>/dev/null)" != "dynostore,libsql" ]; then
    cargo install --quiet --locked --force --root "$tools" tansu@0.6.0 --features dynostore,libsql
    echo "dynostore,libsql" > "$tools/tansu.features"
  fi
  if ! "$tools/py/bin/python" -c 'import kafka; assert kafka.__version__ == "3.0.12"' 2>/dev/null; then
    "$tools/py/bin/pip" install --quiet --disable-pip-version-check "kafka-python[lz4,snappy,zstd]==3.0.12"
  fi
fi
