"""The images under a clearml-agent, on the real engine (docker tier, scripts/ci-docker.sh).

D: the task container command is built by clearml-agent's own code (``Worker._get_docker_config_cmd``
with the image and arguments a task recorded) and run: the container starts bash, finds git and
the locked venv, and reaches ``python -m clearml_agent execute``, which stops at the absent
server, the expected end here. The daemon's image drives the engine through the socket, so it
can start task containers. People's ``docker run sst:cpu <verb>`` still runs sst.

E: the agent's job by the agent's steps, without a server: a host run's offline session; in a
fresh task container, ``git clone`` of the recorded commit from a bare repository over file://,
the recorded patch applied, the data mounted at another path, the recorded entry point run with
the recorded parameters; then ``sst verify`` against the host run.

B3 (issue 23): the same task run by docker-mode agents against the API server of
tests/clearml_server on the host: ``clearml-agent daemon --docker`` on the host starting the
task's recorded image, and the daemon the Colab bootstrap starts in docker mode (``sst:agent``
with the host's socket, its ~/.clearml a host folder named by CLEARML_AGENT_DOCKER_HOST_MOUNT, so
the task container gets the agent's config and credentials). Each is a ``sst replay --queue``
whose verdict is the host run's weights, BIT-IDENTICAL.

    SST_IMAGE=sst:cpu SST_AGENT_IMAGE=sst:agent pytest -m docker tests/test_agent_image.py
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sst.tracking.agent import child_environment, parameters_to_overrides
from tests.conftest import (
    build_tiny_bert,
    configuration,
    docker_logs_until,
    synthetic_rows,
    train_overrides,
    write_kaggle,
)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "colab"))
import bootstrap  # noqa: E402

NO_SERVER = "http://127.0.0.1:9"  # nothing listens: the server is what this machine lacks

pytestmark = pytest.mark.docker


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)  # type: ignore[call-overload]


def test_the_entrypoint_runs_sst_verbs_and_any_program(docker: str, image: str) -> None:
    verb = _run([docker, "run", "--rm", image, "config"])
    assert verb.returncode == 0 and "train.seed (int, default 0)" in verb.stdout, verb.stderr
    shell = _run(
        [docker, "run", "--rm", image, "bash", "-c", "git --version; echo $HF_HUB_OFFLINE."]
    )
    assert shell.returncode == 0 and shell.stdout.startswith("git version "), shell.stderr
    assert shell.stdout.splitlines()[1] == "."  # hub models may download on an agent


@pytest.fixture(scope="module")
def host_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tracked tiny run on the host: data under ${SST_DATA}, the split made by `sst train`
    itself (relative split folder), recorded by an offline ClearML session."""
    tmp = tmp_path_factory.mktemp("agent")
    os.chmod(tmp, 0o755)
    rows = synthetic_rows(200)
    data = tmp / "data-here"
    data.mkdir()
    write_kaggle(data / "train.tsv", rows)
    model = build_tiny_bert(tmp / "model", [r[2] for r in rows])
    split = f"splits/agent-e2e-{os.getpid()}"
    cfg = tmp / "train.yaml"
    cfg.write_text(
        "name: agent-e2e\n"
        'data: {format: kaggle, sources: ["${SST_DATA}/train.tsv"]}\n'
        f"split: {{n_seeds: 50, out: {split}}}\n"
        f"model: {{name: {model}, max_length: 32}}\n"
        f"train: {{split: {split}, runs_dir: {tmp / 'runs'}, sampling: 'stratified:1,random:1', "
        "batch_size: 16, threads: 1, lr: 1.0e-3}\n"
        "tracking: {monitor_resources: false}\n"
    )
    env = {**child_environment(), "SST_DATA": str(data), "CLEARML_OFFLINE_MODE": "1"}
    env["CLEARML_CACHE_DIR"] = str(tmp / "clearml")
    try:
        done = _run([sys.executable, "-m", "sst.cli", "train", "-c", str(cfg)], cwd=REPO, env=env)
    finally:
        shutil.rmtree(REPO / split, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    sessions = [
        json.loads(zipfile.ZipFile(z).read("task.json")) for z in tmp.glob("clearml/offline/*.zip")
    ]
    (task,) = [t for t in sessions if t["type"] == "training"]  # the other made the split
    (run,) = (tmp / "runs").iterdir()
    subprocess.run(["chmod", "-R", "a+rwX", str(tmp)], check=True)
    return {"tmp": tmp, "task": task, "run": run, "data": data, "model": model}


def agent_task_command(image: str, arguments: str, task_id: str) -> list[str]:
    """The `docker run` a docker-mode clearml-agent issues for a task, built by the agent's own
    code from the task's recorded image and docker arguments (no server is contacted)."""
    from clearml_agent.commands.worker import Worker

    worker = Worker(only_load_config=True)
    # as the daemon does: `clearml-agent daemon --docker <image> <args>` (get_docker_config_cmd),
    # then the function it returns with the task's container (run_tasks_loop)
    _, docker_image_func = worker.get_docker_config_cmd([f"{image} {arguments}"])
    cmd: list[str] = docker_image_func(
        docker_image=image,
        docker_arguments=shlex.split(arguments),
        install_opencv_libs=False,  # agent.docker_install_opencv_libs: the kit needs none
        force_current_version=True,  # the daemon's --force-current-version
        # agent.extra_docker_shell_script: evidence of what the container found
        extra_shell_script="git --version ; command -v python ; python -c 'import sst' ; ",
    )
    # what the daemon appends (clearml_agent/commands/worker.py, run_tasks_loop)
    cmd[-1] += f"execute --disable-monitoring  --id {task_id}"
    return cmd


def test_a_task_container_as_the_agent_starts_it(
    docker: str, image: str, host_run: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    container = configuration(host_run["task"], "container")
    for name, value in {
        "CLEARML_API_HOST": NO_SERVER,
        "CLEARML_API_ACCESS_KEY": "sst-ci-agent-key",
        "CLEARML_API_SECRET_KEY": "sst-ci-agent-secret",
        "NVIDIA_VISIBLE_DEVICES": "none",  # a CPU machine: no `--gpus all`
        "HOME": str(tmp_path),  # the agent's caches and temporary config go here
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CLEARML_OFFLINE_MODE", raising=False)
    arguments = container["arguments"] + " -e PIP_NO_INDEX=1"  # no index in CI: fail fast
    cmd = agent_task_command(image, arguments, "0" * 32)
    assert cmd[:3] == ["docker", "run", "-t"] and "--gpus" not in cmd
    assert cmd[cmd.index(image) + 1 : cmd.index(image) + 3] == ["bash", "-c"]
    name = "sst-agent-task-test"
    _run([docker, "rm", "-f", name])
    try:  # detached: the agent inside retries the absent server for minutes
        started = _run([docker, "run", "-d", "--name", name, *cmd[2:]])
        assert started.returncode == 0, started.stderr
        out = docker_logs_until(docker, name, r"port=9\).*auth\.login", timeout=300)
    finally:
        _run([docker, "rm", "-f", name])
    assert "git version " in out, out[-3000:]
    assert "\n/opt/venv/bin/python\n" in out, out[-3000:]  # the locked venv; sst imports
    assert "ModuleNotFoundError" not in out, out[-3000:]
    # the agent the image's lock holds (--force-current-version), then `execute` at the server
    assert "Requirement already satisfied: clearml-agent==3.0.3" in out, out[-3000:]
    assert "Using custom configuration file from env var: /tmp/clearml.conf" in out, out[-3000:]
    assert re.search(r"host='127\.0\.0\.1', port=9\).*?/auth\.login", out), out[-3000:]


def test_the_daemon_image_can_start_task_containers(
    docker: str, image: str, agent_image: str
) -> None:
    sock = ["-v", "/var/run/docker.sock:/var/run/docker.sock", "--entrypoint", "docker"]
    inner = _run(
        [docker, "run", "--rm", *sock, agent_image, "run", "--rm", image, "bash", "-c", "echo up"]
    )
    assert inner.returncode == 0 and inner.stdout.strip() == "up", inner.stderr


def test_an_agent_reexecutes_the_task_from_a_fresh_clone_elsewhere(
    docker: str, image: str, host_run: dict, tmp_path: Path
) -> None:
    tmp = host_run["tmp"]
    script = host_run["task"]["script"]
    bare = tmp / "sst.git"
    if not bare.exists():
        _run(["git", "clone", "-q", "--bare", str(REPO), str(bare)], check=True)
    (tmp / "patch.diff").write_text(script["diff"])
    params = {
        f"config/{k}": v["value"] for k, v in host_run["task"]["hyperparams"]["config"].items()
    }
    overrides = " ".join(shlex.quote(o) for o in parameters_to_overrides(params))
    steps = " && ".join(
        [
            "git clone -q file:///srv/sst.git /tmp/agent/sst",
            "cd /tmp/agent/sst",
            f"git checkout -q {script['version_num']}",
            "{ [ ! -s /srv/patch.diff ] || git apply /srv/patch.diff; }",
            f"cd {script['working_dir']}",
            f"python {script['entry_point']} {overrides}",
        ]
    )
    mounts = [
        *("-v", f"{bare}:/srv/sst.git:ro", "-v", f"{tmp / 'patch.diff'}:/srv/patch.diff:ro"),
        *("-v", f"{host_run['data']}:/data/elsewhere:ro", "-e", "SST_DATA=/data/elsewhere"),
        *(
            "-v",
            f"{host_run['model']}:{host_run['model']}:ro",
            "-v",
            f"{tmp / 'runs'}:{tmp / 'runs'}",
        ),
        *("-e", "CLEARML_OFFLINE_MODE=1", "-e", "HOME=/tmp"),
    ]
    done = _run([docker, "run", "--rm", "--user", "root", *mounts, image, "bash", "-c", steps])
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    rerun = Path(done.stdout.split("run      ", 1)[1].split("  (", 1)[0])
    verdict = _run([sys.executable, "-m", "sst.cli", "verify", str(host_run["run"]), str(rerun)])
    lines = verdict.stdout.strip().splitlines()
    print("\n".join(lines))  # the closing note quotes it
    assert lines[-1].startswith(("BIT-IDENTICAL", "DIFFERENT")), verdict.stderr
    if lines[-1].startswith("DIFFERENT"):  # only host-vs-image fields may explain it
        named = [line for line in lines if line.startswith("  ")]
        assert named and all("expected to break" in line for line in named), lines
        assert not any(k in verdict.stdout for k in ("config_sha256", "split_manifest", "seed:"))


# -- B3: the same task run by docker-mode agents, against the API server ----------------------


@pytest.fixture(scope="module")
def online_task(
    docker: str, image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict]:
    """The API server of tests/clearml_server, a clone of the kit served over file://, and a tiny
    run trained online on the host, recorded with this image (SST_IMAGE)."""
    from tests.clearml_server import ClearmlServer
    from tests.online import clone_kit, environment, sst

    base = tmp_path_factory.mktemp("docker-online")
    os.chmod(base, 0o755)
    server = ClearmlServer(base / "server").start()
    kit = clone_kit(base / "kit")
    texts = [r[2] for r in synthetic_rows(200)]
    model = build_tiny_bert(base / "tiny-bert", texts)
    source = write_kaggle(base / "data.tsv", synthetic_rows(200))
    split_cfg = base / "split.yaml"
    split_cfg.write_text(
        f'name: tiny\ndata:\n  format: kaggle\n  sources: ["{source}"]\nsplit:\n'
        f"  n_seeds: 50\n  out: {base / 'split'}\n"
    )
    env = environment(server, base / "home", kit) | {"SST_IMAGE": image}
    made = sst("split", "-c", str(split_cfg), "tracking.enabled=false", env=env, cwd=kit)
    assert made.returncode == 0, made.stderr[-2000:]
    over = train_overrides(model, base / "split", base / "runs")
    done = sst("train", *over, env=env, cwd=kit)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = (base / "runs").iterdir()
    fingerprint = json.loads((run / "fingerprint.json").read_text())
    # what task containers mount at the same paths: the kit's bare repository, model, data
    mounts = [base / "kit" / "sst.git", model, base / "split", base / "runs"]
    for path in mounts:
        subprocess.run(["chmod", "-R", "a+rwX", str(path)], check=True)
    yield {
        "server": server,
        "kit": kit,
        "env": env,
        "task": fingerprint["clearml_task_id"],
        "weights": fingerprint["weights_sha256"],
        "mounts": " ".join(f"-v {p}:{p}" for p in mounts),
        "base": base,
    }
    server.stop()
    assert server.unimplemented() == [], server.unimplemented()


def test_a_docker_mode_agent_reruns_the_task_in_its_image(
    docker: str, image: str, online_task: dict
) -> None:
    """`clearml-agent daemon --docker`: the task runs in the image it recorded; its weights are
    the host run's."""
    from tests.online import Agent, sst

    server, env = online_task["server"], online_task["env"]
    server.queues.make("docker", [])
    agent_env = env | {
        "CLEARML_AGENT_EXTRA_DOCKER_ARGS": f"--network host {online_task['mounts']}",
        "CLEARML_DOCKER_BIN": docker,
    }
    agent = Agent("docker", agent_env, online_task["base"] / "agent", docker=True)
    try:
        done = sst(
            "replay", online_task["task"], "--queue", "docker", env=env, cwd=online_task["kit"]
        )
    finally:
        agent.stop()
    assert done.returncode == 0, (
        done.stdout[-2000:],
        done.stderr[-3000:],
        agent.log.read_text()[-3000:],
    )
    assert done.stdout.strip().endswith(f"BIT-IDENTICAL (weights sha256 {online_task['weights']})")
    (clone,) = [t for t in server.tasks.docs.docs.values() if t["name"].startswith("replay of")]
    assert clone["container"]["image"] == image


@pytest.mark.parametrize("host_mount", [True, False], ids=["host-mount", "without"])
def test_the_colab_docker_daemon_hands_task_containers_its_credentials(
    docker: str,
    image: str,
    agent_image: str,
    online_task: dict,
    monkeypatch: pytest.MonkeyPatch,
    host_mount: bool,
) -> None:
    """The daemon the Colab bootstrap starts in docker mode (sst:agent, the host's socket): the
    config it mounts into a task container is a host path (CLEARML_AGENT_DOCKER_HOST_MOUNT), so
    the task reaches the server with the credentials and completes, its weights the host run's.
    Without the host mount the engine resolves the daemon's in-container path on the host and
    the task container gets an empty folder for its config: the task fails."""
    from tests.online import sst

    server, env = online_task["server"], online_task["env"]
    queue = f"colab-docker-{'mount' if host_mount else 'bare'}"
    server.queues.make(queue, [])
    for name in bootstrap.CREDENTIALS:
        monkeypatch.setenv(name, env[name])
    monkeypatch.setattr(bootstrap, "AGENT_HOME", online_task["base"] / "agent-home")
    p = bootstrap.plan(queue, "docker", image=image, agent_image=agent_image, docker=docker)
    (cmd,) = p.commands
    at = cmd.index("--entrypoint")  # what this test adds: the mounts its paths need
    cmd[at:at] = ["-e", f"CLEARML_AGENT_EXTRA_DOCKER_ARGS={online_task['mounts']}"]
    if not host_mount:  # the daemon as the bootstrap ran it before the mend
        mount = next(a for a in cmd if a.startswith("CLEARML_AGENT_DOCKER_HOST_MOUNT="))
        at = cmd.index(mount)
        del cmd[at - 1 : at + 1]
        at = cmd.index(mount.partition("=")[2])
        del cmd[at - 1 : at + 1]
    name = cmd[cmd.index("--name") + 1]
    subprocess.run([docker, "rm", "-f", name], capture_output=True)
    try:
        bootstrap.execute(p, bootstrap.credentials())
        done = sst("replay", online_task["task"], "--queue", queue, env=env, cwd=online_task["kit"])
        logs = subprocess.run([docker, "logs", name], capture_output=True, text=True)
    finally:
        subprocess.run([docker, "rm", "-f", name], capture_output=True)
    assert env["CLEARML_API_SECRET_KEY"] not in logs.stdout + logs.stderr
    if not host_mount:
        assert done.returncode == 2 and "ended failed" in done.stderr, done.stderr[-3000:]
        return
    assert done.returncode == 0, (done.stderr[-3000:], (logs.stdout + logs.stderr)[-3000:])
    assert done.stdout.strip().endswith(f"BIT-IDENTICAL (weights sha256 {online_task['weights']})")
