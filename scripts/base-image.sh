#!/usr/bin/env bash
# The base image for docker/Dockerfile. Pulls the pinned BASE_IMAGE (a digest); only when no
# registry can be reached does it build a local stand-in with debootstrap: Debian bookworm (the
# distribution of python:3.11-slim-bookworm) with Debian's Python 3.11, imported as sst-base.
# Prints the image reference to pass as --build-arg BASE_IMAGE=...
# usage: scripts/base-image.sh [cpu|gpu|reference]   (cpu: the Dockerfile's pin; gpu: CUDA_BASE_IMAGE)
set -euo pipefail
DOCKER=${DOCKER:-/usr/bin/docker}
dockerfile="$(dirname "$0")/../docker/Dockerfile"
case ${1:-cpu} in
  cpu) PINNED=$(sed -n 's/^FROM ${BASE_IMAGE:-\([^}]*\)}.*/\1/p' "$dockerfile" | head -1) ;;
  gpu) PINNED=$(sed -n 's/^ARG CUDA_BASE_IMAGE=//p' "$dockerfile") ;;
  *) PINNED=$1 ;;
esac
if $DOCKER image inspect "$PINNED" >/dev/null 2>&1 || $DOCKER pull -q "$PINNED" >/dev/null 2>&1; then
  echo "$PINNED"
  exit 0
fi
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=python3.11,python3.11-venv,ca-certificates
TAG="sst-base:bookworm-$(printf '%s %s' "$MIRROR" "$PACKAGES" | sha256sum | cut -c1-12)"
if $DOCKER image inspect "$TAG" >/dev/null 2>&1; then
  echo "$TAG"
  exit 0
fi
echo "base-image: $PINNED cannot be pulled; using $TAG (debootstrap)" >&2
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
# minbase first, then apt inside it: --include cannot configure python3.11-venv in minbase
{ debootstrap --variant=minbase bookworm "$root" "$MIRROR" \
  && chroot "$root" apt-get update \
  && DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y --no-install-recommends \
       ${PACKAGES//,/ } \
  && chroot "$root" apt-get clean; } >/tmp/debootstrap.log 2>&1 \
  || { echo "base-image: debootstrap failed (see /tmp/debootstrap.log)" >&2; exit 1; }
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | $DOCKER import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["bash"]' - "$TAG" >/dev/null
echo "$TAG"
