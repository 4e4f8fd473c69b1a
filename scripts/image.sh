#!/usr/bin/env bash
# Build the kit's image: engine up (scripts/docker-engine.sh), base pulled or made
# (scripts/base-image.sh), local wheels staged, then docker/Dockerfile's target with BuildKit.
# usage: scripts/image.sh [target=app] [tag=sst:cpu] [lock=environment.lock]
#   lock environment-gpu.lock builds on the CUDA base (the GPU image, `make image`)
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-app}
tag=${2:-sst:cpu}
lock=${3:-environment.lock}
DOCKER=$(scripts/docker-engine.sh)
kind=cpu
[[ $lock == environment-gpu.lock ]] && kind=gpu
base=$(DOCKER=$DOCKER scripts/base-image.sh "$kind")
if compgen -G "/opt/wheels/torch-*+cpu-*.whl" >/dev/null && [[ $lock == environment.lock ]]; then
  for w in /opt/wheels/torch-*+cpu-*.whl; do
    [[ -e docker/wheels/$(basename "$w") ]] || ln "$w" docker/wheels/ 2>/dev/null || cp "$w" docker/wheels/
  done
fi
secret=()
[[ -s /etc/ssl/certs/ca-certificates.crt ]] && secret=(--secret id=ca,src=/etc/ssl/certs/ca-certificates.crt)
start=$(date +%s)
DOCKER_BUILDKIT=1 $DOCKER build --network host "${secret[@]}" \
  --build-arg BASE_IMAGE="$base" --build-arg LOCK="$lock" \
  --build-arg GIT_REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" --build-arg IMAGE_TAG="$tag" \
  --build-arg LOCK_SHA256="$(sha256sum "$lock" | cut -d' ' -f1)" \
  --target "$target" -t "$tag" -f docker/Dockerfile . >&2
echo "image: $tag (target $target, base $base) built in $(( $(date +%s) - start )) s" >&2
echo "$tag"
