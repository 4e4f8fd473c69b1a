"""The Colab bootstrap: the plan in both modes, credentials never printed, a real locked install."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "colab"))
import bootstrap  # noqa: E402

SECRET = "s3cr3t-value-never-printed"


@pytest.fixture
def creds(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in bootstrap.CREDENTIALS:
        monkeypatch.setenv(name, SECRET if "SECRET" in name else f"https://{name.lower()}.example")


def test_venv_plan_installs_the_lock_with_hashes(tmp_path: Path, creds, monkeypatch) -> None:
    _machine(monkeypatch, tmp_path, gpu=False, py311=True)
    p = bootstrap.plan("colab", "venv", venv=tmp_path / "v")
    assert p.mode == "venv" and p.reason == "--mode venv"
    venv, install, daemon = p.commands
    assert venv[1:] == ["-m", "venv", str(tmp_path / "v")]
    assert install[1:] == [
        "install",
        "--disable-pip-version-check",
        "--require-hashes",
        "-r",
        str(REPO / "environment.lock"),
    ]
    assert daemon[1:] == ["daemon", "--queue", "colab", "--create-queue", "--foreground"]
    assert p.env["CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL"] == "1"
    text = p.render()
    assert "CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL=1" in text and SECRET not in text


def _machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, gpu: bool, py311: bool) -> str:
    """A PATH holding only what a machine has: nvidia-smi or not, python3.11 or not; returns
    an interpreter that is not 3.11 (hosted Colab's 3.12) for the bootstrap to start from."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if gpu:
        (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho 'Tesla T4, 580.82'\n")
        (bin_dir / "nvidia-smi").chmod(0o755)
    if py311:
        (bin_dir / "python3.11").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", str(bin_dir))
    not_311 = tmp_path / "python3.12"
    not_311.write_text("#!/bin/sh\necho False\n")  # answers the version probe like 3.12 would
    not_311.chmod(0o755)
    return str(not_311)


@pytest.mark.parametrize(
    ("gpu", "lock"), [(True, "environment-gpu.lock"), (False, "environment.lock")]
)
def test_colab_venv_plan_takes_python_311_from_uv_and_the_lock_for_its_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, creds, gpu: bool, lock: str
) -> None:
    python = _machine(monkeypatch, tmp_path, gpu=gpu, py311=False)
    p = bootstrap.plan("colab", "venv", venv=tmp_path / "v", python=python)
    tools = tmp_path / "v-uv"
    assert p.commands[:4] == [
        [python, "-m", "venv", str(tools)],
        [str(tools / "bin" / "pip"), "install", "--disable-pip-version-check", "uv==0.13.9"],
        [str(tools / "bin" / "uv"), "python", "install", "3.11"],
        [str(tools / "bin" / "uv"), "venv", "--seed", "--python", "3.11", str(tmp_path / "v")],
    ]
    assert p.commands[4][-2:] == ["-r", str(REPO / lock)]
    assert ("Tesla T4" in p.gpu) == gpu


def test_colab_venv_plan_uses_a_python_311_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, creds
) -> None:
    python = _machine(monkeypatch, tmp_path, gpu=False, py311=True)
    p = bootstrap.plan("colab", "venv", venv=tmp_path / "v", python=python)
    assert p.commands[0] == [
        str(tmp_path / "bin" / "python3.11"),
        "-m",
        "venv",
        str(tmp_path / "v"),
    ]


def test_docker_plan_runs_the_agent_in_the_pinned_image(monkeypatch, creds) -> None:
    monkeypatch.setattr(
        bootstrap, "docker_usable", lambda docker: (True, "a Docker engine answers")
    )
    image = "registry.example/sst@sha256:" + "a" * 64
    p = bootstrap.plan("gpu", "auto", image=image)
    assert p.mode == "docker" and p.reason == "a Docker engine answers"
    (cmd,) = p.commands
    assert cmd[:3] == ["docker", "run", "-d"] and "--force-current-version" in cmd
    assert cmd[cmd.index("--docker") + 1].startswith(
        f"{image} --user root -e CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL=1"
    )
    assert cmd[cmd.index("--entrypoint") + 2] == "sst:agent"  # the daemon's image has docker
    for name in bootstrap.CREDENTIALS:  # passed by name only: docker copies the value
        assert cmd[cmd.index(name) - 1] == "-e"
    assert SECRET not in p.render()
    # the daemon's ~/.clearml is a host folder the agent names: task containers get its config
    home = f"{bootstrap.AGENT_HOME / 'gpu'}:/root/.clearml"
    assert cmd[cmd.index(home) - 1] == "-v"
    assert f"CLEARML_AGENT_DOCKER_HOST_MOUNT={home}" in cmd


