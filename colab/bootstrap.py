"""Start a clearml-agent on a queue, in the kit's locked environment (Colab or any host):
detached in docker mode, in the foreground (the cell's output) in venv mode.

    python colab/bootstrap.py --queue colab               # pick the mode, install, start
    python colab/bootstrap.py --queue colab --dry-run     # print the exact commands only

Credentials come from the environment: CLEARML_API_HOST, CLEARML_WEB_HOST, CLEARML_FILES_HOST,
CLEARML_API_ACCESS_KEY, CLEARML_API_SECRET_KEY. On Colab the notebook's cell reads them from
Colab's secrets and passes them here: ``google.colab.userdata`` answers only in the notebook's
kernel ("Secrets can only be fetched when running from the Colab UI"), never in a process it
starts, so this script does not ask it. They reach the agent through its environment and never
appear in a printed command.

Modes:
- docker: a Docker engine answers. The agent daemon runs in the kit's agent image (``sst:agent``:
  the locked venv plus a docker client) with the host's docker socket, in docker mode, so every
  task runs in the pinned task image (``sst:cpu``/``sst:gpu``) as root (the agent's in-container
  setup reads its root-only config and may install packages). The daemon's ~/.clearml is a host
  folder (``~/.sst-agent/<queue>``) named to the agent by CLEARML_AGENT_DOCKER_HOST_MOUNT, as
  ClearML's own compose does: the engine resolves ``-v`` sources on the host, so the config the
  agent mounts into a task container must be a host path, or the task gets an empty folder.
- venv: no engine (hosted Colab). The lock for this machine (``environment-gpu.lock`` when
  nvidia-smi answers, else ``environment.lock``) is installed with ``--require-hashes`` into a
  venv of the lock's Python 3.11 (this interpreter if it is 3.11, else ``python3.11`` on PATH,
  else one provided by uv: hosted Colab runs 3.12), and the agent runs from it with
  CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL=1, so tasks run in the locked environment. The daemon
  runs in the foreground, as ClearML's Colab guide runs it: its log is the cell's output, and
  stopping the cell stops it. The GPU lock's CUDA 13 torch needs an NVIDIA driver of at least
  580: an older one is refused before anything is installed.

Standard library only: it runs before the locked environment exists.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CREDENTIALS = (
    "CLEARML_API_HOST",
    "CLEARML_WEB_HOST",
    "CLEARML_FILES_HOST",
    "CLEARML_API_ACCESS_KEY",
    "CLEARML_API_SECRET_KEY",
)
# What a task needs in its container: the locked venv as is, and the determinism variables
# (sst.env.determinism.DETERMINISM_ENV; repeated because this runs before sst is installed; a
# test checks).
TASK_ENV = {
    "CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL": "1",
    "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
    "PYTHONHASHSEED": "0",
    "TOKENIZERS_PARALLELISM": "false",
}
# Task containers run as root: the agent's setup inside them reads its 0600 config file
TASK_DOCKER_ARGS = ("--user", "root")
DEFAULT_IMAGE = os.environ.get("SST_IMAGE", "sst:cpu")
DEFAULT_AGENT_IMAGE = os.environ.get("SST_AGENT_IMAGE", "sst:agent")
DEFAULT_VENV = Path.home() / ".sst-agent-venv"
AGENT_HOME = Path.home() / ".sst-agent"  # docker mode: the daemon's ~/.clearml, per queue
CONTAINER_HOME = "/root/.clearml"
# environment-gpu.lock pins PyPI's CUDA 13 torch, which needs this NVIDIA driver or newer
GPU_LOCK_MIN_DRIVER = 580
UV_VERSION = "0.13.9"  # as scripts/lock.sh


class BootstrapError(Exception):
    pass


@dataclass
class Plan:
    mode: str
    reason: str
    gpu: str
    queue: str
    commands: list[list[str]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # non-secret variables set for the agent

    def render(self) -> str:
        lines = [f"mode: {self.mode} ({self.reason})", f"gpu: {self.gpu}"]
        prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        for cmd in self.commands:
            lines.append((prefix + " " if prefix and "daemon" in cmd else "") + shlex.join(cmd))
        return "\n".join(lines)


def credentials() -> dict[str, str]:
    found = {n: os.environ.get(n) for n in CREDENTIALS}
    missing = [n for n, v in found.items() if not v]
    if missing:
        raise BootstrapError(
            f"missing ClearML credentials: {', '.join(missing)} (fix: export them; on Colab, "
            "add them as secrets, allow the notebook to read them and run the notebook's cell, "
            "which passes them here)"
        )
    return {n: v for n, v in found.items() if v}


def docker_usable(docker: str) -> tuple[bool, str]:
    if shutil.which(docker) is None:
        return False, f"no {docker} client on PATH"
    res = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        return False, "a docker client but no engine answers (hosted Colab has none)"
    return True, "a Docker engine answers"


def gpus() -> list[tuple[str, str]]:
    """(name, driver version) of each NVIDIA GPU nvidia-smi lists; none without nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return []
    res = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if res.returncode != 0:
        return []
    rows = [line.rsplit(",", 1) for line in res.stdout.strip().splitlines() if "," in line]
    return [(name.strip(), driver.strip()) for name, driver in rows]


