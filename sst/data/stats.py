"""Class statistics and plots of a split: class distribution, distribution by n-gram length
(the original project's ``n_gram_dist``), and train vs test (vs val) comparison.

    sst split ...   # writes plots/*.png next to the split (`sst split` reports them to ClearML)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never a window, also on a desktop
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sst.data import LABELS, N_CLASSES
from sst.io import save_png

COLORS = ("#b2182b", "#ef8a62", "#bababa", "#67a9cf", "#2166ac")  # diverging: neg → pos
MAX_NGRAM = 30  # phrases longer than this share the last bucket ("30+")


def class_counts(frame: pd.DataFrame) -> list[int]:
    return np.bincount(frame["label"].to_numpy().astype(np.int64), minlength=N_CLASSES).tolist()


def split_stats(parts: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Per split: sentences, phrases, class counts of all phrases and of roots."""
    return {
        name: {
            "sentences": int(frame["sentence_id"].nunique()),
            "phrases": len(frame),
            "class_counts": class_counts(frame),
            "root_class_counts": class_counts(frame[frame["is_root"]]),
        }
        for name, frame in parts.items()
    }


def plot_class_distribution(parts: dict[str, pd.DataFrame]) -> Any:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, roots in zip(axes, (False, True), strict=True):
        width = 0.8 / len(parts)
        for i, (name, frame) in enumerate(parts.items()):
            counts = class_counts(frame[frame["is_root"]] if roots else frame)
            ax.bar(np.arange(N_CLASSES) + i * width, counts, width, label=name)
        ax.set_xticks(np.arange(N_CLASSES) + width * (len(parts) - 1) / 2, LABELS, rotation=20)
        ax.set_title("sentences (roots)" if roots else "all phrases")
        ax.set_ylabel("count")
        ax.legend()
    fig.suptitle("Class distribution")
    fig.tight_layout()
    return fig


def ngram_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows: n-gram length 1..MAX_NGRAM (last = longer); columns: label counts."""
    length = frame["n_tokens"].clip(lower=0, upper=MAX_NGRAM)
    table = pd.crosstab(length, frame["label"]).reindex(
        index=range(0, MAX_NGRAM + 1), columns=range(N_CLASSES), fill_value=0
    )
    return table.loc[1:]  # n_tokens == 0 is the single-space phrase: not an n-gram


def plot_ngram_distribution(frame: pd.DataFrame) -> Any:
    table = ngram_table(frame)
    share = table.div(table.sum(axis=1).replace(0, 1), axis=0)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6), sharex=True, height_ratios=(2, 1))
    bottom_acc = np.zeros(len(share))
    x = share.index.to_numpy()
    for c in range(N_CLASSES):
        top.bar(x, share[c], bottom=bottom_acc, color=COLORS[c], label=LABELS[c], width=0.9)
        bottom_acc += share[c].to_numpy()
    top.set_ylabel("share of phrases")
    top.legend(loc="upper right", fontsize=8)
    top.set_title("Class distribution by n-gram length (neutral dominates short phrases)")
    bottom.bar(x, table.sum(axis=1), color="#444444", width=0.9)
    bottom.set_yscale("log")
    bottom.set_ylabel("phrases")
    bottom.set_xlabel(f"n-gram length (tokens; {MAX_NGRAM} = {MAX_NGRAM} or more)")
    fig.tight_layout()
    return fig


def plot_split_comparison(parts: dict[str, pd.DataFrame], title: str) -> Any:
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(parts)
    for i, (name, frame) in enumerate(parts.items()):
        counts = np.asarray(class_counts(frame), dtype=float)
        ax.bar(np.arange(N_CLASSES) + i * width, counts / max(counts.sum(), 1), width, label=name)
    ax.set_xticks(np.arange(N_CLASSES) + width * (len(parts) - 1) / 2, LABELS, rotation=20)
    ax.set_ylabel("share of phrases")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def write_plots(
    parts: dict[str, pd.DataFrame], folder: Path, comparison_title: str
) -> dict[str, Path]:
    """Write the three PNGs into ``folder``; returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    everything = pd.concat(parts.values(), ignore_index=True)
    figures = {
        "class_distribution": plot_class_distribution(parts),
        "ngram_distribution": plot_ngram_distribution(everything),
        "split_comparison": plot_split_comparison(parts, comparison_title),
    }
    return {name: save_png(fig, folder / f"{name}.png") for name, fig in figures.items()}
