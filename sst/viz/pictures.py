"""The pictures of a run, drawn from its own files — ``metrics.json``, ``predictions.tsv``,
``tb/`` and the split's test part (texts, lengths) — so `sst report` draws them for runs made
before they existed.

    python -c "from pathlib import Path; from sst.viz.pictures import draw
               from sst.run.folder import Run; print(draw(Run(Path('runs/<id>')), Path('/tmp/p')))"

- ``learning_curve.png``: train and val loss, val root macro-F1 and the learning rate, by step
- ``per_class.png``: test precision, recall and F1 per class, roots and all phrases
- ``by_length.png``: test accuracy by phrase length in tokens, with the count of each bucket
- ``reliability.png``: confidence against accuracy in ten bins, expected calibration error (ECE)
- ``confident_errors.tsv``: the most confident wrong test predictions (text, truth, prediction,
  probability)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sst.data import LABELS, N_CLASSES
from sst.data.pipeline import read_split
from sst.errors import SstError
from sst.io import MANIFEST, save_png, sha256_file
from sst.model.metrics import LEVELS
from sst.run.folder import PARTIAL, PREDICTIONS, PROBS, TENSORBOARD, Run
from sst.viz.figures import SHORT

CURVE, PER_CLASS, BY_LENGTH, RELIABILITY = (
    "learning_curve.png",
    "per_class.png",
    "by_length.png",
    "reliability.png",
)
ERRORS = "confident_errors.tsv"
LENGTHS = ((1, 1), (2, 2), (3, 4), (5, 8), (9, 16), (17, 32), (33, 10_000))


def draw(run: Run, out: Path, errors: int = 25) -> dict[str, Path]:
    """Every picture of ``run`` into ``out``, by name; the learning curve needs ``tb/``, the
    reliability diagram ``predictions.tsv``, the length view and the error table the split the
    run recorded (each left out when what it needs is gone)."""
    out.mkdir(parents=True, exist_ok=True)
    drawn: dict[str, Path] = {}
    name = run.name.removesuffix(PARTIAL)  # train draws before the rename

    def save(file: str, fig: Any) -> None:
        save_png(fig, out / file, dpi=90)
        drawn[file] = out / file

    curves = scalars(run.path / TENSORBOARD)
    if curves:
        save(CURVE, plot_learning_curve(curves, name))
    test = run.metrics["test"]
    save(PER_CLASS, plot_per_class(test, name))
    if not (run.path / PREDICTIONS).is_file():
        return drawn
    frame = test_frame(run)
    save(RELIABILITY, plot_reliability(frame, name))
    if "text" in frame:
        save(BY_LENGTH, plot_by_length(frame, name))
        confident_errors(frame, errors).to_csv(out / ERRORS, sep="\t", index=False)
        drawn[ERRORS] = out / ERRORS
    return drawn


def scalars(tb: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar logged to TensorBoard under ``tb`` (all event files), by tag, step-sorted."""
    return {
        tag: [(step, value) for step, (value, _) in points]
        for tag, points in scalar_events(tb).items()
    }


