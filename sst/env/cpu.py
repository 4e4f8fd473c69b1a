"""The CPU: its vendor, model and vector units (for benchmark tables and the bf16 choice), and
the portable modes that hold torch's numeric libraries to fixed kernels.

    SST_CPU_ISA=portable sst train ...   # the same bits on Intel and AMD x86-64 CPUs with AVX2
    SST_CPU_ISA=avx2 sst train ...       # the same bits across Intel CPUs with AVX2 (faster)

Both hold ATen and oneDNN to their AVX2 kernels (each library changes the bits on an AVX-512 CPU:
measured, BENCHMARKS.md). They differ in MKL, which torch's fp32 matrix products run on: MKL's
``AVX2`` reproducibility branch holds "on every Intel CPU supporting AVX2", but on other vendors
MKL takes its automatic branch instead (measured on an AMD EPYC: other weights than on a Xeon).
``COMPATIBLE`` is the branch MKL defines independently of the vendor (SSE2 without the
approximate reciprocals), slower: ``portable`` uses it. The variables are read when the libraries
load: `sst` pins them before torch.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from sst.errors import SstError

BF16_UNITS = {"avx512_bf16", "amx_bf16"}
CPU_ISA_ENV = "SST_CPU_ISA"
CPU_ISA_LEVELS = {
    "native": {},
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_CBWR": "AVX2,STRICT",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
    },
    "portable": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_CBWR": "COMPATIBLE,STRICT",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
    },
}
PINNED_LEVELS = frozenset(CPU_ISA_LEVELS) - {"native"}  # the levels that pin kernels
# The levels whose bits are designed not to depend on the CPU's vendor (MKL's COMPATIBLE branch;
# verified on AMD EPYC so far, BENCHMARKS.md); avx2's hold among Intel CPUs only
VENDOR_FREE = frozenset({"portable"})
SAME_BITS_ON = {
    "native": "this CPU model",
    "avx2": "Intel CPUs with AVX2",
    "portable": "Intel and AMD CPUs with AVX2",
}
PINNING_VARS = frozenset(k for pins in CPU_ISA_LEVELS.values() for k in pins)
# The libraries' caps a run records beside torch's own report of its kernels, and what each is
LIBRARY_CAPS = {
    "MKL_CBWR": "MKL's reproducibility mode",
    "ONEDNN_MAX_CPU_ISA": "oneDNN's instruction-set cap",
}


def _cpuinfo(key: str) -> str | None:
    """The first ``key : value`` of /proc/cpuinfo (None where there is none: not Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags() -> set[str]:
    return set((_cpuinfo("flags") or "").split())


def cpu_vendor() -> str:
    """The CPU's vendor as the kernel reports it (``GenuineIntel``, ``AuthenticAMD``)."""
    return _cpuinfo("vendor_id") or "unknown"


def cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or "unknown"


def cpu_has_bf16(flags: set[str] | None = None) -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere torch emulates it."""
    return bool((cpu_flags() if flags is None else flags) & BF16_UNITS)


def cpu_summary() -> str:
    """The CPU model and the vector units that decide kernels, for benchmark tables."""
    flags = cpu_flags()
    units = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")
    have = [u for u in units if u in flags]
    bf16 = "" if cpu_has_bf16(flags) else "; no bf16 units"
    return f"{cpu_model()} ({os.cpu_count()} cores; {', '.join(have) or 'no AVX2'}{bf16})"


def isa_level() -> str:
    """The portable level asked for (``$SST_CPU_ISA``; ``native`` when unset)."""
    return (os.environ.get(CPU_ISA_ENV) or "native").lower()


def pin_cpu_isa() -> str:
    """Apply ``$SST_CPU_ISA`` (``native``, the default, ``avx2`` or ``portable``) to the numeric
    libraries' variables; `sst` calls it before anything imports torch. Returns the level."""
    level = isa_level()
    if level not in CPU_ISA_LEVELS:
        raise SstError(
            f"{CPU_ISA_ENV}={level!r} is not one of {', '.join(CPU_ISA_LEVELS)}",
            fix=f"export {CPU_ISA_ENV}=portable (the same bits on Intel and AMD) or unset it",
        )
    for key, value in CPU_ISA_LEVELS[level].items():
        os.environ.setdefault(key, value)
    return level


def use_cpu_isa(level: str) -> None:
    """Run with the level a run was recorded with (a replay): its variables exactly, before
    torch loads; refused once torch has chosen its kernels."""
    if isa_level() == level:
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


def torch_kernels() -> str:
    """The vector kernels torch runs, as it reports them (e.g. AVX2, AVX512)."""
    import torch

    return torch.backends.cpu.get_cpu_capability()


def check_pinned() -> None:
    """Refuse a portable level that torch does not honour (it was imported before the variables
    were set, or the CPU lacks AVX2)."""
    if (level := pin_cpu_isa()) != "native" and torch_kernels() != "AVX2":
        raise SstError(
            f"{CPU_ISA_ENV}={level} asks for AVX2 kernels but torch runs {torch_kernels()} ones: "
            "torch was imported before the variables were set, or this CPU lacks AVX2",
            fix=f"export {CPU_ISA_ENV}={level} before Python starts (sst sets the rest itself)",
        )
