#!/usr/bin/env bash
# Builds Strom's container image without pulling any base image, for machines
# that reach no container registry: the binary is compiled on the host and
# podman builds a FROM-scratch image around it (deploy/image/Containerfile.local).
# Where a registry is reachable, the Dockerfile at the repository root is the
# usual way (docker build / minikube image build).
#
#   scripts/build-image.sh                    static binary via cargo, then podman
#   scripts/build-image.sh --binary PATH      use an already built strom binary
#   scripts/build-image.sh --tag strom:dev    another image name
#   scripts/build-image.sh --no-save          skip writing the image archive
#   scripts/build-image.sh --keep-debug       keep the binary's debug info
#                                             (the release profile has line tables: ~50 MB vs ~8 MB)
#   scripts/build-image.sh --binary B --context DIR
#                                             only stage the build context in DIR (no podman);
#                                             the release workflow builds its multi-arch image
#                                             from such contexts (deploy/image/Containerfile.release)
#
# The image is saved as target/strom-image-<version>.tar (docker-archive), to
# be loaded with `minikube image load` or `docker load`.
#
# If podman is missing or cannot build here, this says so and exits 0: the
# image is an extra, not something the rest of the build depends on.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

log() { printf '[build-image] %s\n' "$*" >&2; }
give_up() { log "NOT BUILT: $*"; exit 0; }
fail() { log "FAILED: $*"; exit 1; }

VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)
VERSION=${VERSION:-0.1.0}
# The released image's name (the chart's image.repository, also in the plain manifests), so
# that an image built here and loaded into minikube is found without a pull.
REPOSITORY=$(sed -n '/^image:/,/^[^ ]/s/^  repository: *//p' deploy/helm/strom/values.yaml)
TAG="${REPOSITORY:-strom}:$VERSION"
BINARY=""
CONTEXT=""
SAVE=1
STRIP=1

while [ $# -gt 0 ]; do
    case "$1" in
        --binary) BINARY=$2; shift 2 ;;
        --tag) TAG=$2; shift 2 ;;
        --no-save) SAVE=0; shift ;;
        --keep-debug) STRIP=0; shift ;;
        --context) CONTEXT=$2; shift 2 ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) log "unknown argument: $1"; exit 2 ;;
    esac
done

if [ -n "$CONTEXT" ] && [ -z "$BINARY" ]; then
    fail "--context needs --binary (the binary to stage)"
fi
if [ -z "$CONTEXT" ] && ! command -v podman >/dev/null 2>&1; then
    give_up "podman is not installed (Debian: apt-get install podman). Use the Dockerfile with docker or 'minikube image build' instead."
fi

# --- the binary ----------------------------------------------------------------
is_static() { ldd "$1" 2>&1 | grep -Eq 'not a dynamic executable|statically linked'; }

if [ -z "$BINARY" ]; then
    HOST=$(rustc -vV | sed -n 's/^host: //p')
    # A static glibc binary needs no libraries in the image. --target keeps
    # the static build apart from target/release (and keeps RUSTFLAGS off
    # build scripts and proc macros, which cannot be static).
    log "building a static binary: cargo build --release -p strom --target $HOST (crt-static)"
    if RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
        cargo build --release -p strom --target "$HOST" >&2; then
        BINARY=target/$HOST/release/strom
    else
        log "static build failed; falling back to the ordinary dynamic build"
        cargo build --release -p strom >&2 || give_up "cargo build --release -p strom failed"
        BINARY=target/release/strom
    fi
fi
[ -x "$BINARY" ] || give_up "no executable binary at $BINARY"

# --- the build context -----------------------------------------------------------
if [ -n "$CONTEXT" ]; then
    [ ! -e "$CONTEXT" ] || fail "--context $CONTEXT exists already"
    mkdir -p "$CONTEXT"
    CTX=$(cd "$CONTEXT" && pwd)
else
    CTX=$(mktemp -d)
    trap 'rm -rf "$CTX"' EXIT
