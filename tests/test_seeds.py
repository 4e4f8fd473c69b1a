"""Multi-seed runs: `train.seeds` trains one run per seed, `sst report` groups runs that differ
only by seed (mean ± sd, n, within-noise marks) and gives each run a bootstrap interval."""

from __future__ import annotations

import json
import math
import shutil
import statistics
from pathlib import Path

import numpy as np
import pytest

from sst.cli import main
from sst.config import load_config
from sst.model.metrics import bootstrap_interval
from sst.run.ranking import Row, SeedGroup, repeats, seed_groups, within_noise
from sst.verbs.report import collect
from tests.conftest import train_overrides


@pytest.fixture(scope="module")
def seeded(tiny_model: Path, tiny_split: Path, tmp_path_factory: pytest.TempPathFactory):
    """`sst train train.seeds=[0,1,2]` on the tiny model: its runs and what it printed."""
    import contextlib
    import io

    from tests.conftest import isolate

    runs = tmp_path_factory.mktemp("seeded")
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        isolate(mp, tmp_path_factory.mktemp("seeded-env"))
        args = [*train_overrides(tiny_model, tiny_split, runs), "train.seeds=[0,1,2]"]
        assert main(["train", *args, "tracking.enabled=false"]) == 0
    return sorted(runs.iterdir()), out.getvalue()


def test_train_seeds_makes_one_recorded_run_per_seed(seeded, tiny_model, tiny_split) -> None:
    folders, printed = seeded
    configs = [load_config(f / "config.yaml") for f in folders]
    assert sorted(c.train.seed for c in configs) == [0, 1, 2]
    assert all(c.train.seeds == () for c in configs)  # each run replays as a single-seed run
    # the seed-0 run is the very run `sst train` without seeds makes: same config hash
    plain = load_config(
        None,
        [*train_overrides(tiny_model, tiny_split, folders[0].parent), "tracking.enabled=false"],
    )
    assert plain.hash() in {
        json.loads((f / "fingerprint.json").read_text())["config_sha256"] for f in folders
    }
    accuracy = [
        json.loads((f / "metrics.json").read_text())["test"]["root"]["accuracy"] for f in folders
    ]
    mean, sd = statistics.mean(accuracy), statistics.stdev(accuracy)
    assert f"3 seeds (mean ± sample sd): test root accuracy {mean:.4f} ± {sd:.4f}" in printed


def test_report_groups_the_seeds_with_mean_sd_and_intervals(seeded, tmp_path: Path) -> None:
    folders, _ = seeded
    out = tmp_path / "report"
    assert main(["report", str(folders[0].parent), "--out", str(out), "--no-clearml"]) == 0
    text = (out / "leaderboard.md").read_text()
    accuracy = [
        json.loads((f / "metrics.json").read_text())["test"]["root"]["accuracy"] for f in folders
    ]
    mean, sd = statistics.mean(accuracy), statistics.stdev(accuracy)
    (line,) = [row for row in text.splitlines() if "| 3 | 0,1,2 |" in row]
    assert f"| {mean:.4f} ± {sd:.4f} |" in line
    rows = json.loads((out / "leaderboard.json").read_text())["rows"]
    assert len({r["seed_group"] for r in rows}) == 1 and sorted(r["seed"] for r in rows) == [
        0,
        1,
        2,
    ]
    for r in rows:  # each interval holds its run's accuracy and is a real interval
        lo, hi = r["root_accuracy_ci"]
        assert lo <= r["metrics"]["root"]["accuracy"] <= hi and lo < hi


def test_a_replay_is_the_same_sample_not_another_seed(seeded, tmp_path: Path) -> None:
    """A run and its BIT-IDENTICAL replay: one sample (n = 1, no seed group); with the other
    seeds, n stays 3. The replay's row says whose replay it is."""
    folders, _ = seeded
    runs = tmp_path / "runs"
    runs.mkdir()
    first = runs / folders[0].name
    shutil.copytree(folders[0], first)
    assert main(["replay", str(first), "--out", str(runs / "replays")]) == 0
    (replayed,) = (runs / "replays").iterdir()
    rows = collect([runs, runs / "replays"])
    assert len(rows) == 2 and seed_groups(rows) == []  # n = 1: nothing to group
    (again,) = repeats(rows).values()
    assert str(again) == f"BIT-IDENTICAL replay of {first.name}"
    for f in folders[1:]:
        shutil.copytree(f, runs / f.name)
    out = tmp_path / "report"
    assert (
        main(["report", str(runs), str(runs / "replays"), "--out", str(out), "--no-clearml"]) == 0
    )
    text = (out / "leaderboard.md").read_text()
    (group,) = seed_groups(collect([runs, runs / "replays"]))
    assert [r.seed for r in group.rows] == [0, 1, 2]
    assert "| 3 | 0,1,2 |" in text and "| 4 | 0," not in text
    (line,) = [row for row in text.splitlines() if f"| {replayed.name} |" in row]
    assert f"BIT-IDENTICAL replay of {first.name}" in line
    # the same folders listed twice: each one sample still
    (group,) = seed_groups(collect([runs, runs, runs / "replays"]))
    assert [r.seed for r in group.rows] == [0, 1, 2]


def test_runs_of_one_config_are_told_apart_by_where_and_what_they_hold() -> None:
    def row(name: str, path: str, weights: str | None) -> Row:
        return Row(name, "m", "completed", path, config_sha256="c", weights_sha256=weights)

    rows = [
        row("b", "runs/b", "w2"),  # another run of the config, later, other weights
        row("a", "runs/replays/a2", "w1"),  # a replay (even with an older name)
        row("a", "runs/a", "w1"),  # a copy of the folder below (the path breaks the tie)
        row("a", "backup/a", "w1"),  # the original: outside replays/, the oldest
        row("c", "runs/c", None),  # no recorded weights: never called identical
    ]
    found = {r.path: str(rep) for r in rows if (rep := repeats(rows).get(id(r)))}
    assert found == {
        "runs/b": "repeat of a (other weights)",
        "runs/replays/a2": "BIT-IDENTICAL replay of a",
        "runs/a": "BIT-IDENTICAL copy of a",
        "runs/c": "repeat of a (other weights)",
    }


def test_bootstrap_interval_matches_the_normal_approximation() -> None:
    correct = np.array([1] * 600 + [0] * 400)  # accuracy 0.6 over 1,000 sentences
    lo, hi = bootstrap_interval(correct, n_resamples=4000)
    half = 1.96 * math.sqrt(0.6 * 0.4 / 1000)  # 0.0304
    assert lo == pytest.approx(0.6 - half, abs=0.005) and hi == pytest.approx(0.6 + half, abs=0.005)
    assert bootstrap_interval(np.ones(50)) == (1.0, 1.0)
    assert bootstrap_interval(correct) == bootstrap_interval(correct)  # seeded


def _group(key: str, accuracies: list[float]) -> SeedGroup:
    rows = [
        Row(f"{key}{i}", "m", "completed", "", metrics={"root": {"accuracy": a}}, seed=i)
        for i, a in enumerate(accuracies)
    ]
    return SeedGroup(key, rows)


def test_within_noise_compares_the_gap_with_the_seed_spread() -> None:
    a, b = _group("a", [0.50, 0.52, 0.54]), _group("b", [0.505, 0.515, 0.525])  # sd 0.02, 0.01
    assert a.stats() == pytest.approx((0.52, 0.02))
    assert within_noise(a, b)  # 0.005 apart, sd 0.02
    c = _group("c", [0.45, 0.451, 0.452])
    assert not within_noise(a, c)  # 0.069 apart
