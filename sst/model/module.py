"""LightningModule: any HF encoder + dropout + one linear layer to the 5 SST classes.

    python -c "from sst.model.module import SstClassifier"   # used by `sst train`

Evaluation accumulates two confusion matrices per stage with torchmetrics — all phrases and roots
(whole sentences) — and turns them into the metrics of :mod:`sst.model.metrics` at epoch end
(``self.results[stage][level]``). Test probabilities are kept for ``predictions.tsv``.
"""

from __future__ import annotations

import math
import random
import re
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.aggregation import MeanMetric
from torchmetrics.classification import MulticlassConfusionMatrix

from sst.config import Config
from sst.data import N_CLASSES
from sst.env.determinism import seeded_torch
from sst.env.precision import Decision
from sst.errors import SstError
from sst.model.metrics import HEADLINE, LEVELS, summarize
from sst.model.modeling_sst import pool


def resolve_model(name: str) -> str:
    """An embedded model's name ('minilm', 'mpnet') → its folder (:mod:`sst.model.embedded`;
    'mpnet' may not be fetched yet: :func:`load_pretrained` fetches it); anything else
    unchanged."""
    from sst.model import embedded

    where = embedded.folder(name)
    return str(where) if where is not None else name


def resolve_commit(name: str, revision: str) -> str | None:
    """The hub commit ``revision`` of ``name`` points at now (transformers' ``resolve_revision``:
    from the hub, or offline from the cache's ``refs/``); None for a folder or the embedded
    model (their files' sha256 identify them), or when it cannot be resolved (the load then
    fails with its own message)."""
    path = resolve_model(name)
    if looks_local(path):
        return None
    from transformers.utils.hub import resolve_revision

    resolved = resolve_revision(path, revision)
    commit = getattr(resolved, "resolved", None) or revision
    return commit if re.fullmatch(r"[0-9a-f]{40}", str(commit)) else None


def looks_local(name: str) -> bool:
    """A path rather than a hub id: it starts like one or names something that exists."""
    return name.startswith((".", "/", "~")) or Path(name).expanduser().exists()


def model_problem(name: str, *, here: bool = True) -> str | None:
    """Why ``name`` cannot be a model, found without loading anything: a path that is not a
    folder (``here=False``: a path is another machine's, an agent's, and not checked), or text
    that breaks the hub's rules for ids; None when it may load."""
    from sst.model.embedded import EMBEDDED

    if name in EMBEDDED:  # loads offline (mpnet: fetched from the package index the first time)
        return None
    path = resolve_model(name)
    if looks_local(path):
        if not here or Path(path).expanduser().is_dir():
            return None
        return f"model folder not found: {name}"
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(path)
    except HFValidationError as e:
        return f"{name!r} is neither a folder nor a hub id: {str(e).strip().splitlines()[0]}"
    return None


def load_pretrained(
    kind: str, name: str, revision: str = "main", attention: str | None = None
) -> Any:
    """``AutoModel`` or ``AutoTokenizer`` from a hub id (downloaded once at ``revision`` into
    the HF cache) or a folder (the embedded MiniLM is one: never a hub call), one-line errors.
    ``attention``: the model's ``attn_implementation`` (None: its default)."""
    from transformers import AutoModel, AutoTokenizer

    from sst.model import embedded

    if problem := model_problem(name):
        raise SstError(problem, fix="pass an existing folder, a hub id, minilm or mpnet")
    embedded.ensure(name)
    path = resolve_model(name)
    local = looks_local(path)
    loader = AutoModel if kind == "model" else AutoTokenizer
    extra = {"attn_implementation": attention} if attention else {}
    try:
        return loader.from_pretrained(path, revision=revision, local_files_only=local, **extra)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SstError(
            f"cannot load {kind} {name!r}: {first[:200]}",
            fix="check the hub id, model.revision and the network (with HF_HUB_OFFLINE=1 only "
            "cached ids load), or use model.name=minilm or a folder",
        ) from None


