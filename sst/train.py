"""Fine-tune an encoder on a split and write a run directory; predict with a finished run.

    sst train --config configs/demo.yaml model.name=minilm train.sampling="stratified:1,random:1"
    sst train --resume runs/<id>.partial
    sst predict --run runs/<id> "a gorgeous, witty, seductive movie ."

A run is built in ``runs/<id>.partial/`` and renamed to ``runs/<id>/`` when complete (the
run-directory contract of DESIGN.md): ``config.yaml``, ``fingerprint.json``, ``metrics.json``,
``weights.safetensors``, ``confusion_matrix.png``, ``predictions.tsv``, ``tb/``, ``checkpoints/``.
A killed run leaves its ``.partial`` folder with ``checkpoints/last.ckpt``; ``--resume`` continues
it from the recorded config, never from the current one.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from lightning.pytorch.callbacks import Callback

from sst.config import Config, load_config
from sst.data.formats import LABELS
from sst.data.sources import sha256_file
from sst.data.versioning import dumps
from sst.errors import SstError
from sst.model.metrics import HEADLINE

PARTIAL = ".partial"


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]
    weights_sha256: str
    tracking: str | None
    seconds: float


def new_run_id(cfg: Config) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{cfg.name}-{stamp}-{cfg.hash()[:8]}"


def _precision(value: str) -> str:
    import torch

    if value != "auto":
        return value
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def train(cfg: Config, *, resume: Path | None = None, runs_dir: Path | None = None) -> RunResult:
    """Train ``cfg`` (or continue the partial run at ``resume``); return the finished run.
    ``runs_dir`` puts the run folder elsewhere than ``train.runs_dir`` without changing the
    config (and its hash): `sst replay` writes to ``<runs_dir>/replays/``.

    Everything that can be wrong with the inputs (config values, model, split) fails before the
    run folder or a ClearML task exists.
    """
    import lightning as L

    from sst.model.datamodule import SstDataModule
    from sst.model.module import SstClassifier, load_pretrained
    from sst.repro import configure_determinism

    t0 = time.perf_counter()
    determinism = configure_determinism(cfg.train.seed, cfg.train.threads)  # first, always
    m, t = cfg.model, cfg.train
    if resume is None:
        from sst.data.pipeline import ensure_split

        if made := ensure_split(cfg):
            print(f"split {made.out} made first ({made.status})", file=sys.stderr)
    tokenizer = load_pretrained("tokenizer", m.name, m.revision)
    dm = SstDataModule(
        t.split,
        tokenizer,
        batch_size=t.batch_size,
        eval_batch_size=t.eval_batch_size,
        sampling=t.sampling,
        epoch_size=t.epoch_size,
        max_length=m.max_length,
        seed=t.seed,
        num_workers=t.num_workers,
        val_sentences=t.val_sentences,
        test_sentences=t.test_sentences,
    )
    dm.setup("fit")  # verifies the split against its manifest
    module = SstClassifier(
        model_name=m.name,
        revision=m.revision,
        pooling=m.pooling,
        dropout=m.dropout,
        freeze_backbone=m.freeze_backbone,
        lr=t.lr,
        weight_decay=t.weight_decay,
        scheduler=t.scheduler,
        warmup_ratio=t.warmup_ratio,
    )
    runs = runs_dir or Path(t.runs_dir)
    if resume is not None:
        work = resume
        run_id = work.name.removesuffix(PARTIAL)
        last = work / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise SstError(
                "no checkpoints/last.ckpt to resume from",
                path=work,
                fix="start the run again without --resume",
            )
        ckpt: Path | None = last
    else:
        run_id = new_run_id(cfg)
        work = runs / f"{run_id}{PARTIAL}"
        if (runs / run_id).exists() or work.exists():
            raise SstError("run folder exists", path=runs / run_id, fix="wait a second and retry")
        work.mkdir(parents=True)
        (work / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=True))
        ckpt = None
    tracker = _start_tracking(cfg, run_id)
    # Task.init may touch global RNGs: seed again here, tracked or not, so both runs are equal
    L.seed_everything(t.seed, workers=True, verbose=False)
    try:
        if tracker is not None:
            tracker.connect("model", dict(module.hparams))
        result = _fit(cfg, work, ckpt, tracker, determinism, dm, module)
        final = work.parent / run_id  # beside the partial folder, wherever it was resumed from
        os.replace(work, final)
        result.run_dir = final
        result.seconds = time.perf_counter() - t0
        return result
    finally:
        if tracker is not None:
            tracker.close()


def container_arguments() -> str:
    """What a docker-mode agent passes to the task's container: use the locked venv as it is,
    the determinism variables, and ``SST_IMAGE`` so the run's fingerprint names its image."""
    from sst.repro import DETERMINISM_ENV

    env = {
        "CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL": "1",
        **DETERMINISM_ENV,
        "SST_IMAGE": container_image(),
    }
    return " ".join(f"-e {k}={v}" for k, v in env.items())


