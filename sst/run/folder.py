"""The run-folder contract: file names, run ids, atomic creation, and the one reader of a finished
run (used by predict, replay, report, ensemble and sweep).

    python -c "from sst.run.folder import Run; print(Run.open('runs/<id>').weights_sha256)"

``sst train`` builds ``<runs_dir>/<id>.partial/`` and renames it to ``<runs_dir>/<id>/`` when
complete: ``config.yaml`` (resolved), ``fingerprint.json`` (:mod:`sst.run.fingerprint`),
``metrics.json``, ``weights.safetensors``, ``confusion_matrix.png``, ``predictions.tsv`` (test
set), ``tb/`` (TensorBoard), ``checkpoints/`` (``best.ckpt`` by validation, ``last.ckpt`` the
resume point) and ``confusion/`` (one figure per evaluation). An ensemble folder holds the same
metrics, predictions, figure and a fingerprint listing its members. No other module spells these
names.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sst.config import Config, flatten, load_config
from sst.data import LABELS, N_CLASSES
from sst.errors import SstError
from sst.io import private_sibling, sha256_file
from sst.run import fingerprint as fp

CONFIG = "config.yaml"
FINGERPRINT = "fingerprint.json"
METRICS = "metrics.json"
# a budget-stopped run's epochs (metrics.json's training, a task's single value): what its replay
# trains, whatever the clock says there
BUDGET_EPOCHS = "training/budget_epochs"
WEIGHTS = "weights.safetensors"
CONFUSION_PNG = "confusion_matrix.png"
PREDICTIONS = "predictions.tsv"
PSEUDO = "pseudo.tsv"  # train.unlabeled: the teacher's kept labels (sst.verbs.pseudo)
SOFT_LABELS = "soft_labels.npy"  # train.distill_from: the teacher's soft labels (sst.verbs.distill)
TENSORBOARD = "tb"
CHECKPOINTS = "checkpoints"
BEST, LAST = "best", "last"  # checkpoint names (Lightning adds .ckpt)
CONFUSION_DIR = "confusion"
PICTURES = "pictures"  # sst.viz.pictures: learning curve, per class, by length, reliability, errors
PROFILE = "profile"  # train.profile: SimpleProfiler's fit-profile.txt (DDP: per rank), test-…
PARTIAL = ".partial"
REPLAYS = "replays"  # <runs_dir>/replays/: where `sst replay` trains
SWEEPS = "sweeps"  # <runs_dir>/sweeps/<sweep-id>/sweep.json: a sweep's outcomes
SWEEP_RECORD = "sweep.json"
TUNES = "tunes"  # <runs_dir>/tunes/<tune-id>/tune.json: a search's trials (`sst tune`)
TUNE_RECORD = "tune.json"
# What a shared task carries as artifacts (`sst upload`, online training), enough to predict
SHARED = (CONFIG, FINGERPRINT, METRICS, PREDICTIONS, WEIGHTS, CONFUSION_PNG)
ENSEMBLE_SHARED = (FINGERPRINT, METRICS, PREDICTIONS, CONFUSION_PNG)  # it has no config, no weights
# What the fingerprint's files_sha256 records beside weights_sha256, re-hashed by Run.verify
CHECKED = (CONFIG, METRICS, PREDICTIONS, CONFUSION_PNG, PSEUDO, SOFT_LABELS)
PROBS = tuple(f"p{c}" for c in range(N_CLASSES))  # class-probability columns of predictions.tsv
LABEL_IDS = {label: c for c, label in enumerate(LABELS)}  # a registered model's labels
FINGERPRINT_META = "fingerprint"  # its metadata entry holding fingerprint.json (no "." in a key)


# -- making a run folder -------------------------------------------------------------------


def new_run_id(cfg: Config) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{cfg.name}-{stamp}-{cfg.hash()[:8]}"


def run_id(work: Path) -> str:
    return work.name.removesuffix(PARTIAL)


def create(runs_dir: Path, cfg: Config) -> Path:
    """A new ``<runs_dir>/<id>.partial/`` holding the resolved config."""
    rid = new_run_id(cfg)
    work = runs_dir / f"{rid}{PARTIAL}"
    if (runs_dir / rid).exists() or work.exists():
        raise SstError("run folder exists", path=runs_dir / rid, fix="wait a second and retry")
    work.mkdir(parents=True)
    (work / CONFIG).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=True))
    return work


@contextmanager
def created_whole(final: Path, kind: str = "run") -> Iterator[Path]:
    """A folder with nothing to resume (an ensemble's): written in a private sibling, renamed to
    ``final`` when the block ends, removed when it fails; refused when ``final`` exists."""
    if final.exists():
        raise SstError(f"this {kind} exists already", path=final, fix="delete it to redo it")
    final.parent.mkdir(parents=True, exist_ok=True)
    work = private_sibling(final, "tmp")
    try:
        yield work
        os.replace(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def partial_folder(run: Path) -> Path:
    """What ``--resume`` names: ``runs/<id>`` or ``runs/<id>.partial`` → the partial folder."""
    if not run.name.endswith(PARTIAL) and Path(f"{run}{PARTIAL}").is_dir():
        return Path(f"{run}{PARTIAL}")
    return run


def resume_point(work: Path) -> Path:
    last = work / CHECKPOINTS / f"{LAST}.ckpt"
    if not last.is_file():
        raise SstError(
            f"no {CHECKPOINTS}/{LAST}.ckpt to resume from",
            path=work,
            fix="start the run again without --resume",
        )
    return last


def finish(work: Path) -> Path:
    """Rename the partial folder to the run id, beside it wherever it was resumed from."""
    final = work.parent / run_id(work)
    os.replace(work, final)
    return final


def drop_checkpoints(run: Path) -> str | None:
    """Remove a finished run's ``checkpoints/`` (resume points, not needed once it finished);
    returns what was removed, for the user."""
    folder = run / CHECKPOINTS
    if not folder.is_dir():
        return None
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in files)
    shutil.rmtree(folder)
    names = ", ".join(p.name for p in files) or "empty"
    return (
        f"removed {CHECKPOINTS}/ ({names}: {size / 1e6:.0f} MB); the weights are in {WEIGHTS} "
        "(train.keep_checkpoints=true keeps them)"
    )


def load_run_config(run: Path) -> Config:
    path = run / CONFIG
    if not path.is_file():
        raise SstError(f"not a run folder (no {CONFIG})", path=run, fix="pass runs/<id>")
    return load_config(path)


def write_predictions(path: Path, rows: Any, probs: np.ndarray) -> None:
    """``predictions.tsv``: one test phrase per row, its truth, prediction and probabilities.
    ``rows[k]`` gives the ``phrase_id``, ``sentence_id``, ``is_root`` and ``label`` arrays."""
    import pandas as pd  # here only: `sst --help` reads this module's names

    frame = pd.DataFrame(
        {
            "phrase_id": np.asarray(rows["phrase_id"]),
            "sentence_id": np.asarray(rows["sentence_id"]),
            "is_root": np.asarray(rows["is_root"]).astype(int),
            "label": np.asarray(rows["label"]),
            "pred": probs.argmax(1),
            **{p: np.round(probs[:, c], 6) for c, p in enumerate(PROBS)},
        }
    )
    frame.to_csv(path, sep="\t", index=False)


def files_sha256(work: Path, names: tuple[str, ...] = CHECKED) -> dict[str, str]:
    """sha256 of the run's written files (the fingerprint's ``files_sha256``: `sst verify`)."""
    return {name: sha256_file(work / name) for name in names if (work / name).is_file()}


# -- reading a finished run ----------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """A finished run (or ensemble) folder; each file is read on first use."""

    path: Path

    @classmethod
    def open(cls, folder: Path, *, need: tuple[str, ...] = (FINGERPRINT,)) -> Run:
        """The run at ``folder``, refused with one line when a file in ``need`` is missing."""
        folder = Path(folder)
        for name in need:
            if not (folder / name).is_file():
                partial = folder.name.endswith(PARTIAL)
                raise SstError(
                    f"not a finished run (no {name})",
                    path=folder,
                    fix="finish it with sst train --resume" if partial else "pass runs/<id>",
                )
        return cls(folder)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS

    @cached_property
    def config(self) -> Config:
        return load_run_config(self.path)

    @property
    def pinned_config(self) -> Config:
        """The recorded config loading the model at the hub commit the run recorded (its
        ``model.revision`` may be a branch that has moved since); as recorded otherwise."""
        commit = self.fingerprint.get(fp.MODEL_COMMIT)
        return self.config.with_model(revision=commit) if commit else self.config

    @cached_property
    def fingerprint(self) -> dict[str, Any]:
        path = self.path / FINGERPRINT
        return json.loads(path.read_text()) if path.is_file() else {}

    @cached_property
    def metrics(self) -> dict[str, Any]:
        path = self.path / METRICS
        return json.loads(path.read_text()) if path.is_file() else {}

    @cached_property
    def predictions(self) -> Any:
        """``predictions.tsv`` as a pandas DataFrame."""
        import pandas as pd

        return pd.read_csv(self.path / PREDICTIONS, sep="\t")

    @property
    def weights_sha256(self) -> str | None:
        return self.fingerprint.get(fp.WEIGHTS)

    @property
    def split_sha256(self) -> str | None:
        """The sha256 of the split's manifest the run trained on (an ensemble: its members')."""
        return self.fingerprint.get(fp.SPLIT)

    def registry_metadata(self) -> dict[str, str]:
        """The run's identity as a registered model's metadata (sst.tracking.registry): the
        fingerprint's identity fields by their names (``git/commit`` is the kit's), the test
        headline metrics as ``test/<level>/<metric>`` and the whole fingerprint as JSON."""
        from sst.model.metrics import HEADLINE, LEVELS

        flat = flatten(self.fingerprint, "/")
        meta = {k: flat[k] for k in fp.IDENTITY if flat.get(k, "null") != "null"}
        test = self.metrics.get("test") or {}
        meta |= {
            f"test/{level}/{key}": f"{test[level][key]:.6g}"
            for level in LEVELS
            if level in test
            for key in HEADLINE
            if key in test[level]
        }
        meta[FINGERPRINT_META] = json.dumps(self.fingerprint, sort_keys=True)
        return meta

    @property
    def task_id(self) -> str | None:
        """The ClearML task that tracked the run (offline: the session's id)."""
        return self.fingerprint.get(fp.TASK_ID)

    @property
    def model(self) -> str | None:
        return self.fingerprint.get(fp.MODEL)

    def recorded_files(self) -> dict[str, str]:
        """Every file the fingerprint records a sha256 of (runs made before ``files_sha256``
        was recorded: the weights only)."""
        named = dict(self.fingerprint.get(fp.FILES) or {})
        if weights := self.weights_sha256:
            named[WEIGHTS] = weights
        return named

    def verify(self, reads: tuple[str, ...] | None = None) -> Run:
        """Re-hash every file the fingerprint names: refused with one line naming the file, the
        recorded and the actual digest when one was changed or truncated, or is missing and
        among the files the caller ``reads`` (default: all; a report does not need weights)."""
        for name, expected in self.recorded_files().items():
            path = self.path / name
            if not path.is_file() and reads is not None and name not in reads:
                continue
            actual = sha256_file(path) if path.is_file() else None
            if actual != expected:
                raise SstError(
                    f"sha256 {actual or '(file missing)'} is not the recorded {expected} "
                    f"({FINGERPRINT})",
                    path=path,
                    fix="the file was changed, truncated or removed: copy the run again or "
                    "re-train it (sst replay)",
                )
        return self

    def load_classifier(self) -> Any:
        """The trained classifier: the recorded config's model with the run's weights, once
        every recorded file is verified (inference decides precision for fp32)."""
        from sst.env.precision import INFERENCE, decide
        from sst.model.module import SstClassifier

        self.verify(reads=(CONFIG, WEIGHTS))
        decided = decide(INFERENCE, self.config.model.attention)
        model = SstClassifier.from_config(self.pinned_config, decided)
        self.load_into(model)
        return model.eval()

    def load_into(self, model: Any) -> None:
        """This run's weights into ``model`` (built like this run's); :meth:`verify` first."""
        from safetensors.torch import load_model

        try:
            load_model(model, str(self.weights))
        except RuntimeError as e:
            raise SstError(
                f"these weights do not fit the model: {str(e).splitlines()[0][:160]}",
                path=self.weights,
                fix="use the run's own model.name and model.pooling",
            ) from None

    @property
    def members(self) -> list[str] | None:
        """An ensemble's member runs; None for a trained run."""
        return self.fingerprint.get(fp.MEMBERS)

    @property
    def member_models(self) -> list[str] | None:
        return self.fingerprint.get(fp.MEMBER_MODELS)


def finished_runs(runs_dir: Path) -> list[Run]:
    """Every finished run and ensemble directly in ``runs_dir``, by name."""
    if not runs_dir.is_dir():
        return []
    return [
        Run(p)
        for p in sorted(runs_dir.iterdir())
        if (p / METRICS).is_file() and not p.name.endswith(PARTIAL) and not p.name.startswith(".")
    ]


def find_by_config(cfg: Config, runs_dir: Path | None = None) -> tuple[Path | None, Path | None]:
    """(finished run, partial run) in ``runs_dir`` (default ``cfg.train.runs_dir``) made from
    exactly this config."""
    want = cfg.hash()
    done = partial = None
    folders = Path(runs_dir or cfg.train.runs_dir).glob(f"*-{want[:8]}*")
    for folder in sorted(folders, key=lambda p: p.stat().st_mtime):
        if folder.name.endswith(PARTIAL):
            if (folder / CONFIG).is_file() and load_run_config(folder).hash() == want:
                partial = folder
        elif Run(folder).fingerprint.get(fp.CONFIG) == want:
            done = folder
    return done, partial


def sweep_records(runs_dir: Path) -> list[Path]:
    return sorted(runs_dir.glob(f"{SWEEPS}/*/{SWEEP_RECORD}"))
