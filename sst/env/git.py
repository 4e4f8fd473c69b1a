"""The kit's own source: the commit a run executes, its uncommitted changes and the remote an agent
clones (recorded in the fingerprint and in a ClearML task's script).

    python -c "from sst.env.git import git_state; print(git_state())"
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sst.env.locks import KIT_ROOT


@dataclass(frozen=True)
class GitState:
    commit: str | None
    diff_sha256: str | None  # of the uncommitted changes (tracked diff + untracked files)
    remote: str | None


def _git(root: Path, *args: str, ok: tuple[int, ...] = (0,)) -> bytes | None:
    try:
        res = subprocess.run(["git", "-C", str(root), *args], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout if res.returncode in ok else None


def _untracked(root: Path) -> list[str]:
    names = (_git(root, "ls-files", "--others", "--exclude-standard", "-z") or b"").split(b"\0")
    return sorted(n.decode() for n in names if n)


def git_state(root: Path | None = None) -> GitState:
    """The kit's source: commit, sha256 of the uncommitted changes (tracked diff + untracked
    files; None when clean), remote. Outside a checkout (an installed image) the commit comes
    from ``$SST_GIT_REVISION`` (the image's build argument)."""
    root = root or KIT_ROOT
    commit = _git(root, "rev-parse", "HEAD") if (root / ".git").exists() else None
    if commit is None:
        return GitState(os.environ.get("SST_GIT_REVISION"), None, None)
    h = hashlib.sha256(_git(root, "diff", "HEAD", "--binary") or b"")
    for name in _untracked(root):
        h.update(name.encode() + b"\0" + hashlib.sha256((root / name).read_bytes()).digest())
    dirty = h.hexdigest() != hashlib.sha256(b"").hexdigest()
    remote = _git(root, "config", "--get", "remote.origin.url")
    return GitState(
        commit.decode().strip(),
        h.hexdigest() if dirty else None,
        remote.decode().strip() if remote else None,
    )


def git_patch(root: Path | None = None) -> str:
    """The uncommitted changes as one patch that ``git apply`` puts on the commit (what an agent
    does with a task's diff): the tracked changes and every untracked, not ignored file."""
    root = root or KIT_ROOT
    if not (root / ".git").exists():
        return ""
    parts = [_git(root, "diff", "HEAD", "--binary") or b""]
    for name in _untracked(root):
        parts.append(
            _git(root, "diff", "--no-index", "--binary", "/dev/null", name, ok=(0, 1)) or b""
        )
    return b"".join(parts).decode("utf-8", errors="replace")
