"""The training recipe: fine-tune an encoder on a split and write a run folder.

    sst train --config configs/demo.yaml model.name=minilm train.sampling="stratified:1,random:1"
    sst train --resume runs/<id>.partial

:func:`train` reads like the job: determinism first, the one precision decision, the data and the
model the config describes, a run folder (:mod:`sst.run.folder` holds its contract), a ClearML
task, fit with the one Trainer (:mod:`sst.run.trainer`), test, record (:mod:`sst.run.fingerprint`),
rename. A killed run leaves its ``.partial`` folder with ``checkpoints/last.ckpt``; ``--resume``
continues it from the recorded config, never from the current one. The split must exist
(`sst train` makes a missing one first: :func:`sst.verbs.prepare.ensure_split`).
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
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from safetensors.torch import save_model

from sst.config import Config
from sst.data import LABELS
from sst.env.determinism import configure_determinism, seed_everything
from sst.env.precision import Decision, decide
from sst.errors import SstError
from sst.io import save_png, sha256_file, write_json
from sst.model.datamodule import SstDataModule
from sst.model.metrics import HEADLINE, LEVELS, mean_sd
from sst.model.module import SstClassifier, resolve_commit
from sst.model.pruning import sparsity
from sst.run import fingerprint as fp
from sst.run import folder as runs
from sst.run.averaging import not_begun
from sst.run.trainer import build_trainer, epochs_trained, stopped
from sst.tracking import agent, server
from sst.tracking.tracker import Tracker, preflight, tracked
from sst.verbs import distill, pseudo
from sst.viz import pictures
from sst.viz.figures import plot_confusion, plot_test_confusion


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]
    weights_sha256: str
    tracking: str | None
    seconds: float
    notes: list[str] = field(default_factory=list)  # what the run did on the user's behalf


def train(
    cfg: Config,
    *,
    resume: Path | None = None,
    runs_dir: Path | None = None,
    model_commit: str | None = None,
    stop_after: int | None = None,
) -> RunResult:
    """Train ``cfg`` (or continue the partial run at ``resume``); return the finished run.
    ``runs_dir`` puts the run folder elsewhere than ``train.runs_dir`` and ``model_commit``
    loads a hub model at that commit whatever ``model.revision`` names now, both without
    changing the config (and its hash): `sst replay` writes to ``<runs_dir>/replays/`` the
    recorded commit's weights. ``stop_after``: replaying a budget-stopped run, the epochs it
    trained (instead of the clock of ``train.max_minutes``).

    Everything that can be wrong with the inputs (config values, model, split) fails before the
    run folder or a ClearML task exists.
    """
    t0 = time.perf_counter()
    configure_determinism(cfg.train.threads)  # first, always
    preflight(cfg.tracking.enabled)  # a server that does not answer: before any folder exists
    decided = decide(cfg.train.precision, cfg.model.attention)  # once: "auto" differs by device
    taught = pseudo.label(cfg)  # train.teacher, verified, labels train.unlabeled (or None)
    soft = distill.soft_labels(cfg)  # train.distill_from, verified, soft-labels train (or None)
    # a hub model at the commit its revision names now (a replay: the recorded one), loaded and
    # recorded as that commit; the config keeps the revision as asked (and its hash)
    model_commit = model_commit or resolve_commit(cfg.model.name, cfg.model.revision)
    loading = cfg.with_model(revision=model_commit) if model_commit else cfg
    data = SstDataModule.from_config(loading, taught and taught.frame)
    data.setup("fit")  # verifies the split against its manifest
    if cfg.train.early_stop and "val" not in data.parts:
        raise SstError(
            f"train.early_stop={cfg.train.early_stop} needs a validation set, and the split "
            f"{cfg.train.split} has none",
            fix="make a split with split.val_fraction > 0 (or split.folds), or set "
            "train.early_stop=0",
        )
    init = cfg.model.init_from and runs.Run.open(Path(cfg.model.init_from), need=(runs.WEIGHTS,))
    if init:
        init.verify(reads=(runs.WEIGHTS,))  # before the model loads: a tampered run fails first
    model = SstClassifier.from_config(loading, decided)
    if cfg.train.devices > 1:
        model.freeze_unused()
    if init:
        init.load_into(model)
    if soft:
        model.soft_labels = torch.from_numpy(soft.probs)
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
    notes += [soft.write(work)] if soft else []  # soft_labels.npy: likewise
    with tracked(
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
            if dataset := server.split_dataset(Path(cfg.train.split)):  # where an agent gets it
                tracker.record(server.DATASET, dataset, "the ClearML Dataset the split is")
            tracker.record("model", dict(model.hparams), "the classifier's arguments")
        seed_everything(cfg.train.seed)  # after Task.init, so tracked and untracked runs agree
        reports = ReportCallback(tracker, work)
        epochs = len(data.schedule)
        trainer = build_trainer(
            cfg,
            decided,
            epochs=epochs,
            work=work,
            model=model,
            callbacks=[reports],
            stop_after=stop_after,
        )
        trainer.fit(model, datamodule=data, ckpt_path=str(checkpoint) if checkpoint else None)
        training = _training_record(cfg, trainer, epochs)
        if training and (why := training["stopped"]):
            notes.append(f"{why}-stopped after {training['epochs']} of {epochs} epochs")
            if tracker is not None:
                tracker.set_tags([f"{why}-stopped"])
        chosen, chosen_note = _chosen_checkpoint(cfg, trainer)
        notes += chosen_note
        notes += [n for n in [not_begun(trainer)] if n]
        if trainer.world_size > 1:  # the DDP workers are gone with their results: score here
            trainer = build_trainer(cfg, decided, role="score", work=work, callbacks=[reports])
            trainer.validate(model, datamodule=data, verbose=False)  # the last weights
        trainer.test(model, datamodule=data, ckpt_path=chosen, verbose=False)  # loads it
        notes += decided.notes(cfg.train.optimizer)
        if cfg.train.prune:
            notes.append(f"pruned: {sparsity(model):.1%} of the encoder's linear weights are 0")
        metrics, fingerprint = _record(
            cfg,
            work,
            model,
            data,
            decided,
            task_id=tracker.id if tracker is not None else None,
            model_commit=model_commit,
            init_weights=init.weights_sha256 if init else None,
            pseudo=taught.inputs if taught else None,
            distill=soft.inputs if soft else None,
            training=training,
        )
        drawn = pictures.draw(runs.Run(work), work / runs.PICTURES)
        final = runs.finish(work)
        if not cfg.train.keep_checkpoints and (removed := runs.drop_checkpoints(final)):
            notes.append(removed)
        where = None
        if tracker is not None:  # after the rename: ClearML reads the figure when it uploads
            _report_run(tracker, fingerprint, metrics, final / runs.CONFUSION_PNG)
            pictures.report(tracker, {n: final / runs.PICTURES / n for n in drawn})
            if model_id := tracker.upload_run(final, runs.SHARED):
                notes.append(f"weights registered as ClearML model {model_id}")
            where = tracker.describe(run=final)
    seconds = time.perf_counter() - t0
    return RunResult(final, metrics, fingerprint[fp.WEIGHTS], where, seconds, notes)


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


def _training_record(cfg: Config, trainer: L.Trainer, epochs: int) -> dict[str, Any] | None:
    """metrics.json's ``training``, for a run that uses a control added after the first runs
    (early stopping, accumulation, a budget; their metrics.json stays as it was): the epochs
    trained of the schedule's, why it stopped early ("early", "budget" or None), the optimizer
    steps and the effective batch (batch × accumulate × processes)."""
    t = cfg.train
    if not (t.early_stop or t.max_minutes or t.accumulate > 1):
        return None
    return {
        "epochs": epochs_trained(trainer),
        "scheduled_epochs": epochs,
        "stopped": stopped(trainer, epochs),
        "optimizer_steps": trainer.global_step,
        "effective_batch": t.batch_size * t.accumulate * trainer.world_size,
    }


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


class ReportCallback(Callback):
    """A confusion matrix per evaluation: to ClearML and as ``confusion/<stage>-epoch<N>.png``
    (figures and ClearML stay out of model/)."""

    def __init__(self, tracker: Tracker | None, work: Path) -> None:
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
    decided: Decision,
    *,
    task_id: str | None,
    model_commit: str | None,  # the hub commit the pretrained weights came from
    init_weights: str | None,  # model.init_from: the weights it started from
    pseudo: fp.PseudoInputs | None,  # train.unlabeled: what labelled it
    distill: fp.DistillInputs | None,  # train.distill_from: what soft-labelled train
    training: dict[str, Any] | None,  # how the fit ended (_training_record)
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's outputs: weights, metrics, the test figure and predictions, the fingerprint.
    Returns the metrics and the fingerprint."""
    save_model(model, str(work / runs.WEIGHTS))
    metrics: dict[str, Any] = {s: model.results[s] for s in ("val", "test") if s in model.results}
    if training is not None:
        metrics["training"] = training
    metrics[fp.WEIGHTS] = weights_sha = sha256_file(work / runs.WEIGHTS)  # as the fingerprint
    write_json(work / runs.METRICS, metrics)
    test = model.results["test"]
    save_png(plot_test_confusion(test, cfg.name), work / runs.CONFUSION_PNG)
    part = data.parts["test"]
    probs = np.stack([model.test_probs[i].numpy() for i in range(len(part))])
    rows = {"phrase_id": part.phrase_id, "sentence_id": part.sentence_id}
    rows |= {"is_root": part.is_root, "label": part.labels}
    runs.write_predictions(work / runs.PREDICTIONS, rows, probs)
    fingerprint = fp.for_run(
        cfg,
        decided=decided,
        attention=model.backbone.config._attn_implementation,  # what the encoder runs
        weights_sha256=weights_sha,
        files_sha256=runs.files_sha256(work),
        task_id=task_id,
        model_commit=model_commit,
        init_weights=init_weights,
        pseudo=pseudo,
        distill=distill,
    )
    write_json(work / runs.FINGERPRINT, fingerprint)
    return metrics, fingerprint


def _report_run(
    tracker: Tracker, fingerprint: dict[str, Any], metrics: dict[str, Any], figure: Path
) -> None:
    # `sst replay <task or session.zip>` reads it back (tracker.configuration)
    tracker.record(server.FINGERPRINT, fingerprint, "what the run depended on and wrote (replay)")
    test, training = metrics["test"], metrics.get("training") or {}
    if training.get("stopped") == "budget":  # what a replay of the task trains
        tracker.report_single_value(runs.BUDGET_EPOCHS, training["epochs"])
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
