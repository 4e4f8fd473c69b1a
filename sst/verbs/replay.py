"""`sst replay` / `sst verify`: prove that a run reproduces bit for bit, or name what differs.

    sst replay runs/<id>                           # re-run from the recorded config + data + seed
    sst replay ~/.clearml/cache/offline/<task>.zip # same, from an offline ClearML session
    sst replay <clearml-task-id> --queue gpu       # server: clone (image, params), enqueue, wait
    sst replay runs/<id> train.threads=1           # deliberately change one input: what breaks?
    sst verify runs/<a> runs/<b>                   # compare two finished runs

A replay uses only what the run recorded (its config, its split manifest, its seed and thread
count), never the current working config. The split is checked against the recorded manifest
sha256 before anything trains (a changed or tampered data file is refused). The last line is the
verdict: ``BIT-IDENTICAL (weights sha256 …)`` or ``DIFFERENT`` followed by every fingerprint field
that differs — each marked as one that is expected to break bit-identity (threads, CPU vs GPU,
GPU model, torch/CUDA versions, image, system libraries), a different input, or, when nothing
recorded explains the difference, a determinism bug — and the metric deltas. Exit code 0 only
for identical weights.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sst.config import Config, flatten, load_config
from sst.env.cpu import VENDOR_FREE, use_cpu_isa
from sst.errors import SstError
from sst.io import MANIFEST, sha256_file, verify
from sst.model.metrics import HEADLINE, LEVELS
from sst.run import fingerprint as fp
from sst.run import folder as runs
from sst.tracking import server
from sst.tracking.agent import parameters_to_overrides
from sst.tracking.tracker import REDACTED, read_session
from sst.verbs.prepare import ensure_split


@dataclass
class Recorded:
    """What one run recorded: enough to re-run it and to compare with another."""

    source: str
    config: Config
    fingerprint: dict[str, str]  # flattened, values as text
    metrics: dict[str, float] = field(default_factory=dict)  # "test/root/accuracy" → value
    tracking: str | None = None  # where its task is: a link, or the offline session to upload

    @property
    def weights(self) -> str:
        return self.fingerprint.get(fp.WEIGHTS, "")


def _normal(value: str) -> str:
    """One spelling for values that went through ClearML (True/true, 1/1.0, ['a']/["a"])."""
    v = value.strip()
    if v in ("True", "False", "None", ""):
        return {"True": "true", "False": "false", "None": "null", "": "null"}[v]
    if v.startswith("[") and "'" in v:
        v = v.replace("'", '"')
    return v


def _metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The headline metrics, flat, and a budget-stopped run's epochs (``runs.BUDGET_EPOCHS``)."""
    training = metrics.get("training") or {}
    stopped = training.get("stopped") == "budget"
    return ({runs.BUDGET_EPOCHS: float(training["epochs"])} if stopped else {}) | {
        f"{stage}/{level}/{key}": float(metrics[stage][level][key])
        for stage in ("val", "test")
        if stage in metrics
        for level in LEVELS
        if level in metrics[stage]
        for key in HEADLINE
        if key in metrics[stage][level]
    }


def from_run(folder: Path, reads: tuple[str, ...] | None = (runs.CONFIG,)) -> Recorded:
    """A run folder, its files verified (those it ``reads`` must be there: None, all)."""
    run = runs.Run.open(folder, need=(runs.CONFIG, runs.FINGERPRINT)).verify(reads)
    return Recorded(str(folder), run.config, flatten(run.fingerprint, "/"), _metrics(run.metrics))


