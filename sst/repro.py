"""Environment fingerprint and lock drift (what `sst doctor` prints).

    sst doctor            # exit 1 when what is installed differs from environment.lock

Drift means a package pinned in ``environment.lock`` is missing or installed at another version.
Packages installed beyond the lock (pip itself, the ``sst`` package) are listed, not counted.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
import platform
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sst.errors import SstError

KIT_ROOT = Path(__file__).resolve().parent.parent  # the checkout (or site-packages) holding sst
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


# The two locks `make lock` writes from the one pyproject.toml: CPU torch (CI, laptops, the CPU
# image) and CUDA torch from PyPI (the GPU image). Each names the source it was generated from.
LOCKS = {"cpu": "environment.lock", "gpu": "environment-gpu.lock"}
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


def _git(root: Path, *args: str, ok: tuple[int, ...] = (0,)) -> bytes | None:
    try:
        res = subprocess.run(["git", "-C", str(root), *args], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout if res.returncode in ok else None


def _untracked(root: Path) -> list[str]:
    names = (_git(root, "ls-files", "--others", "--exclude-standard", "-z") or b"").split(b"\0")
    return sorted(n.decode() for n in names if n)


def git_state(root: Path | None = None) -> dict[str, Any]:
    """The kit's source: commit, sha256 of the uncommitted changes (tracked diff + untracked
    files; None when clean), remote. Outside a checkout (an installed image) the commit comes
    from ``$SST_GIT_REVISION`` (the image's build argument)."""
    root = root or KIT_ROOT
    commit = _git(root, "rev-parse", "HEAD") if (root / ".git").exists() else None
    if commit is None:
        return {"commit": os.environ.get("SST_GIT_REVISION"), "diff_sha256": None, "remote": None}
    h = hashlib.sha256(_git(root, "diff", "HEAD", "--binary") or b"")
    for name in _untracked(root):
        h.update(name.encode() + b"\0" + hashlib.sha256((root / name).read_bytes()).digest())
    dirty = h.hexdigest() != hashlib.sha256(b"").hexdigest()
    remote = _git(root, "config", "--get", "remote.origin.url")
    return {
        "commit": commit.decode().strip(),
        "diff_sha256": h.hexdigest() if dirty else None,
        "remote": remote.decode().strip() if remote else None,
    }


def git_patch(root: Path | None = None) -> str:
    """The uncommitted changes as one patch that ``git apply`` puts on the commit (what an agent
    does with a task's diff): the tracked changes and every untracked, not ignored file."""
    root = root or KIT_ROOT
    if not (root / ".git").exists():
        return ""
    parts = [_git(root, "diff", "HEAD", "--binary") or b""]
    for name in _untracked(root):
        parts.append(
            _git(root, "diff", "--no-index", "--binary", "/dev/null", name, ok=(0, 1)) or b""
        )
    return b"".join(parts).decode("utf-8", errors="replace")


def environment() -> dict[str, Any]:
    """The fingerprint of this interpreter and machine (no secrets, no paths of the user's)."""
    import torch

    lock = find_lock()
    cuda = torch.cuda.is_available()
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "cuda_available": cuda,
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if cuda
        else [],
        "executable": sys.executable,
        "lock": str(lock) if lock else None,
        "lock_sha256": hashlib.sha256(lock.read_bytes()).hexdigest() if lock else None,
        "lock_drift": _drift_summary(lock),
        "image": os.environ.get("SST_IMAGE"),  # set inside the kit's images and by agents
    }
    for var in ("PYTHONHASHSEED", "CUBLAS_WORKSPACE_CONFIG", "TOKENIZERS_PARALLELISM"):
        info[var] = os.environ.get(var)
    return info


def _drift_summary(lock: Path | None) -> list[str] | None:
    """Missing and mismatched packages against the lock ([] when clean; None without a lock)."""
    if lock is None:
        return None
    d = drift(read_lock(lock), installed())
    return d.missing + d.mismatched


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def doctor(out: Any = None) -> int:
    """Print the fingerprint and the drift against the lock; 0 when clean, 1 on drift."""
    import torch

    out = out or sys.stdout
    info = environment()
    for key, value in info.items():
        print(f"{key:24} {value}", file=out)
    print(f"{'threads':24} {torch.get_num_threads()}", file=out)
    if info["lock"] is None:
        print("drift                    no environment.lock found (set SST_LOCK)", file=out)
        return 1
    d = drift(read_lock(Path(info["lock"])), installed())
    for item in d.missing:
        print(f"MISSING                  {item}", file=out)
    for item in d.mismatched:
        print(f"DRIFT                    {item}", file=out)
    if d.extra:
        print(f"not in lock (info)       {', '.join(d.extra)}", file=out)
    verdict = "none" if d.clean else f"{len(d.missing)} missing, {len(d.mismatched)} mismatched"
    print(f"{'drift':24} {verdict}", file=out)
    return 0 if d.clean else 1


DETERMINISM_ENV = {
    "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
    "PYTHONHASHSEED": "0",
    "TOKENIZERS_PARALLELISM": "false",
}


def configure_determinism(threads: int) -> dict[str, Any]:
    """The one place that makes a run repeatable; call it first. Returns the flags it set (the
    fingerprint's ``determinism`` section; the thread count and seed are recorded beside it).

    PYTHONHASHSEED only takes effect for a new interpreter (Make and the image set it); the
    others are honoured when set before CUDA or tokenizers start, which is why this runs first.
    Seeding is separate (:func:`seed_everything`): it must come after the ClearML task starts.
    """
    import torch

    for key, value in DETERMINISM_ENV.items():
        os.environ.setdefault(key, value)
    if threads > 0:
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=False)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    return {
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy, torch and DataLoader workers: once, right before fitting, after the
    ClearML task started (``Task.init`` reseeds every RNG unless told not to)."""
    import lightning as L

    L.seed_everything(seed, workers=True, verbose=False)


@contextmanager
def seeded_torch(seed: int) -> Iterator[None]:
    """torch's global RNG seeded with ``seed`` inside, restored after: what is built inside (a
    model's fresh head) depends on the seed only, not on what ran before."""
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield
