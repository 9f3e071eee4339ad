#!/usr/bin/env bash
# Builds the Gleaner image from a built binary, without any registry:
# assembles a rootfs with the binary, the shared libraries `ldd` lists for
# it and the host's CA certificates, then runs `docker build` on
# deploy/docker/Dockerfile.
#
#   deploy/docker/build.sh [BINARY] [TAG]    (defaults: target/release/gleaner, gleaner:dev)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../../target/release/gleaner}
tag=${2:-gleaner:dev}
[ -x "$bin" ] || { echo "build.sh: $bin not found: run cargo build --release first" >&2; exit 1; }
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root=$ctx/rootfs
mkdir -p "$root/usr/bin" "$root/etc/gleaner" "$root/var/lib/gleaner" "$root/tmp"
chmod 1777 "$root/tmp"
cp "$bin" "$root/usr/bin/gleaner"
# The dynamic loader and every library the binary links, at the same paths.
for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  mkdir -p "$root/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
fi
cp "$here/Dockerfile" "$ctx/Dockerfile"
DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$ctx" >/dev/null
echo "built $tag"