def from_parameters(
    source: str, params: dict[str, str], recorded: dict[str, Any], single: dict[str, float]
) -> Recorded:
    """From a task's flat parameters (``config/…``), its ``fingerprint`` configuration object
    and its single values. Tasks recorded before the fingerprint moved out of the hyperparameters
    hold it as ``fingerprint/…`` parameters: read there when the object is absent."""
    cfg = load_config(None, parameters_to_overrides(params))
    fingerprint = flatten(recorded, "/") or {
        k.removeprefix("fingerprint/"): str(v)
        for k, v in params.items()  # ClearML's own flag is not a field
        if k.startswith("fingerprint/") and not k.endswith("/_ignore_remote_overrides_")
    }
    if not fingerprint.get(fp.CONFIG):
        raise SstError(
            "the task has no fingerprint (not an sst train task?)",
            path=source,
            fix="replay a task written by sst train",
        )
    if fingerprint[fp.CONFIG] != cfg.hash():
        raise SstError(
            "the task's config does not give its recorded config hash",
            path=source,
            fix="was the task edited? replay its run folder instead",
        )
    return Recorded(source, cfg, fingerprint, single)


def from_session(path: Path) -> Recorded:
    """An offline ClearML session (the zip, or its folder)."""
    session = read_session(path)
    fingerprint = session.configuration(server.FINGERPRINT) or {}
    return from_parameters(str(path), session.parameters, fingerprint, session.single_values)


def load(source: str, reads: tuple[str, ...] | None = (runs.CONFIG,)) -> Recorded:
    """A run folder (see :func:`from_run`), an offline session (zip or folder), or a task on
    the server (id or link)."""
    path = Path(source).expanduser()
    if path.is_dir() and not (path / "task.json").is_file():
        return from_run(path, reads)
    if path.exists():
        return from_session(path)
    if task_id := server.task_id_from(source):
        return from_parameters(task_id, *server.task_record(task_id))
    raise SstError(
        "no such run folder, session or task",
        path=source,
        fix="pass runs/<id>, an offline session .zip, or a ClearML task id or link",
    )


def intact(folder: Path) -> str:
    """`sst verify RUN`: every file the run records re-hashed (refused unless all match)."""
    names = sorted(runs.Run.open(folder).verify().recorded_files())
    return f"intact: {len(names)} files match {runs.FINGERPRINT} ({', '.join(names)})"


@dataclass
class Verdict:
    identical: bool
    weights: tuple[str, str]
    differences: list[tuple[str, str, str, str]]  # field, a, b, why
    deltas: dict[str, float]

    def render(self) -> str:
        a, b = self.weights
        lines = []
        for name, va, vb, why in self.differences:
            lines.append(f"  {name}: {va} → {vb}  ({why})")
        if self.identical:
            head = f"BIT-IDENTICAL (weights sha256 {a})"
            if lines:
                lines.insert(0, "recorded differences that did not change a bit:")
            return "\n".join([*lines, head])
        lines.insert(
            0,
            "fingerprint fields that differ:"
            if lines
            else "no recorded fingerprint field differs: this is a determinism bug "
            "(please report it with both fingerprint.json files)",
        )
        changed = {k: v for k, v in self.deltas.items() if v}
        if changed:
            lines.append(
                "metric deltas (b - a): "
                + ", ".join(f"{k} {v:+.4f}" for k, v in sorted(changed.items()))
            )
        return "\n".join([*lines, f"DIFFERENT (weights sha256 {a[:16]}… vs {b[:16]}…)"])


def why_it_differs(key: str, pinned: str | None) -> str | None:
    """What a difference in the fingerprint field ``key`` means, from its declaration in
    :mod:`sst.run.fingerprint` (None: not compared); ``pinned`` is the portable kernel level both
    runs pinned, if any."""
    declared = fp.field_of(key)
    if declared is None:  # a field of another sst version
        return "recorded, not known to matter"
    if declared.meaning not in fp.COMPARED:
        return None
    if pinned and pinned in declared.pinned_by:
        return f"both pinned to SST_CPU_ISA={pinned} kernels: not expected to change a bit"
    return f"{declared.meaning.value}: {declared.why}"


