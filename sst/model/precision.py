"""``train.precision`` as a Lightning Trainer takes it.

bf16-mixed goes through :class:`Bf16Mixed`: Lightning's own mixed-precision plugin, except that it
clips gradients beside a fused optimizer. Lightning 2.6.6 refuses that pair for every mixed
precision ("performs unscaling of gradients internally"), but bf16 has no GradScaler, so there is
nothing to unscale and the clip sees the true gradients (Lightning-AI/pytorch-lightning#21435,
fixed upstream by #21436, not in a release yet). The presets clip (train.grad_clip=1) with the
fused AdamW, so without it bf16-mixed failed at its first step.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.utilities import GradClipAlgorithmType
from torch.optim import Optimizer

from sst.repro import resolve_precision


class Bf16Mixed(MixedPrecision):
    """Lightning's ``precision="bf16-mixed"`` (autocast to bfloat16, no scaler) that clips
    gradients whatever the optimizer."""

    def __init__(self, device: str) -> None:
        super().__init__("bf16-mixed", device)

    def clip_gradients(
        self,
        optimizer: Optimizer,
        clip_val: int | float = 0.0,
        gradient_clip_algorithm: GradClipAlgorithmType = GradClipAlgorithmType.NORM,
    ) -> None:
        # no scaler: the gradients are already true, so skip MixedPrecision's fused-optimizer guard
        Precision.clip_gradients(self, optimizer, clip_val, gradient_clip_algorithm)


def trainer_precision(value: str) -> dict[str, Any]:
    """The Trainer keyword for ``train.precision`` (resolved: "auto" differs by device)."""
    precision = resolve_precision(value)
    if precision == "bf16-mixed":
        return {"plugins": [Bf16Mixed("cuda" if torch.cuda.is_available() else "cpu")]}
    return {"precision": precision}
