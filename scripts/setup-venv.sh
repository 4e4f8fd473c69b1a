#!/usr/bin/env bash
# Create or update the virtual environment from environment.lock (what runs tasks) and
# environment-dev.lock (tests and lint, on top), with hashes required. A no-op when the locks
# and pyproject.toml are unchanged since the last install (sha256 stamp).
# Without the lock's interpreter on PATH (Ubuntu 24.04 and hosted Colab ship Python 3.12), a
# CPython 3.11 comes from uv: found where uv looks, or downloaded once into its own folder.
# usage: scripts/setup-venv.sh [--dry-run] [python] [venv]    (--dry-run: print the plan)
set -euo pipefail
cd "$(dirname "$0")/.."
dry=0
[[ ${1:-} == --dry-run ]] && { dry=1; shift; }
py=${1:-python3.11}
venv=${2:-.venv}
UV_VERSION=0.13.9  # as scripts/lock.sh
run() { if (( dry )); then echo "+ $*"; else "$@"; fi; }
# The locks hold Linux x86-64 wheels only (scripts/lock.sh compiles for x86_64-manylinux_2_28, and
# torch's +cpu build has no macOS wheel): elsewhere the kit runs in its linux/amd64 container
machine="$(uname -s) $(uname -m)"
if [[ $machine != "Linux x86_64" ]]; then
  echo "setup: environment.lock holds Linux x86-64 wheels only, this machine is $machine (fix: open the kit in its devcontainer or the sst:cpu image, both linux/amd64: docs/containers.md)" >&2
  exit 1
fi
stamp="$venv/.lock.sha256"
want=$(cat environment.lock environment-dev.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$venv/bin/sst" ]] && (( !dry )); then
  touch "$stamp"
  exit 0
fi
if ! command -v "$py" >/dev/null; then
  boot=$(command -v python3 || true)
  [[ -n $boot ]] || { echo "setup: neither $py nor python3 found (fix: install Python 3.11 or pass PYTHON=...)" >&2; exit 1; }
  echo "setup: $py not found; the lock's Python 3.11 from uv $UV_VERSION (bootstrapped with $boot)"
  [[ -x .venv-uv/bin/uv ]] || { run "$boot" -m venv .venv-uv && run .venv-uv/bin/pip install -q "uv==$UV_VERSION"; }
  if (( dry )); then
    echo "+ .venv-uv/bin/uv python find 3.11 || .venv-uv/bin/uv python install 3.11"
    py="<uv's python3.11>"
  else
    py=$(.venv-uv/bin/uv python find 3.11 2>/dev/null) || {
      .venv-uv/bin/uv python install 3.11 || { echo "setup: uv could not provide Python 3.11 (fix: install Python 3.11, or allow uv to download it from GitHub)" >&2; exit 1; }
      py=$(.venv-uv/bin/uv python find 3.11)
    }
  fi
fi
[[ -x "$venv/bin/python" ]] || run "$py" -m venv "$venv"
if (( dry )); then
  echo "+ $venv/bin/python -m pip install --require-hashes -r environment.lock -r environment-dev.lock"
  echo "+ $venv/bin/python -m pip install --no-deps -e ."
  exit 0
fi
start=$(date +%s)
echo "setup: installing environment.lock and environment-dev.lock into $venv (hashes required)"
# --retries 1: an index that cannot be resolved here (the PyTorch CPU index on a machine that
# takes torch from a local wheel) fails at once instead of backing off for ~8 s per package.
set -o pipefail
"$venv/bin/python" -m pip install --disable-pip-version-check --retries 1 --require-hashes \
    -r environment.lock -r environment-dev.lock 2>&1 | { grep -vE 'Retrying \(Retry|is ignored: it is neither' || true; }
"$venv/bin/python" -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
echo "$want" > "$stamp"
echo "setup: done in $(( $(date +%s) - start )) s"
