"""The training recipe: fine-tune an encoder on a split and write a run folder.

    sst train --config configs/demo.yaml model.name=minilm train.sampling="stratified:1,random:1"
    sst train --resume runs/<id>.partial

:func:`train` reads like the job: determinism first, the data and the model the config
describes, a run folder (:mod:`sst.runs` holds its contract), a ClearML task, fit, test, record,
rename. A killed run leaves its ``.partial`` folder with ``checkpoints/last.ckpt``; ``--resume``
continues it from the recorded config, never from the current one. The split must exist
(`sst train` makes a missing one first: :func:`sst.prepare.ensure_split`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import (
    Callback,
    LearningRateMonitor,
    ModelCheckpoint,
    TQDMProgressBar,
)
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.profilers import SimpleProfiler
from lightning.pytorch.trainer.states import TrainerFn
from safetensors.torch import save_model

from sst import agent, pictures, pseudo, runs, tracking
from sst.config import Config
from sst.data import LABELS
from sst.data.sources import sha256_file
from sst.data.stats import save_png
from sst.figures import plot_confusion, plot_test_confusion
from sst.model.datamodule import SstDataModule
from sst.model.metrics import HEADLINE, LEVELS, mean_sd
from sst.model.module import SstClassifier
from sst.model.precision import trainer_precision
from sst.model.pruning import PruneAtStart, sparsity
from sst.repro import configure_determinism, precision_note, resolve_precision, seed_everything


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]
    weights_sha256: str
    tracking: str | None
    seconds: float
    notes: list[str] = field(default_factory=list)  # what the run did on the user's behalf


def train(cfg: Config, *, resume: Path | None = None, runs_dir: Path | None = None) -> RunResult:
    """Train ``cfg`` (or continue the partial run at ``resume``); return the finished run.
    ``runs_dir`` puts the run folder elsewhere than ``train.runs_dir`` without changing the
    config (and its hash): `sst replay` writes to ``<runs_dir>/replays/``.

    Everything that can be wrong with the inputs (config values, model, split) fails before the
    run folder or a ClearML task exists.
    """
    t0 = time.perf_counter()
    determinism = configure_determinism(cfg.train.threads)  # first, always
    determinism["precision"] = resolve_precision(cfg.train.precision)  # "auto" differs by device
    taught = pseudo.label(cfg)  # train.teacher, verified, labels train.unlabeled (or None)
    data = SstDataModule.from_config(cfg, taught and taught.frame)
    data.setup("fit")  # verifies the split against its manifest
    init = cfg.model.init_from and runs.Run.open(Path(cfg.model.init_from), need=(runs.WEIGHTS,))
    if init:
        init.verify(reads=(runs.WEIGHTS,))  # before the model loads: a tampered run fails first
    model = SstClassifier.from_config(cfg)
    determinism["attention"] = model.backbone.config._attn_implementation  # model.attention=auto
    if cfg.train.devices > 1:
        model.freeze_unused()
    if init:
        init.load_into(model)
    if resume is not None:
        work, checkpoint = resume, runs.resume_point(resume)
    else:
        runs_dir = runs_dir or Path(cfg.train.runs_dir)
        if unfinished := runs.find_by_config(cfg, runs_dir)[1]:
            print(
                f"{unfinished}: an unfinished run of this config (continue it with "
                f"`sst train --resume {unfinished}`); starting a new one",
                file=sys.stderr,
            )
        work, checkpoint = runs.create(runs_dir, cfg), None
    notes = [taught.write(work)] if taught else []  # pseudo.tsv: checked again on resume
    with tracking.task(
        cfg.tracking.project,
        f"train {cfg.name}",
        "training",
        cfg.to_dict(),
        args=["train"],  # the connected config is the whole input
        enabled=cfg.tracking.enabled,
        tags=[runs.run_id(work), *agent.sweep_tags()],
        monitor_resources=cfg.tracking.monitor_resources,
    ) as tracker:
        if tracker is not None:
            tracker.record_container()
            tracker.connect("model", dict(model.hparams))
        seed_everything(cfg.train.seed)  # after Task.init, so tracked and untracked runs agree
        trainer = _trainer(cfg, work, tracker, model, len(data.schedule))
        trainer.fit(model, datamodule=data, ckpt_path=str(checkpoint) if checkpoint else None)
        chosen, chosen_note = _chosen_checkpoint(cfg, trainer)
        notes += chosen_note
        if trainer.world_size > 1:  # the DDP workers are gone with their results: score here
            trainer = _scorer(cfg, work, tracker)
            trainer.validate(model, datamodule=data, verbose=False)  # the last weights
        trainer.test(model, datamodule=data, ckpt_path=chosen, verbose=False)  # loads it
        notes += precision_note(determinism["precision"])
        if cfg.train.prune:
            notes.append(f"pruned: {sparsity(model):.1%} of the encoder's linear weights are 0")
        task_id = tracker.id if tracker is not None else None
        inputs = taught.inputs if taught else {}
        metrics, fingerprint = _record(cfg, work, model, data, determinism, task_id, inputs)
        drawn = pictures.draw(runs.Run(work), work / runs.PICTURES)
        final = runs.finish(work)
        if not cfg.train.keep_checkpoints and (removed := runs.drop_checkpoints(final)):
            notes.append(removed)
        where = None
        if tracker is not None:  # after the rename: ClearML reads the figure when it uploads
            _report_run(tracker, fingerprint, metrics["test"], final / runs.CONFUSION_PNG)
            pictures.report(tracker, {n: final / runs.PICTURES / n for n in drawn})
            tracker.upload_run(final, runs.SHARED)
            where = tracker.describe(run=final)
    seconds = time.perf_counter() - t0
    return RunResult(final, metrics, fingerprint["weights_sha256"], where, seconds, notes)


def resume(run: Path) -> RunResult:
    """`sst train --resume`: the partial run at ``run`` (``runs/<id>`` or ``….partial``),
    continued from its checkpoint with its recorded config."""
    work = runs.partial_folder(run)
    return train(runs.load_run_config(work), resume=work)


def train_each_seed(cfg: Config, done: Callable[[RunResult], None]) -> list[RunResult]:
    """One run per ``train.seeds`` (each recorded with its own ``train.seed``), or the one run;
    ``done`` is called as each finishes."""
    results = []
    for one in [cfg.with_train(seed=s, seeds=()) for s in cfg.train.seeds] or [cfg]:
        results.append(train(one))
        done(results[-1])
    return results


def _chosen_checkpoint(cfg: Config, trainer: L.Trainer) -> tuple[str | None, list[str]]:
    """``train.evaluate``: the weights to test and keep, as ``trainer.test`` takes them (None:
    the last, in memory), and a note when best was asked for but nothing was validated."""
    if cfg.train.evaluate == "last":
        return None, []
    best = trainer.checkpoint_callback
    if isinstance(best, ModelCheckpoint) and best.best_model_path:
        score = best.best_model_score
        if score is None:  # DDP workers hand back only the path; the checkpoint holds the score
            state = torch.load(best.best_model_path, weights_only=False, mmap=True)
            (score,) = (
                v["best_model_score"]
                for v in state["callbacks"].values()
                if v.get("best_model_path") == best.best_model_path
            )
        note = f"tested the best weights (val root macro-F1 {float(score):.4f})"
        return best.best_model_path, [note]
    return None, ["train.evaluate=best, but nothing was validated: tested the last weights"]


def _strategy(cfg: Config) -> str:
    t = cfg.train
    if t.devices == 1 or t.strategy != "auto":
        return t.strategy
    # fork shares the loaded data and model with the workers (CPU); CUDA cannot be forked
    return "ddp_spawn" if torch.cuda.is_available() else "ddp_fork"


def _trainer(
    cfg: Config, work: Path, tracker: tracking.Tracker | None, model: SstClassifier, epochs: int
) -> L.Trainer:
    t = cfg.train
    folder = work / runs.CHECKPOINTS
    best = ModelCheckpoint(
        dirpath=folder,
        filename=runs.BEST,
        monitor="val/root/macro_f1",
        mode="max",
        save_top_k=1,
        enable_version_counter=False,
    )
    # the resume point: every N steps (or epoch), and on Ctrl+C or a crash
    last = ModelCheckpoint(
        dirpath=folder,
        filename=runs.LAST,
        monitor=None,
        save_top_k=1,
        every_n_train_steps=t.checkpoint_every or None,
        enable_version_counter=False,
        save_on_exception=True,
    )
    return L.Trainer(
        max_epochs=epochs,
        accelerator="auto",
        devices=t.devices,
        strategy=_strategy(cfg),
        **trainer_precision(t.precision),
        deterministic=True,
        gradient_clip_val=t.grad_clip or None,
        logger=TensorBoardLogger(
            str(work), name=runs.TENSORBOARD, version="", default_hp_metric=False
        ),
        callbacks=[
            *([PruneAtStart(model, t.prune)] if t.prune else []),
            best,
            last,
            LearningRateMonitor(logging_interval="step"),  # the learning curve's lr panel
            TQDMProgressBar(refresh_rate=20),
            ReportCallback(tracker, work),
        ],
        profiler=SimpleProfiler(str(work), runs.PROFILE) if t.profile else None,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        enable_model_summary=False,
        log_every_n_steps=10,
        default_root_dir=str(work),
    )


def _scorer(cfg: Config, work: Path, tracker: tracking.Tracker | None) -> L.Trainer:
    """One process that scores the weights a DDP fit handed back (its workers logged the fit)."""
    return L.Trainer(
        accelerator="auto",
        devices=1,
        **trainer_precision(cfg.train.precision),
        deterministic=True,
        logger=False,
        callbacks=[TQDMProgressBar(refresh_rate=20), ReportCallback(tracker, work)],
        enable_model_summary=False,
        default_root_dir=str(work),
    )


class ReportCallback(Callback):
    """A confusion matrix per evaluation: to ClearML and as ``confusion/<stage>-epoch<N>.png``
    (figures and ClearML stay out of model/)."""

    def __init__(self, tracker: tracking.Tracker | None, work: Path) -> None:
        self.tracker = tracker
        self.folder = work / runs.CONFUSION_DIR

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        # once per fit epoch; under DDP every process holds the synced metrics: rank 0 reports
        if trainer.state.fn == TrainerFn.FITTING and trainer.is_global_zero:
            self._report(pl_module.results.get("val", {}), "val", trainer.current_epoch, trainer)

    def on_test_end(self, trainer: Any, pl_module: Any) -> None:
        self._report(pl_module.results.get("test", {}), "test", trainer.current_epoch, trainer)

    def _report(self, results: dict[str, Any], stage: str, epoch: int, trainer: Any) -> None:
        if not results:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        fig = plot_confusion(
            {f"{stage} {level}": r["confusion_matrix"] for level, r in results.items()},
            f"{stage}, epoch {epoch}",
        )
        save_png(fig, self.folder / f"{stage}-epoch{epoch}.png", dpi=80)
        if self.tracker is None or trainer.world_size > 1:  # the task lives in the main process
            return
        for level, summary in results.items():
            self.tracker.report_confusion_matrix(
                f"{stage} confusion matrix", level, summary["confusion_matrix"], list(LABELS), epoch
            )


def _record(
    cfg: Config,
    work: Path,
    model: SstClassifier,
    data: SstDataModule,
    determinism: dict[str, Any],
    task_id: str | None,
    inputs: dict[str, str],  # digests of other inputs, taken when read (pseudo-labelling)
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's outputs: weights, metrics, the test figure and predictions, the fingerprint.
    Returns the metrics and the fingerprint."""
    save_model(model, str(work / runs.WEIGHTS))
    metrics: dict[str, Any] = {s: model.results[s] for s in ("val", "test") if s in model.results}
    metrics["weights_sha256"] = weights_sha = sha256_file(work / runs.WEIGHTS)
    runs.write_json(work / runs.METRICS, metrics)
    test = model.results["test"]
    save_png(plot_test_confusion(test, cfg.name), work / runs.CONFUSION_PNG)
    part = data.parts["test"]
    probs = np.stack([model.test_probs[i].numpy() for i in range(len(part))])
    rows = {"phrase_id": part.phrase_id, "sentence_id": part.sentence_id}
    rows |= {"is_root": part.is_root, "label": part.labels}
    runs.write_predictions(work / runs.PREDICTIONS, rows, probs)
    fingerprint = (
        runs.fingerprint(
            cfg, work, determinism=determinism, task_id=task_id, weights_sha256=weights_sha
        )
        | inputs
    )
    runs.write_json(work / runs.FINGERPRINT, fingerprint)
    return metrics, fingerprint


