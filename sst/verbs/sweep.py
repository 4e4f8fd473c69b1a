"""`sst sweep`: a model zoo (``models.txt``) → one training run per line, here or on ClearML queues.

    sst sweep --models models.local.txt --local             # each model in its own process, here
    sst sweep --models models.local.txt --local --resume    # skip completed runs, continue partial
    sst sweep --models models.txt --queue gpu [--wait]      # clone the template task per line

Every line of ``models.txt`` (see :mod:`sst.config.zoo`) is resolved into a full config, and its
model checked (an existing folder, ``minilm`` or a well-formed hub id), before anything starts:
every bad line is reported at once, one ``models.txt:N: …`` each, and nothing trains (exit 2).

Locally each model trains in its own ``sst train`` process (a crash or an out-of-memory kill in one
does not end the sweep), with its own offline ClearML task tagged with the sweep id; the outcome of
every line (completed, failed with its error, skipped) is written to
``<runs_dir>/sweeps/<sweep-id>/sweep.json`` after each line and shown by ``sst report``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from sst.config import Config, load_config
from sst.config.zoo import Entry, read_models
from sst.errors import SstError
from sst.model.module import looks_local, model_problem, resolve_model
from sst.run import folder as runs
from sst.tracking import agent, server
from sst.tracking.tracker import Tracker, tracked


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


def new_sweep_id(models: Path, base: Config) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    digest = hashlib.sha256(models.read_bytes() + base.hash().encode()).hexdigest()[:6]
    return f"sweep-{stamp}-{digest}"


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
        done, partial = runs.find_by_config(e.cfg)
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
        done, _ = runs.find_by_config(e.cfg)
        if code == 0 and done is not None:
            task_id = runs.Run(done).task_id
            outcomes.append(
                _outcome(e, "completed", run_dir=str(done), seconds=seconds, task_id=task_id)
            )
            print(f"{prefix}: completed in {seconds:.0f} s → {done}", file=out, flush=True)
        else:
            error = _last_error(log) if code else "exited 0 but wrote no run folder"
            outcomes.append(_outcome(e, "failed", error=f"exit {code}: {error}", seconds=seconds))
            print(f"{prefix}: FAILED (exit {code}) {error}  [log {log}]", file=out, flush=True)
        write_manifest(sweep_dir, outcomes)
    return outcomes


def _child_env(sweep_dir: Path) -> dict[str, str]:
    """A child's environment (its own ClearML task) with the sweep id for the tags."""
    return {**agent.child_environment(), agent.SWEEP_ENV: sweep_dir.name}


def write_manifest(sweep_dir: Path, outcomes: list[Outcome], **extra: Any) -> Path:
    """sweep.json, rewritten whole (temp file + rename) after every line."""
    path = sweep_dir / runs.SWEEP_RECORD
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


COMMIT = re.compile(r"[0-9a-f]{40}")


def unpinned(models: Path, entries: list[Entry]) -> list[str]:
    """One line per hub model whose ``model.revision`` is not a commit: when its branch moves,
    a replay of the run loads the recorded commit, but a new run of the line trains other
    weights. A folder and the embedded model are identified by their files' sha256."""
    lines = []
    for e in entries:
        name, revision = e.cfg.model.name, e.cfg.model.revision
        if not looks_local(resolve_model(name)) and not COMMIT.fullmatch(revision):
            lines.append(
                f"{models}:{e.line}: {name} at revision {revision!r}, not a commit: the line "
                f"trains whatever {revision!r} is when it runs (fix: add "
                "model.revision=<40-hex commit> to the line; runs record the commit either way)"
            )
    return lines


def task_parameters(e: Entry) -> dict[str, str]:
    """The clone's parameter overrides: ``config/<section>/<key>`` as `sst train` connects them."""
    return agent.overrides_to_parameters(e.arguments)


def run_online(
    entries: list[Entry],
    *,
    base: Path,
    sweep_id: str,
    queue: str,
    wait: bool = False,
    out: TextIO | None = None,
    args: list[str] | None = None,
) -> list[Outcome]:
    """Clone the template training task once per entry with its overrides, tag, enqueue;
    ``args`` is the `sst sweep` command line the controller task records."""
    out = out or sys.stdout
    repo, commit = server.agents_source("a sweep", queue)
    project = entries[0].cfg.tracking.project
    children = [(e.name, task_parameters(e)) for e in entries]
    ids = server.enqueue_sweep(
        project,
        sweep_id,
        children,
        queue=queue,
        repo=repo,
        commit=commit,
        base_config=agent.repo_relative(base),
        args=args or ["sweep", "--config", agent.repo_relative(base), "--queue", queue],
    )
    outcomes = [_outcome(e, "queued", task_id=i) for e, i in zip(entries, ids, strict=True)]
    for o in outcomes:
        print(f"{o.name}: queued on {queue!r} as task {o.task_id}", file=out, flush=True)
    if wait:
        final = server.wait_for(ids, out=out)
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
    # an online sweep's folders are the agents' to have: only hub ids are checked here
    entries = read_models(models, base, extra, functools.partial(model_problem, here=local))
    for warning in unpinned(models, entries):
        print(f"sst sweep: warning: {warning}", file=sys.stderr)
    base_cfg = load_config(base, extra)
    sweep_id = new_sweep_id(models, base_cfg)
    sweep_dir = Path(base_cfg.train.runs_dir) / runs.SWEEPS / sweep_id
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
    args = ["sweep", "--models", agent.repo_relative(models)]
    args += ["--config", agent.repo_relative(base)] if base else []
    args += [*extra, "--local"] if local else [*extra, "--queue", str(queue)]
    if local:
        outcomes = run_local(
            entries, base=base, extra=extra, sweep_dir=sweep_dir, resume=resume, out=out
        )
    else:
        if base is None or queue is None:
            raise SstError("an online sweep needs --config and --queue", fix="add both")
        outcomes = run_online(
            entries, base=base, sweep_id=sweep_id, queue=queue, wait=wait, out=out, args=args
        )
    write_manifest(sweep_dir, outcomes)
    if local:  # online, enqueue_sweep made the controller task
        with tracked(
            base_cfg.tracking.project,
            f"sweep {sweep_id}",
            "controller",
            {
                "models": str(models),
                "models_sha256": hashlib.sha256(models.read_bytes()).hexdigest(),
            },
            args=args,
            enabled=base_cfg.tracking.enabled,
            tags=[sweep_id],
        ) as tracker:
            if tracker is not None:
                _report_sweep(tracker, outcomes)
    return sweep_dir, outcomes


def _report_sweep(tracker: Tracker, outcomes: list[Outcome]) -> None:
    """The local sweep's controller task: its children and their outcomes."""
    children = {o.name: o.task_id or o.status for o in outcomes}
    tracker.record("children", children, "each model's task (or why it has none)")
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
