"""The one precision decision: ``train.precision`` and ``model.attention`` as a run executes them,
taken once per run and passed to everything that depends on it (the model's attention kernels,
the Lightning Trainer, the fingerprint, the run's notes).

    python -c "from sst.env.precision import decide; print(decide('auto', 'auto'))"

"auto" differs by device: bf16-mixed (or 16-mixed without bf16) on a GPU, 32-true on a CPU;
16-mixed on a CPU runs as bf16-mixed, as Lightning switches it. Attention "auto" is eager under
bf16 on a CPU, where torch's fused attention (sdpa) runs its bf16 backward up to 24x slower than
in fp32 at SST's short phrases and the whole step loses the bf16 gain that eager keeps
(BENCHMARKS.md, "bf16 on a CPU"); elsewhere the model's default.
"""

from __future__ import annotations

from dataclasses import dataclass

from sst.env.cpu import cpu_has_bf16

INFERENCE = "32-true"  # a finished run's classifier predicts in fp32


@dataclass(frozen=True)
class Precision:
    """What a run executes: ``lightning`` is the Trainer's precision ("32-true", "bf16-mixed",
    …), ``attention`` transformers' ``attn_implementation`` (None: the model's default), and
    ``device`` where autocast runs ("cpu" or "cuda")."""

    lightning: str
    attention: str | None
    device: str

    @property
    def bf16_on_cpu(self) -> bool:
        return "bf16" in self.lightning and self.device == "cpu"

    def notes(self) -> list[str]:
        """A run's note when its precision is bf16 on a CPU that emulates it."""
        if self.bf16_on_cpu and not cpu_has_bf16():
            return [
                f"precision {self.lightning} on a CPU without bf16 units (avx512_bf16/amx_bf16): "
                "emulated, slower than 32-true"
            ]
        return []


def decide(precision: str, attention: str = "auto") -> Precision:
    """``train.precision`` and ``model.attention`` on this machine (see the module's text)."""
    import torch

    cuda = torch.cuda.is_available()
    if precision == "auto" and cuda:
        lightning = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    elif precision == "auto":
        lightning = "32-true"
    else:
        lightning = "bf16-mixed" if precision == "16-mixed" and not cuda else precision
    device = "cuda" if cuda else "cpu"
    if attention == "auto":
        bf16_cpu = Precision(lightning, None, device).bf16_on_cpu
        return Precision(lightning, "eager" if bf16_cpu else None, device)
    return Precision(lightning, attention, device)
