"""Write-once, checksummed output folders: a split is written once and verified on every read.

    python -c "from sst.data.versioning import verify; verify('splits/kaggle')"

A folder is built in a temporary sibling, described by ``manifest.json`` (sha256 and size of every
file plus the caller's fields, no timestamps), then renamed into place. Writing the same content
again is a no-op; different content is refused unless ``force`` is given, and a folder without a
manifest (not ours) is never replaced.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sst.data.sources import sha256_file
from sst.errors import SstError

MANIFEST = "manifest.json"


def dumps(obj: Any) -> str:
    """Canonical JSON: sorted keys, two-space indent, trailing newline."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


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
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
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
            aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, aside / out.name)
            os.replace(tmp, out)
            shutil.rmtree(aside, ignore_errors=True)
            return "replaced", manifest
        os.replace(tmp, out)
        return "written", manifest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
