"""The online journeys, end to end: the real clearml SDK, the real clearml-agent and `sst`,
against the ClearML API server of tests/clearml_server on 127.0.0.1.

Each `sst` runs as a user runs it: a process started from a clone of the kit whose origin is a
bare repository served by ``file://`` (what agents clone), with the server named by the
environment. The agent is ``clearml-agent daemon --queue <q> --foreground`` in venv mode
(``CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL``: the kit's locked venv, as its images run it)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sst.data import LABELS
from sst.env.git import git_patch
from tests.clearml_server import ClearmlServer
from tests.conftest import configuration, train_overrides
from tests.online import (
    PATCH_MARK,
    Agent,
    clean_environment,
    clone_kit,
    closed_port,
    environment,
    one_line_error,
    settle,
    sst,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClearmlServer]:
    srv = ClearmlServer(tmp_path_factory.mktemp("clearml-server")).start()
    yield srv
    srv.stop()
    if record := os.environ.get("SST_TEST_ENDPOINTS"):  # what the journeys called, for a note
        calls = Counter(entry.endpoint for entry in srv.api.log)
        Path(record).write_text("".join(f"{n} {e}\n" for e, n in sorted(calls.items())))
    assert srv.unimplemented() == [], "endpoints the double lacks: add them from the server"


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone of the kit, its origin a bare repository that agents clone by ``file://``."""
    return clone_kit(tmp_path_factory.mktemp("kit"))