def test_auto_falls_back_to_venv_without_an_engine(creds) -> None:
    p = bootstrap.plan("colab", "auto", docker="no-such-docker-client")
    assert p.mode == "venv" and "no no-such-docker-client client on PATH" in p.reason
    with pytest.raises(bootstrap.BootstrapError, match="docker mode asked but"):
        bootstrap.plan("colab", "docker", docker="no-such-docker-client")


def test_dry_run_cli_and_missing_credentials(monkeypatch, capsys) -> None:
    for name in bootstrap.CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    assert bootstrap.main(["--queue", "q", "--mode", "venv", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("mode: venv (--mode venv)\ngpu: ") and "--require-hashes" in out
    with pytest.raises(
        bootstrap.BootstrapError, match="missing ClearML credentials: CLEARML_API_HOST"
    ):
        bootstrap.credentials()


def test_venv_install_path_is_a_real_locked_install(tmp_path: Path, creds) -> None:
    """A documented subset of the lock (two small pins, with their hashes) through the same
    commands the venv mode runs; the whole lock takes ~2 minutes (`make setup` does that)."""
    lines = (REPO / "environment.lock").read_text().split("\n")
    subset: list[str] = []
    for name in ("six==", "pyyaml=="):
        start = next(i for i, line in enumerate(lines) if line.startswith(name))
        end = start + 1
        while end < len(lines) and lines[end].startswith("    --hash"):
            end += 1
        subset += lines[start:end]
    lock = tmp_path / "subset.lock"
    lock.write_text("\n".join(subset) + "\n")
    p = bootstrap.plan("colab", "venv", lock=lock, venv=tmp_path / "v")
    ran: list[list[str]] = []

    def run(cmd, check, env):  # the agent needs a server: stop before the daemon
        if "daemon" in cmd:
            ran.append(cmd)
            return None
        assert SECRET in env.values()  # the agent gets the credentials through its environment
        return subprocess.run(cmd, check=check, env=env, capture_output=True)

    bootstrap.execute(p, bootstrap.credentials(), run=run)
    freeze = subprocess.run(
        [str(tmp_path / "v" / "bin" / "pip"), "freeze"], capture_output=True, text=True, check=True
    ).stdout
    assert {line for line in freeze.split() if "==" in line} == {
        line.split(" ")[0].replace("pyyaml", "PyYAML") for line in subset if "==" in line
    }
    assert ran and ran[0][-1] == "--foreground"


# A stand-in for Colab's ``google.colab.userdata``: it answers in the process that imported it
# first (the notebook's kernel) and, as Colab does, refuses every other process.
USERDATA = """
import json, os
from pathlib import Path

_STATE = Path(os.environ["COLAB_STANDIN_STATE"])
if not (_STATE / "kernel.pid").exists():
    (_STATE / "kernel.pid").write_text(str(os.getpid()))


class NotebookAccessError(Exception):
    pass


class SecretNotFoundError(Exception):
    pass


def get(name):
    with (_STATE / "calls.log").open("a") as log:
        log.write(f"{os.getpid()} {name}\\n")
    if int((_STATE / "kernel.pid").read_text()) != os.getpid():
        raise NotebookAccessError("Secrets can only be fetched when running from the Colab UI.")
    secrets = json.loads(os.environ["COLAB_STANDIN_SECRETS"])
    if name not in secrets:
        raise SecretNotFoundError(name)
    return secrets[name]
"""


def _colab(tmp_path: Path, secrets: dict[str, str]) -> dict[str, str]:
    """A Colab-like machine: the stand-in userdata importable, a ``python`` on PATH that records
    what the cell starts (its arguments and the credentials it was given) instead of running
    the bootstrap, the kit already cloned as ``sst``."""
    package = tmp_path / "site" / "google" / "colab"
    package.mkdir(parents=True)
    (tmp_path / "site" / "google" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "userdata.py").write_text(USERDATA)
    (tmp_path / "state").mkdir()
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "python").write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        "names = [n for n in os.environ if n.startswith('CLEARML_')]\n"
        f"open({str(tmp_path / 'started.json')!r}, 'w').write(json.dumps("
        "{'argv': sys.argv[1:], 'env': {n: os.environ[n] for n in names}}))\n"
    )
    (shims / "python").chmod(0o755)
    (tmp_path / "sst").symlink_to(REPO)
    return {
        "PATH": f"{shims}:/usr/bin:/bin",
        "PYTHONPATH": str(tmp_path / "site"),
        "COLAB_STANDIN_STATE": str(tmp_path / "state"),
        "COLAB_STANDIN_SECRETS": json.dumps(secrets),
        "HOME": str(tmp_path),
    }


