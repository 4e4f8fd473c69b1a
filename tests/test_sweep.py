"""`sst sweep`, `sst report`, `sst ensemble`: models.txt checks, a real local sweep (one process per
model, a failure recorded, --resume), the online path's ClearML contract, contamination flags,
ensembles against hand-computed averages."""

from __future__ import annotations

import contextlib
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
import yaml

from sst import tracking
from sst.cli import main
from sst.config import load_config
from sst.ensemble import ensemble
from sst.errors import SstError
from sst.model.metrics import confusion, summarize
from sst.report import collect, contamination, from_project, rank, write_report
from sst.sweep import read_models, run_online, task_parameters
from tests.conftest import isolate, train_overrides

REPO = Path(__file__).resolve().parent.parent


def _base(tmp_path: Path, tiny_model: Path, tiny_split: Path) -> Path:
    """A base preset for the tiny model (the sweep lines override the model)."""
    cfg = load_config(
        None,
        train_overrides(
            tiny_model, tiny_split, tmp_path / "runs", "name=tiny", "train.val_sentences=0"
        ),
    )
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    return path


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


# -- a real local sweep ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_sweep(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, tiny_split: Path
) -> dict[str, Any]:
    """Three lines: two tiny-model variants and a model folder whose config is broken."""
    tmp = tmp_path_factory.mktemp("sweep")
    base = _base(tmp, tiny_model, tiny_split)
    broken = tmp / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{ not json")
    models = tmp / "models.txt"
    models.write_text(
        f"{tiny_model}\n"
        f"{tiny_model}  sampling=random:2 pooling=cls lr=3e-3\n"
        f"{broken}      # fails when it loads\n"
    )
    report = tmp / "report"
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        clearml = isolate(mp, tmp)
        code = main(
            [
                "sweep",
                "--config",
                str(base),
                "--models",
                str(models),
                "--local",
                "--by",
                "macro_f1",
                "--report",
                str(report),
            ]
        )
    return {
        "code": code,
        "out": out.getvalue(),
        "base": base,
        "models": models,
        "runs": tmp / "runs",
        "report": report,
        "clearml": clearml,
    }


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


def test_leaderboard_ranks_by_the_chosen_metric_and_lists_the_failure(local_sweep) -> None:
    report = local_sweep["report"]
    board = json.loads((report / "leaderboard.json").read_text())
    rows = board["rows"]
    assert board["by"] == "macro_f1" and [r["status"] for r in rows][-1] == "failed"
    f1 = [r["metrics"]["root"]["macro_f1"] for r in rows if r["status"] == "completed"]
    assert len(f1) == 2 and f1 == sorted(f1, reverse=True)
    md = (report / "leaderboard.md").read_text()
    assert "failed: exit 2" in md and "| root macro_f1 |" in md
    assert (report / "confusion_grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    class Cells(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.rows: list[list[str]] = []
            self.cell: list[str] | None = None

        def handle_starttag(self, tag: str, attrs: Any) -> None:
            if tag == "tr":
                self.rows.append([])
            elif tag in ("td", "th"):
                self.cell = []

        def handle_endtag(self, tag: str) -> None:
            if tag in ("td", "th") and self.cell is not None:
                self.rows[-1].append("".join(self.cell))
                self.cell = None

        def handle_data(self, data: str) -> None:
            if self.cell is not None:
                self.cell.append(data)

    parser = Cells()
    parser.feed((report / "leaderboard.html").read_text())
    header, *body = parser.rows
    assert header[:3] == ["#", "run", "model"] and len(body) == 3
    assert body[0][1] == rows[0]["name"] and body[2][3].startswith("failed")

    # any other metric re-ranks the same rows; lower-is-better metrics ascend
    ranked = rank(collect([local_sweep["runs"]]), "mae")
    maes = [r.value("mae", "root") for r in ranked if r.status == "completed"]
    assert maes == sorted(maes)


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


# -- contamination --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "risky"),
    [
        ("echarlaix/bert-base-uncased-sst2-acc91.1-d37-hybrid", True),
        ("distilbert-base-uncased-finetuned-sst-2-english", True),
        ("textattack/roberta-base-SST-2", True),
        ("howey/electra-base-sst2", True),
        ("someone/deberta-v3-base-glue-mnli", True),
        ("siebert/sentiment-roberta-large-english", True),
        ("bert-base-uncased", False),
        ("roberta-base", False),
        ("minilm", False),
        ("microsoft/deberta-v3-base", False),
        ("google/electra-small-discriminator", False),
    ],
)
def test_contamination_flag(model: str, risky: bool) -> None:
    assert (contamination(model) is not None) == risky


def test_contamination_of_a_local_folder_reads_its_finetuning_task(tmp_path: Path) -> None:
    folder = tmp_path / "my-encoder"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"finetuning_task": "sst-2"}))
    assert "finetuning_task=sst-2" in contamination(str(folder))
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert contamination(str(folder)) is None


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
    from sst.train import container_arguments

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


def test_online_report_ranks_the_sweeps_tasks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The online leaderboard source (a ClearML project's tasks tagged with the sweep id), with
    only the Task class replaced at the tracking boundary: no server can run here."""
    from sst.report import METRICS

    def values(f1: float) -> dict[str, float]:
        v = {f"test/{lv}/{m}": 0.5 for lv in ("root", "phrase") for m in METRICS if m != "micro_f1"}
        v["test/root/macro_f1"] = f1
        return v

    class T:
        def __init__(self, i: str, status: str, model: str, single: dict[str, float]) -> None:
            self.id, self.name, self.status, self.model, self.single = (
                i,
                f"run-{i}",
                status,
                model,
                single,
            )

        def get_parameters(self) -> dict[str, str]:
            return {"config/model/name": self.model}

        def get_status(self) -> str:
            return self.status

        def get_reported_single_values(self) -> dict[str, float]:
            return self.single

    asked: list[tuple] = []

    class Tasks:
        @classmethod
        def get_tasks(cls, project_name: str, tags: list[str], task_filter: dict) -> list[T]:
            asked.append((project_name, tags, task_filter))
            return [
                T("1", "completed", "bert-base-uncased", values(0.41)),
                T("2", "completed", "howey/electra-base-sst2", values(0.52)),
                T("3", "failed", "roberta-base", {}),
            ]

    monkeypatch.setattr(tracking, "clearml_task", lambda: Tasks)
    rows = rank(from_project("sst", "sweep-x"), "macro_f1")
    assert asked == [("sst", ["sweep-x"], {"type": ["training"]})]
    assert [(r.name, r.status) for r in rows] == [
        ("run-2", "completed"),
        ("run-1", "completed"),
        ("run-3", "failed"),
    ]
    assert rows[0].contamination and rows[0].value("micro_f1", "root") == 0.5
    assert rows[2].error == "task failed"
    paths = write_report(rows, "macro_f1", tmp_path / "r", track=False)
    assert all(p.is_file() for p in paths)