def container_image() -> str:
    """The image a clone of this run should execute in: ``$SST_IMAGE`` (set it to the pinned
    ``repo@sha256:…`` reference when running in or publishing the image), else the local tag."""
    return os.environ.get("SST_IMAGE") or "sst:cpu"


def _start_tracking(cfg: Config, run_id: str) -> Any:
    if not cfg.tracking.enabled:
        return None
    from sst.sweep import SWEEP_ENV
    from sst.tracking import start_task

    tracker = start_task(
        cfg.tracking.project,
        f"train {cfg.name}",
        "training",
        cfg.to_dict(),
        tags=[run_id, *([os.environ[SWEEP_ENV]] if os.environ.get(SWEEP_ENV) else [])],
        monitor_resources=cfg.tracking.monitor_resources,
        quiet=True,
    )
    tracker.record_container(container_image(), container_arguments())
    return tracker


def _fit(
    cfg: Config,
    work: Path,
    ckpt: Path | None,
    tracker: Any,
    determinism: dict[str, Any],
    dm: Any,
    module: Any,
) -> RunResult:
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
    from lightning.pytorch.loggers import TensorBoardLogger

    t = cfg.train
    best = ModelCheckpoint(
        dirpath=work / "checkpoints",
        filename="best",
        monitor="val/root/macro_f1",
        mode="max",
        save_top_k=1,
        enable_version_counter=False,
    )
    # the resume point: every N steps (or epoch), and on Ctrl+C or a crash
    last = ModelCheckpoint(
        dirpath=work / "checkpoints",
        filename="last",
        monitor=None,
        save_top_k=1,
        every_n_train_steps=t.checkpoint_every or None,
        enable_version_counter=False,
        save_on_exception=True,
    )
    trainer = L.Trainer(
        max_epochs=len(dm.schedule),
        accelerator="auto",
        devices=1,
        precision=_precision(t.precision),  # type: ignore[arg-type]
        deterministic=True,
        gradient_clip_val=t.grad_clip or None,
        logger=TensorBoardLogger(str(work), name="tb", version="", default_hp_metric=False),
        callbacks=[best, last, TQDMProgressBar(refresh_rate=20), ReportCallback(tracker, work)],
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        enable_model_summary=False,
        log_every_n_steps=10,
        default_root_dir=str(work),
    )
    trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt) if ckpt else None)
    trainer.test(module, datamodule=dm, ckpt_path=None, verbose=False)
    return _write_outputs(cfg, work, module, dm, tracker, determinism)


class ReportCallback(Callback):
    """A confusion matrix per evaluation: to ClearML and as ``confusion/<stage>-epoch<N>.png``
    (figures and ClearML stay out of model/)."""

    def __init__(self, tracker: Any, work: Path) -> None:
        self.tracker = tracker
        self.folder = work / "confusion"

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        self._report(pl_module.results.get("val", {}), "val", trainer.current_epoch)

    def on_test_end(self, trainer: Any, pl_module: Any) -> None:
        self._report(pl_module.results.get("test", {}), "test", trainer.current_epoch)

    def _report(self, results: dict[str, Any], stage: str, epoch: int) -> None:
        import matplotlib.pyplot as plt

        from sst.figures import plot_confusion

        if not results:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        fig = plot_confusion(
            {f"{stage} {level}": r["confusion_matrix"] for level, r in results.items()},
            f"{stage}, epoch {epoch}",
        )
        fig.savefig(self.folder / f"{stage}-epoch{epoch}.png", dpi=80, metadata={"Software": None})
        plt.close(fig)
        if self.tracker is None:
            return
        for level, summary in results.items():
            self.tracker.report_confusion_matrix(
                f"{stage} confusion matrix", level, summary["confusion_matrix"], list(LABELS), epoch
            )


