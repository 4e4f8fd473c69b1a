"""`sst sweep`: models.txt checks, a real local sweep (one process per model, a failure recorded,
--resume) and the online path's ClearML contract."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar

import pytest

from sst import tracking
from sst.cli import main
from sst.config import load_config
from sst.errors import SstError
from sst.ranking import contamination
from sst.sweep import run_online, task_parameters
from sst.zoo import read_models

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
        None, ["train.threads=1", *tracking.parameters_to_overrides(task_parameters(rob))]
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
    for o in outcomes[:2]:
        run = Path(o["run_dir"])
        assert (run / "weights.safetensors").is_file()
        fp = json.loads((run / "fingerprint.json").read_text())
        assert fp["config_sha256"] == o["config_sha256"] and fp["clearml_task_id"] == o["task_id"]
        # each its own offline ClearML task, tagged with the sweep id
        sessions = local_sweep["clearml"].glob("offline/*/task.json")
        tags = [json.loads(s.read_text()).get("tags", []) for s in sessions]
        assert any(manifest.parent.name in t for t in tags)


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
    assert {e.model for e in local} >= {"minilm", ".cache/tiny/model"}


# -- the online path: ClearML's Task class replaced at the tracking boundary ----------------


class FakeTask:
    """Stands in for ``clearml.Task`` and records every call the kit makes.

    Why a replacement: an online sweep needs a ClearML server (apiserver + MongoDB +
    Elasticsearch), which cannot run here, and ClearML's offline mode refuses ``clone``,
    ``enqueue`` and ``get_tasks``. So this contract test swaps only the ``Task`` class at
    ``sst.tracking.clearml_task`` (the kit's one door to it) and asserts the exact calls: template
    reused or created, one clone per line with its parameter overrides, the sweep tag, the
    pinned image and the enqueue on the queue. Everything above that boundary is the real code.
    """

    calls: ClassVar[list[tuple]] = []
    existing_template: ClassVar[FakeTask | None] = None
    TaskTypes = type("TaskTypes", (), {"controller": "controller", "training": "training"})
    _n = 0

    def __init__(self, name: str) -> None:
        FakeTask._n += 1
        self.id = f"task-{FakeTask._n}"
        self.name = name
        self.parent = None

    # class-level API
    @classmethod
    def set_random_seed(cls, seed: Any) -> None:
        cls.calls.append(("set_random_seed", seed))

    @classmethod
    def init(cls, **kw: Any) -> FakeTask:
        cls.calls.append(("init", kw["project_name"], kw["task_name"], kw["task_type"]))
        return cls(kw["task_name"])

    @classmethod
    def get_tasks(cls, **kw: Any) -> list[FakeTask]:
        cls.calls.append(("get_tasks", kw["project_name"], tuple(kw["tags"])))
        return [cls.existing_template] if cls.existing_template else []

    @classmethod
    def create(cls, **kw: Any) -> FakeTask:
        cls.calls.append(
            (
                "create",
                kw["module"],
                kw["repo"],
                kw["commit"],
                kw["docker"],
                kw["docker_args"],
                kw["add_task_init_call"],
            )
        )
        return cls(kw["task_name"])

    @classmethod
    def clone(cls, source_task: FakeTask, name: str, parent: str) -> FakeTask:
        cls.calls.append(("clone", source_task.id, name, parent))
        return cls(name)

    @classmethod
    def enqueue(cls, task: FakeTask, queue_name: str) -> dict:
        cls.calls.append(("enqueue", task.id, queue_name))
        return {"queued": 1}

    @classmethod
    def get_task(cls, task_id: str) -> Any:
        return type("T", (), {"get_status": lambda self: "completed"})()

    # instance API
    def connect(self, values: dict, name: str) -> dict:
        self.calls.append(("connect", self.id, name, dict(values)))
        return values

    def add_tags(self, tags: list[str]) -> None:
        self.calls.append(("add_tags", self.id, list(tags)))

    def set_parameters(self, params: dict) -> None:
        self.calls.append(("set_parameters", self.id, dict(params)))

    def set_base_docker(self, docker_image: str, docker_arguments: str) -> None:
        self.calls.append(("set_base_docker", self.id, docker_image, docker_arguments))

    def get_output_log_web_page(self) -> str:
        return f"https://app.example/{self.id}"

    def close(self) -> None:
        self.calls.append(("close", self.id))


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
        "sst.repro.git_state",
        lambda: {"commit": "c" * 40, "remote": "https://git.example/sst.git", "diff_sha256": None},
    )
    FakeTask.calls = []
    models = tmp_path / "models.txt"
    models.write_text("bert-base-uncased\nroberta-base lr=2e-5 sampling=stratified:4,alternate:4\n")
    base = REPO / "configs" / "demo.yaml"
    entries = read_models(models, base, [])
    outcomes = run_online(entries, base=base, sweep_id="sweep-x", queue="gpu", wait=True)

    image = "registry.example/sst@sha256:" + "b" * 64
    from sst.tracking import container_arguments

    args = container_arguments()
    calls = [c for c in FakeTask.calls if c[0] != "set_random_seed"]
    template_tags = ("sst-template", "rev-cccccccccccc", "config-demo")
    assert calls[0] == ("get_tasks", "sst", template_tags)
    assert calls[1] == (
        "create",
        f"sst.cli train --config {base}",
        "https://git.example/sst.git",
        "c" * 40,
        image,
        args,
        False,
    )
    template = "task-1"
    assert calls[2] == ("add_tags", template, list(template_tags))
    assert calls[3] == ("init", "sst", "sweep sweep-x", "controller")
    controller = "task-2"
    per_child = [
        c
        for c in calls
        if c[0] in ("clone", "set_parameters", "add_tags", "set_base_docker", "enqueue")
        and (c[0] == "clone" or c[1] not in (template, controller))
    ]
    names = [e.name for e in entries]
    assert per_child == [
        ("clone", template, names[0], controller),
        ("set_parameters", "task-3", task_parameters(entries[0])),
        ("add_tags", "task-3", ["sweep-x"]),
        ("set_base_docker", "task-3", image, args),
        ("enqueue", "task-3", "gpu"),
        ("clone", template, names[1], controller),
        (
            "set_parameters",
            "task-4",
            {
                "config/model/name": "roberta-base",
                "config/name": names[1],
                "config/train/lr": "2e-5",
                "config/train/sampling": "stratified:4,alternate:4",
            },
        ),
        ("add_tags", "task-4", ["sweep-x"]),
        ("set_base_docker", "task-4", image, args),
        ("enqueue", "task-4", "gpu"),
    ]
    assert (
        "connect",
        controller,
        "children",
        dict(zip(names, ["task-3", "task-4"], strict=True)),
    ) in calls
    assert calls[-1] == ("close", controller)
    assert [(o.task_id, o.status) for o in outcomes] == [
        ("task-3", "completed"),
        ("task-4", "completed"),
    ]
    assert "queued on 'gpu' as task task-3" in capsys.readouterr().out

    # a second sweep at the same commit reuses the template instead of creating another
    FakeTask.calls = []
    FakeTask.existing_template = FakeTask("existing")
    try:
        run_online(entries[:1], base=base, sweep_id="sweep-y", queue="gpu")
    finally:
        FakeTask.existing_template = None
    assert not [c for c in FakeTask.calls if c[0] == "create"]
    assert ("clone", "task-5", names[0], "task-6") in FakeTask.calls
