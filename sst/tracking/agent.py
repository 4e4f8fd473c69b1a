"""What a task carries to an agent, and back: the container, the command line, the parameters.

    python -c "from sst.tracking.agent import container_arguments; print(container_arguments())"

A clearml-agent re-executes a task by cloning the kit's git remote at the recorded commit,
applying the recorded patch, starting the recorded image with these docker arguments and running
``python -m sst.cli <verb>``; `sst` then turns the task's ``config/…`` parameters back into
overrides. No ClearML import here: :mod:`sst.tracking.tracker` records these,
:mod:`sst.tracking.server` uses them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sst.env.cpu import CPU_ISA_ENV
from sst.env.determinism import DETERMINISM_ENV
from sst.env.locks import KIT_ROOT


def remote_problem(remote: str | None) -> str | None:
    """Why agents on other machines cannot clone the kit from ``remote`` (None: they can)."""
    if not remote:
        return (
            "the kit has no git remote, so agents cannot clone this task's code "
            "(fix: git remote add origin <url>, then push the commit)"
        )
    if "://" not in remote and not re.match(r"^[\w.-]+@[\w.-]+:", remote):
        return (
            f"the kit's git remote {remote} is a local path that agents on other machines "
            "cannot clone (fix: git remote set-url origin <url>, then push the commit)"
        )
    return None


def repo_relative(path: str | Path) -> str:
    """``path`` relative to the kit's checkout when inside it (what a fresh clone also has)."""
    resolved = Path(path).resolve()
    if resolved.is_relative_to(KIT_ROOT):
        return resolved.relative_to(KIT_ROOT).as_posix()
    return str(path)


SWEEP_ENV = "SST_SWEEP_ID"  # a local sweep's children and a local search's trials tag their tasks


# What `Task.init` writes into os.environ for its subprocesses: an `sst` started with them (or
# with a pid that is not its own) gets ClearML's StubObject instead of its own task.
TASK_MARKS = ("CLEARML_PROC_MASTER_ID", "TRAINS_PROC_MASTER_ID", "CLEARML_TASK_ID")


def child_environment() -> dict[str, str]:
    """This environment without ClearML's marks of a process that already has a task."""
    return {k: v for k, v in os.environ.items() if k not in TASK_MARKS}


def sweep_tags() -> list[str]:
    """The sweep or search id when this process trains for a local sweep or search, else
    nothing."""
    return [os.environ[SWEEP_ENV]] if os.environ.get(SWEEP_ENV) else []


@contextmanager
def tagged(tag: str) -> Iterator[None]:
    """Tasks started in the block (in this process) are tagged ``tag`` (:func:`sweep_tags`)."""
    before = os.environ.get(SWEEP_ENV)
    os.environ[SWEEP_ENV] = tag
    try:
        yield
    finally:
        if before is None:
            del os.environ[SWEEP_ENV]
        else:
            os.environ[SWEEP_ENV] = before


def container_image() -> str:
    """The image a clone of this run should execute in: ``$SST_IMAGE`` (set it to the pinned
    ``repo@sha256:…`` reference when running in or publishing the image), else the local tag."""
    return os.environ.get("SST_IMAGE") or "sst:cpu"


# The task container runs as root: clearml-agent's setup inside it reads the agent's config,
# mounted 0600 from the daemon (docs/containers.md "Root vs non-root").
TASK_USER = ("--user", "root")


def container_arguments() -> str:
    """What a docker-mode agent passes to the task's container: root (above), the locked venv
    as it is, the determinism variables, and ``SST_IMAGE`` so the fingerprint names the image."""
    env = {
        "CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL": "1",
        **DETERMINISM_ENV,
        "SST_IMAGE": container_image(),
        # the task runs the kernels it was recorded with (SST_CPU_ISA=avx2 / portable: pinned bits)
        **({CPU_ISA_ENV: os.environ[CPU_ISA_ENV]} if os.environ.get(CPU_ISA_ENV) else {}),
    }
    return " ".join([*TASK_USER, *(f"-e {k}={v}" for k, v in env.items())])


def overrides_to_parameters(overrides: list[str]) -> dict[str, str]:
    """``section.key=value`` overrides → the task parameters ``config/<section>/<key>`` that
    `sst train` connects (how a clone receives them)."""
    params = {}
    for item in overrides:
        key, _, value = item.partition("=")
        params["config/" + key.replace(".", "/")] = value
    return params


def parameters_to_overrides(params: Mapping[str, Any]) -> list[str]:
    """The inverse: a task's ``config/…`` parameters → ``section.key=value`` overrides."""
    return [
        f"{key.removeprefix('config/').replace('/', '.')}={value}"
        for key, value in sorted(params.items())
        if key.startswith("config/") and value not in (None, "")
    ]
