"""The hash-pinned locks: reading them, checking them against pyproject.toml, and the drift of
what is installed (`sst doctor`, `make lock-check`).

    python -c "from sst.env.locks import read_lock; print(len(read_lock('environment.lock')))"

Drift means a package pinned in ``environment.lock`` is missing or installed at another version.
Packages installed beyond the lock (pip itself, the ``sst`` package) are listed, not counted.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from sst.errors import SstError

KIT_ROOT = Path(__file__).resolve().parents[2]  # the checkout (or site-packages) holding sst
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\]+)")
IGNORED_EXTRAS = {"pip", "sst"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def find_lock(start: Path | None = None) -> Path | None:
    """``$SST_LOCK``, else ``environment.lock`` in the current folder or the package's checkout."""
    if os.environ.get("SST_LOCK"):
        return Path(os.environ["SST_LOCK"])
    for folder in (start or Path.cwd(), KIT_ROOT):
        if (folder / "environment.lock").is_file():
            return folder / "environment.lock"
    return None


# The locks `make lock` writes from the one pyproject.toml: what runs tasks with CPU torch (laptops,
# the CPU image, agents) and with CUDA torch from PyPI (the GPU image, Colab), and the dev extra
# alone, on top of the CPU one (`make setup`, the dev image). Each names its source.
LOCKS = {"cpu": "environment.lock", "gpu": "environment-gpu.lock", "dev": "environment-dev.lock"}
LOCK_SOURCE = re.compile(r"^# source: pyproject.toml sha256 ([0-9a-f]{64})$", re.MULTILINE)


def declared_sha256(pyproject: Path) -> str:
    """sha256 of what the locks are generated from: requires-python, dependencies and extras."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    keys = ("requires-python", "dependencies", "optional-dependencies")
    source = {k: project.get(k) for k in keys}
    return hashlib.sha256(json.dumps(source, sort_keys=True).encode()).hexdigest()


def stale_locks(root: Path) -> list[str]:
    """One line per lock in ``root`` that was not generated from the current pyproject.toml."""
    want = declared_sha256(root / "pyproject.toml")
    problems = []
    for name in LOCKS.values():
        path = root / name
        if not path.is_file():
            problems.append(f"{path}: missing; run `make lock`")
            continue
        m = LOCK_SOURCE.search(path.read_text(encoding="utf-8"))
        if not m or m.group(1) != want:
            problems.append(f"{path}:1: stale versus pyproject.toml; run `make lock`")
    return problems


def read_lock(path: Path) -> dict[str, str]:
    """name -> pinned version of every requirement line; every pin must carry a hash."""
    pins: dict[str, str] = {}
    text = path.read_text(encoding="utf-8")
    logical: list[tuple[int, str]] = []
    buf, start = "", 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not buf:
            start = lineno
        buf += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            logical.append((start, buf.strip()))
            buf = ""
    for lineno, line in logical:
        if not line or line.startswith(("#", "-")):
            continue
        m = PIN.match(line)
        if not m:
            raise SstError(
                f"not a pinned requirement: {line[:60]!r}",
                path=path,
                line=lineno,
                fix="regenerate the lock with `make lock`",
            )
        if "--hash=" not in line:
            raise SstError(
                f"{m.group(1)} has no --hash",
                path=path,
                line=lineno,
                fix="regenerate the lock with `make lock`",
            )
        pins[canonical(m.group(1))] = m.group(3)
    return pins


def installed() -> dict[str, str]:
    out: dict[str, str] = {}
    for dist in md.distributions():
        name = dist.metadata["Name"]
        if name:
            out[canonical(name)] = dist.version
    return out


@dataclass
class Drift:
    missing: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # "name lock=X installed=Y"
    extra: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.mismatched)


def drift(lock: dict[str, str], have: dict[str, str]) -> Drift:
    d = Drift()
    for name, version in sorted(lock.items()):
        got = have.get(name)
        if got is None:
            d.missing.append(f"{name}=={version}")
        elif got != version:
            d.mismatched.append(f"{name} lock={version} installed={got}")
    d.extra = sorted(n for n in have if n not in lock and n not in IGNORED_EXTRAS)
    return d
