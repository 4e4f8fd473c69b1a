"""What every benchmark (`sst bench`) shares: the instruments (peak memory, a clock of a training
step's phases), best-of timing, and its table printed and written as a section of BENCHMARKS.md,
stamped with the date and the CPU (model and vector units) it was measured on.

    sst bench train -c configs/demo.yaml --out BENCHMARKS.md    # a section written here
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sst.env.cpu import cpu_summary

PHASES = ("collate", "forward", "backward", "optimizer", "rest")


class PeakRss:
    """The process's peak resident memory in MiB over a ``with`` block: Linux resets its
    high-water mark on request (``/proc/self/clear_refs``); elsewhere the peak since start."""

    mib: float = 0.0

    def __enter__(self) -> PeakRss:
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            status = Path("/proc/self/status").read_text()
            self.mib = int(status.split("VmHWM:")[1].split()[0]) / 1024
        except (OSError, IndexError):
            import resource

            self.mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Clock:
    """Seconds per phase, summed over the run, and the steps counted."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.marks: dict[str, float] = {}
        self.steps = 0

    def mark(self, name: str) -> None:
        self.marks[name] = time.perf_counter()

    def span(self, phase: str, start: str, end: str) -> None:
        self.seconds[phase] += self.marks[end] - self.marks[start]

    def timed(self, phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[phase] += time.perf_counter() - t0

        return wrapper

    def per_step_ms(self, wall: float) -> dict[str, float]:
        """Milliseconds per step of each phase; ``rest`` is what the phases do not explain."""
        out = {p: 1000 * self.seconds[p] / max(self.steps, 1) for p in PHASES if p != "rest"}
        out["rest"] = 1000 * wall / max(self.steps, 1) - sum(out.values())
        return out


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    """The fastest of ``repeat`` timed calls, in seconds."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def print_and_save(out_md: Path | None, heading: str, lines: list[str]) -> None:
    """Print a benchmark's table; with ``out_md``, make it that file's ``## heading`` section."""
    text = "\n".join(lines)
    print(text)
    if out_md is not None:
        _update_benchmarks(out_md, heading, text)


def _update_benchmarks(path: Path, heading: str, body: str) -> None:
    """Replace (or add) the ``## heading`` section of BENCHMARKS.md with ``body``."""
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmarks\n"
    marker = f"## {heading}"
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    section = f"{marker}\n\nMeasured {stamp} on {cpu_summary()}, peers in the same run.\n\n{body}\n"
    if marker in text:
        head, rest = text.split(marker, 1)
        tail = rest.split("\n## ", 1)
        text = head + section + ("\n## " + tail[1] if len(tail) > 1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")
