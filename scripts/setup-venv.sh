#!/usr/bin/env bash
# Create or update the virtual environment from environment.lock, with hashes required.
# A no-op when the lock and pyproject.toml are unchanged since the last install (sha256 stamp).
# usage: scripts/setup-venv.sh [python] [venv]
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-python3.11}
venv=${2:-.venv}
stamp="$venv/.lock.sha256"
want=$(cat environment.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$venv/bin/sst" ]]; then
  touch "$stamp"
  exit 0
fi
command -v "$py" >/dev/null || { echo "setup: $py not found (fix: install Python 3.11 or pass PYTHON=...)" >&2; exit 1; }
[[ -x "$venv/bin/python" ]] || "$py" -m venv "$venv"
start=$(date +%s)
echo "setup: installing environment.lock into $venv (hashes required)"
# --retries 1: an index that cannot be resolved here (the PyTorch CPU index on a machine that
# takes torch from a local wheel) fails at once instead of backing off for ~8 s per package.
set -o pipefail
"$venv/bin/python" -m pip install --disable-pip-version-check --retries 1 --require-hashes \
    -r environment.lock 2>&1 | { grep -vE 'Retrying \(Retry|is ignored: it is neither' || true; }
"$venv/bin/python" -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
echo "$want" > "$stamp"
echo "setup: done in $(( $(date +%s) - start )) s"
