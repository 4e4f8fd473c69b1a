"""`sst sweep`: a model zoo (``models.txt``) → one training run per line, here or on ClearML queues.

    sst sweep --models models.local.txt --local             # each model in its own process, here
    sst sweep --models models.local.txt --local --resume    # skip completed runs, continue partial
    sst sweep --models models.txt --queue gpu [--wait]      # clone the template task per line

``models.txt``: one model per line — a hub id, a local folder or ``minilm`` — then optional
``key=value`` overrides (``sampling=stratified:4,alternate:4 lr=3e-5 pooling=mean``; a bare key is
found in the model or train section, or write ``train.lr=…``), ``#`` comments, blank lines. Every
line is resolved into a full config (keys, types, values) before anything starts; a bad line is an
error naming it.

Locally each model trains in its own ``sst train`` process (a crash or an out-of-memory kill in one
does not end the sweep), with its own offline ClearML task tagged with the sweep id; the outcome of
every line (completed, failed with its error, skipped) is written to
``<runs_dir>/sweeps/<sweep-id>/sweep.json`` after each line and shown by ``sst report``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from sst.config import Config, ModelConfig, TrainConfig, load_config
from sst.errors import SstError

# a bare key in models.txt → its section (keys that exist in both sections must be written dotted)
_FIELDS = {
    section: [f.name for f in dataclasses.fields(cls)]
    for section, cls in (("model", ModelConfig), ("train", TrainConfig))
}
_SEEN = Counter(name for names in _FIELDS.values() for name in names)
SHORT_KEYS = {
    n: f"{section}.{n}" for section, names in _FIELDS.items() for n in names if _SEEN[n] == 1
}
SWEEP_ENV = "SST_SWEEP_ID"  # `sst train` tags its ClearML task with it


@dataclass(frozen=True)
class Entry:
    """One line of models.txt, resolved."""

    line: int
    model: str
    overrides: tuple[str, ...]  # dotted key=value, as given
    name: str
    cfg: Config

    @property
    def arguments(self) -> list[str]:
        """The ``sst train`` overrides that turn the base config into this entry's."""
        return [f"model.name={self.model}", f"name={self.name}", *self.overrides]


@dataclass
class Outcome:
    line: int
    model: str
    name: str
    config_sha256: str
    status: str  # completed | failed | skipped | queued | (online) a ClearML status
    run_dir: str | None = None
    error: str | None = None
    seconds: float = 0.0
    task_id: str | None = None
    overrides: list[str] = field(default_factory=list)


def entry_name(base: str, model: str, overrides: list[str]) -> str:
    """``<base>-<model>[-<overrides hash>]``: stable, so --resume finds the same config again."""
    local = Path(model).expanduser()
    short = local.name if local.exists() else model
    name = f"{base}-{re.sub(r'[^A-Za-z0-9]+', '-', short).strip('-').lower()}"
    if overrides:
        name += "-" + hashlib.sha256(" ".join(overrides).encode()).hexdigest()[:6]
    return name


def read_models(path: Path, base: Path | None, extra: list[str]) -> list[Entry]:
    """Every line of ``path`` resolved against the base config (plus ``extra`` overrides)."""
    if not path.is_file():
        raise SstError("models file not found", path=path, fix="see models.txt / models.local.txt")
    base_cfg = load_config(base, extra)
    entries: list[Entry] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            tokens = shlex.split(raw, comments=True)
        except ValueError as e:
            raise SstError(
                f"cannot read the line: {e}", path=path, line=lineno, fix="close the quote"
            ) from None
        if not tokens:
            continue
        model, rest = tokens[0], tokens[1:]
        if "=" in model:
            raise SstError(
                f"the line starts with {model!r}, not a model",
                path=path,
                line=lineno,
                fix="write the model first, then key=value overrides",
            )
        overrides = []
        for item in rest:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise SstError(
                    f"{item!r} is not key=value",
                    path=path,
                    line=lineno,
                    fix="write e.g. lr=3e-5 or train.sampling=stratified:4",
                )
            dotted = key if "." in key else SHORT_KEYS.get(key)
            if dotted is None:
                raise SstError(
                    f"unknown key {key!r}",
                    path=path,
                    line=lineno,
                    fix=f"use one of {', '.join(sorted(SHORT_KEYS))} or section.key",
                )
            overrides.append(f"{dotted}={value}")
        name = entry_name(base_cfg.name, model, overrides)
        try:
            cfg = load_config(base, [*extra, f"model.name={model}", f"name={name}", *overrides])
        except SstError as e:
            raise SstError(e.what, path=path, line=lineno, fix=e.fix) from None
        if name in seen:
            raise SstError(
                f"the same model and overrides as line {seen[name]}",
                path=path,
                line=lineno,
                fix="delete one of the two lines",
            )
        seen[name] = lineno
        entries.append(Entry(lineno, model, tuple(overrides), name, cfg))
    if not entries:
        raise SstError("no models listed", path=path, line=1, fix="add one model per line")
    return entries


