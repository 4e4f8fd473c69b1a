"""`sst sweep`: models.txt checks, a real local sweep (one process per model, a failure recorded,
--resume) and the online path's ClearML contract."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from sst.cli import main
from sst.config import load_config
from sst.config.zoo import read_models
from sst.env.git import GitState
from sst.errors import SstError
from sst.run.ranking import contamination
from sst.tracking import agent, server
from sst.tracking import tracker as tracking
from sst.verbs.sweep import run_online, task_parameters
from tests.clearml_fake import FakeTask, tags_match, tid

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
    ],
)
def test_a_bad_line_is_named_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, line: int, message: str
) -> None:
    models = tmp_path / "models.txt"
    models.write_text(text)
    with pytest.raises(SstError, match=re.escape(message)) as e:
        read_models(models, None, [])
    assert e.value.path == str(models) and e.value.line == line
    runs = tmp_path / "runs"
    assert main(["sweep", "--models", str(models), "--local", f"train.runs_dir={runs}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"sst sweep: error: {models}:{line}: ") and "\n" not in err
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


# -- the online path: ClearML's Task class replaced at the tracking boundary ----------------


def test_online_sweep_contract(
    shared_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(tracking, "clearml_task", lambda: FakeTask)
    monkeypatch.delenv("CLEARML_OFFLINE_MODE")
    monkeypatch.setenv("CLEARML_API_HOST", "https://api.example")
    monkeypatch.setenv("CLEARML_API_ACCESS_KEY", "key")
    monkeypatch.setenv("SST_IMAGE", "registry.example/sst@sha256:" + "b" * 64)
    monkeypatch.setattr(
        "sst.verbs.sweep.git_state",
        lambda: GitState(commit="c" * 40, diff_sha256=None, remote="https://git.example/sst.git"),
    )
    FakeTask.reset(tmp_path / "files")
    models = tmp_path / "models.txt"
    models.write_text("bert-base-uncased\nroberta-base lr=2e-5 sampling=stratified:4,alternate:4\n")
    base = REPO / "configs" / "demo.yaml"
    entries = read_models(models, base, [])
    outcomes = run_online(entries, base=base, sweep_id="sweep-x", queue="gpu", wait=True)

    image = "registry.example/sst@sha256:" + "b" * 64
    from sst.tracking.agent import container_arguments

    args = container_arguments()
    calls = [c for c in FakeTask.calls if c[0] != "set_random_seed"]
    template_tags = ("sst-template", "rev-cccccccccccc", "config-demo")
    assert calls[0] == ("get_tasks", "sst", ("__$all", *template_tags), False)  # not archived
    assert calls[1] == (
        "create",
        "sst.cli train --config configs/demo.yaml",  # repo-relative: a fresh clone has it
        "https://git.example/sst.git",
        "c" * 40,
        image,
        args,
        False,
    )
    template = tid(1)
    assert calls[2] == ("add_tags", template, list(template_tags))
    assert calls[3] == ("init", "sst", "sweep sweep-x", "controller")
    controller = tid(2)
    per_child = [
        c
        for c in calls
        if c[0] in ("clone", "set_parameters", "add_tags", "set_base_docker", "enqueue")
        and (c[0] == "clone" or c[1] not in (template, controller))
    ]
    names = [e.name for e in entries]
    assert per_child == [
        ("clone", template, names[0], controller),
        ("set_parameters", tid(3), task_parameters(entries[0])),
        ("add_tags", tid(3), ["sweep-x"]),
        ("set_base_docker", tid(3), image, args),
        ("enqueue", tid(3), "gpu"),
        ("clone", template, names[1], controller),
        (
            "set_parameters",
            tid(4),
            {
                "config/model/name": "roberta-base",
                "config/name": names[1],
                "config/train/lr": "2e-5",
                "config/train/sampling": "stratified:4,alternate:4",
            },
        ),
        ("add_tags", tid(4), ["sweep-x"]),
        ("set_base_docker", tid(4), image, args),
        ("enqueue", tid(4), "gpu"),
    ]
    assert (
        "connect",
        controller,
        "children",
        dict(zip(names, [tid(3), tid(4)], strict=True)),
    ) in calls
    assert (
        "set_script",
        controller,
        "-m sst.cli sweep --config configs/demo.yaml --queue gpu",
    ) in calls
    assert calls[-1] == ("close", controller)
    assert [(o.task_id, o.status) for o in outcomes] == [
        (tid(3), "completed"),
        (tid(4), "completed"),
    ]
    assert f"queued on 'gpu' as task {tid(3)}" in capsys.readouterr().out

    # a second sweep at the same commit reuses the template instead of creating another
    FakeTask.calls = []
    run_online(entries[:1], base=base, sweep_id="sweep-y", queue="gpu")
    assert not [c for c in FakeTask.calls if c[0] == "create"]
    assert ("clone", template, names[0], tid(5)) in FakeTask.calls  # the new controller: 5


def test_a_template_of_another_commit_is_not_reused(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ClearML ORs a tag list unless it starts with "__$all": an older commit's template (or one
    for another preset) shares the "sst-template" tag and must not be cloned."""
    monkeypatch.setattr(tracking, "clearml_task", lambda: FakeTask)
    monkeypatch.delenv("CLEARML_OFFLINE_MODE")
    monkeypatch.setenv("CLEARML_API_HOST", "https://api.example")
    monkeypatch.setenv("CLEARML_API_ACCESS_KEY", "key")
    FakeTask.reset(tmp_path / "files")
    server.sweep_template(
        "sst", repo="https://git.example/sst.git", commit="a" * 40, base_config="configs/demo.yaml"
    )
    server.sweep_template(
        "sst", repo="https://git.example/sst.git", commit="c" * 40, base_config="configs/full.yaml"
    )
    # the same 12-digit prefix, another commit: only the recorded commit tells them apart
    server.sweep_template(
        "sst",
        repo="https://git.example/sst.git",
        commit="c" * 12 + "d" * 28,
        base_config="configs/demo.yaml",
    )
    old = set(FakeTask.store)
    FakeTask.calls = []
    new = server.sweep_template(
        "sst", repo="https://git.example/sst.git", commit="c" * 40, base_config="configs/demo.yaml"
    )
    assert new.id not in old and [c[0] for c in FakeTask.calls].count("create") == 1
    assert new.data.script.version_num == "c" * 40
    again = server.sweep_template(
        "sst", repo="https://git.example/sst.git", commit="c" * 40, base_config="configs/demo.yaml"
    )
    assert again.id == new.id
    # the fake's filter is ClearML's documented one: OR by default, AND with "__$all", exclusion
    assert tags_match(["a", "b"], {"b"}) and not tags_match(["__$all", "a", "b"], {"b"})
    assert not tags_match(["a", "-b"], {"a", "b"}) and tags_match(["__$all", "a"], {"a", "c"})
    assert not tags_match(["__$all", "a", "__$not", "c"], {"a", "c"})


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