def gpu_description() -> str:
    found = gpus()
    if not found:
        return "none (nvidia-smi not found or failed)"
    return "; ".join(f"{name}, driver {driver}" for name, driver in found)


def check_driver(lock: Path) -> None:
    """The GPU lock on a driver too old for its CUDA: refused in one line, before installing
    (torch would otherwise load and train on the CPU without a word)."""
    if lock.name != "environment-gpu.lock":
        return
    for name, driver in gpus():
        major = int(driver.split(".")[0]) if driver.split(".")[0].isdigit() else 0
        if major < GPU_LOCK_MIN_DRIVER:
            raise BootstrapError(
                f"{name}'s NVIDIA driver {driver} is older than {GPU_LOCK_MIN_DRIVER}, which "
                f"{lock.name} (PyPI's CUDA 13 torch) needs (fix: a runtime with a newer driver, "
                "or the CPU: --lock environment.lock)"
            )


def interpreter(python: str, venv: Path) -> list[list[str]]:
    """The commands that make ``venv`` with the lock's Python 3.11 (see the module docstring)."""
    probe = subprocess.run(
        [python, "-c", "import sys; print(sys.version_info[:2] == (3, 11))"],
        capture_output=True,
        text=True,
    )
    py311 = python if probe.stdout.strip() == "True" else shutil.which("python3.11")
    if py311:
        return [[py311, "-m", "venv", str(venv)]]
    tools = venv.parent / f"{venv.name}-uv"
    uv = str(tools / "bin" / "uv")
    return [
        [python, "-m", "venv", str(tools)],
        [str(tools / "bin" / "pip"), "install", "--disable-pip-version-check", f"uv=={UV_VERSION}"],
        [uv, "python", "install", "3.11"],
        [uv, "venv", "--seed", "--python", "3.11", str(venv)],
    ]