def compare(a: Recorded, b: Recorded) -> Verdict:
    level = a.fingerprint.get(fp.PINNED, "native")
    pinned = level if level != "native" and level == b.fingerprint.get(fp.PINNED) else None
    vendors = {r.fingerprint.get(fp.VENDOR) for r in (a, b)} - {None}
    if pinned not in VENDOR_FREE and len(vendors) > 1:
        pinned = None  # avx2's kernels are one vendor's: across vendors nothing is pinned
    diffs = []
    for key in sorted(set(a.fingerprint) | set(b.fingerprint)):
        va, vb = a.fingerprint.get(key, "—"), b.fingerprint.get(key, "—")
        if _normal(va) == _normal(vb) or REDACTED in (va, vb):  # a session hides secrets
            continue
        declared = fp.field_of(key)
        if declared and declared.since and "—" in (va, vb):  # recorded since: not a difference
            continue
        if (why := why_it_differs(key, pinned)) is not None:
            diffs.append((key, va, vb, why))
    order = {f.name: i for i, f in enumerate(fp.FIELDS)}  # inputs first, as declared
    diffs.sort(key=lambda d: (order.get(d[0], len(order)), d[0]))
    deltas = {k: b.metrics[k] - a.metrics[k] for k in sorted(set(a.metrics) & set(b.metrics))}
    identical = bool(a.weights) and a.weights == b.weights
    return Verdict(identical, (a.weights, b.weights), diffs, deltas)


def replay(
    source: str, overrides: list[str] | None = None, *, out_root: Path | None = None
) -> tuple[Recorded, Recorded, Verdict]:
    """Re-run a recorded run here (its config, plus ``overrides`` when testing what breaks
    identity) into ``<runs_dir>/replays/``, then compare. The split must be the recorded one."""
    rec = load(source)
    if level := rec.fingerprint.get(fp.PINNED):
        use_cpu_isa(level)  # the recorded kernels, chosen when torch loads: next line
    from sst.verbs.train import train

    cfg = rec.config
    if overrides:
        cfg = load_config(None, [*_as_overrides(cfg), *overrides])
    check_split(cfg, rec.fingerprint.get(fp.SPLIT, ""))
    result = train(
        cfg,
        runs_dir=out_root or Path(cfg.train.runs_dir) / runs.REPLAYS,
        model_commit=rec.fingerprint.get(fp.MODEL_COMMIT),  # the weights it loaded, not main's
        stop_after=int(e) if (e := rec.metrics.get(runs.BUDGET_EPOCHS)) else None,
    )
    new = from_run(result.run_dir)
    new.tracking = result.tracking
    return rec, new, compare(rec, new)


def _as_overrides(cfg: Config) -> list[str]:
    return [f"{k}={v}" for k, v in flatten(cfg.to_dict()).items()]


def check_split(cfg: Config, recorded_sha: str) -> None:
    """The split the run used, byte for byte: its manifest sha256 and every file in it. Made
    from the recorded sources (sha256-checked) when the folder is missing."""
    folder = Path(cfg.train.split)
    ensure_split(cfg)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise SstError(
            "the run's split is not here",
            path=folder,
            fix="copy the split folder, or run `sst split` with the run's config",
        )
    got = sha256_file(manifest)
    if recorded_sha and got != recorded_sha:
        raise SstError(
            f"split manifest sha256 {got[:12]}… is not the recorded {recorded_sha[:12]}…",
            path=manifest,
            fix="replay with the split the run used",
        )
    verify(folder)  # every file against the manifest: a tampered file is refused here


def replay_online(source: str, queue: str) -> tuple[Recorded, Recorded, Verdict]:
    """Server: clone the task (same image, same parameters), enqueue it, wait, compare."""
    task_id = server.require_task_id(source)
    original = from_parameters(task_id, *server.task_record(task_id))
    clone_id = server.clone_task(task_id, queue)
    status = server.wait_for([clone_id], out=sys.stderr)[clone_id]  # a failure's log tail too
    if status not in server.DONE:
        raise SstError(
            f"the replay task {clone_id} ended {status}",
            fix=f"see the end of its log above, or all of it: {server.link(clone_id)}",
        )
    new = from_parameters(clone_id, *server.task_record(clone_id))
    new.tracking = f"ClearML task {clone_id}: {server.link(clone_id)}"
    return original, new, compare(original, new)