def test_an_agents_clone_trains_with_the_tasks_parameters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`sst` executed by a clearml-agent (CLEARML_TASK_ID set, not running locally) takes the
    task's `config/…` parameters — a sweep line's overrides, or a web-UI edit — as overrides
    after the command line's; run by hand it takes none."""
    monkeypatch.setattr(tracking, "clearml_task", lambda: FakeTask)
    monkeypatch.delenv("CLEARML_OFFLINE_MODE")
    monkeypatch.setenv("CLEARML_API_HOST", "https://api.example")
    monkeypatch.setenv("CLEARML_API_ACCESS_KEY", "key")
    FakeTask.reset(tmp_path)
    task = FakeTask("sweep line")
    task.parameters = {
        "config/train/lr": "3e-5",
        "config/model/pooling": "cls",
        "config/train/sampling": "stratified:4,alternate:4",
        "config/model/revision": "",  # empty: not an override
        "fingerprint/seed": "7",  # what a run recorded about itself: not an input
        "Container/image": "sst:cpu",
    }
    assert server.remote_overrides() == []  # no task id: run by hand
    monkeypatch.setenv("CLEARML_TASK_ID", task.id)
    assert server.remote_overrides() == []  # a task id, but running locally (no agent)
    monkeypatch.setattr(FakeTask, "remote", True)
    assert server.remote_overrides() == [
        "model.pooling=cls",
        "train.lr=3e-5",
        "train.sampling=stratified:4,alternate:4",
    ]
    # through the command line: the task's values win over the command line's
    assert main(["config", "train.lr=1e-3", "train.seed=3"]) == 0
    cfg = json.loads(capsys.readouterr().out)  # the resolved config
    assert cfg["train"]["lr"] == 3e-5 and cfg["train"]["seed"] == 3
    assert cfg["model"]["pooling"] == "cls" and cfg["model"]["revision"] == "main"
    assert cfg["train"]["sampling"] == "stratified:4,alternate:4"
    # offline mode forced: never a server's parameters
    monkeypatch.setenv("CLEARML_OFFLINE_MODE", "1")
    assert server.remote_overrides() == []
