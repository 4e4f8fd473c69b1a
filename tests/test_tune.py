"""`sst tune --local`: Optuna in-process over a YAML space, on the tiny fixture. A seeded search
runs the same trials twice (values, objectives, weights), each trial is a run like any other (its
config holds the trial's values, its best replays BIT-IDENTICAL), early-stopped trials say so, a
repeated draw is pruned rather than trained, and a bad space file is one line per problem.
The search on a ClearML queue is tests/test_online.py's."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sst.cli import main
from sst.config import load_config
from sst.io import sha256_file
from sst.run import folder as runs
from sst.run.trainer import MONITOR
from sst.verbs.tune import tune
from sst.viz.pictures import scalars
from tests.conftest import configuration, train_overrides

SPACE = """\
trials: 3
seed: 1
space:
  train.lr: {log_uniform: [1e-4, 1.0e-2]}   # 1e-4: text to YAML, a number to the space
  model.pooling: {choice: [mean, cls]}
  train.sampling: {choice: ["random:3", "stratified:3"]}
"""
# nothing rises by 1.0 macro-F1: each trial stops after its second validation, 2 of 3 epochs
STOP_EARLY = ("train.early_stop=1", "train.early_stop_delta=1.0")


def _space(folder: Path, text: str = SPACE) -> Path:
    path = folder / "space.yaml"
    path.write_text(text)
    return path


def _trials(tune_dir: Path) -> list[dict]:
    return json.loads((tune_dir / runs.TUNE_RECORD).read_text())["trials"]


def test_a_seeded_search_runs_the_same_trials_twice_and_its_best_replays(
    tiny_model, tiny_split, tmp_path, capsys
) -> None:
    space = _space(tmp_path)
    over = train_overrides(tiny_model, tiny_split, tmp_path / "a", *STOP_EARLY)
    assert main(["tune", "--space", str(space), "--local", *over]) == 0
    printed = capsys.readouterr().out
    (tune_dir,) = (tmp_path / "a" / runs.TUNES).iterdir()
    first = _trials(tune_dir)
    assert [t["state"] for t in first] == ["completed"] * 3
    assert len({json.dumps(t["params"], sort_keys=True) for t in first}) == 3

    for t in first:
        run = Path(t["run_dir"])
        cfg = runs.load_run_config(run)  # the trial's values are the run's config
        values = {"train.lr": cfg.train.lr, "model.pooling": cfg.model.pooling}
        assert t["params"] == values | {"train.sampling": cfg.train.sampling}
        assert 1e-4 <= cfg.train.lr <= 1e-2
        logged = [v for _, v in scalars(run / runs.TENSORBOARD)[MONITOR]]
        assert len(logged) == 2 and t["value"] == max(logged)  # the best validation, not test
        metrics = json.loads((run / runs.METRICS).read_text())
        assert metrics["training"]["stopped"] == "early" and t["stopped"] == "early"
        assert t["value"] >= metrics["val"]["root"]["macro_f1"]  # the last validation's

    assert {t["params"]["model.pooling"] for t in first} == {"mean", "cls"}  # (seed 1 draws both)

    # the leaderboard, best first, with each trial's values and how it ended
    lines = printed.splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.split()[:1] == [MONITOR])
    rows = lines[header + 2 : header + 5]
    order = sorted(first, key=lambda t: -t["value"])
    assert [int(ln.split()[0]) for ln in rows] == [t["number"] for t in order]
    for ln, t in zip(rows, order, strict=True):
        assert " early " in ln and ln.split()[-1] == t["run_dir"]
    best = order[0]
    assert f"best: trial {best['number']} ({best['run_dir']})" in printed

    # the offline sessions: each trial's task and the search's own, tagged with the search's id
    sessions = Path(os.environ["CLEARML_CACHE_DIR"]).glob("offline/*/task.json")
    tasks = [json.loads(p.read_text()) for p in sessions]
    (search,) = [t for t in tasks if t["type"] == "optimizer"]
    assert search["name"] == tune_dir.name and search["tags"] == [tune_dir.name]
    assert configuration(search, "trials") == {str(t["number"]): t["task_id"] for t in first}
    training = [t for t in tasks if t["type"] == "training"]
    assert sorted(t["id"] for t in training) == sorted(t["task_id"] for t in first)
    assert all(tune_dir.name in t["tags"] for t in training)

    # the same space, seed and base (untracked, elsewhere): the same trials, bit for bit
    again = tune(
        space,
        base=None,
        extra=train_overrides(
            tiny_model, tiny_split, tmp_path / "b", *STOP_EARLY, "tracking.enabled=false"
        ),
        local=True,
        queue=None,
    )
    second = _trials(again.tune_dir)
    for one, two in zip(first, second, strict=True):
        assert (one["params"], one["value"]) == (two["params"], two["value"])
        weights = [sha256_file(Path(t["run_dir"]) / runs.WEIGHTS) for t in (one, two)]
        assert weights[0] == weights[1]

    # the best trial is a run like any other: it replays
    assert main(["replay", best["run_dir"]]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("BIT-IDENTICAL"), last


def test_a_repeated_draw_is_pruned_not_trained(tiny_model, tiny_split, tmp_path) -> None:
    """Two choices, three trials: one draw repeats an earlier one (ClearML's OptimizerOptuna
    prunes those too), and only two runs are trained."""
    space = _space(tmp_path, "trials: 3\nseed: 0\nspace:\n  model.pooling: {choice: [mean, cls]}\n")
    extra = train_overrides(tiny_model, tiny_split, tmp_path / "runs", "tracking.enabled=false")
    tuned = tune(space, base=None, extra=extra, local=True, queue=None)
    states = sorted(t.state for t in tuned.trials)
    assert states == ["completed", "completed", "pruned"]
    (pruned,) = [t for t in tuned.trials if t.state == "pruned"]
    twin = next(t for t in tuned.trials if t.params == pruned.params and t is not pruned)
    assert pruned.note == f"the values of trial {twin.number}" and pruned.run_dir is None
    assert len(runs.finished_runs(tmp_path / "runs")) == 2
    assert tuned.best is not None and tuned.best.value == max(
        t.value for t in tuned.trials if t.value is not None
    )


def test_the_shipped_space_checks_against_the_demo_preset() -> None:
    from sst.config.space import read_space
    from tests.conftest import REPO

    space = read_space(REPO / "configs" / "spaces" / "demo.yaml")
    space.check(REPO / "configs" / "demo.yaml", [])
    assert [d.key for d in space.dimensions] == ["train.lr", "train.sampling", "model.pooling"]


BAD_SPACES = {
    "unknown top key": ("trails: 3\nspace:\n  train.lr: {uniform: [0.1, 0.2]}\n", 1, "trails"),
    "not a config key": ("space:\n  train.lrr: {uniform: [0.1, 0.2]}\n", 2, "train.lrr"),
    "not model or train": ("space:\n  split.seed: {int: [1, 3]}\n", 2, "not a model."),
    "log of zero": ("space:\n\n  train.lr: {log_uniform: [0, 1]}\n", 3, "0 < low < high"),
    "empty choice": ("space:\n  model.pooling: {choice: []}\n", 2, "distinct values"),
    "bad choice": ("space:\n  model.pooling: {choice: [mean, max]}\n", 2, "'max'"),
    "unknown kind": ("space:\n  train.lr: {normal: [1, 2]}\n", 2, "log_uniform, uniform"),
    "no space": ("trials: 3\n", 1, "needs a `space:` mapping"),
    "bad trials": ("trials: 0\nspace:\n  train.lr: {uniform: [0.1, 0.2]}\n", 1, ">= 1"),
    "int not a list": ('space:\n  train.batch_size: {int: "12"}\n', 2, "[low, high]"),
    "int of a fraction": ("space:\n  train.batch_size: {int: [8, 16.5]}\n", 2, "[low, high]"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPACES))
def test_a_bad_space_is_one_line_naming_the_file_and_line(case, tmp_path, capsys) -> None:
    text, line, says = BAD_SPACES[case]
    space = _space(tmp_path, text)
    runs_dir = tmp_path / "runs"
    code = main(["tune", "--space", str(space), "--local", f"train.runs_dir={runs_dir}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"sst tune: error: {space}:{line}: ") and says in err[0], err
    assert not runs_dir.exists()  # nothing made


def test_every_problem_of_a_space_is_reported_at_once(tmp_path, capsys) -> None:
    space = _space(tmp_path, "space:\n  train.lr: {log_uniform: [0, 1]}\n  x.y: {int: [1, 2]}\n")
    assert main(["tune", "--space", str(space), "--local"]) == 2
    err = capsys.readouterr().err
    assert f"{space}:2: train.lr" in err and f"{space}:3: x.y" in err


def test_a_split_without_validation_is_refused_before_any_trial(tiny_model, tmp_path) -> None:
    """Without a validation set the kit validates on test: a search would select on test."""
    from sst.data.pipeline import run_split
    from sst.errors import SstError
    from tests.conftest import split_config, synthetic_rows, write_kaggle

    source = write_kaggle(tmp_path / "train.tsv", synthetic_rows(60))
    cfg = load_config(split_config(tmp_path, source, val_fraction=0), ["tracking.enabled=false"])
    split = run_split(cfg).out
    extra = train_overrides(tiny_model, split, tmp_path / "runs")
    with pytest.raises(SstError, match="has no validation set: a search would select on test"):
        tune(_space(tmp_path), base=None, extra=extra, local=True, queue=None)
    assert not (tmp_path / "runs").exists()


def test_a_search_on_agents_checks_the_split_here_first(tiny_model, tmp_path) -> None:
    """Agents make or fetch the split; whether it has a validation set is checked here, before
    any server is asked, so the split must be here."""
    from sst.errors import SstError

    extra = train_overrides(tiny_model, tmp_path / "no-split", tmp_path / "runs")
    with pytest.raises(SstError, match="is not here: a search checks it has a validation set"):
        tune(_space(tmp_path), base=None, extra=extra, local=False, queue="gpu")
    assert not (tmp_path / "runs").exists()


def test_the_search_runs_here_or_on_a_queue_never_both(tmp_path, capsys) -> None:
    space = str(_space(tmp_path))
    for where in ([], ["--local", "--queue", "q"]):
        assert main(["tune", "--space", space, *where]) == 2
        assert "pass --local or --queue NAME" in capsys.readouterr().err