class SstClassifier(L.LightningModule):
    def __init__(
        self,
        model_name: str = "minilm",
        revision: str = "main",
        pooling: str = "mean",
        dropout: float = 0.1,
        freeze_backbone: bool = False,
        freeze_embeddings: bool = False,
        lr: float = 5e-5,
        weight_decay: float = 0.01,
        scheduler: str = "linear",
        warmup_ratio: float = 0.06,
        optimizer: str = "adamw_torch",
        attention: str | None = None,
        lr_layer_decay: float = 1.0,
        distill_temperature: float = 2.0,
        distill_mix: float = 0.5,
    ) -> None:
        super().__init__()  # choices (pooling, scheduler) are checked when the config is built
        self.save_hyperparameters()
        self.backbone = load_pretrained("model", model_name, revision, attention)
        self.backbone.train()  # from_pretrained returns eval mode: dropout would be silently off
        if pooling == "pooler" and getattr(self.backbone, "pooler", None) is None:
            raise SstError(
                f"model.pooling=pooler, but {model_name!r} has no pooler",
                fix="use model.pooling=cls or mean with this encoder",
            )
        if freeze_backbone:
            self.backbone.requires_grad_(False)
        if freeze_embeddings:
            self.backbone.get_input_embeddings().requires_grad_(False)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.backbone.config.hidden_size, N_CLASSES)
        self.cms = nn.ModuleDict(
            {
                f"{stage}_{level}": MulticlassConfusionMatrix(num_classes=N_CLASSES)
                for stage in ("val", "test")
                for level in LEVELS
            }
        )
        self.losses = nn.ModuleDict({stage: MeanMetric() for stage in ("val", "test")})
        self.results: dict[str, dict[str, dict[str, Any]]] = {}
        self.test_probs: dict[int, torch.Tensor] = {}
        # train.distill_from: the teacher's soft labels, a row per train phrase (sst.verbs.distill)
        self.soft_labels: torch.Tensor | None = None

    @classmethod
    def from_config(cls, cfg: Config, precision: Decision) -> SstClassifier:
        """The classifier ``cfg`` describes, with the attention kernels of the run's
        ``precision`` decision (:func:`sst.env.precision.decide`; inference decides for fp32).
        Its fresh head is drawn from torch's RNG seeded with ``train.seed`` (and the global RNG
        restored): the same whatever ran before."""
        m, t = cfg.model, cfg.train
        with seeded_torch(t.seed):
            return cls(
                model_name=m.name,
                revision=m.revision,
                pooling=m.pooling,
                dropout=m.dropout,
                freeze_backbone=m.freeze_backbone,
                freeze_embeddings=m.freeze_embeddings,
                lr=t.lr,
                weight_decay=t.weight_decay,
                scheduler=t.scheduler,
                warmup_ratio=t.warmup_ratio,
                optimizer=precision.optimizer(t.optimizer),
                attention=precision.attention,
                lr_layer_decay=t.lr_layer_decay,
                distill_temperature=t.distill_temperature,
                distill_mix=t.distill_mix,
            )

    def freeze_unused(self) -> None:
        """Stop training what the loss never reaches (the backbone's pooler, unless the head reads
        it). DDP requires it; one process skips gradient-less parameters anyway, but its
        optimizer state (and so a checkpoint to resume) would differ, hence only for DDP."""
        pooler = getattr(self.backbone, "pooler", None)
        if pooler is not None and self.hparams["pooling"] != "pooler":
            pooler.requires_grad_(False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask)
        pooled = pool(out, attention_mask, self.hparams["pooling"])
        return self.head(self.dropout(pooled))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self(batch["input_ids"], batch["attention_mask"])
        loss = F.cross_entropy(logits, batch["labels"])
        if self.soft_labels is not None:  # (1 - mix) gold + mix T² KL(teacher_T ‖ student_T)
            hp = self.hparams
            temperature, mix = hp["distill_temperature"], hp["distill_mix"]
            teacher = self.soft_labels[batch["index"].cpu()].to(logits.device)
            student = F.log_softmax(logits.float() / temperature, dim=-1)
            soft = F.kl_div(student, teacher, reduction="batchmean") * temperature**2
            self.log("train/soft_loss", soft, batch_size=len(logits))
            loss = (1 - mix) * loss + mix * soft
        self.log("train/loss", loss, prog_bar=True, batch_size=len(logits))
        return loss

    def _cm(self, stage: str, level: str) -> MulticlassConfusionMatrix:
        cm = self.cms[f"{stage}_{level}"]
        assert isinstance(cm, MulticlassConfusionMatrix)
        return cm

    def _eval_step(self, stage: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self(batch["input_ids"], batch["attention_mask"])
        if "expand" in batch:  # one row per distinct text → one per tree node
            logits = logits[batch["expand"]]
        pred = logits.argmax(-1)
        self._cm(stage, "phrase").update(pred, batch["labels"])
        loss = F.cross_entropy(logits.float(), batch["labels"], reduction="none")
        self.losses[stage].update(loss)  # type: ignore[operator]  # mean over tree nodes
        roots = batch["is_root"]
        if roots.any():
            self._cm(stage, "root").update(pred[roots], batch["labels"][roots])
        return logits

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self._eval_step("test", batch)
        probs = logits.float().softmax(-1).cpu()
        for i, p in zip(batch["index"].tolist(), probs, strict=True):
            self.test_probs[i] = p

    def _finish(self, stage: str) -> None:
        loss = self.losses[stage]
        self.log(f"{stage}/loss", loss.compute(), sync_dist=True)  # type: ignore[operator]
        loss.reset()  # type: ignore[operator]
        self.results[stage] = {}
        for level in LEVELS:
            cm = self._cm(stage, level)
            summary = summarize(cm.compute().cpu().numpy())
            cm.reset()
            self.results[stage][level] = summary
            for key in HEADLINE:
                self.log(
                    f"{stage}/{level}/{key}",
                    summary[key],
                    prog_bar=key == "macro_f1" and level == "root",
                    sync_dist=True,  # DDP: the same synced value on every process (a no-op)
                )

    def on_validation_epoch_end(self) -> None:
        self._finish("val")

    def on_test_epoch_start(self) -> None:
        self.test_probs = {}

    def on_test_epoch_end(self) -> None:
        self._finish("test")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lightning restores weights, optimizer, scheduler and loop position but not the global
        # RNGs (dropout): without them a resumed run would not equal an uninterrupted one.
        checkpoint["rng_states"] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "rng_states" in checkpoint:
            set_rng_states(checkpoint["rng_states"])

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
        scale = layer_scales(self, hp.get("lr_layer_decay", 1.0))
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            is_norm = "LayerNorm" in name or "layer_norm" in name or ".norm" in name
            decays = not (name.endswith("bias") or is_norm)
            groups.setdefault((scale(name), decays), []).append(param)
        optimizer = torch.optim.AdamW(
            [
                {
                    "params": params,
                    "lr": hp["lr"] * factor,
                    "weight_decay": hp["weight_decay"] if decays else 0.0,
                }
                # the weight-decayed group first, then the highest rate: the order before layer
                # decay existed (the same optimizer state layout for the same config)
                for (factor, decays), params in sorted(
                    groups.items(), key=lambda g: (not g[0][1], -g[0][0])
                )
            ],
            lr=hp["lr"],
            fused=hp.get("optimizer") == "adamw_torch_fused" or None,  # one kernel per step
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(hp["warmup_ratio"] * total)
        kind = hp["scheduler"]
        if kind == "one_cycle":
            sched: Any = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total
            )
        else:
            sched = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(kind, warmup, total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def layer_scales(module: nn.Module, decay: float) -> Any:
    """``train.lr_layer_decay``: a parameter's name → its learning-rate factor. The head (and the
    encoder's pooler) 1, the top encoder layer 1, each layer below ``decay`` times the one above,
    the embeddings ``decay`` times the lowest layer. Layers are read from the names
    (``….layer.<i>.`` or ``….layers.<i>.``, as BERT-like encoders name them)."""
    if decay == 1.0:
        return lambda name: 1.0
    found = [re.search(r"\.layers?\.(\d+)\.", n) for n, _ in module.named_parameters()]
    depth = 1 + max((int(m.group(1)) for m in found if m), default=-1)
    if not depth:
        raise SstError(
            "train.lr_layer_decay is set, but the encoder's parameters name no layers "
            "(….layer.<i>.)",
            fix="set train.lr_layer_decay=1 for this encoder",
        )

    def scale(name: str) -> float:
        if m := re.search(r"\.layers?\.(\d+)\.", name):
            return float(decay ** (depth - 1 - int(m.group(1))))
        if "embed" in name:
            return float(decay**depth)
        return 1.0

    return scale


def _lr_lambda(kind: str, warmup: int, total: int) -> Any:
    def factor(step: int) -> float:
        if kind == "constant":
            return 1.0
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return max(0.0, 1.0 - progress)

    return factor


def rng_states() -> dict[str, Any]:
    """Global RNG states as tensors and numbers (checkpoints load with weights_only=True)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, mt, gauss = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": {
            "version": version,
            "state": torch.tensor(mt, dtype=torch.int64),
            "gauss": gauss,
        },
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    p = states["python"]
    random.setstate((p["version"], tuple(int(x) for x in p["state"].tolist()), p["gauss"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