def new_sweep_id(models: Path, base: Config) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    digest = hashlib.sha256(models.read_bytes() + base.hash().encode()).hexdigest()[:6]
    return f"sweep-{stamp}-{digest}"


def find_run(cfg: Config) -> tuple[Path | None, Path | None]:
    """(completed run, partial run) in ``cfg.train.runs_dir`` made from exactly this config."""
    runs = Path(cfg.train.runs_dir)
    want = cfg.hash()
    done = partial = None
    for folder in sorted(runs.glob(f"*-{want[:8]}*"), key=lambda p: p.stat().st_mtime):
        if folder.name.endswith(".partial"):
            cfg_file = folder / "config.yaml"
            if cfg_file.is_file() and load_config(cfg_file).hash() == want:
                partial = folder
        elif (folder / "fingerprint.json").is_file() and (
            json.loads((folder / "fingerprint.json").read_text())["config_sha256"] == want
        ):
            done = folder
    return done, partial


def _last_error(log: Path) -> str:
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("sst train: error:") or re.match(r"^\w+(Error|Exception)\b", ln):
            return ln
    return lines[-1] if lines else "no output"


def _outcome(e: Entry, status: str, **kw: Any) -> Outcome:
    return Outcome(e.line, e.model, e.name, e.cfg.hash(), status, overrides=list(e.overrides), **kw)


def run_local(
    entries: list[Entry],
    *,
    base: Path | None,
    extra: list[str],
    sweep_dir: Path,
    resume: bool = False,
    out: TextIO | None = None,
) -> list[Outcome]:
    """Train every entry in its own ``sst train`` process, one after another."""
    out = out or sys.stdout
    (sweep_dir / "logs").mkdir(parents=True, exist_ok=True)
    outcomes: list[Outcome] = []
    n = len(entries)
    for i, e in enumerate(entries, start=1):
        prefix = f"[{i}/{n}] {e.name}"
        done, partial = find_run(e.cfg)
        if resume and done is not None:
            outcomes.append(_outcome(e, "skipped", run_dir=str(done)))
            print(f"{prefix}: already completed in {done} (skipped)", file=out, flush=True)
            write_manifest(sweep_dir, outcomes)
            continue
        cmd = [sys.executable, "-m", "sst.cli", "train"]
        if resume and partial is not None:
            cmd += ["--resume", str(partial)]
            print(f"{prefix}: continuing {partial}", file=out, flush=True)
        else:
            cmd += (["--config", str(base)] if base else []) + [*extra, *e.arguments]
            print(
                f"{prefix}: training {e.model} {' '.join(e.overrides)}".rstrip(),
                file=out,
                flush=True,
            )
        log = sweep_dir / "logs" / f"{e.name}.log"
        t0 = time.perf_counter()
        with log.open("w") as f:
            code = subprocess.call(
                cmd,
                stdout=f,
                stderr=subprocess.STDOUT,
                env=_child_env(sweep_dir),
            )
        seconds = time.perf_counter() - t0
        done, _ = find_run(e.cfg)
        if code == 0 and done is not None:
            fp = json.loads((done / "fingerprint.json").read_text())
            outcomes.append(
                _outcome(
                    e,
                    "completed",
                    run_dir=str(done),
                    seconds=seconds,
                    task_id=fp.get("clearml_task_id"),
                )
            )
            print(f"{prefix}: completed in {seconds:.0f} s → {done}", file=out, flush=True)
        else:
            error = _last_error(log) if code else "exited 0 but wrote no run folder"
            outcomes.append(_outcome(e, "failed", error=f"exit {code}: {error}", seconds=seconds))
            print(f"{prefix}: FAILED (exit {code}) {error}  [log {log}]", file=out, flush=True)
        write_manifest(sweep_dir, outcomes)
    return outcomes


def _child_env(sweep_dir: Path) -> dict[str, str]:
    """This environment, minus ClearML's mark of a process that already has a task (a child
    that inherits it gets a stub instead of its own task), plus the sweep id for the tags."""
    inherited = ("CLEARML_PROC_MASTER_ID", "TRAINS_PROC_MASTER_ID", "CLEARML_TASK_ID")
    env = {k: v for k, v in os.environ.items() if k not in inherited}
    return {**env, SWEEP_ENV: sweep_dir.name}


