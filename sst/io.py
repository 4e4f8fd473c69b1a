"""How the kit writes and reads its files, the same way in every layer: sha256 of a file, canonical
JSON, PNGs whose bytes depend only on the figure, the sst cache folder, write-once, checksummed
output folders (a split, an export) verified on every read, and progress that reads well both on
a terminal and in a log.

    python -c "from sst.io import verify; verify('splits/ptb')"

A write-once folder is built in a temporary sibling (``.<name>.tmp-<pid>-…``), described by
``manifest.json`` (sha256 and size of every file plus the caller's fields, no timestamps), then
renamed into place. Writing the same content again is a no-op; different content is refused unless
``force`` is given, and a folder without a manifest (not ours) is never replaced. A temporary
sibling left by a process that died (killed mid-split) is removed by the next write, which says
so. Folders get the user's umask (not ``mkdtemp``'s 0700): a container user can read a split.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sst.errors import SstError

MANIFEST = "manifest.json"
CHUNK = 1 << 20
# PNG metadata without the matplotlib version, so equal figures are equal bytes
PNG_META = {"Software": None}
# Seconds between progress lines when the output is a log (a pipe, a file, an agent's console as
# ClearML stores it), not a terminal: a terminal gets tqdm's bar, refreshed in place
LOG_EVERY_ENV = "SST_LOG_EVERY_S"


def log_every() -> float:
    """``$SST_LOG_EVERY_S`` seconds between progress lines in a log (default 10)."""
    raw = os.environ.get(LOG_EVERY_ENV, "10")
    try:
        return max(0.0, float(raw))
    except ValueError:
        raise SstError(
            f"{LOG_EVERY_ENV}={raw!r} is not a number", fix="set seconds, e.g. 30"
        ) from None


def interactive(stream: Any) -> bool:
    """Whether ``stream`` is a terminal a progress bar can redraw in place."""
    return bool(getattr(stream, "isatty", lambda: False)())


def progress(iterable: Any = None, **kw: Any) -> Any:
    """``tqdm(iterable, **kw)`` on a terminal; in a log, whole lines (one at the start, then at
    most one every :func:`log_every` seconds, and the last at the end), never the carriage-return
    refreshes that pile up into one line of kilobytes."""
    stream = kw.pop("file", sys.stderr)
    if interactive(stream):
        from tqdm.auto import tqdm

        return tqdm(iterable, file=stream, **kw)
    from tqdm.std import tqdm as plain  # tqdm.auto's notebook bar draws widgets, not text

    every = log_every()
    return plain(iterable, file=WholeLines(stream), mininterval=every, maxinterval=every, **kw)


class WholeLines:
    """tqdm's output made for a log: each refresh (``"\\r" + status + padding``) a whole line,
    the same count never twice (the closing refresh), no bare carriage return or newline."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.last = ""

    def write(self, text: str) -> int:
        status = text.replace("\r", "").strip()
        count = status.split(" [")[0]  # the status without its elapsed time and rate
        if status and count != self.last:
            self.stream.write(status + "\n")
            self.stream.flush()
            self.last = count
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def default_cache_dir() -> Path:
    """Where sst keeps downloads and encodings: ``$SST_CACHE_DIR``, else ``~/.cache/sst``."""
    return Path(os.environ.get("SST_CACHE_DIR") or Path.home() / ".cache" / "sst")


