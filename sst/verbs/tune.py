"""`sst tune`: a hyperparameter search over one model, here or on a ClearML queue.

    sst tune --space configs/spaces/demo.yaml --config configs/demo.yaml --local
    sst tune --space configs/spaces/demo.yaml --config configs/demo.yaml --queue gpu

The space file (:mod:`sst.config.space`) names the keys to vary; every trial is `sst train` of
the base config with the trial's values as overrides, so each is a run like any other: its own
folder or task, replayed by `sst replay`. The objective is the best validation root macro-F1 of
the trial's validations (``val/root/macro_f1``: what best checkpoints and early stopping follow,
the score of the weights ``train.evaluate=best`` keeps), never a test figure; a base config
whose split has no validation set is refused. The sampler is Optuna's TPE seeded with the
file's ``seed``: the same space, seed and results give the same trials.

``--local``: Optuna in this process, one trial after another. ``--queue``: ClearML's
``HyperParameterOptimizer`` with ``OptimizerOptuna`` clones the sweep template (the one
`sst sweep --queue` uses) per trial onto the queue and reads each clone's objective from the
server (:mod:`sst.tracking.search`). Both ways a trial repeating an earlier trial's values is
pruned rather than trained (ClearML's OptimizerOptuna does so), a failed trial is recorded with
its error and the search goes on, and a trial that early stopping or the time budget ended says
so. The record is ``<runs_dir>/tunes/<tune-id>/tune.json`` (rewritten after each trial); the
leaderboard, best first, is printed and reported to the search's own ClearML task.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from sst.config import Config, load_config
from sst.config.space import Space, read_space
from sst.errors import SstError
from sst.io import MANIFEST
from sst.run import folder as runs
from sst.run.trainer import MONITOR
from sst.run.trials import OBJECTIVE, Trial, best
from sst.tracking import agent, search, server
from sst.tracking.tracker import tracked


def new_tune_id(space: Path, base: Config) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    digest = hashlib.sha256(space.read_bytes() + base.hash().encode()).hexdigest()[:6]
    return f"tune-{stamp}-{digest}"


def needs_validation(cfg: Config) -> None:
    """Refuse a split without a validation part (the kit then validates on test: tuning on it
    would select on the test set). The split must be here to be checked, also for a search on
    agents (which make or fetch the same split, verified against its manifest)."""
    manifest = Path(cfg.train.split) / MANIFEST
    if not manifest.is_file():
        raise SstError(
            f"the split {cfg.train.split} is not here: a search checks it has a validation set",
            fix="make it first (`sst split` with the same config), or fetch it",
        )
    if "val.tsv" not in json.loads(manifest.read_text())["files"]:
        raise SstError(
            f"the split {cfg.train.split} has no validation set: a search would select on test",
            fix="make a split with split.val_fraction > 0 (or split.folds) and tune on it",
        )


def best_validation(run_dir: Path) -> float:
    """The objective of a finished run: the highest ``val/root/macro_f1`` it logged."""
    from sst.viz.pictures import scalars

    curve = scalars(run_dir / runs.TENSORBOARD).get(MONITOR)
    if not curve:
        raise SstError(f"{run_dir} logged no {MONITOR}", fix="tune on a split with validation")
    return max(value for _, value in curve)


def run_local(
    space: Space, base: Path | None, extra: list[str], write: Any, out: TextIO
) -> list[Trial]:
    """Optuna in this process: TPE seeded with ``space.seed``, one `sst train` per trial."""
    import optuna

    from sst.verbs.train import train

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the kit prints each trial itself
    trials: list[Trial] = []

    def objective(trial: Any) -> float:
        params = {d.key: d.suggest(trial) for d in space.dimensions}
        shown = " ".join(space.overrides(params))
        record = Trial(trial.number, params, "running")
        trials.append(record)
        prefix = f"[{trial.number + 1}/{space.trials}]"
        try:
            if twin := next((t for t in trials[:-1] if t.params == params), None):
                record.state, record.note = "pruned", f"the values of trial {twin.number}"
                print(f"{prefix} {shown}: pruned (the values of trial {twin.number})", file=out)
                raise optuna.TrialPruned(record.note)
            print(f"{prefix} {shown}: training", file=out, flush=True)
            result = train(load_config(base, [*extra, *space.overrides(params)]))
            record.run_dir = str(result.run_dir)
            record.task_id = runs.Run(result.run_dir).task_id
            record.stopped = (result.metrics.get("training") or {}).get("stopped")
            record.value = best_validation(result.run_dir)
            record.state = "completed"
            stop = f", {record.stopped}-stopped" if record.stopped else ""
            print(f"{prefix} {MONITOR} {record.value:.4f}{stop} → {result.run_dir}", file=out)
            return record.value
        except optuna.TrialPruned:
            raise
        except Exception as e:  # recorded, and the search goes on (Optuna marks it failed)
            record.state, record.note = "failed", str(e).splitlines()[0]
            print(f"{prefix} FAILED: {record.note}", file=out, flush=True)
            raise
        finally:
            write(trials)

    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=space.seed)
    )
    study.optimize(objective, n_trials=space.trials, catch=(Exception,))
    return trials


def write_record(tune_dir: Path, trials: list[Trial], **extra: Any) -> Path:
    """tune.json, rewritten whole (temp file + rename) after every trial."""
    path = tune_dir / runs.TUNE_RECORD
    old = json.loads(path.read_text()) if path.is_file() else {}
    data = {**old, **extra, "trials": [dataclasses.asdict(t) for t in trials]}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


@dataclass
class Tuned:
    tune_dir: Path
    trials: list[Trial]
    best: Trial | None


def tune(
    space_path: Path,
    *,
    base: Path | None,
    extra: list[str],
    local: bool,
    queue: str | None,
    out: TextIO | None = None,
) -> Tuned:
    """Read and check the space against the base config, then search; returns the record."""
    out = out or sys.stdout
    space = read_space(space_path)
    space.check(base, extra)
    cfg = load_config(base, extra)
    if local:
        from sst.verbs.prepare import ensure_split

        ensure_split(cfg)  # once, before the first trial (the trials share it)
    needs_validation(cfg)
    if not local:
        if base is None or queue is None:
            raise SstError("a search on a queue needs --config and --queue", fix="add both")
        # a server, the queue and the kit's remote, or one line and no folder
        source = server.agents_source("a search", queue)
    tune_id = new_tune_id(space_path, cfg)
    tune_dir = Path(cfg.train.runs_dir) / runs.TUNES / tune_id
    tune_dir.mkdir(parents=True)
    args = ["tune", "--space", agent.repo_relative(space_path)]
    args += ["--config", agent.repo_relative(base)] if base else []
    args += [*extra, "--local"] if local else [*extra, "--queue", str(queue)]
    write_record(
        tune_dir,
        [],
        tune_id=tune_id,
        space=str(space_path),
        space_sha256=hashlib.sha256(space_path.read_bytes()).hexdigest(),
        base_config=str(base),
        overrides=extra,
        seed=space.seed,
        objective=OBJECTIVE,
        mode="local" if local else f"queue {queue}",
    )
    print(f"{tune_id}: {space.trials} trials of {len(space.dimensions)} keys", file=out, flush=True)
    if local:
        with agent.tagged(tune_id):  # each trial's task carries the search's id
            trials = run_local(space, base, extra, lambda t: write_record(tune_dir, t), out)
        with tracked(
            cfg.tracking.project,
            tune_id,
            "optimizer",
            {"space": str(space_path), "seed": space.seed, "trials": space.trials},
            args=args,
            enabled=cfg.tracking.enabled,
            tags=[tune_id],
        ) as tracker:
            if tracker is not None:
                search.report(tracker, trials)
    else:
        assert base is not None and queue is not None
        trials = search.optimize(
            space, tune_id, base=base, extra=extra, queue=queue, source=source, args=args, out=out
        )
    write_record(tune_dir, trials)
    return Tuned(tune_dir, trials, best(trials))
