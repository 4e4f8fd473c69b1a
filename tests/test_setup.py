"""`make setup` on a machine without the lock's Python 3.11 (Ubuntu 24.04, hosted Colab: 3.12):
the plan takes a CPython 3.11 from uv. Run with --dry-run: uv cannot download a Python build
here (no internet beyond the package registries), so the install itself is not exercised."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOOLS = ("bash", "cat", "sha256sum", "cut", "dirname", "grep", "date", "uname")


def _setup(tmp_path: Path, path: str) -> subprocess.CompletedProcess[str]:
    """The script in a copy of what it reads (a checkout's own .venv-uv would change the plan)."""
    copy = tmp_path / "repo"
    (copy / "scripts").mkdir(parents=True, exist_ok=True)
    for name in (
        "scripts/setup-venv.sh",
        "environment.lock",
        "environment-dev.lock",
        "pyproject.toml",
    ):
        shutil.copyfile(REPO / name, copy / name)
    script = copy / "scripts" / "setup-venv.sh"
    return subprocess.run(
        ["bash", str(script), "--dry-run", "python3.11", str(tmp_path / "venv")],
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
    )


def _bin(tmp_path: Path, python3: bool) -> str:
    """A PATH of the shell tools the script uses, python3 or not, and an empty entry."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in TOOLS:
        (folder / tool).symlink_to(shutil.which(tool) or f"/bin/{tool}")
    if python3:
        (folder / "python3").symlink_to(sys.executable)
    empty = tmp_path / "empty"
    empty.mkdir()
    return f"{folder}:{empty}"


def test_without_python_311_the_plan_takes_one_from_uv(tmp_path: Path) -> None:
    done = _setup(tmp_path, _bin(tmp_path, python3=True))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("setup: python3.11 not found; the lock's Python 3.11 from uv 0.13.9")
    assert lines[1:] == [
        f"+ {tmp_path / 'bin' / 'python3'} -m venv .venv-uv",
        "+ .venv-uv/bin/pip install -q uv==0.13.9",
        "+ .venv-uv/bin/uv python find 3.11 || .venv-uv/bin/uv python install 3.11",
        f"+ <uv's python3.11> -m venv {tmp_path / 'venv'}",
        f"+ {tmp_path / 'venv'}/bin/python -m pip install --require-hashes -r environment.lock"
        " -r environment-dev.lock",
        f"+ {tmp_path / 'venv'}/bin/python -m pip install --no-deps -e .",
    ]


def test_with_python_311_the_plan_uses_it(tmp_path: Path) -> None:
    (tmp_path / "py").mkdir()
    (tmp_path / "py" / "python3.11").symlink_to(sys.executable)
    done = _setup(tmp_path, f"{_bin(tmp_path, python3=False)}:{tmp_path / 'py'}")
    assert done.returncode == 0 and done.stdout.splitlines()[0] == (
        f"+ python3.11 -m venv {tmp_path / 'venv'}"
    )


def test_with_no_python_at_all_it_says_what_to_install(tmp_path: Path) -> None:
    done = _setup(tmp_path, _bin(tmp_path, python3=False))
    assert done.returncode == 1
    assert "neither python3.11 nor python3 found (fix: install Python 3.11" in done.stderr


def test_on_a_mac_or_an_arm_machine_it_refuses_in_one_line(tmp_path: Path) -> None:
    """The lock has Linux x86-64 wheels only: elsewhere setup names the container route and
    creates nothing. ``uname`` is the real tool's answer on such a machine."""
    path = _bin(tmp_path, python3=True)
    folder = Path(path.split(":")[0])
    for system, arch in (("Darwin", "arm64"), ("Linux", "aarch64")):
        (folder / "uname").unlink()
        (folder / "uname").write_text(
            f"#!/bin/bash\ncase $1 in -s) echo {system};; -m) echo {arch};; esac\n"
        )
        (folder / "uname").chmod(0o755)
        done = _setup(tmp_path, path)
        assert done.returncode == 1 and done.stdout == ""
        assert done.stderr == (
            "setup: environment.lock holds Linux x86-64 wheels only, this machine is "
            f"{system} {arch} (fix: open the kit in its devcontainer or the sst:cpu image, both "
            "linux/amd64: docs/containers.md)\n"
        )
