"""Confusion matrices (counts annotated, colour = row share): a run's figure, one per evaluation,
and the leaderboard's grid of runs.

    python -c "from sst.viz.figures import plot_confusion"   # drawn by train, ensemble and report

Saved with :func:`sst.io.save_png` (no version metadata: equal figures, equal bytes).
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from sst.data import LABELS
from sst.io import save_png
from sst.model.metrics import LEVELS

SHORT = ("neg", "s.neg", "neu", "s.pos", "pos")


def draw_confusion(ax: Any, counts: Any, title: str, *, counts_too: bool = True) -> None:
    """One confusion matrix (rows: truth, columns: prediction) with row-normalised colours."""
    cm = np.asarray(counts, dtype=float)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(LABELS)):
        for j in range(len(LABELS)):
            ax.text(
                j,
                i,
                f"{int(cm[i, j])}\n{share[i, j]:.0%}" if counts_too else f"{share[i, j]:.0%}",
                ha="center",
                va="center",
                fontsize=7 if counts_too else 6,
                color="white" if share[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(len(LABELS)), SHORT, fontsize=None if counts_too else 6)
    ax.set_yticks(range(len(LABELS)), SHORT, fontsize=None if counts_too else 6)
    if counts_too:
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    ax.set_title(title, fontsize=None if counts_too else 7)


def plot_confusion(matrices: dict[str, list[list[int]]], title: str) -> Any:
    """One panel per named matrix (rows: truth, columns: prediction), row-normalised colours."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(5.2 * len(matrices), 4.6), squeeze=False)
    for ax, (name, counts) in zip(axes[0], matrices.items(), strict=True):
        draw_confusion(ax, counts, name)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_test_confusion(test: dict[str, Any], name: str) -> Any:
    """The run folder's ``confusion_matrix.png``: test phrases and roots, accuracy in the title
    (a trained run and an ensemble draw the same figure)."""
    return plot_confusion(
        {
            f"test {level} (n={test[level]['n']})": test[level]["confusion_matrix"]
            for level in LEVELS
        },
        f"{name}: test accuracy root {test['root']['accuracy']:.3f}, "
        f"phrase {test['phrase']['accuracy']:.3f}",
    )


def confusion_grid(panels: list[tuple[str, list[list[int]]]], path: Path) -> None:
    """The leaderboard's ``confusion_grid.png``: one row-normalised panel per (title, matrix),
    four to a row."""
    cols = min(4, max(1, len(panels)))
    n_rows = max(1, math.ceil(len(panels) / cols))
    fig, axes = plt.subplots(n_rows, cols, figsize=(3.4 * cols, 3.4 * n_rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, counts) in zip(axes.flat, panels, strict=False):
        ax.axis("on")
        draw_confusion(ax, counts, title[:40], counts_too=False)
    fig.suptitle("test root confusion, row-normalised (rows: truth)")
    fig.tight_layout()
    save_png(fig, path, dpi=90)
