"""Weight averaging during a fit (``train.ema``, ``train.swa``): Lightning's ``WeightAveraging``
callbacks, with the guards a run of the kit needs.

    sst train -c configs/demo.yaml train.ema=0.998      # an exponential moving average
    sst train -c configs/full.yaml train.swa=0.3        # the last 30 % of the steps, averaged

The average is what each validation scores, what the best checkpoint holds, what is tested and
what ``model.safetensors`` keeps; training itself goes on from the raw weights. Only parameters
are averaged (``use_buffers=False``): the encoders here have no running statistics, and their
integer buffers (position ids) must not be interpolated.

Two things Lightning's callback does that a run must not (Lightning 2.6.6):

- Loading a checkpoint outside a fit (``trainer.test(ckpt_path=best)``, ``train.evaluate=best``)
  it puts the checkpoint's *raw* weights back into the module: the average would be validated and
  chosen, then the raw weights tested and kept. Here a checkpoint sets the average (its
  ``state_dict``) except when a fit resumes from it.
- Before its first update the average is the weights the fit started from: with SWA over the last
  share of the steps, every earlier validation and checkpoint would score the pretrained encoder
  and its untrained head. Here the raw weights stand in until the first update.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EMAWeightAveraging, WeightAveraging
from lightning.pytorch.trainer.states import TrainerFn

from sst.config import Config


class _Guarded(WeightAveraging):
    """The two guards of the module's text, for either average; also a checkpoint written while
    a validation holds the average in the module (a crash there: ``save_on_exception``) keeps
    each set of weights in its place, and the average lives where the module trains (a GPU)."""

    _swapped = False

    def _begun(self) -> bool:
        return self._average_model is not None and int(self._average_model.n_averaged) > 0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._device = self._device or trainer.strategy.root_device  # the module is not there yet
        super().setup(trainer, pl_module, stage)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._begun():
            super().on_validation_epoch_start(trainer, pl_module)
            self._swapped = True

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._swapped:
            super().on_validation_epoch_end(trainer, pl_module)
            self._swapped = False

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._begun():
            super().on_train_end(trainer, pl_module)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if not self._begun():
            return
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        if self._swapped:  # the module held the average, the average model the raw weights
            checkpoint["state_dict"], checkpoint["current_model_state"] = (
                checkpoint["current_model_state"],
                checkpoint["state_dict"],
            )

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if trainer.state.fn == TrainerFn.FITTING:  # a resume: both the raw weights and the average
            super().on_load_checkpoint(trainer, pl_module, checkpoint)


class Ema(_Guarded, EMAWeightAveraging):
    """An exponential moving average, updated after every optimizer step."""


class LastShare(_Guarded):
    """Stochastic weight averaging: the equal-weight average of the weights after each of the
    last ``share`` of the fit's optimizer steps."""

    def __init__(self, share: float) -> None:
        super().__init__(use_buffers=False)
        self.share = share
        self.first_step = 0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        total = int(trainer.estimated_stepping_batches)
        self.first_step = total - max(1, round(self.share * total))

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None and step_idx >= self.first_step


def not_begun(trainer: L.Trainer) -> str | None:
    """The run's note when its fit ended (early, or by its budget) before the average began:
    the raw weights were validated and kept."""
    for callback in trainer.callbacks:  # type: ignore[attr-defined]
        if isinstance(callback, _Guarded) and not callback._begun():
            return "the fit ended before the weight average began: the raw weights are kept"
    return None


def averaging(cfg: Config) -> list[WeightAveraging]:
    """The callback ``train.ema`` or ``train.swa`` asks for (none when both are 0)."""
    t = cfg.train
    if t.ema:
        return [Ema(decay=t.ema, use_buffers=False)]
    if t.swa:
        return [LastShare(t.swa)]
    return []