def scalar_events(tb: Path) -> dict[str, list[tuple[int, tuple[float, float]]]]:
    """:func:`scalars` with each value's wall time: ``{tag: [(step, (value, wall_time))]}``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: dict[str, dict[int, tuple[float, float]]] = {}
    for events in sorted(tb.rglob("events.out.tfevents.*")):  # by creation time (in the name)
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:  # a resumed run logs its last steps again: newest wins
            points = ((e.step, (e.value, e.wall_time)) for e in acc.Scalars(tag))
            tags.setdefault(tag, {}).update(points)
    return {tag: sorted(points.items()) for tag, points in tags.items()}


def test_frame(run: Run) -> pd.DataFrame:
    """``predictions.tsv`` with each phrase's text and token count from the run's split (when
    the split is still there and is the one the run recorded)."""
    frame = run.predictions
    split = Path(run.config.train.split)
    if not (split / MANIFEST).is_file() or sha256_file(split / MANIFEST) != run.split_sha256:
        return frame
    try:
        parts, _ = read_split(split)
    except (SstError, OSError):
        return frame
    test = parts["test"][["phrase_id", "text", "n_tokens"]]
    return frame.merge(test, on="phrase_id", how="left", validate="one_to_one")


def plot_learning_curve(curves: dict[str, list[tuple[int, float]]], name: str) -> Any:
    lr = next((t for t in sorted(curves) if t.startswith("lr-")), None)
    panels = [
        ("loss", ["train/loss", "val/loss"]),
        ("val root macro-F1", ["val/root/macro_f1"]),
        ("learning rate", [lr] if lr else []),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for ax, (title, tags) in zip(axes, panels, strict=True):
        for tag in tags:
            if tag in curves:
                steps, values = zip(*curves[tag], strict=True)
                ax.plot(steps, values, marker="o" if len(steps) < 30 else None, label=tag)
        if not any(t in curves for t in tags):
            ax.text(0.5, 0.5, "not logged by this run", ha="center", transform=ax.transAxes)
        else:
            ax.legend(fontsize=8)
        ax.set_title(title)
        ax.set_xlabel("step")
    fig.suptitle(f"{name}: learning curve")
    fig.tight_layout()
    return fig


def plot_per_class(test: dict[str, Any], name: str) -> Any:
    fig, axes = plt.subplots(1, len(LEVELS), figsize=(12, 3.8), sharey=True)
    x = np.arange(N_CLASSES)
    for ax, level in zip(axes, LEVELS, strict=True):
        for k, key in enumerate(("precision", "recall", "f1")):
            ax.bar(x + (k - 1) * 0.27, test[level][f"{key}_per_class"], 0.27, label=key)
        ax.set_xticks(x, SHORT)
        ax.set_ylim(0, 1)
        ax.set_title(f"test {level} (n={test[level]['n']:,})")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{name}: per class")
    fig.tight_layout()
    return fig


def by_length(frame: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy and count per token-length bucket (empty buckets left out)."""
    rows = []
    for lo, hi in LENGTHS:
        part = frame[(frame["n_tokens"] >= lo) & (frame["n_tokens"] <= hi)]
        if len(part):
            label = str(lo) if lo == hi else (f"{lo}+" if hi >= 10_000 else f"{lo}-{hi}")
            accuracy = float((part["pred"] == part["label"]).mean())
            rows.append({"tokens": label, "n": len(part), "accuracy": accuracy})
    return pd.DataFrame(rows)


def plot_by_length(frame: pd.DataFrame, name: str) -> Any:
    table = by_length(frame)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.bar(table["tokens"], table["accuracy"], color="tab:blue")
    for i, row in table.iterrows():
        ax.text(i, row["accuracy"] + 0.01, f"n={row['n']:,}", ha="center", fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("phrase length (tokens)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{name}: accuracy by length")
    fig.tight_layout()
    return fig


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Confidence (the top probability) against accuracy in ``bins`` equal-width bins, and the
    expected calibration error: the count-weighted mean gap between the two."""
    confidence = probs.max(1)
    correct = probs.argmax(1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins)
    safe = np.maximum(count, 1)
    conf = np.bincount(which, weights=confidence, minlength=bins) / safe
    acc = np.bincount(which, weights=correct, minlength=bins) / safe
    ece = float((count * np.abs(acc - conf)).sum() / max(len(labels), 1))
    return {"confidence": conf, "accuracy": acc, "count": count, "ece": ece}


def plot_reliability(frame: pd.DataFrame, name: str) -> Any:
    fig, axes = plt.subplots(1, len(LEVELS), figsize=(10, 4.2))
    for ax, level in zip(axes, LEVELS, strict=True):
        part = frame[frame["is_root"] == 1] if level == "root" else frame
        r = reliability(part[list(PROBS)].to_numpy(), part["label"].to_numpy())
        used = r["count"] > 0
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
        ax.plot(r["confidence"][used], r["accuracy"][used], marker="o")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"test {level}: ECE {r['ece']:.3f} (n={len(part):,})")
    fig.suptitle(f"{name}: reliability")
    fig.tight_layout()
    return fig


def confident_errors(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    wrong = frame[frame["pred"] != frame["label"]].copy()
    wrong["probability"] = wrong[list(PROBS)].to_numpy().max(1)
    wrong = wrong.sort_values(["probability", "phrase_id"], ascending=[False, True]).head(k)
    return pd.DataFrame(
        {
            "text": wrong["text"],
            "truth": [LABELS[i] for i in wrong["label"]],
            "prediction": [LABELS[i] for i in wrong["pred"]],
            "probability": wrong["probability"].round(4),
            "is_root": wrong["is_root"],
            "phrase_id": wrong["phrase_id"],
        }
    )


def report(tracker: Any, drawn: dict[str, Path]) -> None:
    """The pictures to the run's ClearML task: images, and the error table as a table."""
    for path in drawn.values():
        if path.suffix == ".png":
            tracker.report_image("pictures", path.stem, path)
        else:
            tracker.report_table("pictures", path.stem, pd.read_csv(path, sep="\t"))
