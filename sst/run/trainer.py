"""The one Lightning ``Trainer`` builder: what `sst train` fits with, what scores a DDP fit's
weights, and what every `sst bench` loop times, so a benchmark measures the trainer users run.

    python -c "from sst.run.trainer import build_trainer"   # called by sst train and sst bench

Three roles of one trainer (the same precision, determinism, strategy and gradient clipping):

- ``fit``: a run's training, writing into its folder: ``checkpoints/`` (best by validation root
  macro-F1, and ``last.ckpt``, the resume point, every N steps and on a crash), TensorBoard in
  ``tb/``, the learning-rate monitor, the weight average of ``train.ema``/``train.swa``
  (:mod:`sst.run.averaging`), progress (tqdm's bar on a terminal, :class:`LogLines` in a
  log) and, with ``train.profile``, Lightning's
  SimpleProfiler tables in ``profile/``.
- ``score``: one process that scores the weights a DDP fit handed back (its workers logged the
  fit).
- ``bench``: the fit's training computation with no files written, as the HF Trainer peer runs
  it (``save_strategy="no"``, ``logging_strategy="no"``, no progress bar).

bf16-mixed goes through :class:`Bf16Mixed`: Lightning's own mixed-precision plugin, except that it
clips gradients beside a fused optimizer. Lightning 2.6.6 refuses that pair for every mixed
precision ("performs unscaling of gradients internally"), but bf16 has no GradScaler, so there is
nothing to unscale and the clip sees the true gradients (Lightning-AI/pytorch-lightning#21435,
fixed upstream by #21436, not in a release yet). The presets clip (train.grad_clip=1) with the
fused AdamW, so without it bf16-mixed failed at its first step.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    ProgressBar,
    Timer,
    TQDMProgressBar,
)
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.profilers import SimpleProfiler
from lightning.pytorch.utilities import GradClipAlgorithmType
from torch.optim import Optimizer

from sst.config import Config
from sst.env.precision import Decision
from sst.io import interactive, log_every
from sst.run import folder
from sst.run.averaging import averaging

Role = Literal["fit", "score", "bench"]
PROGRESS_EVERY = 20  # batches between progress-bar refreshes


class LogLines(ProgressBar):
    """Lightning's progress for a log (CI, ``| tee``, an agent's console as ClearML stores it):
    a whole line at most every ``every`` seconds while an epoch trains, one when it ends (with
    the progress-bar metrics: loss, validation macro-F1) and one per test; never the carriage-
    return refreshes of a bar. Lightning disables it on every rank but the first."""

    def __init__(self, every: float | None = None) -> None:
        super().__init__()
        self.every = log_every() if every is None else every
        self.enabled = True
        self._start = self._last = 0.0
        self._batches = 0  # trained this epoch (on resume: since the process started)
        self._scored = 0

    def disable(self) -> None:
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    def _say(self, text: str) -> None:
        if self.enabled:
            print(text, flush=True)

    def _epoch(self, trainer: L.Trainer) -> str:
        return f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"

    def _metrics(self, trainer: L.Trainer, module: L.LightningModule) -> str:
        shown = {k: v for k, v in self.get_metrics(trainer, module).items() if k != "v_num"}
        return "".join(
            f" · {k} {v:.4g}" if isinstance(v, float) else f" · {k} {v}" for k, v in shown.items()
        )

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = self._last = time.monotonic()
        self._batches = 0

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self._batches += 1
        now = time.monotonic()
        if now - self._last < self.every:
            return
        self._last = now
        done, total = batch_idx + 1, self.total_train_batches
        rate = self._batches / max(now - self._start, 1e-9)  # this process's (a resume's too)
        known = bool(total) and total != float("inf")
        of = f"/{int(total)} batches ({done / total:.0%})" if known else " batches"
        self._say(
            f"{self._epoch(trainer)}: {done}{of} · {rate:.2f} batch/s"
            + self._metrics(trainer, pl_module)
        )

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seconds = time.monotonic() - self._start
        self._say(
            f"{self._epoch(trainer)}: done, {self._batches} batches in {seconds:.0f} s"
            + self._metrics(trainer, pl_module)
        )

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._scored = 0

    def on_test_batch_end(self, *args: Any, **kwargs: Any) -> None:
        self._scored += 1

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._say(f"test: {self._scored} batches scored")


def progress_bar() -> ProgressBar:
    """tqdm's bar where it can redraw (Lightning writes it to stdout), lines elsewhere."""
    return TQDMProgressBar(refresh_rate=PROGRESS_EVERY) if interactive(sys.stdout) else LogLines()


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


