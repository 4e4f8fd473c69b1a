"""Determinism and the environment fingerprint: threads, flags, seeds, the CPU kernels, the
kit's git state, and what `sst doctor` prints (lock drift: :mod:`sst.locks`).

    sst doctor            # exit 1 when what is installed differs from environment.lock
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sst.errors import SstError
from sst.locks import KIT_ROOT, drift, find_lock, installed, read_lock


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
        "cpu_isa": cpu_isa(),
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


def _cpu_flags() -> set[str]:
    try:
        return next(
            set(line.split(":", 1)[1].split())
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("flags")
        )
    except (OSError, StopIteration):
        return set()


BF16_UNITS = {"avx512_bf16", "amx_bf16"}


def cpu_has_bf16(flags: set[str] | None = None) -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere torch emulates it."""
    return bool((_cpu_flags() if flags is None else flags) & BF16_UNITS)


def resolve_precision(value: str) -> str:
    """``train.precision`` as Lightning runs it ("auto": bf16/16-mixed on a GPU, fp32 on a CPU;
    16-mixed on a CPU: bf16-mixed, as Lightning switches it)."""
    import torch

    if value == "auto" and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    if value == "auto":
        return "32-true"
    return "bf16-mixed" if value == "16-mixed" and not torch.cuda.is_available() else value


def resolve_attention(attention: str, precision: str) -> str | None:
    """``model.attention`` as transformers' ``attn_implementation`` (None: the model's default).
    "auto" is eager under bf16 on a CPU: there torch's fused attention (sdpa) runs its bf16
    backward up to 24x slower than in fp32 at SST's short phrases, and the whole step loses the bf16
    gain that eager keeps (BENCHMARKS.md, "bf16 on a CPU")."""
    if attention != "auto":
        return attention
    return "eager" if _bf16_on_cpu(resolve_precision(precision)) else None


def _bf16_on_cpu(precision: str) -> bool:
    """Whether a resolved ``precision`` runs bf16 under CPU autocast."""
    import torch

    return "bf16" in precision and not torch.cuda.is_available()


def precision_note(precision: str) -> list[str]:
    """A run's note when its precision is bf16 on a CPU that emulates it."""
    if _bf16_on_cpu(precision) and not cpu_has_bf16():
        return [
            f"precision {precision} on a CPU without bf16 units (avx512_bf16/amx_bf16): "
            "emulated, slower than 32-true"
        ]
    return []


def cpu_summary() -> str:
    """The CPU model and the vector units that decide kernels, for benchmark tables."""
    flags = _cpu_flags()
    units = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")
    have = [u for u in units if u in flags]
    bf16 = "" if cpu_has_bf16(flags) else "; no bf16 units"
    return f"{_cpu_model()} ({os.cpu_count()} cores; {', '.join(have) or 'no AVX2'}{bf16})"


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


# The portable CPU mode: every numeric library torch uses on the CPU held to its AVX2 kernels
# (each of the three changes the bits on an AVX-512 CPU: measured, BENCHMARKS.md), so a run
# replays bit-identically on any x86-64 CPU with AVX2. Read when the libraries load: before torch.
CPU_ISA_ENV = "SST_CPU_ISA"
CPU_ISA_LEVELS = {
    "native": {},
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_CBWR": "AVX2,STRICT",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
    },
}


PINNING_VARS = frozenset(k for pins in CPU_ISA_LEVELS.values() for k in pins)


def pin_cpu_isa() -> str:
    """Apply ``$SST_CPU_ISA`` (``native``, the default, or ``avx2``) to the numeric libraries'
    variables; `sst` calls it before anything imports torch. Returns the level."""
    level = (os.environ.get(CPU_ISA_ENV) or "native").lower()
    if level not in CPU_ISA_LEVELS:
        raise SstError(
            f"{CPU_ISA_ENV}={level!r} is not one of {', '.join(CPU_ISA_LEVELS)}",
            fix=f"export {CPU_ISA_ENV}=avx2 (portable bits) or unset it",
        )
    for key, value in CPU_ISA_LEVELS[level].items():
        os.environ.setdefault(key, value)
    return level


def use_cpu_isa(level: str) -> None:
    """Run with the level a run was recorded with (a replay): its variables exactly, before
    torch loads; refused once torch has chosen its kernels."""
    if (os.environ.get(CPU_ISA_ENV) or "native").lower() == level:
        return
    if "torch" in sys.modules:
        raise SstError(
            f"the run was recorded with {CPU_ISA_ENV}={level}, but torch has loaded already",
            fix=f"start it as {CPU_ISA_ENV}={level} sst replay …",
        )
    os.environ[CPU_ISA_ENV] = level
    for key in PINNING_VARS:
        os.environ.pop(key, None)
    pin_cpu_isa()


def cpu_isa() -> dict[str, Any]:
    """The level asked for and what the libraries run: torch's kernels as it reports them, the
    MKL and oneDNN caps (the fingerprint's ``environment/cpu_isa``)."""
    import torch

    return {
        "level": (os.environ.get(CPU_ISA_ENV) or "native").lower(),
        "aten": torch.backends.cpu.get_cpu_capability(),
        **{k: os.environ.get(k) for k in CPU_ISA_LEVELS["avx2"] if k != "ATEN_CPU_CAPABILITY"},
    }


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
    if pin_cpu_isa() != "native" and torch.backends.cpu.get_cpu_capability() != "AVX2":
        raise SstError(
            f"{CPU_ISA_ENV}=avx2 asks for AVX2 kernels but torch runs "
            f"{torch.backends.cpu.get_cpu_capability()} ones: torch was imported before the "
            "variables were set, or this CPU lacks AVX2",
            fix=f"export {CPU_ISA_ENV}=avx2 before Python starts (sst sets the rest itself)",
        )
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