def dumps(obj: Any) -> str:
    """Canonical JSON: sorted keys, two-space indent, trailing newline."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_json(path: Path, data: Any) -> None:
    path.write_text(dumps(data))


def save_png(fig: Any, path: Path, dpi: int = 100) -> Path:
    """Write ``fig`` without the matplotlib version (equal figures are equal bytes); close it."""
    import matplotlib.pyplot as plt  # here only: most readers of this module draw nothing

    fig.savefig(path, dpi=dpi, metadata=PNG_META)
    plt.close(fig)
    return path


def file_table(folder: Path) -> dict[str, dict[str, Any]]:
    return {
        p.relative_to(folder).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(folder.rglob("*"))
        if p.is_file()
        and p.name != MANIFEST
        # dotfiles are local notes (e.g. the ClearML dataset id), not content
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    }


def write_once(
    out: Path, build: Callable[[Path], dict[str, Any]], *, force: bool = False
) -> tuple[str, dict[str, Any]]:
    """Build ``out`` atomically. ``build(tmp)`` writes the files into ``tmp`` and returns the
    manifest fields. Returns (status, manifest) with status ``written``, ``unchanged`` or
    ``replaced``."""
    out = Path(out)
    old_manifest = out / MANIFEST
    if out.exists() and not old_manifest.is_file():
        raise SstError(
            "exists and is not an sst output folder (no manifest.json)",
            path=out,
            fix="choose another output folder; nothing there was touched",
        )
    try:
        return _build_in_place(out, build, force)
    except OSError as e:  # a write in the temporary sibling, or one with no name (a full disk)
        raise OSError(e.errno, e.strerror, str(out)) from None


def _build_in_place(
    out: Path, build: Callable[[Path], dict[str, Any]], force: bool
) -> tuple[str, dict[str, Any]]:
    old_manifest = out / MANIFEST
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = private_sibling(out, "tmp")
    try:
        manifest = dict(build(tmp))
        manifest["files"] = file_table(tmp)
        text = dumps(manifest)
        (tmp / MANIFEST).write_text(text, encoding="utf-8")
        if old_manifest.is_file():
            if old_manifest.read_text(encoding="utf-8") == text and _intact(out, manifest):
                return "unchanged", manifest
            old = json.loads(old_manifest.read_text(encoding="utf-8"))
            if old.get("files") == manifest["files"] and _intact(out, old):
                # the same files, described by an earlier version of sst: kept as they are, so
                # the runs that recorded that manifest's sha256 still find it
                return "unchanged", old
            if not force:
                raise SstError(
                    "exists with different content",
                    path=old_manifest,
                    fix="pass --force to replace it, or write to another folder",
                )
            aside = private_sibling(out, "old")
            os.replace(out, aside / out.name)
            os.replace(tmp, out)
            shutil.rmtree(aside, ignore_errors=True)
            return "replaced", manifest
        os.replace(tmp, out)
        return "written", manifest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def private_sibling(out: Path, kind: str) -> Path:
    """A new, empty ``.<name>.<kind>-<pid>-…`` beside ``out``, with the umask's mode; the
    siblings a dead process left are removed first (:func:`remove_stale`)."""
    remove_stale(out)
    folder = Path(tempfile.mkdtemp(prefix=f".{out.name}.{kind}-{os.getpid()}-", dir=out.parent))
    mask = os.umask(0)
    os.umask(mask)
    folder.chmod(0o777 & ~mask)
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


STALE_WITHOUT_PID = 3600  # seconds: a temporary folder of an sst before 0.1's pid in the name


def remove_stale(out: Path) -> list[Path]:
    """Remove the temporary siblings of ``out`` whose process has ended (named by its pid; an
    older sst's, without a pid, when untouched for an hour). Says so on stderr."""
    removed = []
    for kind in ("tmp", "old"):
        for folder in out.parent.glob(f".{out.name}.{kind}-*"):
            pid = folder.name.removeprefix(f".{out.name}.{kind}-").split("-")[0]
            if pid.isdigit():
                stale = not _alive(int(pid))
            else:
                stale = time.time() - folder.stat().st_mtime > STALE_WITHOUT_PID
            if stale and folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
                print(f"removed {folder}: left by an sst process that ended", file=sys.stderr)
                removed.append(folder)
    return removed


def _intact(folder: Path, manifest: dict[str, Any]) -> bool:
    return file_table(folder) == manifest["files"]


def verify(folder: str | Path) -> dict[str, Any]:
    """The manifest of ``folder`` after checking every file's sha256 against it."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise SstError("no manifest.json", path=folder, fix="point at a folder written by sst")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    actual = file_table(folder)
    for name, entry in sorted(manifest["files"].items()):
        got = actual.get(name)
        if got is None:
            raise SstError(
                "file listed in the manifest is missing",
                path=folder / name,
                fix="re-create the folder with --force",
            )
        if got["sha256"] != entry["sha256"]:
            raise SstError(
                f"sha256 {got['sha256'][:12]}… is not the manifest's {entry['sha256'][:12]}…",
                path=folder / name,
                fix="the file was modified: re-create the folder with --force",
            )
    return manifest
