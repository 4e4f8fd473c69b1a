"""SST-5 metrics from a confusion matrix, including the ordinal ones that say "errs to neighbours".

    python -c "import numpy as np, sst.model.metrics as m; print(m.summarize(np.eye(5)))"

Rows are true labels, columns predictions (0 negative … 4 positive). Definitions:

- ``within_one``: share of predictions at most one class away from the truth.
- ``mae``: mean |pred - true| in classes.
- ``qwk``: Cohen's kappa with quadratic weights (checked against torchmetrics in the tests).
- ``polarity_flip_rate``: share of all samples whose truth is on one side (0-1 negative, 3-4
  positive) and whose prediction is on the other: the worst kind of error.
- ``min_class_precision``: the lowest per-class precision (a model that never predicts a class
  has precision 0 for it): the original project wanted >= 50 % in every class.
- ``majority_baseline``: the accuracy of always predicting the most frequent true class.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sst.data import N_CLASSES

NEGATIVE, POSITIVE = (0, 1), (3, 4)
# The single numbers logged per evaluation, reported for the final test and ranked by `sst report`
HEADLINE = (
    "accuracy",
    "macro_f1",
    "micro_f1",
    "min_class_precision",
    "within_one",
    "mae",
    "qwk",
    "polarity_flip_rate",
)
LOWER_IS_BETTER = frozenset({"mae", "polarity_flip_rate"})
# Evaluation levels, the headline first: roots are whole sentences (comparable with published
# SST-5 results), phrases are every node of the trees.
LEVELS = ("root", "phrase")


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b != 0)


def summarize(cm: np.ndarray) -> dict[str, Any]:
    """Every metric of the run-directory contract from one confusion matrix (counts)."""
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum()
    tp = np.diag(cm)
    predicted = cm.sum(axis=0)
    actual = cm.sum(axis=1)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, actual)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    present = actual > 0  # macro averages over the classes present in the truth
    idx = np.arange(N_CLASSES)
    dist = np.abs(idx[:, None] - idx[None, :])
    flips = cm[np.ix_(NEGATIVE, POSITIVE)].sum() + cm[np.ix_(POSITIVE, NEGATIVE)].sum()
    accuracy = float(tp.sum() / total) if total else 0.0
    return {
        "n": int(total),
        "accuracy": accuracy,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "micro_f1": accuracy,  # single-label multiclass: micro P = micro R = micro F1 = accuracy
        "macro_precision": float(precision[present].mean()) if present.any() else 0.0,
        "macro_recall": float(recall[present].mean()) if present.any() else 0.0,
        "precision_per_class": precision.tolist(),
        "recall_per_class": recall.tolist(),
        "f1_per_class": f1.tolist(),
        "min_class_precision": float(precision[present].min()) if present.any() else 0.0,
        "within_one": float(cm[dist <= 1].sum() / total) if total else 0.0,
        "mae": float((cm * dist).sum() / total) if total else 0.0,
        "qwk": quadratic_weighted_kappa(cm),
        "polarity_flip_rate": float(flips / total) if total else 0.0,
        "majority_baseline": float(actual.max() / total) if total else 0.0,
        "confusion_matrix": cm.astype(np.int64).tolist(),
        "confusion_matrix_normalized": _safe_div(cm, actual[:, None]).tolist(),
    }


def quadratic_weighted_kappa(cm: np.ndarray) -> float:
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum()
    if total == 0:
        return 0.0
    idx = np.arange(len(cm))
    weights = (idx[:, None] - idx[None, :]) ** 2 / (len(cm) - 1) ** 2
    expected = np.outer(cm.sum(axis=1), cm.sum(axis=0)) / total
    denom = (weights * expected).sum()
    return float(1.0 - (weights * cm).sum() / denom) if denom else 0.0


def confusion(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    cm = np.zeros((N_CLASSES, N_CLASSES), dtype=np.int64)
    np.add.at(cm, (np.asarray(true, dtype=np.int64), np.asarray(pred, dtype=np.int64)), 1)
    return cm


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value): the spread of seeds."""
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return mean, math.sqrt(var)


def bootstrap_interval(
    correct: np.ndarray, n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of an accuracy from its per-sample 0/1 ``correct`` vector
    (resampled with replacement, seeded: the same run gives the same interval)."""
    correct = np.asarray(correct, dtype=np.float64)
    if len(correct) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(correct), size=(n_resamples, len(correct)))
    means = correct[draws].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)
