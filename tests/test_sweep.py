"""`sst sweep`: models.txt checks, a real local sweep (one process per model, a failure recorded,
--resume) and the online path's ClearML contract."""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path

import pytest

from sst.cli import main
from sst.config import load_config
from sst.config.zoo import read_models
from sst.errors import Problems, SstError
from sst.model.module import model_problem
from sst.run.ranking import contamination
from sst.tracking import agent
from sst.verbs.sweep import task_parameters

REPO = Path(__file__).resolve().parent.parent


# -- models.txt ---------------------------------------------------------------------------


def test_models_file_lines_resolve_to_configs(tmp_path: Path) -> None:
    models = tmp_path / "models.txt"
    models.write_text(
        "# the zoo\n\n"
        "bert-base-uncased\n"
        "roberta-base  sampling=stratified:4,alternate:4 lr=3e-5 pooling=cls  # best schedule\n"
        "minilm train.seed=3 'model.dropout=0.2'\n"
    )
    entries = read_models(models, None, ["train.threads=1"])
    assert [(e.line, e.model) for e in entries] == [
        (3, "bert-base-uncased"),
        (4, "roberta-base"),
        (5, "minilm"),
    ]
    rob = entries[1]
    assert rob.overrides == (
        "train.sampling=stratified:4,alternate:4",
        "train.lr=3e-5",
        "model.pooling=cls",
    )
    assert rob.cfg.train.lr == 3e-5 and rob.cfg.model.pooling == "cls"
    assert rob.cfg.train.threads == 1 and rob.cfg.model.name == "roberta-base"
    assert entries[2].cfg.train.seed == 3 and entries[2].cfg.model.dropout == 0.2
    assert len({e.name for e in entries}) == 3 and len({e.cfg.hash() for e in entries}) == 3
    # the online clone gets exactly the entry's overrides as `config/<section>/<key>`
    assert task_parameters(rob) == {
        "config/model/name": "roberta-base",
        "config/name": rob.name,
        "config/train/sampling": "stratified:4,alternate:4",
        "config/train/lr": "3e-5",
        "config/model/pooling": "cls",
    }
    # ... and `sst train` under an agent turns them back into the same config
    back = load_config(
        None, ["train.threads=1", *agent.parameters_to_overrides(task_parameters(rob))]
    )
    assert back.hash() == rob.cfg.hash()


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("minilm\nminilm lr\n", 2, "'lr' is not key=value"),
        ("minilm\n\nminilm colour=red\n", 3, "unknown key 'colour'"),
        ("minilm lr=fast\n", 1, "train.lr='fast' is not a valid float"),
        ("minilm pooling=cls\n# x\nminilm pooling=cls\n", 3, "the same model and overrides"),
        ("lr=3e-5 minilm\n", 1, "not a model"),
        ("minilm 'lr=3\n", 1, "cannot read the line"),
        ("# nothing\n", 1, "no models listed"),
        ("minilm\nminilm sampling=stratified:-1\n", 2, "bad sampling schedule part"),
        ("minilm\n../../etc/passwd\n", 2, "model folder not found: ../../etc/passwd"),
        ("org/bad!id\n", 1, "'org/bad!id' is neither a folder nor a hub id"),
        ("org/model--name\n", 1, "neither a folder nor a hub id"),
        ("minilm\nminilm model.name=./no/such\n", 2, "model folder not found: ./no/such"),
    ],
)
def test_a_bad_line_is_named_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, line: int, message: str
) -> None:
    models = tmp_path / "models.txt"
    models.write_text(text)
    with pytest.raises(SstError, match=re.escape(message)) as e:
        read_models(models, None, [], model_problem)
    assert e.value.path == str(models) and e.value.line == line
    runs = tmp_path / "runs"
    assert main(["sweep", "--models", str(models), "--local", f"train.runs_dir={runs}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"sst sweep: error: {models}:{line}: ") and "\n" not in err
    assert not runs.exists()  # nothing started


def test_an_online_sweep_leaves_folders_to_the_agents_but_checks_hub_ids(tmp_path: Path) -> None:
    models = tmp_path / "models.txt"
    models.write_text("./on/the/agent\norg/bad!id\n")
    agents = functools.partial(model_problem, here=False)
    with pytest.raises(Problems) as e:
        read_models(models, None, [], agents)
    assert [p.line for p in e.value.problems] == [2]  # the folder is the agent's to have
    models.write_text("./on/the/agent\n")
    (entry,) = read_models(models, None, [], agents)
    assert entry.cfg.model.name == "./on/the/agent"


def test_every_bad_line_is_reported_at_once_and_nothing_trains(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 37-line zoo with a typo on line 30 must not train 29 models first: all problems, one
    line each, before the first process starts."""
    models = tmp_path / "models.txt"
    good = "minilm\n" + "".join(f"minilm lr={i}e-5\n" for i in range(1, 29))
    models.write_text(good + "minilm sampling=stratified:-1\n../../etc/passwd\nminilm colour=red\n")
    runs = tmp_path / "runs"
    assert main(["sweep", "--models", str(models), "--local", f"train.runs_dir={runs}"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split(": ")[2] for line in lines] == [f"{models}:{n}" for n in (30, 31, 32)]
    assert all(line.startswith("sst sweep: error: ") for line in lines)
    assert "stratified:-1" in lines[0] and "../../etc/passwd" in lines[1] and "colour" in lines[2]
    assert not runs.exists()  # nothing started


# -- a real local sweep (the session fixture `local_sweep` in conftest) ---------------------


def test_local_sweep_runs_each_model_and_records_the_failure(local_sweep) -> None:
    out = local_sweep["out"]
    assert local_sweep["code"] == 0, out
    assert re.search(r"\[1/3\] .*: completed", out) and re.search(r"\[2/3\] .*: completed", out)
    assert re.search(r"\[3/3\] .*broken-model: FAILED \(exit 2\)", out), out
    (manifest,) = local_sweep["runs"].glob("sweeps/*/sweep.json")
    outcomes = json.loads(manifest.read_text())["outcomes"]
    assert [o["status"] for o in outcomes] == ["completed", "completed", "failed"]
    assert "broken-model" in outcomes[2]["error"] and outcomes[2]["run_dir"] is None
    sweep_id = manifest.parent.name
    # the offline ClearML sessions, read directly: each task as the sweep's processes wrote it
    tasks = {}
    for session in local_sweep["clearml"].glob("offline/*/task.json"):
        task = json.loads(session.read_text())
        tasks[task["id"]] = task
    training = {i: t for i, t in tasks.items() if t["type"] == "training"}
    assert len(training) == 2  # one per completed line; the broken model never started one
    (controller,) = [t for t in tasks.values() if t["type"] == "controller"]
    assert controller["name"] == f"sweep {sweep_id}" and controller["tags"] == [sweep_id]
    pooling = ["mean", "cls"]  # line 2 overrides it
    for o, pool in zip(outcomes[:2], pooling, strict=True):
        run = Path(o["run_dir"])
        assert (run / "weights.safetensors").is_file()
        fp = json.loads((run / "fingerprint.json").read_text())
        assert fp["config_sha256"] == o["config_sha256"]
        # its own training task (not the controller's), tagged with the sweep and run ids,
        # holding that line's config
        task = training.pop(o["task_id"])
        assert task["name"] == f"train {o['name']}"
        assert sorted(task["tags"]) == sorted([sweep_id, run.name])
        assert task["hyperparams"]["config"]["model/pooling"]["value"] == pool
    assert not training  # both tasks claimed, by different lines


def test_resume_skips_completed_runs(local_sweep, capsys: pytest.CaptureFixture[str]) -> None:
    runs = local_sweep["runs"]
    before = sorted(p.name for p in runs.iterdir())
    code = main(
        [
            "sweep",
            "--config",
            str(local_sweep["base"]),
            "--models",
            str(local_sweep["models"]),
            "--local",
            "--resume",
            "--report",
            str(local_sweep["report"].parent / "again"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("(skipped)") == 2 and "[3/3]" in out and "FAILED" in out
    after = sorted(p.name for p in runs.iterdir())
    assert after == before  # no new run folder (the failed line left none either)


def test_models_txt_ships_the_zoo_and_flags_its_sst2_lines(shared_data: Path) -> None:
    entries = read_models(REPO / "models.txt", REPO / "configs" / "demo.yaml", [])
    assert len(entries) >= 30
    flagged = {e.model for e in entries if contamination(e.model)}
    assert "echarlaix/bert-base-uncased-sst2-acc91.1-d37-hybrid" in flagged
    assert "bert-base-uncased" not in flagged
    local = read_models(REPO / "models.local.txt", REPO / "configs" / "sweep-local.yaml", [])
    assert [e.model for e in local] == ["minilm"] * 3  # what runs here without a hub
    assert len({e.cfg.hash() for e in local}) == 3


def test_resume_continues_a_partial_run_from_its_checkpoint(
    tiny_model, tiny_split, tmp_path: Path, monkeypatch, capsys
) -> None:
    """A line whose run died leaves `<id>.partial` with checkpoints/last.ckpt: `sweep --resume`
    continues that folder (`sst train --resume`) instead of training the line again."""
    from sst.model.module import SstClassifier
    from sst.verbs.train import train
    from tests.conftest import sweep_base

    base = sweep_base(tmp_path, tiny_model, tiny_split)
    models = tmp_path / "models.txt"
    models.write_text(f"{tiny_model}  lr=2e-3\n")
    extra = ["tracking.enabled=false"]
    (entry,) = read_models(models, base, extra)
    real_step = SstClassifier.training_step
    crash_at = 50  # epoch 1 (42 batches per epoch), batch 8

    def dying_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        if self.global_step == crash_at:
            raise RuntimeError("simulated crash")
        return real_step(self, batch, batch_idx)

    with monkeypatch.context() as mp:
        mp.setattr(SstClassifier, "training_step", dying_step)
        with pytest.raises(RuntimeError, match="simulated crash"):
            train(entry.cfg)
    runs = tmp_path / "runs"
    (partial,) = runs.glob("*.partial")
    capsys.readouterr()
    args = ["sweep", "--config", str(base), "--models", str(models), "--local", "--resume"]
    assert main([*args, "--report", str(tmp_path / "report"), *extra]) == 0
    out = capsys.readouterr().out
    assert f"[1/1] {entry.name}: continuing {partial}" in out, out
    finished = runs / partial.name.removesuffix(".partial")
    assert not partial.exists() and (finished / "weights.safetensors").is_file()
    (record,) = runs.glob("sweeps/*/sweep.json")
    (outcome,) = json.loads(record.read_text())["outcomes"]
    assert outcome["status"] == "completed" and outcome["run_dir"] == str(finished)
    log = (record.parent / "logs" / f"{entry.name}.log").read_text()
    assert f"Restored all states from the checkpoint at {partial}/checkpoints/last.ckpt" in log
    # what the sweep's child process logged to TensorBoard (this process wrote the other file):
    # the loss every 10 steps from step 50 on, one validation (epoch 1's; epoch 0's was before
    # the crash). A run started over would log steps 9-49 and epoch 0's validation again.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    child: dict[str, list[int]] = {}
    for events in (finished / "tb").glob("events.out.tfevents.*"):
        if f".{os.getpid()}." in events.name:
            continue
        acc = EventAccumulator(str(events))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            child.setdefault(tag, []).extend(e.step for e in acc.Scalars(tag))
    assert sorted(child["train/loss"]) == [59, 69, 79]
    assert child["val/root/macro_f1"] == [2 * 42]
