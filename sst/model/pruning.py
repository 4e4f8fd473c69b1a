"""``train.prune``: global unstructured L1 pruning of the encoder's linear weights, once, when
training starts, then fine-tuning with the pruned weights held at zero — the original project's
"future work", with Lightning's ``ModelPruning`` (torch's ``prune`` utilities) doing the work.

    sst train -c configs/demo.yaml model.init_from=runs/<id> train.prune=0.5 train.sampling=random:1

With ``model.init_from`` it prunes a trained run and fine-tunes it briefly; alone it prunes the
pretrained encoder before fine-tuning. The masks live only while training: every checkpoint and
the run's weights hold the pruned weights as zeros (``make_pruning_permanent``).
"""

from __future__ import annotations

import warnings
import zlib
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelPruning
from torch import nn


def encoder_linears(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """``(module, "weight")`` for every linear layer of the encoder (not the embeddings, not the
    classification head): what is pruned, and what :func:`sparsity` measures."""
    backbone: Any = model.backbone
    return [(m, "weight") for m in backbone.modules() if isinstance(m, nn.Linear)]


def sparsity(model: nn.Module) -> float:
    """The share of exact zeros among the encoder's linear weights."""
    weights = [getattr(m, name) for m, name in encoder_linears(model)]
    zeros = sum(int((w == 0).sum()) for w in weights)
    return zeros / max(sum(w.numel() for w in weights), 1)


class CsrLinear(nn.Module):
    """A linear layer for inference whose weight is stored as a sparse CSR matrix: the output
    comes from a sparse × dense product, so only the kept weights are multiplied."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        with warnings.catch_warnings():  # "sparse CSR support is in beta": measured, not relied on
            warnings.simplefilter("ignore", UserWarning)
            self.register_buffer("weight", linear.weight.detach().to_sparse_csr())
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        out = torch.sparse.mm(self.weight, flat.T).T
        out = out if self.bias is None else out + self.bias
        return out.reshape(*x.shape[:-1], out.shape[-1])


def to_csr(model: nn.Module) -> nn.Module:
    """``model`` (changed in place, for inference only) with every encoder linear layer a
    :class:`CsrLinear`: what sparse kernels make of the zeros on this CPU."""
    backbone: Any = model.backbone
    for parent in list(backbone.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, CsrLinear(child))
    return model


def gzip_bytes(path: Path) -> int:
    """The size of ``path`` gzip-compressed (level 6): what the zeros save on disk or the wire
    (a dense weights file keeps its size whatever its sparsity)."""
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)
    size = 0
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            size += len(packer.compress(chunk))
    return size + len(packer.flush())


class PruneAtStart(ModelPruning):
    """Prunes ``amount`` of the encoder's linear weights (global L1) when training starts; never
    again at epoch ends; the surviving weights keep their values (no lottery-ticket reset)."""

    def __init__(self, model: nn.Module, amount: float) -> None:
        super().__init__(
            "l1_unstructured",
            parameters_to_prune=encoder_linears(model),
            use_global_unstructured=True,
            amount=amount,
            apply_pruning=False,
            make_pruning_permanent=True,
            use_lottery_ticket_hypothesis=False,
        )

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        with torch.no_grad():
            self.apply_pruning(self.amount)  # type: ignore[arg-type]
