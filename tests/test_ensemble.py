"""`sst ensemble`: against hand-computed averages, refusing another split, and an ensemble of a
real sweep ranked in the leaderboard."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sst.cli import main
from sst.errors import SstError
from sst.model.metrics import confusion, summarize
from sst.verbs.ensemble import ensemble
from sst.verbs.export import export
from sst.verbs.report import collect


def test_ensemble_of_the_sweep_appears_in_the_leaderboard(
    local_sweep, tiny_model, tiny_split, tmp_path: Path, capsys
) -> None:
    """`sst ensemble --top 2` picks 2 of 3 real runs by validation macro-F1; `sst report` ranks
    the ensemble beside them with the score its averaged probabilities really get."""
    from sst.config import load_config
    from sst.verbs.train import train
    from tests.conftest import train_overrides

    runs = tmp_path / "runs"
    for o in json.loads(next(local_sweep["runs"].glob("sweeps/*/sweep.json")).read_text())[
        "outcomes"
    ]:
        if o["run_dir"]:
            shutil.copytree(o["run_dir"], runs / Path(o["run_dir"]).name)
    extra = ("train.seed=1", "train.val_sentences=0", "tracking.enabled=false")
    train(load_config(None, train_overrides(tiny_model, tiny_split, runs, *extra)))
    candidates = sorted(p for p in runs.iterdir() if p.is_dir())
    assert len(candidates) == 3
    val = {
        p: json.loads((p / "metrics.json").read_text())["val"]["root"]["macro_f1"]
        for p in candidates
    }
    best = sorted(candidates, key=lambda p: -val[p])
    assert val[best[1]] > val[best[2]], val  # a strict choice: two of the three

    assert main(["ensemble", "--top", "2", "--by", "macro_f1", "--runs-dir", str(runs)]) == 0
    assert f"ensemble of {best[0].name}, {best[1].name} " in capsys.readouterr().out
    (folder,) = runs.glob("ensemble-2-*")
    # the ensemble's score, by hand: the members' probabilities averaged, scored on the roots
    members = [pd.read_csv(p / "predictions.tsv", sep="\t") for p in best[:2]]
    probs = np.mean([m[[f"p{c}" for c in range(5)]].to_numpy() for m in members], axis=0)
    roots = members[0]["is_root"].to_numpy() == 1
    labels = members[0]["label"].to_numpy()
    accuracy = float((probs.argmax(1)[roots] == labels[roots]).mean())

    out = tmp_path / "report"
    assert main(["report", str(runs), "--by", "macro_f1", "--out", str(out), "--no-clearml"]) == 0
    rows = json.loads((out / "leaderboard.json").read_text())["rows"]
    assert len(rows) == 4
    (ens,) = [r for r in rows if r["status"] == "ensemble"]
    assert ens["name"] == folder.name and ens["model"] == "ensemble of 2"
    assert ens["metrics"]["root"]["accuracy"] == pytest.approx(accuracy)
    f1 = [r["metrics"]["root"]["macro_f1"] for r in rows]
    assert f1 == sorted(f1, reverse=True)  # ranked among the runs by its own score
    (line,) = [ln for ln in (out / "leaderboard.md").read_text().splitlines() if folder.name in ln]
    cells = [c.strip() for c in line.strip("|").split("|")]
    header = [
        c.strip()
        for c in (out / "leaderboard.md").read_text().splitlines()[2].strip("|").split("|")
    ]
    assert cells[header.index("root accuracy")] == f"{accuracy:.3f}"
    assert cells[0] == str(rows.index(ens) + 1)


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
    folder, model_id = ensemble([ra, rb], tmp_path / "runs")
    assert model_id is None  # offline: no registry
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
    with pytest.raises(SstError, match="an ensemble has no single model to export"):
        export(folder, tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_ensemble_refuses_runs_of_another_split(tmp_path: Path) -> None:
    labels, roots = np.zeros(4, int), np.ones(4, bool)
    p = np.full((4, 5), 0.2)
    ra = _fake_run(tmp_path / "a", p, labels, roots)
    rb = _fake_run(tmp_path / "b", p, labels, roots, split="t" * 64)
    with pytest.raises(SstError, match="another split"):
        ensemble([ra, rb], tmp_path / "runs")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_select_chooses_by_validation_not_test(tmp_path: Path) -> None:
    """Three runs whose validation and test orders disagree (macro-F1 worked out by hand in
    tests/test_report.py): x 1.0 / 0.605, y 0.68 / 0.633, z 0.605 / 1.0 (validation / test)."""
    from sst.verbs.ensemble import select
    from tests.test_report import scored_run

    runs = tmp_path / "runs"
    x = scored_run(runs / "x", val="D", test="A")
    y = scored_run(runs / "y", val="C", test="B")
    z = scored_run(runs / "z", val="A", test="D")
    assert select(runs, 2, "macro_f1") == [x, y]  # by test it would be z, y
    assert select(runs, 2, "balanced") == [x, z]  # y's validation errors land far: not balanced
    assert select(runs, 3, "macro_f1") == [x, y, z]
    scored_run(runs / "w", test="D")  # no validation scores: never a candidate
    assert select(runs, 2, "macro_f1") == [x, y]
    with pytest.raises(SstError, match="3 runs with validation scores, need 4"):
        select(runs, 4, "macro_f1")
