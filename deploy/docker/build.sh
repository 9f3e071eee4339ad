#!/usr/bin/env bash
# Builds the Gleaner image from a built binary, without any registry or
# base image: a distroless-style root file system holding only
#   - /usr/bin/gleaner, stripped (debug info is most of a release binary:
#     about 250 MB → 40 MB), with one file capability, CAP_DAC_READ_SEARCH:
#     what reading other users' log files (0640 in 0710 directories) needs;
#   - the shared libraries `ldd` lists for it, and the host's CA certificates;
#   - a `gleaner` user (uid and gid 10001) that the image runs as, owning
#     /var/lib/gleaner (a named volume there starts with that owner);
# imported with `docker import` (which, unlike `docker build`'s COPY, keeps
# the capability, stored as an extended attribute).
#
#   deploy/docker/build.sh [BINARY] [TAG]    (defaults: target/release/gleaner, gleaner:dev)
#
# Run it (see docs/docker.md): the capability must be granted to the
# container (it is not in Docker's default set; without it the binary does
# not start), and the docker input needs the socket's group:
#   docker run -d --name gleaner --restart unless-stopped \
#     --cap-drop ALL --cap-add DAC_READ_SEARCH \
#     --group-add "$(stat -c %g /var/run/docker.sock)" \
#     -v /var/run/docker.sock:/var/run/docker.sock \
#     -v /var/lib/docker/containers:/var/lib/docker/containers:ro \
#     -v gleaner-data:/var/lib/gleaner \
#     -v $PWD/gleaner.yaml:/etc/gleaner/gleaner.yaml:ro \
#     gleaner:dev
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../../target/release/gleaner}
tag=${2:-gleaner:dev}
[ -x "$bin" ] || { echo "build.sh: $bin not found: run cargo build --release first" >&2; exit 1; }
command -v setcap >/dev/null || { echo "build.sh: setcap not found: apt-get install libcap2-bin" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/bin" "$root/etc/gleaner" "$root/var/lib/gleaner" "$root/tmp"
chmod 1777 "$root/tmp"
strip --strip-all -o "$root/usr/bin/gleaner" "$bin"
setcap cap_dac_read_search=ep "$root/usr/bin/gleaner"
# The dynamic loader and every library the binary links, at the same paths.
for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  mkdir -p "$root/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
fi
printf 'root:x:0:0:root:/:/sbin/nologin\ngleaner:x:10001:10001:gleaner:/var/lib/gleaner:/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\ngleaner:x:10001:\n' > "$root/etc/group"
chown -R 10001:10001 "$root/var/lib/gleaner"
tar --xattrs --xattrs-include='security.capability' --numeric-owner -C "$root" -c . |
  docker import \
    --change 'USER 10001:10001' \
    --change 'ENV GLEANER_LOG=info' \
    --change 'VOLUME ["/var/lib/gleaner"]' \
    --change 'ENTRYPOINT ["/usr/bin/gleaner"]' \
    --change 'CMD ["run", "--config", "/etc/gleaner/gleaner.yaml"]' \
    - "$tag" >/dev/null
echo "built $tag"