def _cell() -> str:
    nb = json.loads((REPO / "colab" / "sst_agent.ipynb").read_text())
    (cell,) = nb["cells"]
    return "".join(cell["source"])


def test_the_notebook_reads_the_secrets_in_its_kernel_and_hands_them_over(
    tmp_path: Path,
) -> None:
    """Colab answers userdata.get() in the notebook's kernel only: the cell reads the secrets
    there and starts the bootstrap with them in its environment."""
    secrets = {
        n: SECRET if "SECRET" in n else f"https://{n.lower()}.example"
        for n in bootstrap.CREDENTIALS
    }
    env = _colab(tmp_path, secrets)
    kernel = subprocess.run(
        [sys.executable, "-c", _cell()], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert kernel.returncode == 0, kernel.stderr
    started = json.loads((tmp_path / "started.json").read_text())
    assert started["argv"] == ["sst/colab/bootstrap.py", "--queue", "colab"]
    assert started["env"] == secrets  # every credential, from the kernel's secrets
    assert SECRET not in kernel.stdout + kernel.stderr


def test_the_bootstrap_never_asks_colab_for_a_secret(tmp_path: Path) -> None:
    """Run as the cell runs it (a child of the kernel) without credentials: one line saying how
    to pass them, and Colab's secrets store never asked (it would refuse this process)."""
    env = _colab(tmp_path, {"CLEARML_API_HOST": "https://api.example"})
    (tmp_path / "state" / "kernel.pid").write_text("1")  # the kernel is another process
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "colab" / "bootstrap.py"),
            "--queue",
            "colab",
            "--mode",
            "venv",
        ],
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.strip().startswith("bootstrap: error: missing ClearML credentials")
    assert "run the notebook's cell" in done.stderr
    assert not (tmp_path / "state" / "calls.log").exists()


@pytest.mark.parametrize(("driver", "refused"), [("535.104.05", True), ("580.82.07", False)])
def test_the_gpu_lock_needs_a_driver_for_its_cuda(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, creds, driver: str, refused: bool
) -> None:
    _machine(monkeypatch, tmp_path, gpu=True, py311=True)
    (tmp_path / "bin" / "nvidia-smi").write_text(f"#!/bin/sh\necho 'Tesla T4, {driver}'\n")
    if refused:
        with pytest.raises(
            bootstrap.BootstrapError, match=r"driver 535\.104\.05 is older than 580"
        ):
            bootstrap.plan("colab", "venv", venv=tmp_path / "v")
    else:
        p = bootstrap.plan("colab", "venv", venv=tmp_path / "v")
        assert p.commands[1][-1].endswith("environment-gpu.lock")
    cpu = bootstrap.plan("colab", "venv", venv=tmp_path / "v", lock=REPO / "environment.lock")
    assert cpu.commands[1][-1].endswith("environment.lock")  # the CPU route stays open


def test_task_environment_matches_the_kit() -> None:
    from sst.env.determinism import DETERMINISM_ENV
    from sst.tracking.agent import TASK_USER, container_arguments, container_image

    assert bootstrap.TASK_ENV == {"CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL": "1", **DETERMINISM_ENV}
    assert bootstrap.TASK_DOCKER_ARGS == TASK_USER
    env = {**bootstrap.TASK_ENV, "SST_IMAGE": container_image()}
    assert container_arguments() == " ".join([*TASK_USER, *(f"-e {k}={v}" for k, v in env.items())])