def _write_outputs(
    cfg: Config, work: Path, module: Any, dm: Any, tracker: Any, determinism: dict[str, Any]
) -> RunResult:
    import matplotlib.pyplot as plt
    import pandas as pd
    from safetensors.torch import save_model

    from sst.figures import plot_test_confusion
    from sst.repro import environment, git_state

    weights = work / "weights.safetensors"
    save_model(module, str(weights))
    weights_sha = sha256_file(weights)
    metrics: dict[str, Any] = {
        stage: module.results[stage] for stage in ("val", "test") if stage in module.results
    }
    metrics["weights_sha256"] = weights_sha
    (work / "metrics.json").write_text(dumps(metrics))

    test = module.results["test"]
    fig = plot_test_confusion(test, cfg.name)
    fig.savefig(work / "confusion_matrix.png", dpi=100, metadata={"Software": None})

    part = dm.parts["test"]
    probs = np.stack([module.test_probs[i].numpy() for i in range(len(part))])
    frame = pd.DataFrame(
        {
            "phrase_id": part.phrase_id,
            "sentence_id": part.sentence_id,
            "is_root": part.is_root.astype(int),
            "label": part.labels,
            "pred": probs.argmax(1),
            **{f"p{c}": np.round(probs[:, c], 6) for c in range(5)},
        }
    )
    frame.to_csv(work / "predictions.tsv", sep="\t", index=False)

    split_manifest = Path(cfg.train.split) / "manifest.json"
    fingerprint = {
        "config_sha256": cfg.hash(),
        "seed": cfg.train.seed,
        "threads": determinism["threads"],
        "determinism": determinism,
        "split_manifest_sha256": sha256_file(split_manifest),
        "model": cfg.model.name,
        "model_revision": cfg.model.revision,
        "model_files_sha256": _model_files_sha256(cfg.model.name),
        "environment": environment(),
        "git": git_state(),
        "clearml_task_id": tracker.id if tracker is not None else None,
        "weights_sha256": weights_sha,
    }
    (work / "fingerprint.json").write_text(dumps(fingerprint))
    if tracker is not None:
        # whole, nested sections flattened by ClearML: `sst replay <session.zip>` reads it back
        tracker.connect("fingerprint", fingerprint)
        for level in ("phrase", "root"):
            for key in HEADLINE:
                tracker.report_single_value(f"test/{level}/{key}", test[level][key])
            table = pd.DataFrame(
                {
                    "precision": test[level]["precision_per_class"],
                    "recall": test[level]["recall_per_class"],
                    "f1": test[level]["f1_per_class"],
                },
                index=list(LABELS),
            )
            tracker.report_table("test per class", level, table)
        tracker.report_figure("confusion matrix", "test", fig)
    plt.close("all")
    return RunResult(
        work, metrics, weights_sha, tracker.describe() if tracker is not None else None, 0.0
    )


def _model_files_sha256(name: str) -> str | None:
    """sha256 over the sorted (relative path, file sha256) of a local model folder."""
    from sst.model.module import resolve_model

    folder = Path(resolve_model(name)).expanduser()
    if not folder.is_dir():
        return None  # a hub id: the revision identifies it
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(f"{p.relative_to(folder).as_posix()}\0{sha256_file(p)}\n".encode())
    return h.hexdigest()


def load_run_config(run: Path) -> Config:
    path = run / "config.yaml"
    if not path.is_file():
        raise SstError("not a run folder (no config.yaml)", path=run, fix="pass runs/<id>")
    return load_config(path)


def print_summary(result: RunResult, out: Any = None) -> None:
    out = out or sys.stdout
    print(f"run      {result.run_dir}  ({result.seconds:.0f} s)", file=out)
    for stage in ("test",):
        for level in ("phrase", "root"):
            s = result.metrics[stage][level]
            print(
                f"{stage} {level:6} n={s['n']:<6} acc {s['accuracy']:.3f}  macro-F1 "
                f"{s['macro_f1']:.3f}  min-prec {s['min_class_precision']:.3f}  within-1 "
                f"{s['within_one']:.3f}  MAE {s['mae']:.3f}  QWK {s['qwk']:.3f}  flips "
                f"{s['polarity_flip_rate']:.3f}  (majority {s['majority_baseline']:.3f})",
                file=out,
            )
    print(f"confusion matrix {result.run_dir / 'confusion_matrix.png'}", file=out)
    print(f"weights sha256 {result.weights_sha256}", file=out)
    print(result.tracking or "ClearML tracking disabled", file=out)