def plan(
    queue: str,
    mode: str,
    *,
    image: str = DEFAULT_IMAGE,
    agent_image: str = DEFAULT_AGENT_IMAGE,
    lock: Path | None = None,
    venv: Path = DEFAULT_VENV,
    python: str = sys.executable,
    docker: str = "docker",
) -> Plan:
    """What to run, without running it. ``mode`` is auto, docker or venv; ``lock`` defaults to
    the one for this machine (GPU or CPU)."""
    usable, why = docker_usable(docker) if mode in ("auto", "docker") else (False, "venv asked")
    if mode == "docker" and not usable:
        raise BootstrapError(f"docker mode asked but {why}")
    chosen = "docker" if (mode == "docker" or (mode == "auto" and usable)) else "venv"
    reason = why if mode == "auto" else f"--mode {mode}"
    p = Plan(chosen, reason, gpu_description(), queue)
    if chosen == "docker":
        gpu_args = ["--gpus", "all"] if shutil.which("nvidia-smi") else []
        home = AGENT_HOME / queue  # the daemon's ~/.clearml, a host folder: see the module text
        # SST_IMAGE: the task's fingerprint records the image it ran in
        task_env = " ".join(f"-e {k}={v}" for k, v in {**TASK_ENV, "SST_IMAGE": image}.items())
        task_args = " ".join([*TASK_DOCKER_ARGS, task_env])
        p.commands.append(
            [
                docker,
                "run",
                "-d",
                "--name",
                f"sst-agent-{queue}",
                "--restart",
                "unless-stopped",
                "--network",
                "host",
                "-v",
                "/var/run/docker.sock:/var/run/docker.sock",
                "-v",
                f"{home}:{CONTAINER_HOME}",
                "-e",
                f"CLEARML_AGENT_DOCKER_HOST_MOUNT={home}:{CONTAINER_HOME}",
                *gpu_args,
                # -e NAME with no value copies it from this process: the secret is never printed
                *[a for n in CREDENTIALS for a in ("-e", n)],
                # without a GPU the agent must not ask the engine for one (`--gpus all`)
                *([] if gpu_args else ["-e", "NVIDIA_VISIBLE_DEVICES=none"]),
                "--entrypoint",
                "clearml-agent",
                agent_image,
                "daemon",
                "--queue",
                queue,
                "--create-queue",
                "--foreground",
                # tasks get the agent version already in the image's lock, not PyPI's newest
                "--force-current-version",
                "--docker",
                f"{image} {task_args}",
            ]
        )
    else:
        gpu = shutil.which("nvidia-smi") is not None
        lock = lock or REPO / ("environment-gpu.lock" if gpu else "environment.lock")
        if not lock.is_file():
            raise BootstrapError(f"{lock}: lock not found (fix: run from a clone of the kit)")
        check_driver(lock)
        pip = str(venv / "bin" / "pip")
        p.commands += [
            *interpreter(python, venv),
            [pip, "install", "--disable-pip-version-check", "--require-hashes", "-r", str(lock)],
            [
                str(venv / "bin" / "clearml-agent"),
                "daemon",
                "--queue",
                queue,
                "--create-queue",
                "--foreground",  # its log in the cell; stopping the cell stops it
            ],
        ]
        p.env = dict(TASK_ENV)
    return p


def execute(p: Plan, secrets: dict[str, str], run: Callable[..., object] = subprocess.run) -> None:
    env = {**os.environ, **secrets, **p.env}
    if p.mode == "docker":
        (AGENT_HOME / p.queue).mkdir(parents=True, exist_ok=True)
    for cmd in p.commands:
        run(cmd, check=True, env=env)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queue", required=True, help="ClearML queue the agent serves")
    ap.add_argument("--mode", choices=("auto", "docker", "venv"), default="auto")
    ap.add_argument("--image", default=DEFAULT_IMAGE, help="pinned task image (with digest)")
    ap.add_argument("--agent-image", default=DEFAULT_AGENT_IMAGE, help="the daemon's image")
    ap.add_argument("--lock", type=Path, help="default: the GPU lock with a GPU, else the CPU one")
    ap.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = ap.parse_args(argv)
    try:
        p = plan(
            args.queue,
            args.mode,
            image=args.image,
            agent_image=args.agent_image,
            lock=args.lock,
            venv=args.venv,
        )
        print(p.render())
        if args.dry_run:
            return 0
        secrets = credentials()
        if p.mode == "venv":  # the daemon in the foreground: this call returns when it stops
            print(f"starting the agent on queue {args.queue!r}: stop the cell to stop it")
        execute(p, secrets)
    except (BootstrapError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        print(f"bootstrap: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"agent on queue {args.queue!r} stopped")
        return 0
    if p.mode == "docker":
        print(
            f"agent started on queue {args.queue!r} in docker mode (docker logs sst-agent-"
            f"{args.queue})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
