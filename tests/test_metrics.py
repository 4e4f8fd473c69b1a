"""Metrics against hand-computed values and torchmetrics on a small confusion matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_cohen_kappa,
    multiclass_f1_score,
)

from sst.model.metrics import confusion, summarize

# rows: truth, columns: prediction
CM = np.array(
    [
        [2, 1, 0, 0, 1],  # one negative predicted positive: a polarity flip
        [0, 3, 1, 0, 0],
        [0, 1, 6, 1, 0],
        [0, 0, 1, 3, 0],
        [0, 0, 0, 1, 3],
    ]
)


def samples() -> tuple[torch.Tensor, torch.Tensor]:
    true, pred = [], []
    for i in range(5):
        for j in range(5):
            true += [i] * int(CM[i, j])
            pred += [j] * int(CM[i, j])
    return torch.tensor(true), torch.tensor(pred)


def test_hand_computed_values() -> None:
    m = summarize(CM)
    assert m["n"] == 24
    assert m["accuracy"] == pytest.approx(17 / 24)
    assert m["within_one"] == pytest.approx(23 / 24)  # only the 0→4 error is further than one
    assert m["mae"] == pytest.approx((1 + 4 + 1 + 1 + 1 + 1 + 1) / 24)
    assert m["polarity_flip_rate"] == pytest.approx(1 / 24)
    assert m["precision_per_class"][0] == pytest.approx(1.0)
    assert m["precision_per_class"][4] == pytest.approx(3 / 4)
    assert m["recall_per_class"][2] == pytest.approx(6 / 8)
    assert m["min_class_precision"] == pytest.approx(min(2 / 2, 3 / 5, 6 / 8, 3 / 5, 3 / 4))
    assert m["majority_baseline"] == pytest.approx(8 / 24)
    assert m["confusion_matrix_normalized"][2][2] == pytest.approx(0.75)


def test_agrees_with_torchmetrics() -> None:
    true, pred = samples()
    m = summarize(confusion(true.numpy(), pred.numpy()))
    assert m["accuracy"] == pytest.approx(
        float(multiclass_accuracy(pred, true, 5, average="micro"))
    )
    assert m["macro_f1"] == pytest.approx(
        float(multiclass_f1_score(pred, true, 5, average="macro"))
    )
    assert m["qwk"] == pytest.approx(
        float(multiclass_cohen_kappa(pred, true, 5, weights="quadratic")), abs=1e-6
    )


def test_empty_and_degenerate() -> None:
    m = summarize(np.zeros((5, 5)))
    assert m["accuracy"] == 0.0 and m["qwk"] == 0.0
    only_neutral = np.zeros((5, 5))
    only_neutral[:, 2] = [1, 2, 10, 2, 1]  # always "neutral": accuracy = the majority baseline
    m = summarize(only_neutral)
    assert m["accuracy"] == pytest.approx(m["majority_baseline"])
    assert m["min_class_precision"] == 0.0 and m["macro_f1"] < m["accuracy"]