fi
mkdir -p "$CTX/rootfs/etc" "$CTX/rootfs/tmp" "$CTX/rootfs/var/lib" "$CTX/data/data"
chmod 1777 "$CTX/rootfs/tmp"
chmod 0750 "$CTX/data/data"
install -m 0755 "$BINARY" "$CTX/rootfs/strom"
# Debug info only: symbols stay, so a panic's backtrace still names functions.
if [ "$STRIP" = 1 ] && command -v strip >/dev/null 2>&1; then
    strip --strip-debug "$CTX/rootfs/strom"
fi
# uid 65532 as in distroless' "nonroot", so both images run as the same user.
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
    >"$CTX/rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$CTX/rootfs/etc/group"
# glibc looks here to decide how to resolve names (the pod's /etc/hosts first,
# then cluster DNS); Kubernetes mounts hosts and resolv.conf themselves.
printf 'hosts: files dns\n' >"$CTX/rootfs/etc/nsswitch.conf"

if is_static "$BINARY"; then
    log "binary: $BINARY (static: ldd says not dynamic)"
else
    log "binary: $BINARY is dynamic; copying the libraries ldd lists into the image"
    ldd "$BINARY" | grep -o '/[^ ]*' | sort -u | while read -r lib; do
        mkdir -p "$CTX/rootfs$(dirname "$lib")"
        cp -L "$lib" "$CTX/rootfs$lib"
        log "  + $lib"
    done
fi

if [ -n "$CONTEXT" ]; then
    log "staged the image context in $CONTEXT"
    exit 0
fi

# --- build -------------------------------------------------------------------------
OLD_ID=$(podman image inspect "$TAG" --format '{{.Id}}' 2>/dev/null || true)
log "podman build -t $TAG -f deploy/image/Containerfile.local"
if ! podman build --quiet -t "$TAG" -f "$ROOT/deploy/image/Containerfile.local" "$CTX" >&2; then
    give_up "podman could not build the image here (see the error above). Use the Dockerfile with docker or 'minikube image build' instead."
fi

# --- check what was built ------------------------------------------------------------
podman image inspect "$TAG" >/dev/null || fail "podman built nothing named $TAG"
# The previous build under this tag would otherwise linger, untagged.
NEW_ID=$(podman image inspect "$TAG" --format '{{.Id}}')
if [ -n "$OLD_ID" ] && [ "$OLD_ID" != "$NEW_ID" ]; then
    podman rmi "$OLD_ID" >/dev/null 2>&1 || true
fi
SIZE=$(podman image inspect "$TAG" --format '{{.Size}}')
log "built $TAG: $SIZE bytes ($(( (SIZE + 524288) / 1048576 )) MiB)"
podman image inspect "$TAG" \
    --format 'user={{.Config.User}} entrypoint={{.Config.Entrypoint}} ports={{.Config.ExposedPorts}} volumes={{.Config.Volumes}}' >&2

# Containers cannot be run on every machine (rootless sandboxes refuse the
# runtime), but the image's filesystem can always be exported and checked:
# the binary must start inside it with nothing from the host.
CID=$(podman create "$TAG" 2>/dev/null || true)
if [ -n "$CID" ]; then
    mkdir -p "$CTX/export"
    podman export "$CID" | tar -x -C "$CTX/export"
    podman rm "$CID" >/dev/null
    for f in strom etc/passwd tmp var/lib/strom/data; do
        [ -e "$CTX/export/$f" ] || fail "the image lacks /$f"
    done
    if [ "$(id -u)" -eq 0 ] && command -v chroot >/dev/null 2>&1; then
        if timeout 10 chroot --userspec=65532:65532 "$CTX/export" /strom --help >/dev/null 2>&1; then
            log "check: /strom --help runs inside the image's filesystem as uid 65532"
        else
            fail "/strom --help does not run inside the image's filesystem (a missing library?)"
        fi
    fi
fi

if [ "$SAVE" = 1 ]; then
    mkdir -p target
    OUT=target/strom-image-$VERSION.tar
    rm -f "$OUT"
    podman save --quiet --format docker-archive -o "$OUT" "$TAG"
    log "saved $OUT ($(du -h "$OUT" | cut -f1)); load it with: minikube image load $OUT"
fi
echo "$TAG"
