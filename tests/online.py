"""What the online tests share: the kit's clone served over ``file://`` (what agents clone), a
user's shell pointed at the API server of tests/clearml_server, `sst` as a process, a real
clearml-agent daemon, and waiting for tasks to end."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from sst.env.git import git_patch
from tests.clearml_server import ClearmlServer
from tests.conftest import REPO

# what a user's clearml.conf would say to keep a short task's close() quick
CONF = "sdk { development { report_use_subprocess: false } }\n"
# An uncommitted change of the clone, so tasks record a diff that an agent must apply: its run
# then says so in its log
PATCH_MARK = "sst-test: the recorded patch is applied"
PATCH = f"""
if __import__("os").environ.get("CLEARML_TASK_ID"):  # under an agent (tests/online.py)
    print({PATCH_MARK!r}, file=__import__("sys").stderr)
"""
TIMEOUT = 900  # seconds a test's `sst` may take
TERMINAL = {"completed", "failed", "stopped", "closed", "published"}


def clone_kit(base: Path) -> Path:
    """A clone of the kit (uncommitted changes applied, and PATCH) in ``base/sst``, its origin the
    bare repository ``base/sst.git``."""
    bare = base / "sst.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(REPO), str(bare)], check=True)
    work = base / "sst"
    subprocess.run(["git", "clone", "-q", f"file://{bare}", str(work)], check=True)
    if patch := git_patch():
        subprocess.run(["git", "-C", str(work), "apply", "-"], input=patch.encode(), check=True)
    with (work / "sst" / "__init__.py").open("a") as face:
        face.write(PATCH)
    return work


def clean_environment() -> dict[str, str]:
    """This process's environment without ClearML's marks (a task of this process's own would
    make a child's Task.init a stub)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("CLEARML_", "TRAINS_"))}


def environment(server: ClearmlServer, home: Path, kit: Path | None = None) -> dict[str, str]:
    """A user's shell pointed at the server: its own caches, the clone's code first."""
    home.mkdir(parents=True, exist_ok=True)
    conf = home / "clearml.conf"
    conf.write_text(CONF)
    env = clean_environment() | server.environment()
    env |= {
        "CLEARML_CONFIG_FILE": str(conf),
        "CLEARML_CACHE_DIR": str(home / "clearml-cache"),
        "SST_CACHE_DIR": str(home / "sst-cache"),
        "HOME": str(home),
        "HF_HUB_OFFLINE": "1",
    }
    if kit is not None:
        env["PYTHONPATH"] = str(kit)
    return env


def sst(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sst.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_line_error(done: subprocess.CompletedProcess[str], verb: str) -> str:
    """The error a failed `sst` printed: exit 2 and one line, no traceback."""
    assert done.returncode == 2, (done.stdout[-2000:], done.stderr[-3000:])
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith(f"sst {verb}: error: ")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    return errors[0]


class Agent:
    """``clearml-agent daemon --queue <q> --foreground``, until stopped: in venv mode (the kit's
    locked venv, CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL) or, with ``docker``, starting each task
    in the image it recorded."""

    def __init__(self, queue: str, env: dict[str, str], home: Path, docker: bool = False) -> None:
        # its own HOME and TMPDIR: the agent keeps pid and lock files in the temp folder
        agent_env = {**env, "HOME": str(home), "TMPDIR": str(home / "tmp")}
        if not docker:
            agent_env["CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL"] = "1"
        agent_env.pop("PYTHONPATH", None)  # the agent runs the task from its own clone
        (home / "tmp").mkdir(parents=True, exist_ok=True)
        self.log = home / "agent.log"
        self._out = self.log.open("w")
        command = [str(Path(sys.executable).parent / "clearml-agent"), "daemon", "--queue", queue]
        if docker:  # without an NVIDIA GPU the engine cannot give a task one (--gpus all)
            command += ["--docker", "--force-current-version"]  # the image's own agent
            command += ["--cpu-only"] if not shutil.which("nvidia-smi") else []
        self.process = subprocess.Popen(
            [*command, "--foreground"],
            env=agent_env,
            cwd=home,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its task processes are its group: stopped with it
        )

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
        self._out.close()


def settle(server: ClearmlServer, ids: list[str], timeout: float = 600) -> dict[str, str]:
    """The status of each task once all are terminal (read from the server's state)."""
    deadline = time.monotonic() + timeout
    status: dict[str, str] = {}
    while time.monotonic() < deadline:
        status = {i: server.task(i)["status"] for i in ids}
        if all(s in TERMINAL for s in status.values()):
            return status
        time.sleep(1)
    raise AssertionError(f"tasks still running after {timeout} s: {status}")