@pytest.fixture
def online(
    server: ClearmlServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[ClearmlServer]:
    """This process pointed at the server (for the SDK called in the test itself). The SDK keeps
    its session's API version process-wide, and once a session was made offline mode stops
    pinning API 2.9 (clearml's Session.check_min_api_version): a user's process is online or
    offline, a test process is both, so the state is restored after, and the SDK's default
    session and the kit's record of servers that answered are forgotten."""
    from clearml import Task
    from clearml.backend_api import Session
    from clearml.backend_interface.base import InterfaceBase

    from sst.tracking import tracker

    saved = (Session._sessions_created, Session.api_version, Session.max_api_version)
    was_offline = Task.is_offline()  # process-wide: an earlier tracked run here may have set it
    for key, value in environment(server, tmp_path / "me").items():
        if key.startswith(("CLEARML_", "SST_")):
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("CLEARML_OFFLINE_MODE", raising=False)
    Task.set_offline(False)
    yield server
    Task.set_offline(was_offline)
    Session._sessions_created, Session.api_version, Session.max_api_version = saved
    InterfaceBase._default_session = None  # bound to this server, which stops with the module
    tracker._answered.clear()


def tiny_base(folder: Path, tiny_model: Path, tiny_split: Path, runs: Path) -> Path:
    """A preset for the tiny model and split (absolute paths: the agent runs on this machine)."""
    from sst.config import load_config
    from sst.io import dumps

    folder.mkdir(parents=True, exist_ok=True)
    over = train_overrides(tiny_model, tiny_split, runs, "name=tiny", "train.val_sentences=0")
    path = folder / "base.yaml"
    path.write_text(dumps(load_config(None, over).to_dict()))
    return path


# -- B1: a run trained online, its task and its shared files ----------------------------------


@pytest.fixture(scope="module")
def trained(
    server: ClearmlServer,
    kit: Path,
    tiny_model: Path,
    tiny_split: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("user")
    env = environment(server, home, kit)
    runs = home / "runs"
    done = sst("train", *train_overrides(tiny_model, tiny_split, runs), env=env, cwd=kit)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    fingerprint = json.loads((run / "fingerprint.json").read_text())
    task_id = fingerprint["clearml_task_id"]
    link = next(ln for ln in done.stdout.splitlines() if ln.startswith("ClearML task "))
    return {"run": run, "task": task_id, "link": link.split(": ", 1)[1], "env": env, "home": home}


def test_a_run_trained_online_is_a_task_an_agent_can_rerun(
    server: ClearmlServer, trained: dict[str, Any], kit: Path, tiny_model: Path
) -> None:
    task = server.task(trained["task"])
    fingerprint = json.loads((trained["run"] / "fingerprint.json").read_text())
    assert task["status"] == "completed" and task["type"] == "training"
    script = task["script"]
    assert script["entry_point"] == "-m sst.cli train" and script["working_dir"] == "."
    assert script["repository"].startswith("file://") and script["repository"].endswith("sst.git")
    assert script["version_num"] == fingerprint["git"]["commit"]
    assert (script.get("diff") or "") == git_patch(kit)
    config = {name: p["value"] for name, p in task["hyperparams"]["config"].items()}
    assert config["model/name"] == str(tiny_model) and config["train/threads"] == "1"
    assert list(task["hyperparams"]) == ["config"]  # a clone edits the config, nothing else
    assert configuration(task, "fingerprint") == fingerprint
    artifacts = {a["key"]: a for a in task["execution"]["artifacts"].values()}
    assert set(artifacts) >= {"weights.safetensors", "fingerprint.json", "config.yaml"}
    assert all(a["uri"].startswith(server.api.files_url) for a in artifacts.values())
    # one model: the weights the kit registered; no checkpoint by its path on this machine
    (output,) = task["models"]["output"]
    assert server.models.docs.get(output["model"])["uri"] == artifacts["weights.safetensors"]["uri"]
    assert all(m["uri"].startswith(server.api.files_url) for m in server.models.docs.docs.values())


def test_predict_from_a_task_link_downloads_and_verifies_the_run(
    server: ClearmlServer, trained: dict[str, Any], kit: Path, tmp_path: Path
) -> None:
    env = environment(server, tmp_path / "colleague")
    done = sst("predict", "--task", trained["link"], "a gorgeous , witty film", env=env, cwd=kit)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("a gorgeous , witty film")
    # the weights changed on the file server: a colleague with no copy yet is refused
    task = server.task(trained["task"])
    (weights,) = [
        a for a in task["execution"]["artifacts"].values() if a["key"].startswith("weights")
    ]
    stored = server.stored(weights["uri"])
    original = stored.read_bytes()
    try:
        stored.write_bytes(original[:-8] + b"tampered")
        env = environment(server, tmp_path / "another")
        error = one_line_error(
            sst("predict", "--task", trained["task"], "ok", env=env, cwd=kit), "predict"
        )
        assert "weights.safetensors" in error and "is not the recorded" in error
        # the weights and the shared fingerprint replaced together, consistent with each other:
        # the task's own record of the weights refuses them
        (shared,) = [
            a for a in task["execution"]["artifacts"].values() if a["key"] == "fingerprint.json"
        ]
        fingerprint_file = server.stored(shared["uri"])
        recorded = fingerprint_file.read_text()
        forged = json.loads(recorded)
        forged["weights_sha256"] = hashlib.sha256(stored.read_bytes()).hexdigest()
        try:
            fingerprint_file.write_text(json.dumps(forged))
            env = environment(server, tmp_path / "a-third")
            done = sst("predict", "--task", trained["task"], "ok", env=env, cwd=kit)
            error = one_line_error(done, "predict")
            assert "the task recorded" in error and recorded.count(forged["weights_sha256"]) == 0
        finally:
            fingerprint_file.write_text(recorded)
    finally:
        stored.write_bytes(original)


def _registered(server: ClearmlServer, task_id: str) -> dict[str, Any]:
    """The task's one output model in the server's registry."""
    (entry,) = server.task(task_id)["models"]["output"]
    return server.models.docs.get(entry["model"])


def test_a_run_trained_online_is_a_registered_model_carrying_its_identity(
    server: ClearmlServer, trained: dict[str, Any]
) -> None:
    run = trained["run"]
    fingerprint = json.loads((run / "fingerprint.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    model = _registered(server, trained["task"])
    assert model["task"] == trained["task"] and model["tags"] == ["run"]
    assert model["framework"] == "PyTorch" and model["labels"] == {
        label: i for i, label in enumerate(LABELS)
    }
    # its file is the weights artifact the task uploaded: the weights travelled once
    (weights,) = [
        a
        for a in server.task(trained["task"])["execution"]["artifacts"].values()
        if a["key"] == "weights.safetensors"
    ]
    assert model["uri"] == weights["uri"]
    assert (
        hashlib.sha256(server.stored(model["uri"]).read_bytes()).hexdigest()
        == (fingerprint["weights_sha256"])
    )
    assert model["design"]["design"] == (run / "config.yaml").read_text()
    meta = {k: m["value"] for k, m in model["metadata"].items()}
    assert meta["weights_sha256"] == fingerprint["weights_sha256"]
    assert meta["config_sha256"] == fingerprint["config_sha256"]
    assert meta["split_manifest_sha256"] == fingerprint["split_manifest_sha256"]
    assert meta["model"] == fingerprint["model"]
    assert meta["model_files_sha256"] == fingerprint["model_files_sha256"]  # a folder's files
    assert meta["git/commit"] == fingerprint["git"]["commit"]
    assert float(meta["test/root/accuracy"]) == pytest.approx(
        metrics["test"]["root"]["accuracy"], abs=1e-6
    )
    assert json.loads(meta["fingerprint"]) == fingerprint


def test_predict_from_a_registered_model_checks_its_sha256(
    server: ClearmlServer, trained: dict[str, Any], kit: Path, tmp_path: Path
) -> None:
    model = _registered(server, trained["task"])
    by_task = sst("predict", "--task", trained["task"], "a gorgeous , witty film",
                  env=environment(server, tmp_path / "a"), cwd=kit)  # fmt: skip
    done = sst("predict", "--model", model["id"], "a gorgeous , witty film",
               env=environment(server, tmp_path / "b"), cwd=kit)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == by_task.stdout  # the same classifier
    stored = server.stored(model["uri"])
    original = stored.read_bytes()
    try:
        stored.write_bytes(original[:-8] + b"tampered")
        env = environment(server, tmp_path / "c")
        error = one_line_error(sst("predict", "--model", model["id"], "ok", env=env, cwd=kit),
                               "predict")  # fmt: skip
        assert f"model {model['id']}'s file has sha256" in error and "its metadata records" in error
    finally:
        stored.write_bytes(original)
    unknown = sst("predict", "--model", "0" * 32, "ok", env=environment(server, tmp_path / "d"),
                  cwd=kit)  # fmt: skip
    assert f"has no model {'0' * 32}" in one_line_error(unknown, "predict")
    from tests.clearml_server.http import Call

    foreign = server.models.create(
        Call("models.create", {"name": "x", "uri": "s3://b/x"}, "u", None)
    )
    other = sst("predict", "--model", foreign["id"], "ok", env=environment(server, tmp_path / "e"),
                cwd=kit)  # fmt: skip
    assert "is not a model sst registered" in one_line_error(other, "predict")


def test_an_export_made_online_is_a_registered_package_tagged_export(
    server: ClearmlServer, trained: dict[str, Any], kit: Path, tmp_path: Path
) -> None:
    import zipfile

    out = tmp_path / "export"
    done = sst("export", str(trained["run"]), "--out", str(out), env=trained["env"], cwd=kit)
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("registered as ClearML")]
    model = server.models.docs.get(line.split()[4])
    assert model["tags"] == ["export"] and model["framework"] == "ONNX"
    assert model["design"]["design"] == (trained["run"] / "config.yaml").read_text()
    task = server.task(model["task"])
    assert task["name"] == f"export {trained['run'].name}" and task["status"] == "completed"
    meta = {k: m["value"] for k, m in model["metadata"].items()}
    fingerprint = json.loads((trained["run"] / "fingerprint.json").read_text())
    assert meta["sst/kind"] == "export" and meta["export/onnx"] == "model.onnx"
    assert meta["weights_sha256"] == fingerprint["weights_sha256"]  # the run it exports
    with zipfile.ZipFile(server.stored(model["uri"])) as package:  # the whole folder, as made
        names = set(package.namelist())
        assert {"model.safetensors", "model.onnx", "README.md", "manifest.json"} <= names
        # the export stays where it was written (the SDK's default deletes what it uploaded)
        assert package.read("manifest.json") == (out / "manifest.json").read_bytes()
    env = environment(server, tmp_path / "colleague")
    refused = sst("predict", "--model", model["id"], "ok", env=env, cwd=kit)
    assert "is an `sst export` package" in one_line_error(refused, "predict")


def test_an_ensemble_made_online_is_a_registered_model_tagged_ensemble(
    server: ClearmlServer, trained: dict[str, Any], kit: Path, tiny_model: Path, tiny_split: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    runs = tmp_path / "runs"
    over = train_overrides(tiny_model, tiny_split, runs, "train.seed=1")
    second = sst("train", *over, env=trained["env"], cwd=kit)
    assert second.returncode == 0, second.stderr[-3000:]
    (other,) = [p for p in runs.iterdir() if p.is_dir()]
    done = sst("ensemble", str(trained["run"]), str(other), "--runs-dir", str(runs),
               env=trained["env"], cwd=kit)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("registered as ClearML")]
    model = server.models.docs.get(line.split()[4])
    (folder,) = [p for p in runs.iterdir() if p.name.startswith("ensemble-")]
    fingerprint = json.loads((folder / "fingerprint.json").read_text())
    assert model["tags"] == ["ensemble"] and model["name"] == folder.name
    assert model["design"]["design"] == (folder / "fingerprint.json").read_text()
    assert server.task(model["task"])["status"] == "completed"
    # its file is the fingerprint naming the members and their weights
    assert json.loads(server.stored(model["uri"]).read_text()) == fingerprint
    meta = {k: m["value"] for k, m in model["metadata"].items()}
    assert meta["sst/kind"] == "ensemble" and "weights_sha256" not in meta
    members = [json.loads((r / "fingerprint.json").read_text()) for r in (trained["run"], other)]
    assert json.loads(meta["member_weights_sha256"]) == [m["weights_sha256"] for m in members]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert float(meta["test/root/macro_f1"]) == pytest.approx(
        metrics["test"]["root"]["macro_f1"], abs=1e-6
    )
    env = environment(server, tmp_path / "colleague")
    refused = sst("predict", "--model", model["id"], "ok", env=env, cwd=kit)
    assert "is an ensemble" in one_line_error(refused, "predict")


def test_a_run_replays_bit_identically_from_its_task_link(
    server: ClearmlServer, trained: dict[str, Any], kit: Path, tmp_path: Path
) -> None:
    env = environment(server, tmp_path / "colleague", kit)
    done = sst("replay", trained["link"], "--out", str(tmp_path / "replays"), env=env, cwd=kit)
    assert done.returncode == 0, done.stderr[-3000:]
    fingerprint = json.loads((trained["run"] / "fingerprint.json").read_text())
    assert done.stdout.strip().endswith(
        f"BIT-IDENTICAL (weights sha256 {fingerprint['weights_sha256']})"
    )


# -- B2 and B4: a sweep onto a queue, run by a real agent; replays -----------------------------


@pytest.fixture(scope="module")
def swept(
    server: ClearmlServer,
    kit: Path,
    tiny_model: Path,
    tiny_split: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    """`sst sweep --queue sweeps` of three lines (the last a model whose config is broken, which
    fails on the agent), a second sweep of the same commit and preset onto a queue no agent
    polls, then a clearml-agent daemon on sweeps until the three are done, waited for meanwhile by
    the sweep's own polling (``sst sweep --wait``'s ``wait_for``, a second apart)."""
    home = tmp_path_factory.mktemp("sweeper")
    env = environment(server, home, kit)
    base = tiny_base(home, tiny_model, tiny_split, home / "runs")
    broken = home / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{ not json")
    models = home / "models.txt"
    models.write_text(f"{tiny_model}\n{tiny_model} lr=3e-3\n{broken}\n")
    server.queues.make("sweeps", [])
    server.queues.make("idle", [])
    args = ("sweep", "--config", str(base), "--models", str(models))
    first = sst(*args, "--queue", "sweeps", env=env, cwd=kit)
    second = sst(*args, "--queue", "idle", env=env, cwd=kit)
    queued = {tid: server.task(tid)["status"] for tid in _children(first)}
    agent = Agent("sweeps", env, tmp_path_factory.mktemp("agent"))
    waiting = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from sst.tracking.server import wait_for; wait_for({list(queued)!r})",
        ],
        env={**env, "SST_WAIT_POLL": "1"},
        cwd=kit,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        status = settle(server, list(queued))
        waited, _ = waiting.communicate(timeout=120)
        yield {
            "waited": waited,
            "first": first,
            "second": second,
            "queued": queued,
            "status": status,
            "env": env,
            "home": home,
            "agent": agent,
            "sweep_id": first.stdout.split()[1].rstrip(":"),
        }
    finally:
        waiting.kill()
        agent.stop()


def _children(done: subprocess.CompletedProcess[str]) -> list[str]:
    assert done.returncode == 0, done.stderr[-3000:]
    return [ln.rsplit(" ", 1)[1] for ln in done.stdout.splitlines() if " as task " in ln]


def test_a_sweep_clones_one_template_and_enqueues_each_line(
    server: ClearmlServer, swept: dict[str, Any]
) -> None:
    assert list(swept["queued"].values()) == ["queued"] * 3  # before the agent took them
    tasks = server.tasks.docs.docs.values()
    templates = [t for t in tasks if t["name"] == "sst train (sweep template)"]
    assert len(templates) == 1  # the second sweep found it: tags AND-ed, then the commit checked
    (template,) = templates
    assert template["status"] == "created" and "sst-template" in template["tags"]
    for done, queue in ((swept["first"], "sweeps"), (swept["second"], "idle")):
        sweep_id = done.stdout.split()[1].rstrip(":")
        (controller,) = [t for t in tasks if t["name"] == f"sweep {sweep_id}"]
        for child in _children(done):
            task = server.task(child)
            # the sweep's id (and, once it ran, its run's id): none of the template's tags
            assert sweep_id in task["tags"] and not set(task["tags"]) & set(template["tags"])
            assert task["parent"] == controller["id"]
            source = {k: template["script"].get(k) for k in ("repository", "version_num", "diff")}
            assert {k: task["script"].get(k) for k in source} == source
            if queue == "idle":  # not run: the template's command line as it is
                assert task["script"] == template["script"]
            assert task["container"] == template["container"] and task["container"]["image"]
            assert task["execution"]["queue"] == server.queues.by_name(queue)["id"]


def test_the_agent_runs_each_line_and_a_broken_one_fails_with_its_log(
    server: ClearmlServer, swept: dict[str, Any], kit: Path
) -> None:
    ok, lr, broken = _children(swept["first"])
    assert swept["status"] == {ok: "completed", lr: "completed", broken: "failed"}, swept[
        "agent"
    ].log.read_text()[-3000:]
    # each completed child holds the whole config it trained with, and its fingerprint
    for child, lr_value in ((ok, 1e-3), (lr, 3e-3)):  # the line's override, and the rest
        params = {n: p["value"] for n, p in server.task(child)["hyperparams"]["config"].items()}
        assert float(params["train/lr"]) == lr_value and params["model/pooling"] == "mean"
        assert "weights_sha256" in configuration(server.task(child), "fingerprint")
    done = sst(
        "report",
        "--tag",
        swept["sweep_id"],
        "--out",
        str(swept["home"] / "report"),
        "--no-clearml",
        env=swept["env"],
        cwd=kit,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    board = json.loads((swept["home"] / "report" / "leaderboard.json").read_text())
    rows = {r["name"]: r for r in board["rows"]}
    assert sorted(r["status"] for r in rows.values()) == ["completed", "completed", "failed"]
    (failed,) = [r for r in rows.values() if r["status"] == "failed"]
    assert failed["error"].startswith("task failed: ") and "not a valid JSON" in failed["error"]
    page = (swept["home"] / "report" / "leaderboard.html").read_text()
    for child in (ok, lr, broken):  # each row links to its task's page
        assert f'href="{server.api.api_url.replace("127.0.0.1", "localhost")}' in page
        assert child in page
    # the agent applied the diff the task recorded: its run says so in its log
    logged = " ".join(e.get("msg", "") for e in server.events.of(ok, "log"))
    assert PATCH_MARK in logged


def test_waiting_on_a_sweep_polls_until_each_task_ends(swept: dict[str, Any]) -> None:
    """`sst sweep --wait` (wait_for), polling while the agent works: each task's changes in
    order, and the failed one's log tail."""
    ok, lr, broken = _children(swept["first"])
    out = swept["waited"]
    for task in (ok, lr, broken):
        seen = re.findall(rf"task {task}: (\w+)", out)
        assert seen[0] in ("queued", "in_progress") and seen[-1] == swept["status"][task], out
        assert len(seen) == len(set(seen))  # a change printed once
    assert re.findall(rf"task {lr}: (\w+)", out)[:2] == ["queued", "in_progress"]  # it waited
    tail = out.split(f"task {broken}: failed", 1)[1]
    assert "  | " in tail and "not a valid JSON" in tail


def test_an_unknown_queue_is_one_line_before_any_task_is_made(
    server: ClearmlServer, swept: dict[str, Any], kit: Path, tmp_path: Path
) -> None:
    before = len(server.tasks.docs.docs)
    models = tmp_path / "models.txt"
    models.write_text("minilm\n")
    base = swept["home"] / "base.yaml"
    args = ("sweep", "--config", str(base), "--models", str(models), "--queue", "nope")
    error = one_line_error(sst(*args, env=swept["env"], cwd=kit), "sweep")
    assert "no queue 'nope'" in error and re.search(r"queues: .*\bsweeps\b", error)
    assert len(server.tasks.docs.docs) == before
    # a search too: no task, and no search folder beside the runs
    space = tmp_path / "space.yaml"
    space.write_text("space:\n  model.pooling: {choice: [mean, cls]}\n")
    runs = tmp_path / "runs"
    args = ("tune", "--space", str(space), "--config", str(base), f"train.runs_dir={runs}")
    error = one_line_error(sst(*args, "--queue", "nope", env=swept["env"], cwd=kit), "tune")
    assert "no queue 'nope'" in error and len(server.tasks.docs.docs) == before
    assert not runs.exists()


def test_a_sweep_child_replays_here_and_on_the_queue(
    server: ClearmlServer, swept: dict[str, Any], kit: Path, tmp_path: Path
) -> None:
    ok, _, _ = _children(swept["first"])
    recorded = configuration(server.task(ok), "fingerprint")["weights_sha256"]
    env = swept["env"]
    here = sst("replay", ok, "--out", str(tmp_path / "replays"), env=env, cwd=kit)
    assert here.returncode == 0, here.stderr[-3000:]
    assert here.stdout.strip().endswith(f"BIT-IDENTICAL (weights sha256 {recorded})")
    queued = sst("replay", ok, "--queue", "sweeps", env=env, cwd=kit)
    assert queued.returncode == 0, (queued.stdout[-2000:], queued.stderr[-3000:])
    assert queued.stdout.strip().endswith(f"BIT-IDENTICAL (weights sha256 {recorded})")
    (clone,) = [t for t in server.tasks.docs.docs.values() if t["name"] == f"replay of {ok}"]
    assert clone["status"] == "completed" and clone["parent"] == ok
    assert clone["container"] == server.task(ok)["container"] and clone["container"]["image"]
    assert "replay" in clone["tags"] and swept["sweep_id"] not in clone["tags"]  # not a seed


# -- B5: an offline session shared later ------------------------------------------------------


def test_an_agent_trains_from_the_splits_dataset_with_no_sources_reachable(
    server: ClearmlServer, swept: dict[str, Any], kit: Path, tiny_model: Path, tmp_path: Path
) -> None:
    """A split made online is a ClearML Dataset; a run trained on it records the Dataset; its
    replay on an agent (a fresh clone: no split folder) gets the split with Dataset.get, with the
    source file gone, and ends BIT-IDENTICAL."""
    from tests.conftest import synthetic_rows, write_kaggle

    (tmp_path / "source").mkdir()
    source = write_kaggle(tmp_path / "source" / "train.tsv", synthetic_rows(200))
    folder = "splits/from-dataset"  # relative: in this clone, absent from the agent's
    preset = tmp_path / "ds.yaml"
    preset.write_text(
        f"""name: ds
data: {{format: kaggle, sources: ["{source}"]}}
split: {{n_seeds: 50, out: {folder}}}
model: {{name: "{tiny_model}", max_length: 32}}
train: {{split: {folder}, runs_dir: "{tmp_path / "runs"}", sampling: "stratified:1,alternate:1",
  batch_size: 16, threads: 1, lr: 0.001}}
tracking: {{monitor_resources: false}}
"""
    )
    env = swept["env"]
    try:
        made = sst("split", "--config", str(preset), env=env, cwd=kit)
        assert made.returncode == 0, made.stderr[-3000:]
        dataset_id = (kit / folder / ".clearml_dataset_id").read_text().strip()
        trained = sst("train", "--config", str(preset), env=env, cwd=kit)
        assert trained.returncode == 0, trained.stderr[-3000:]
        (run,) = (tmp_path / "runs").iterdir()
        fingerprint = json.loads((run / "fingerprint.json").read_text())
        task = server.task(fingerprint["clearml_task_id"])
        assert configuration(task, "dataset") == {
            "id": dataset_id,
            "split_manifest_sha256": fingerprint["split_manifest_sha256"],
        }
        source.unlink()  # no source reachable: only the Dataset can give the split now
        queued = sst("replay", task["id"], "--queue", "sweeps", env=env, cwd=kit)
        assert queued.returncode == 0, (queued.stdout[-2000:], queued.stderr[-3000:])
        assert queued.stdout.strip().endswith(
            f"BIT-IDENTICAL (weights sha256 {fingerprint['weights_sha256']})"
        )
        # the task's own console, as the agent streamed it to the server (the agent's local log
        # file can lag behind the task's end)
        said = f"fetched from ClearML Dataset {dataset_id}"
        (clone,) = [t for t in server.tasks.docs.docs.values() if t.get("parent") == task["id"]]
        logs = [e.get("msg", "") for e in server.events.of(clone["id"], "log")]
        assert any(said in line for line in logs), logs[-20:]
    finally:
        shutil.rmtree(kit / folder, ignore_errors=True)


# -- D: a hyperparameter search on the queue --------------------------------------------------


def test_a_search_on_a_queue_is_clearmls_optimizer_driving_trials_through_an_agent(
    server: ClearmlServer, swept: dict[str, Any], kit: Path, tmp_path: Path
) -> None:
    """`sst tune --queue`: ClearML's HyperParameterOptimizer with OptimizerOptuna clones the
    template per trial (with the command line's overrides: each trial stops early), the sweep's
    agent trains them, the objective is read back from the server, and it is the best validation
    of the run the agent wrote (what `sst tune --local` reads). (The best trial is a run task like
    any other: a sweep child's replay is tested above, the best local trial's in test_tune.)"""
    from sst.run.folder import load_run_config
    from sst.run.trainer import MONITOR
    from sst.verbs.tune import best_validation

    env = {**swept["env"], "SST_WAIT_POLL": "1"}
    space = tmp_path / "space.yaml"
    space.write_text(
        "trials: 2\nseed: 1\nspace:\n  train.lr: {log_uniform: [1.0e-4, 1.0e-2]}\n"
        "  model.pooling: {choice: [mean, cls]}\n"
    )
    base = swept["home"] / "base.yaml"
    early = ["train.early_stop=1", "train.early_stop_delta=1.0", "train.sampling=random:3"]
    done = sst("tune", "--space", str(space), "--config", str(base), "--queue", "sweeps", *early,
               env=env, cwd=kit)  # fmt: skip
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    (record,) = (swept["home"] / "runs" / "tunes").glob("*/tune.json")
    tune = json.loads(record.read_text())
    (search,) = [t for t in server.tasks.docs.docs.values() if t["name"] == tune["tune_id"]]
    assert search["type"] == "optimizer" and search["status"] in ("completed", "stopped")
    trials = tune["trials"]
    assert [t["state"] for t in trials] == ["completed", "completed"], done.stdout[-3000:]
    runs_by_task = {
        json.loads(f.read_text())["clearml_task_id"]: f.parent
        for f in (swept["home"] / "runs").glob("*/fingerprint.json")
    }
    for trial in trials:
        task = server.task(trial["task_id"])
        assert task["parent"] == search["id"] and tune["tune_id"] in task["tags"]
        params = {n: p["value"] for n, p in task["hyperparams"]["config"].items()}
        assert float(params["train/lr"]) == trial["params"]["train.lr"]
        assert params["model/pooling"] == trial["params"]["model.pooling"]
        assert params["train/early_stop"] == "1" and trial["stopped"] == "early"
        run = runs_by_task[task["id"]]  # what the agent trained: the trial's values
        cfg = load_run_config(run)
        assert (cfg.train.lr, cfg.model.pooling, cfg.train.early_stop) == (
            trial["params"]["train.lr"],
            trial["params"]["model.pooling"],
            1,
        )
        assert "early-stopped" in task["tags"]
        # the objective: the highest val root macro-F1 the task reported, as its run logged it
        reported = [
            e["value"]
            for e in server.events.of(task["id"], "training_stats_scalar")
            if (e["metric"], e["variant"]) == ("val_root", "macro_f1")
        ]
        assert len(reported) == 2 and trial["value"] == max(reported)
        # what --local reads: the run's TensorBoard scalars hold it as a float32
        assert trial["value"] == pytest.approx(best_validation(run), 1e-6)
    best = max(trials, key=lambda t: t["value"])
    assert f"best: trial {best['number']} ({best['task_id']})" in done.stdout
    # the printed leaderboard: best first, each trial's values and how it ended
    lines = done.stdout.splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.split()[:1] == [MONITOR])
    assert lines[header + 2].split()[:4] == [str(best["number"]), f"{best['value']:.4g}",
                                             "completed", "early"]  # fmt: skip


@pytest.fixture(scope="module")
def offline_run(
    kit: Path, tiny_model: Path, tiny_split: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """A run trained with no server (offline session zip) from the kit's clone."""
    home = tmp_path_factory.mktemp("offline")
    env = clean_environment() | {
        "CLEARML_OFFLINE_MODE": "1",
        "CLEARML_CACHE_DIR": str(home / "clearml-cache"),
        "SST_CACHE_DIR": str(home / "sst-cache"),
        "PYTHONPATH": str(kit),
    }
    runs = home / "runs"
    done = sst("train", *train_overrides(tiny_model, tiny_split, runs), env=env, cwd=kit)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    (session,) = (home / "clearml-cache" / "offline").glob("*.zip")
    return {"run": run, "session": session}


@pytest.mark.parametrize("form", ["zip", "folder"])
def test_an_offline_session_uploads_with_its_run(
    server: ClearmlServer, offline_run: dict[str, Any], kit: Path, tmp_path: Path, form: str
) -> None:
    """`sst upload` through the SDK's own Task.import_offline_session, zip or folder: the task
    holds the parameters, the script and the run's files; no model names a path of this
    machine."""
    session = offline_run["session"]
    if form == "folder":
        import zipfile

        session = tmp_path / session.stem
        zipfile.ZipFile(offline_run["session"]).extractall(session)
    env = environment(server, tmp_path / "home", kit)
    done = sst("upload", str(session), "--run", str(offline_run["run"]), env=env, cwd=kit)
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("task ")]
    task_id = line.split()[1].rstrip(":")
    task = server.task(task_id)
    fingerprint = json.loads((offline_run["run"] / "fingerprint.json").read_text())
    assert configuration(task, "fingerprint") == fingerprint
    assert task["hyperparams"]["config"]["train/seed"]["value"] == "0"
    assert task["script"]["entry_point"] == "-m sst.cli train"
    assert task["script"]["version_num"] == fingerprint["git"]["commit"]
    keys = {a["key"] for a in task["execution"]["artifacts"].values()}
    assert {"weights.safetensors", "fingerprint.json", "predictions.tsv"} <= keys
    # its weights are registered (by the artifact's URI, never a path on the machine it ran on)
    model = _registered(server, task_id)
    assert task["models"]["input"] == [] and model["tags"] == ["run"]
    assert json.loads(model["metadata"]["fingerprint"]["value"]) == fingerprint
    assert f"sst predict --model {model['id']}" in done.stdout
    assert str(offline_run["run"]) not in json.dumps(server.models.docs.docs)
    # what was uploaded serves a colleague: predict from the new task
    other = environment(server, tmp_path / "colleague")
    predicted = sst("predict", "--task", task_id, "fine", env=other, cwd=kit)
    assert predicted.returncode == 0, predicted.stderr[-3000:]


# -- B6: what goes wrong, in one line ---------------------------------------------------------


def test_an_unreachable_server_is_one_line_and_nothing_local_is_lost(
    server: ClearmlServer, kit: Path, tiny_model: Path, tiny_split: Path, tmp_path: Path
) -> None:
    env = environment(server, tmp_path / "home", kit)
    env["CLEARML_API_HOST"] = f"http://127.0.0.1:{closed_port()}"  # nothing listens
    runs = tmp_path / "runs"
    error = one_line_error(
        sst("train", *train_overrides(tiny_model, tiny_split, runs), env=env, cwd=kit), "train"
    )
    assert "does not answer" in error and "CLEARML_OFFLINE_MODE=1" in error
    assert not runs.exists() or not any(runs.iterdir())  # no half-written run folder
    error = one_line_error(sst("replay", "0" * 32, env=env, cwd=kit), "replay")
    assert "does not answer" in error


def test_doctor_names_the_server_and_whether_it_answers_never_the_keys(
    server: ClearmlServer, kit: Path, tmp_path: Path
) -> None:
    env = environment(server, tmp_path / "home", kit)
    keys = (env["CLEARML_API_ACCESS_KEY"], env["CLEARML_API_SECRET_KEY"])
    done = sst("doctor", env=env, cwd=kit)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr[-2000:]
    host = re.escape(env["CLEARML_API_HOST"].rstrip("/"))
    assert re.search(
        rf"^clearml +online +{host} \(CLEARML_API_HOST is set\); task links ", out, re.M
    )
    assert re.search(
        r"^  credentials +found +CLEARML_API_ACCESS_KEY and CLEARML_API_SECRET_KEY", out, re.M
    )
    assert re.search(r"^  server +answers ", out, re.M), out
    assert not any(key in out + done.stderr for key in keys)
    env["CLEARML_API_SECRET_KEY"] = "not-the-secret"
    out = sst("doctor", env=env, cwd=kit).stdout
    assert re.search(
        r"^  server +FAILED +the ClearML server at \S+ refused the credentials", out, re.M
    )
    env["CLEARML_API_HOST"] = f"http://127.0.0.1:{closed_port()}"
    out = sst("doctor", env=env, cwd=kit).stdout
    assert re.search(r"^  server +FAILED +the ClearML server at \S+ does not answer", out, re.M), (
        out
    )
    env["CLEARML_OFFLINE_MODE"] = "1"
    out = sst("doctor", env=env, cwd=kit).stdout
    assert re.search(r"^clearml +offline +CLEARML_OFFLINE_MODE is set: ", out, re.M), out


def test_wrong_credentials_and_an_unknown_task_are_one_line(
    server: ClearmlServer, kit: Path, tmp_path: Path
) -> None:
    env = environment(server, tmp_path / "home", kit)
    error = one_line_error(sst("predict", "--task", "f" * 32, "x", env=env, cwd=kit), "predict")
    assert f"no task {'f' * 32}" in error
    env["CLEARML_API_SECRET_KEY"] = "not-the-secret"
    error = one_line_error(sst("predict", "--task", "f" * 32, "x", env=env, cwd=kit), "predict")
    assert "refused the credentials" in error and "CLEARML_API_SECRET_KEY" in error


def test_a_replay_on_the_queue_that_fails_says_so_with_its_log(
    server: ClearmlServer, trained: dict[str, Any], kit: Path, tmp_path: Path
) -> None:
    """An agent whose machine cannot run the task (here: an SST_CPU_ISA it refuses)."""
    server.queues.make("broken", [])
    env = trained["env"]
    agent = Agent("broken", {**env, "SST_CPU_ISA": "avx9000"}, tmp_path / "agent")
    try:
        done = sst("replay", trained["task"], "--queue", "broken", env=env, cwd=kit)
    finally:
        agent.stop()
    error = one_line_error(done, "replay")
    assert "ended failed" in error
    assert "  | " in done.stderr and "SST_CPU_ISA" in done.stderr  # the tail of its log


# -- the template, the agent's parameters, a split's datasets ---------------------------------


def test_a_template_of_another_commit_is_not_reused(online: ClearmlServer) -> None:
    """The server ORs a tag list unless it starts with "__$all": an older commit's template (or
    one for another preset) shares the "sst-template" tag and must not be cloned."""
    from sst.tracking.server import sweep_template

    repo = "https://git.example/sst.git"
    older = sweep_template("sst-templates", repo=repo, commit="a" * 40, base_config="c/demo.yaml")
    other = sweep_template("sst-templates", repo=repo, commit="c" * 40, base_config="c/full.yaml")
    # the same 12-digit prefix (the tag), another commit: only the recorded commit tells them apart
    prefix = sweep_template(
        "sst-templates", repo=repo, commit="c" * 12 + "d" * 28, base_config="c/demo.yaml"
    )
    new = sweep_template("sst-templates", repo=repo, commit="c" * 40, base_config="c/demo.yaml")
    assert len({older.id, other.id, prefix.id, new.id}) == 4
    assert online.task(new.id)["script"]["version_num"] == "c" * 40
    again = sweep_template("sst-templates", repo=repo, commit="c" * 40, base_config="c/demo.yaml")
    assert again.id == new.id
    # the same commit with uncommitted changes: another template, carrying them for the agent
    dirty = dict(repo=repo, commit="c" * 40, base_config="c/demo.yaml", diff="--- a\n+++ b\n")
    patched = sweep_template("sst-templates", **dirty)
    assert patched.id != new.id and online.task(patched.id)["script"]["diff"] == dirty["diff"]
    assert sweep_template("sst-templates", **dirty).id == patched.id


def test_under_an_agent_the_tasks_parameters_are_the_config(
    server: ClearmlServer, kit: Path, tmp_path: Path
) -> None:
    """`sst` executed by an agent (CLEARML_TASK_ID set when it starts) takes the task's
    ``config/…`` parameters — a sweep line's overrides, a web-UI edit — over the command line's;
    what a run recorded about itself (fingerprint) is not an input. Run by hand: none."""
    from tests.clearml_server.http import Call

    project = server.projects.create(Call("projects.create", {"name": "agent"}, "u", None))
    task_id = server.tasks.create(
        Call("tasks.create", {"name": "line", "type": "training", **project}, "u", None)
    )["id"]
    params = {
        "config/train/lr": "3e-5",
        "config/model/pooling": "cls",
        "config/model/revision": "",  # empty: not an override
        "fingerprint/seed": "7",  # what a run recorded about itself: not an input
    }
    items = [
        {"section": k.split("/", 1)[0], "name": k.split("/", 1)[1], "value": v}
        for k, v in params.items()
    ]
    server.tasks.edit_hyper_params(Call("", {"task": task_id, "hyperparams": items}, "u", None))
    env = environment(server, tmp_path / "agent-side", kit)
    by_hand = sst("config", "train.lr=1e-3", "train.seed=3", env=env, cwd=kit)
    assert json.loads(by_hand.stdout)["train"]["lr"] == 1e-3
    env["CLEARML_TASK_ID"] = task_id
    remote = sst("config", "train.lr=1e-3", "train.seed=3", env=env, cwd=kit)
    assert remote.returncode == 0, remote.stderr[-3000:]
    cfg = json.loads(remote.stdout)
    assert cfg["train"]["lr"] == 3e-5 and cfg["train"]["seed"] == 3
    assert cfg["model"]["pooling"] == "cls" and cfg["model"]["revision"] == "main"
    env["CLEARML_OFFLINE_MODE"] = "1"  # offline forced: never a server's parameters
    assert (
        json.loads(sst("config", "train.lr=1e-3", env=env, cwd=kit).stdout)["train"]["lr"] == 1e-3
    )


def test_a_split_made_online_is_a_task_and_two_datasets(
    online: ClearmlServer, kit: Path, tmp_path: Path
) -> None:
    """`sst split` with a server: a data_processing task, the raw files as one ClearML Dataset
    and the split as its child, read back by the SDK's own Dataset."""
    from clearml import Dataset

    from tests.conftest import split_config, synthetic_rows, write_kaggle

    source = write_kaggle(tmp_path / "train.tsv", synthetic_rows(60))
    preset = split_config(tmp_path, source)
    env = environment(online, tmp_path / "home", kit)
    done = sst("split", "--config", str(preset), env=env, cwd=kit)
    assert done.returncode == 0, done.stderr[-3000:]
    dataset_id = (tmp_path / "out" / ".clearml_dataset_id").read_text().strip()
    split = Dataset.get(dataset_id=dataset_id)
    listed = set(split.list_files())
    assert {"train.tsv", "val.tsv", "test.tsv", "manifest.json"} <= listed
    assert "plots/class_distribution.png" in listed  # at its path in the split folder
    (raw_id,) = split.get_dependency_graph()[dataset_id]  # its one parent
    raw = Dataset.get(dataset_id=raw_id)
    assert raw.list_files() == ["train.tsv"]
    local = Path(split.get_local_copy())  # downloaded from the file server, as stored
    assert (local / "manifest.json").read_bytes() == (
        tmp_path / "out" / "manifest.json"
    ).read_bytes()
    # what an agent does with a task's recorded Dataset: refused unless it is the recorded split
    from sst.errors import SstError
    from sst.tracking.server import fetch_split

    manifest = (tmp_path / "out" / "manifest.json").read_bytes()
    with pytest.raises(SstError, match="the task recorded"):
        fetch_split({"id": dataset_id, "split_manifest_sha256": "0" * 64}, tmp_path / "f")
    assert not (tmp_path / "f").exists()
    fetch_split(
        {"id": dataset_id, "split_manifest_sha256": hashlib.sha256(manifest).hexdigest()},
        tmp_path / "f",
    )
    assert (tmp_path / "f" / "plots" / "class_distribution.png").is_file()
    assert (tmp_path / "f" / ".clearml_dataset_id").read_text().strip() == dataset_id
    (task,) = [t for t in online.tasks.docs.docs.values() if t["name"] == "split tiny"]
    assert task["type"] == "data_processing" and task["status"] == "completed"
