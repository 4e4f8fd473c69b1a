#!/usr/bin/env bash
# CI's docker stage (also for developers): engine up; the CPU image and the agent image built from
# the runtime lock alone. Inside the runtime image a real `sst split` + `sst train` on the tiny
# fixture model and a replay of a host run. From the host the docker tier (tests/test_image.py:
# labels, no dev tools and no credentials in the runtime image, the Colab docker mode on this
# engine, docker-compose config; tests/test_agent_image.py: the task container as clearml-agent
# builds it, an agent's re-execution from a fresh clone in a container). Last the devcontainer:
# the dev image (environment-dev.lock on top) built as VS Code builds it, running `make test`,
# the fast tier inside an image.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
# The image's user (uid 1000) reads the mounted checkout, and in the devcontainer writes
# sst.egg-info into it: a clone made in a `mktemp -d` folder is 0700, so open it first.
chmod a+rwx "$PWD"
DOCKER=$(scripts/docker-engine.sh)
echo "docker stage: engine up ($($DOCKER version --format '{{.Server.Version}}'))"
# Sentinel secrets in the build's environment: tests/test_image.py proves none reaches the image
export CLEARML_API_SECRET_KEY=sst-ci-sentinel-clearml-secret AWS_SECRET_ACCESS_KEY=sst-ci-sentinel-aws-secret
image=$(scripts/image.sh app sst:cpu)
echo "docker stage: image $image, $($DOCKER image inspect "$image" --format '{{.Size}}') bytes"
agent_image=$(scripts/image.sh agent sst:agent)
echo "docker stage: image $agent_image, $($DOCKER image inspect "$agent_image" --format '{{.Size}}') bytes"
# the real data, wherever it is (.ci/run sets SST_DATA; ../shared/data beside the clone)
data=${SST_DATA:-$(cd .. && pwd)/shared/data}
# The host CA bundle, read-only, for the tests that install from PyPI behind an intercepting proxy
ca=/etc/ssl/certs/ca-certificates.crt
ca_args=()
[[ -s $ca ]] && ca_args=(-v "$ca":/etc/ssl/certs/host-ca.crt:ro -e PIP_CERT=/etc/ssl/certs/host-ca.crt)
# git inside the image reads the mounted checkout, owned by another user: safe.directory, which
# git honours only in system or global configuration (GIT_CONFIG_GLOBAL)
gitconfig=$(mktemp /tmp/sst-gitconfig.XXXXXX)
printf '[safe]\n\tdirectory = *\n' > "$gitconfig"
chmod 644 "$gitconfig"
run=("$DOCKER" run --rm --network host -v "$PWD":/work/app:ro -v "$data":/work/shared/data:ro
     -w /work/app -e HOME=/tmp/home -e CLEARML_OFFLINE_MODE=1 "${ca_args[@]}"
     -v "$gitconfig":/etc/sst-gitconfig:ro -e GIT_CONFIG_GLOBAL=/etc/sst-gitconfig)
# The runtime image trains: the tiny fixture (made here: tests/ needs the dev tools) split and
# trained inside it. Then host → container replay: a tiny run trained here, replayed inside the
# image from what it recorded (same paths mounted). Identical when the wheels and their bundled
# libraries match; otherwise the verdict names the difference. Only an error or an unexplained
# difference fails.
rt=$(mktemp -d /tmp/sst-replay.XXXXXX)
chmod a+rwx "$rt"
"${VENV:-.venv}/bin/python" -m tests.tiny "$rt/image-tiny" >/dev/null 2>&1
chmod -R a+rwX "$rt"
"${run[@]}" -v "$rt":"$rt" "$image" bash -c \
  "sst split -c $rt/image-tiny/split.yaml >/dev/null && sst train -c $rt/image-tiny/train.yaml 2>/dev/null | grep -E '^(run|test|weights)'"
"${VENV:-.venv}/bin/python" -m tests.tiny "$rt/tiny" >/dev/null 2>&1
"${VENV:-.venv}/bin/sst" split -c "$rt/tiny/split.yaml" tracking.enabled=false >/dev/null
"${VENV:-.venv}/bin/sst" train -c "$rt/tiny/train.yaml" tracking.enabled=false >/dev/null 2>&1
host_run=$(ls -d "$rt"/tiny/runs/*/)
chmod -R a+rwX "$rt"
set +e
"${run[@]}" -v "$rt":"$rt" "$image" replay "$host_run" --out "$rt/replays" \
  > "$rt/verdict.txt" 2>&1
code=$?
set -e
echo "docker stage: host → container replay (exit $code):"
sed -n '/^recorded \//,$p' "$rt/verdict.txt" | grep -vE "it/s|Epoch|DataLoader|^(GPU|TPU|💡)"
if (( code == 2 )) || grep -q "determinism bug" "$rt/verdict.txt" \
   || ! tail -1 "$rt/verdict.txt" | grep -qE "^(BIT-IDENTICAL|DIFFERENT)"; then
  echo "docker stage: the host → container replay failed"; exit 1
fi
rm -rf "$rt"
SST_DOCKER=$DOCKER SST_IMAGE=$image SST_AGENT_IMAGE=$agent_image "${VENV:-.venv}/bin/pytest" -q -s \
  -p no:cacheprovider -m docker tests/test_image.py tests/test_agent_image.py
unset CLEARML_API_SECRET_KEY AWS_SECRET_ACCESS_KEY
echo "docker stage: image checks done at $(( $(date +%s) - t0 )) s"

# The devcontainer, as VS Code builds it: @devcontainers/cli build, up, exec make test. It mounts
# the folder above the clone (for ../shared/data): the image's user must be able to enter it.
chmod a+rx ..
command -v devcontainer >/dev/null || npm install -g --silent @devcontainers/cli@0.89.0 >/dev/null
export SST_BASE_IMAGE=$(DOCKER=$DOCKER scripts/base-image.sh)
dc=(--workspace-folder . --docker-path "$DOCKER")
DOCKER_BUILDKIT=1 devcontainer build "${dc[@]}" --image-name sst:dev >/tmp/devcontainer-build.log 2>&1 \
  || { tail -20 /tmp/devcontainer-build.log; exit 1; }
up_args=()
[[ -s $ca ]] && up_args=(--mount "type=bind,source=$ca,target=/etc/ssl/certs/host-ca.crt"
                         --remote-env PIP_CERT=/etc/ssl/certs/host-ca.crt)
DOCKER_BUILDKIT=1 devcontainer up "${dc[@]}" "${up_args[@]}" >/tmp/devcontainer-up.log 2>&1 \
  || { tail -20 /tmp/devcontainer-up.log; exit 1; }
devcontainer exec "${dc[@]}" "${up_args[@]:2}" make test
$DOCKER rm -f $($DOCKER ps -aq --filter "label=devcontainer.local_folder=$PWD") >/dev/null 2>&1 || true
$DOCKER image prune -f >/dev/null
$DOCKER builder prune -f --filter until=72h >/dev/null
echo "docker stage: done in $(( $(date +%s) - t0 )) s"