def _report_run(
    tracker: tracking.Tracker, fingerprint: dict[str, Any], test: dict[str, Any], figure: Path
) -> None:
    # whole, nested sections flattened by ClearML: `sst replay <session.zip>` reads it back
    tracker.connect("fingerprint", fingerprint)
    for level in LEVELS:
        for key in HEADLINE:
            tracker.report_single_value(f"test/{level}/{key}", test[level][key])
        per_class = {k: test[level][f"{k}_per_class"] for k in ("precision", "recall", "f1")}
        tracker.report_table("test per class", level, pd.DataFrame(per_class, index=list(LABELS)))
    tracker.report_image("confusion matrix", "test", figure)


def seeds_summary(results: list[RunResult]) -> str:
    """Mean ± sample sd over runs that differ only by seed, for the test root headline."""
    lines = [f"{len(results)} seeds (mean ± sample sd):"]
    for key in ("accuracy", "macro_f1"):
        mean, sd = mean_sd([r.metrics["test"]["root"][key] for r in results])
        lines.append(f"test root {key} {mean:.4f} ± {sd:.4f}")
    return " ".join(lines)


def print_summary(result: RunResult, out: Any = None) -> None:
    out = out or sys.stdout
    print(f"run      {result.run_dir}  ({result.seconds:.0f} s)", file=out)
    for level in LEVELS:
        s = result.metrics["test"][level]
        print(
            f"test {level:6} n={s['n']:<6} acc {s['accuracy']:.3f}  macro-F1 "
            f"{s['macro_f1']:.3f}  min-prec {s['min_class_precision']:.3f}  within-1 "
            f"{s['within_one']:.3f}  MAE {s['mae']:.3f}  QWK {s['qwk']:.3f}  flips "
            f"{s['polarity_flip_rate']:.3f}  (majority {s['majority_baseline']:.3f})",
            file=out,
        )
    print(f"confusion matrix {result.run_dir / runs.CONFUSION_PNG}", file=out)
    print(f"weights sha256 {result.weights_sha256}", file=out)
    for note in result.notes:
        print(f"note: {note}", file=out)
    print(result.tracking or "ClearML tracking disabled", file=out)
