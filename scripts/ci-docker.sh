#!/usr/bin/env bash
# CI's docker stage (also for developers): engine up, CPU image built from the lock, then inside
# the image the fast test tier and a real `sst split` + `sst train` on the tiny fixture model.
# The repository is mounted read-only at /work/app and ../shared at /work/shared.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
DOCKER=$(scripts/docker-engine.sh)
echo "docker stage: engine up ($($DOCKER version --format '{{.Server.Version}}'))"
image=$(scripts/image.sh app sst:cpu)
echo "docker stage: image $image, $($DOCKER image inspect "$image" --format '{{.Size}}') bytes"
shared=$(cd .. && pwd)/shared
run=("$DOCKER" run --rm --network host -v "$PWD":/work/app:ro -v "$shared":/work/shared:ro
     -w /work/app -e HOME=/tmp/home -e CLEARML_OFFLINE_MODE=1)
"${run[@]}" --entrypoint pytest "$image" -q -p no:cacheprovider
"${run[@]}" --entrypoint bash "$image" -c \
  'python -m tests.tiny /tmp/tiny >/dev/null && sst split -c /tmp/tiny/split.yaml >/dev/null && sst train -c /tmp/tiny/train.yaml 2>/dev/null | grep -E "^(run|test|weights)"'
$DOCKER image prune -f >/dev/null
$DOCKER builder prune -f --filter until=72h >/dev/null
echo "docker stage: done in $(( $(date +%s) - t0 )) s"
