"""The one precision decision: ``train.precision`` and ``model.attention`` as a run executes them,
taken once per run and passed to everything that depends on it (the model's attention kernels,
the Lightning Trainer, the fingerprint, the run's notes).

    python -c "from sst.env.precision import decide; print(decide('auto', 'auto'))"

"auto" differs by device: bf16-mixed on a GPU with bf16 units (compute capability 8+), 16-mixed
on one without them (a T4: torch's emulated bf16 there is slow), 32-true on a CPU; "auto-bf16" is
"auto" except bf16-mixed on a CPU with bf16 units (avx512_bf16, amx_bf16; configs/mpnet.yaml);
16-mixed on a CPU runs as bf16-mixed, as Lightning switches it. Under 16-mixed the optimizer is
torch's per-tensor AdamW even when the fused one is asked: the fused one unscales the GradScaler's
gradients inside its step, so Lightning refuses to clip them (train.grad_clip, the presets'
1.0) and the run failed at its first step. Attention "auto" is eager under
bf16 on a CPU, where torch's fused attention (sdpa) runs its bf16 backward up to 24x slower than
in fp32 at SST's short phrases and the whole step loses the bf16 gain that eager keeps
(BENCHMARKS.md, "bf16 on a CPU"); elsewhere the model's default.
"""

from __future__ import annotations

from dataclasses import dataclass

from sst.env.cpu import cpu_has_bf16

INFERENCE = "32-true"  # a finished run's classifier predicts in fp32


@dataclass(frozen=True)
class Decision:
    """What a run executes: ``lightning`` is the Trainer's precision ("32-true", "bf16-mixed",
    …), ``attention`` transformers' ``attn_implementation`` (None: the model's default), and
    ``device`` where autocast runs ("cpu" or "cuda")."""

    lightning: str
    attention: str | None
    device: str

    @property
    def bf16_on_cpu(self) -> bool:
        return "bf16" in self.lightning and self.device == "cpu"

    def optimizer(self, asked: str) -> str:
        """``train.optimizer`` as this precision can clip with it (see the module's text)."""
        return "adamw_torch" if self.lightning == "16-mixed" else asked

    def notes(self, optimizer: str) -> list[str]:
        """What a run with ``train.optimizer=optimizer`` did on the user's behalf."""
        notes = []
        if self.bf16_on_cpu and not cpu_has_bf16():
            notes.append(
                f"precision {self.lightning} on a CPU without bf16 units (avx512_bf16/amx_bf16): "
                "emulated, slower than 32-true"
            )
        if self.optimizer(optimizer) != optimizer:
            notes.append(
                f"precision {self.lightning}: trained with {self.optimizer(optimizer)}, not "
                f"{optimizer} (a fused AdamW cannot clip gradients under a GradScaler)"
            )
        return notes


def decide(precision: str, attention: str) -> Decision:
    """``train.precision`` and ``model.attention`` on this machine (see the module's text)."""
    import torch

    cuda = torch.cuda.is_available()
    if precision == "auto" and cuda:  # bf16 units, not torch's emulation of them
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        lightning = "bf16-mixed" if native else "16-mixed"
    elif precision == "auto-bf16" and cuda:
        return decide("auto", attention)
    elif precision == "auto-bf16":  # the CPU's bf16 units where it has them, never emulated
        lightning = "bf16-mixed" if cpu_has_bf16() else "32-true"
    elif precision == "auto":
        lightning = "32-true"
    else:
        lightning = "bf16-mixed" if precision == "16-mixed" and not cuda else precision
    device = "cuda" if cuda else "cpu"
    if attention == "auto":
        bf16_cpu = Decision(lightning, None, device).bf16_on_cpu
        return Decision(lightning, "eager" if bf16_cpu else None, device)
    return Decision(lightning, attention, device)
