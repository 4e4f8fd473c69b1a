#!/usr/bin/env bash
# The GPU determinism check (issue 6): the tiny fixture model and MiniLM, each trained twice on the
# GPU with deterministic=True (Lightning: torch.use_deterministic_algorithms; the image's
# CUBLAS_WORKSPACE_CONFIG), then `sst verify` on each pair. Prints the GPU, the driver, the
# weights sha256 and the seconds per run; exits non-zero unless both pairs are BIT-IDENTICAL.
# usage: scripts/gpu-determinism.sh [minilm-model (default minilm)] [work dir]
set -euo pipefail
cd "$(dirname "$0")/.."
minilm=${1:-minilm}
work=${2:-$(mktemp -d)}
export PYTHONHASHSEED=0 TOKENIZERS_PARALLELISM=false CUBLAS_WORKSPACE_CONFIG=:4096:8
export HF_HUB_OFFLINE=1 SST_CACHE_DIR="$work/cache" PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py=${PYTHON:-python3}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
$py -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), torch.cuda.get_device_name(0))'
$py -m tests.tiny "$work/tiny" >/dev/null 2>&1
$py -m sst.cli split -c "$work/tiny/split.yaml" tracking.enabled=false >/dev/null
status=0
for model in "$work/tiny/model" "$minilm"; do
  label=$([[ $model == "$work/tiny/model" ]] && echo tiny || echo minilm)
  args=(-c "$work/tiny/train.yaml" "model.name=$model" tracking.enabled=false
        train.precision=bf16-mixed "train.runs_dir=$work/runs-$label")
  [[ $label == minilm ]] && args+=(model.max_length=64 train.lr=8e-5 train.epoch_size=3000)
  for i in 1 2; do
    t0=$SECONDS
    $py -m sst.cli train "${args[@]}" 2>"$work/$label-$i.err" | grep -E "^weights" \
      | sed "s/^/$label run $i: /" || { tail -5 "$work/$label-$i.err"; exit 1; }
    echo "$label run $i: $((SECONDS - t0)) s"
  done
  mapfile -t pair < <(ls -d "$work/runs-$label"/*/)
  $py -m sst.cli verify "${pair[0]}" "${pair[1]}" | sed "s/^/$label verify: /" || status=1
done
exit $status
