"""`sst ensemble`: against hand-computed averages, refusing another split, and an ensemble of a
real sweep ranked in the leaderboard."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sst.cli import main
from sst.ensemble import ensemble
from sst.errors import SstError
from sst.model.metrics import confusion, summarize
from sst.report import collect


def test_ensemble_of_the_sweep_appears_in_the_leaderboard(
    local_sweep, tmp_path: Path, capsys
) -> None:
    runs = local_sweep["runs"]
    assert main(["ensemble", "--top", "2", "--by", "macro_f1", "--runs-dir", str(runs)]) == 0
    assert "ensemble of" in capsys.readouterr().out
    rows = collect([runs])
    (ens,) = [r for r in rows if r.status == "ensemble"]
    assert ens.model == "ensemble of 2" and ens.metrics["root"]["accuracy"] >= 0
    assert main(["report", str(runs), "--out", str(tmp_path / "r"), "--no-clearml"]) == 0


# -- ensembles, by hand ---------------------------------------------------------------------


def _fake_run(
    folder: Path,
    probs: np.ndarray,
    labels: np.ndarray,
    roots: np.ndarray,
    split: str = "s" * 64,
    model: str = "m",
) -> Path:
    folder.mkdir(parents=True)
    pd.DataFrame(
        {
            "phrase_id": np.arange(len(labels)),
            "sentence_id": np.arange(len(labels)) // 2,
            "is_root": roots.astype(int),
            "label": labels,
            "pred": probs.argmax(1),
            **{f"p{c}": probs[:, c] for c in range(5)},
        }
    ).to_csv(folder / "predictions.tsv", sep="\t", index=False)
    (folder / "fingerprint.json").write_text(
        json.dumps(
            {"split_manifest_sha256": split, "model": model, "weights_sha256": folder.name * 4}
        )
    )
    (folder / "metrics.json").write_text("{}")
    return folder


def test_ensemble_averages_probabilities_and_is_scored_like_a_run(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 40
    labels = rng.integers(0, 5, n)
    roots = np.arange(n) % 2 == 0
    a = rng.dirichlet(np.ones(5), n)
    b = rng.dirichlet(np.ones(5), n)
    ra = _fake_run(tmp_path / "a", a, labels, roots, model="bert-base-uncased")
    rb = _fake_run(tmp_path / "b", b, labels, roots, model="textattack/roberta-base-SST-2")
    folder = ensemble([ra, rb], tmp_path / "runs")
    avg = (a + b) / 2  # by hand
    pred = avg.argmax(1)
    got = pd.read_csv(folder / "predictions.tsv", sep="\t")
    np.testing.assert_allclose(got[[f"p{c}" for c in range(5)]].to_numpy(), avg, atol=1e-6)
    assert (got["pred"].to_numpy() == pred).all()
    metrics = json.loads((folder / "metrics.json").read_text())["test"]
    assert metrics["root"] == summarize(confusion(labels[roots], pred[roots]))
    assert metrics["phrase"]["accuracy"] == pytest.approx((pred == labels).mean())
    assert {p.name for p in folder.iterdir()} == {
        "metrics.json",
        "predictions.tsv",
        "fingerprint.json",
        "confusion_matrix.png",
    }
    (row,) = collect([folder])
    assert row.status == "ensemble" and "textattack/roberta-base-SST-2" in row.contamination


def test_ensemble_refuses_runs_of_another_split(tmp_path: Path) -> None:
    labels, roots = np.zeros(4, int), np.ones(4, bool)
    p = np.full((4, 5), 0.2)
    ra = _fake_run(tmp_path / "a", p, labels, roots)
    rb = _fake_run(tmp_path / "b", p, labels, roots, split="t" * 64)
    with pytest.raises(SstError, match="another split"):
        ensemble([ra, rb], tmp_path / "runs")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