def trainer_precision(decided: Decision) -> dict[str, Any]:
    """The Trainer keyword for a run's precision decision."""
    if decided.lightning == "bf16-mixed":
        return {"plugins": [Bf16Mixed(decided.device)]}
    return {"precision": decided.lightning}


def strategy(cfg: Config) -> str:
    t = cfg.train
    if t.devices == 1 or t.strategy != "auto":
        return t.strategy
    # fork shares the loaded data and model with the workers (CPU); CUDA cannot be forked
    return "ddp_spawn" if torch.cuda.is_available() else "ddp_fork"


MONITOR = "val/root/macro_f1"  # what best checkpoints and early stopping follow


class StopAfter(Callback):
    """End the fit after ``epochs`` epochs, as a budget-stopped run did: a replay trains the
    epochs the run trained, whatever the clock says here (the schedule, and so the learning
    rate's, keeps its full length)."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


class Budget(Timer):
    """``train.max_minutes``: Lightning's Timer, checked at epoch ends only. Lightning's also
    checks when a fit starts, which would end a fit resumed mid-epoch at once, though the whole
    run went on to that epoch's end (:class:`KeepStop` carries an epoch end's decision)."""

    def __init__(self, minutes: float) -> None:
        super().__init__(duration=timedelta(minutes=minutes), interval="epoch")

    def on_fit_start(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        pass


class KeepStop(Callback):
    """A fit told to stop at an epoch end (early stopping, the budget) stops there when resumed
    from the checkpoint written at that end: Lightning keeps ``trainer.should_stop`` in no
    checkpoint, so a resumed fit would train another epoch. Checkpoint callbacks run after the
    others at an epoch end, so the decision is in the checkpoint."""

    def __init__(self) -> None:
        self.stop = False

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.stop = trainer.should_stop

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.should_stop = trainer.should_stop or self.stop

    def state_dict(self) -> dict[str, Any]:
        return {"stop": self.stop}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.stop = bool(state_dict.get("stop", False))


def stopping(cfg: Config, stop_after: int | None = None) -> list[Callback]:
    """What may end a fit before its schedule: ``train.early_stop`` (Lightning's EarlyStopping on
    the validation metric best checkpoints follow) and ``train.max_minutes`` (:class:`Budget`;
    replaying a budget-stopped run, :class:`StopAfter` its epochs). Their state is in the
    checkpoints, so a resumed run stops where the whole one would."""
    t = cfg.train
    if not (t.early_stop or t.max_minutes or stop_after):
        return []
    callbacks: list[Callback] = []
    if t.early_stop:
        callbacks.append(
            EarlyStopping(
                monitor=MONITOR,
                mode="max",
                patience=t.early_stop,
                min_delta=t.early_stop_delta,
                check_on_train_epoch_end=False,  # after each validation
            )
        )
    if stop_after is not None:
        callbacks.append(StopAfter(stop_after))
    elif t.max_minutes:
        callbacks.append(Budget(t.max_minutes))
    return [*callbacks, KeepStop()]  # after the others: it reads what they decided


def epochs_trained(trainer: L.Trainer) -> int:
    """Epochs a fit trained to their end. Not ``current_epoch``: a fit resumed from the
    checkpoint of the epoch end that stopped it ends before counting that epoch complete."""
    progress = trainer.fit_loop.epoch_progress.current  # a _ProcessedTracker, typed as its base
    return int(progress.processed)  # type: ignore[attr-defined]


def stopped(trainer: L.Trainer, epochs: int) -> str | None:
    """Why a fit ended before its ``epochs``: "early" (no improvement), "budget" (the clock, or
    a replay's :class:`StopAfter`), or None (the whole schedule)."""
    if epochs_trained(trainer) >= epochs:
        return None
    if (early := trainer.early_stopping_callback) is not None and early.stopped_epoch:
        return "early"
    return "budget"


def _run_outputs(
    cfg: Config, work: Path, model: Any, stop_after: int | None = None
) -> dict[str, Any]:
    """What a fit writes into its run folder: checkpoints, TensorBoard, the profile."""
    t = cfg.train
    checkpoints = work / folder.CHECKPOINTS
    best = ModelCheckpoint(
        dirpath=checkpoints,
        filename=folder.BEST,
        monitor=MONITOR,
        mode="max",
        save_top_k=1,
        enable_version_counter=False,
    )
    # the resume point: every N steps (or epoch), and on Ctrl+C or a crash
    last = ModelCheckpoint(
        dirpath=checkpoints,
        filename=folder.LAST,
        monitor=None,
        save_top_k=1,
        every_n_train_steps=t.checkpoint_every or None,
        enable_version_counter=False,
        save_on_exception=True,
    )
    pruning: list[Callback] = []
    if t.prune:
        from sst.model.pruning import PruneAtStart

        pruning.append(PruneAtStart(model, t.prune))
    return {
        "logger": TensorBoardLogger(
            str(work), name=folder.TENSORBOARD, version="", default_hp_metric=False
        ),
        "callbacks": [
            *pruning,
            *stopping(cfg, stop_after),
            *averaging(cfg),  # before the checkpoints: a step's update is in its checkpoint
            best,
            last,
            LearningRateMonitor(logging_interval="step"),  # the learning curve's lr panel
            progress_bar(),
        ],
        "profiler": SimpleProfiler(str(work), folder.PROFILE) if t.profile else None,
        "log_every_n_steps": 10,
        "default_root_dir": str(work),
    }


def build_trainer(
    cfg: Config,
    decided: Decision,
    *,
    role: Role = "fit",
    epochs: int | None = None,
    work: Path | None = None,
    model: Any = None,
    callbacks: Sequence[Callback] = (),
    stop_after: int | None = None,
) -> L.Trainer:
    """The Trainer for ``role`` (see the module's text): ``decided`` is the run's one precision
    decision, ``epochs`` the schedule's length (fit; a benchmark runs one), ``work`` the run folder
    (fit and score), ``model``
    the module a ``train.prune`` callback prunes, ``callbacks`` the caller's own (the run's
    reports, a benchmark's clock), ``stop_after`` the epochs a budget-stopped run trained (its
    replay)."""
    common: dict[str, Any] = {
        "accelerator": "auto",
        "deterministic": True,
        "enable_model_summary": False,
        **trainer_precision(decided),
    }
    if role == "bench":
        return L.Trainer(
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            callbacks=list(callbacks),
            **_training(cfg, 1),
            **common,
        )
    if work is None:
        raise ValueError(f"a {role} trainer writes into a run folder: pass work=")
    if role == "score":
        return L.Trainer(
            devices=1,
            logger=False,
            callbacks=[progress_bar(), *callbacks],
            default_root_dir=str(work),
            **common,
        )
    if epochs is None:
        raise ValueError("a fit trainer needs the schedule's length: pass epochs=")
    outputs = _run_outputs(cfg, work, model, stop_after)
    outputs["callbacks"] += callbacks
    return L.Trainer(**outputs, **_training(cfg, epochs), **common)


def _training(cfg: Config, epochs: int) -> dict[str, Any]:
    """What a fit and a benchmark share: the schedule, devices, strategy, clipping and
    gradient accumulation."""
    t = cfg.train
    return {
        "max_epochs": epochs,
        "accumulate_grad_batches": t.accumulate,
        "devices": t.devices,
        "strategy": strategy(cfg),
        "gradient_clip_val": t.grad_clip or None,
        "use_distributed_sampler": False,  # the kit's sampler shares batches (RankShare)
        "num_sanity_val_steps": 0,
    }