def write_manifest(sweep_dir: Path, outcomes: list[Outcome], **extra: Any) -> Path:
    """sweep.json, rewritten whole (temp file + rename) after every line."""
    path = sweep_dir / "sweep.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    data = {
        **old,
        **extra,
        "sweep_id": sweep_dir.name,
        "outcomes": [dataclasses.asdict(o) for o in outcomes],
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def task_parameters(e: Entry) -> dict[str, str]:
    """The clone's parameter overrides: ``config/<section>/<key>`` as `sst train` connects them."""
    params = {}
    for item in e.arguments:
        key, _, value = item.partition("=")
        params["config/" + key.replace(".", "/")] = value
    return params


def run_online(
    entries: list[Entry],
    *,
    base: Path,
    sweep_id: str,
    queue: str,
    wait: bool = False,
    out: TextIO | None = None,
) -> list[Outcome]:
    """Clone the template training task once per entry with its overrides, tag, enqueue."""
    out = out or sys.stdout
    from sst.repro import git_state
    from sst.tracking import enqueue_sweep, wait_for
    from sst.train import container_arguments, container_image

    git = git_state()
    if not git.get("remote") or not git.get("commit"):
        raise SstError(
            "an online sweep needs the kit's git remote and commit (agents clone it)",
            fix="run from a clone with remote.origin.url set",
        )
    project = entries[0].cfg.tracking.project
    children = [(e.name, task_parameters(e)) for e in entries]
    ids = enqueue_sweep(
        project,
        sweep_id,
        children,
        queue=queue,
        repo=git["remote"],
        commit=git["commit"],
        base_config=str(base),
        image=container_image(),
        docker_args=container_arguments(),
    )
    outcomes = [_outcome(e, "queued", task_id=i) for e, i in zip(entries, ids, strict=True)]
    for o in outcomes:
        print(f"{o.name}: queued on {queue!r} as task {o.task_id}", file=out, flush=True)
    if wait:
        final = wait_for(ids, out=out)
        for o in outcomes:
            o.status = final[o.task_id or ""]
    return outcomes


def sweep(
    models: Path,
    *,
    base: Path | None,
    extra: list[str],
    local: bool,
    queue: str | None,
    resume: bool = False,
    wait: bool = False,
    out: TextIO | None = None,
) -> tuple[Path, list[Outcome]]:
    """Read and check every line, then run the sweep; returns (sweep folder, outcomes)."""
    out = out or sys.stdout
    entries = read_models(models, base, extra)
    base_cfg = load_config(base, extra)
    sweep_id = new_sweep_id(models, base_cfg)
    sweep_dir = Path(base_cfg.train.runs_dir) / "sweeps" / sweep_id
    sweep_dir.mkdir(parents=True)
    write_manifest(
        sweep_dir,
        [],
        models=str(models),
        base_config=str(base),
        overrides=extra,
        mode="local" if local else f"queue {queue}",
    )
    print(f"sweep {sweep_id}: {len(entries)} models from {models}", file=out, flush=True)
    if local:
        outcomes = run_local(
            entries, base=base, extra=extra, sweep_dir=sweep_dir, resume=resume, out=out
        )
    else:
        if base is None or queue is None:
            raise SstError("an online sweep needs --config and --queue", fix="add both")
        outcomes = run_online(
            entries, base=base, sweep_id=sweep_id, queue=queue, wait=wait, out=out
        )
    write_manifest(sweep_dir, outcomes)
    if local and base_cfg.tracking.enabled:
        _record_sweep_task(base_cfg, sweep_id, models, outcomes)
    return sweep_dir, outcomes


def _record_sweep_task(cfg: Config, sweep_id: str, models: Path, outcomes: list[Outcome]) -> None:
    """The sweep as its own (offline) ClearML task listing its children."""
    import pandas as pd

    from sst.tracking import start_task

    tracker = start_task(
        cfg.tracking.project,
        f"sweep {sweep_id}",
        "controller",
        {"models": str(models), "models_sha256": hashlib.sha256(models.read_bytes()).hexdigest()},
        tags=[sweep_id],
        quiet=True,
    )
    try:
        tracker.connect("children", {o.name: o.task_id or o.status for o in outcomes})
        table = pd.DataFrame(
            [
                {
                    "line": o.line,
                    "model": o.model,
                    "status": o.status,
                    "task": o.task_id or "",
                    "error": o.error or "",
                }
                for o in outcomes
            ],
            index=[o.name for o in outcomes],
        )
        tracker.report_table("sweep", "outcomes", table)
    finally:
        tracker.close()
