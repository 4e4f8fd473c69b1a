"""Share a task, re-execute it elsewhere: what a task records for an agent, re-run from a fresh
clone as an agent would; a task link uploaded, then replayed, verified and used to predict.

The agent's side is done by the agent's steps with real git and a real `sst` process: clone
the recorded repository, check out the recorded commit, apply the recorded patch, run the
recorded entry point with the task's parameters. The server's side (import, artifacts, links,
replays and predictions from a link) runs against the API server of tests/clearml_server, with
the real SDK and agent: tests/test_online.py."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sst.cli import main
from sst.run.folder import Run
from sst.tracking import agent
from sst.tracking.agent import parameters_to_overrides, remote_problem
from sst.tracking.server import task_id_from

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def shared_run(tracked_run: dict[str, Any]) -> dict[str, Any]:
    return tracked_run


def agent_clone(script: dict[str, Any], dest: Path) -> Path:
    """What clearml-agent does with a task's script section: clone the repository, check out
    the commit, apply the uncommitted changes. The recorded repository when it is reachable
    from here (a local path), else this checkout (its remote is what CI has)."""
    repo = script["repository"] if Path(script["repository"] or "-").is_dir() else str(REPO)
    subprocess.run(["git", "clone", "-q", repo, str(dest)], check=True)
    subprocess.run(["git", "-C", str(dest), "checkout", "-q", script["version_num"]], check=True)
    if script["diff"]:
        subprocess.run(
            ["git", "-C", str(dest), "apply", "--whitespace=nowarn", "-"],
            input=script["diff"].encode(),
            check=True,
        )
    return dest / script["working_dir"]


def test_a_training_task_reruns_from_a_fresh_clone_as_an_agent_would(
    shared_run: dict[str, Any], tmp_path: Path
) -> None:
    script = shared_run["task"]["script"]
    assert script["entry_point"] == "-m sst.cli train"  # no path of this machine in it
    assert (
        script["version_num"]
        == json.loads((shared_run["run"] / "fingerprint.json").read_text())["git"]["commit"]
    )
    workdir = agent_clone(script, tmp_path / "clone")
    module = shlex.split(script["entry_point"])[1]
    assert (workdir / (module.replace(".", "/") + ".py")).is_file()  # the entry exists there
    params = {
        f"config/{key}": item["value"]
        for key, item in shared_run["task"]["hyperparams"]["config"].items()
    }
    env = {**agent.child_environment(), "PYTHONPATH": str(workdir), "CLEARML_OFFLINE_MODE": "1"}
    env["CLEARML_CACHE_DIR"] = str(tmp_path / "agent-clearml")
    done = subprocess.run(
        [sys.executable, *shlex.split(script["entry_point"]), *parameters_to_overrides(params)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"weights sha256 {Run(shared_run['run']).fingerprint['weights_sha256']}" in done.stdout
    # the code that ran was the clone's: its git state is the clone's (origin = where it came from)
    rerun = Path(done.stdout.split("run      ", 1)[1].split("  (", 1)[0])
    assert Run(rerun).fingerprint["git"]["remote"] == (
        script["repository"] if Path(script["repository"] or "-").is_dir() else str(REPO)
    )


def test_every_task_names_its_entry_point(local_sweep) -> None:
    sessions = [
        json.loads(p.read_text()) for p in local_sweep["clearml"].glob("offline/*/task.json")
    ]
    kinds = sorted(t["type"] for t in sessions)
    # each run, the sweep, and its leaderboard
    assert kinds == ["controller", "qc", "training", "training"], kinds
    for task in sessions:
        entry = shlex.split(task["script"]["entry_point"])
        assert entry[:2] == ["-m", "sst.cli"] and task["script"]["working_dir"] == "."
        if task["type"] == "training":
            assert entry[2:] == ["train"]
        elif task["type"] == "qc":
            assert entry[2:5] == ["report", "--by", "macro_f1"]
        else:
            assert entry[2] == "sweep" and "--local" in entry
            assert entry[entry.index("--models") + 1] == str(local_sweep["models"])


@pytest.mark.parametrize(
    ("remote", "problem"),
    [
        (None, "has no git remote"),
        ("/work/main", "is a local path"),
        ("../sst", "is a local path"),
        ("https://github.com/org/sst.git", None),
        ("git@github.com:org/sst.git", None),
        ("ssh://git@host/org/sst.git", None),
    ],
)
def test_a_remote_others_cannot_clone_is_named(remote: str | None, problem: str | None) -> None:
    got = remote_problem(remote)
    assert (got is None) if problem is None else (problem in got and "(fix: git remote" in got)


def test_task_links_and_ids() -> None:
    tid = "0123456789abcdef0123456789abcdef"
    assert task_id_from(tid) == tid
    assert task_id_from(f"https://app.clear.ml/projects/p1/experiments/{tid}/output/log") == tid
    assert task_id_from(f"https://clearml.lab:8080/projects/*/tasks/{tid}") == tid
    assert task_id_from("runs/demo-1") is None and task_id_from(tid[:-1]) is None


def test_upload_needs_a_server(shared_run: dict[str, Any], capsys) -> None:
    assert main(["upload", str(shared_run["session"])]) == 2
    assert "no ClearML server is configured" in capsys.readouterr().err


def test_agent_module_names_what_travels() -> None:
    assert agent.overrides_to_parameters(["train.lr=3e-5"]) == {"config/train/lr": "3e-5"}
    assert agent.parameters_to_overrides({"config/train/lr": "3e-5", "Args/x": "1"}) == [
        "train.lr=3e-5"
    ]
