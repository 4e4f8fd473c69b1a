"""`sst tune --queue`: ClearML's HyperParameterOptimizer, Optuna as its strategy, over the template.

    sst tune --space configs/spaces/demo.yaml --config configs/demo.yaml --queue gpu

The trials are clones of a base task: the sweep template (:func:`sst.tracking.server.
sweep_template`, the kit's commit and diff running ``sst.cli train --config <base>``) cloned once
more with the command line's ``key=value`` overrides, so every trial gets them. ClearML's
``OptimizerOptuna`` draws each trial's values (the space's :meth:`Dimension.parameter` ranges,
TPE seeded with the space's seed), clones the base with them as ``config/…`` parameters, enqueues
it, polls it and reads its objective from the task's ``last_metrics`` on the server: the highest
``val/root/macro_f1`` it reported (``max_global``), the scalar ClearML's TensorBoard binding names
``val_root`` / ``macro_f1``. The search itself is a task of type optimizer, the trials' parent,
holding ClearML's own progress reports and the kit's leaderboard.
"""

from __future__ import annotations

import math
import sys
from typing import Any, TextIO

from sst.config import load_config
from sst.config.space import Dimension, Space
from sst.env.git import git_patch
from sst.run.trials import Trial, leaderboard
from sst.tracking import agent, server, tracker

# val/root/macro_f1 as the trial's TensorBoard logger reaches ClearML: the tag's last part is the
# series, the rest joined by "_" the title (clearml/binding/frameworks/tensorflow_bind.py)
OBJECTIVE_TITLE, OBJECTIVE_SERIES = "val_root", "macro_f1"
STOPPED_TAGS = {"early-stopped": "early", "budget-stopped": "budget"}  # what `sst train` tags


def parameter(d: Dimension) -> Any:
    """ClearML's range for the draw :meth:`Dimension.suggest` makes in-process (OptimizerOptuna
    turns it back into that suggest call: clearml/automation/optuna/optuna.py)."""
    from clearml.automation import (
        DiscreteParameterRange,
        LogUniformParameterRange,
        UniformIntegerParameterRange,
        UniformParameterRange,
    )

    name = d.parameter_name
    if d.kind == "choice":
        return DiscreteParameterRange(name, values=list(d.values))
    low, high = d.values
    if d.kind == "int":
        return UniformIntegerParameterRange(name, low, high, include_max_value=True)
    if d.kind == "log_uniform":  # ClearML holds the exponents
        return LogUniformParameterRange(name, math.log10(low), math.log10(high), base=10)
    return UniformParameterRange(name, low, high)


def report(search: tracker.Tracker, trials: list[Trial]) -> None:
    """The search's task: each trial's task (or how it ended without one), the leaderboard."""
    tasks = {str(t.number): t.task_id or t.state for t in trials}
    search.record("trials", tasks, "each trial's task (or how it ended without one)")
    search.report_table("tune", "leaderboard", leaderboard(trials))


def optimize(
    space: Space,
    tune_id: str,
    *,
    base: Any,
    extra: list[str],
    queue: str,
    source: tuple[str, str],
    args: list[str],
    out: TextIO | None = None,
) -> list[Trial]:
    """Run the search on ``queue`` until ``space.trials`` trials ended; returns them in the order
    they were made. ``source``: the kit's remote and commit, from :func:`server.agents_source`
    (which checked the queue before any task is made)."""
    import optuna
    from clearml.automation import HyperParameterOptimizer
    from clearml.automation.optuna import OptimizerOptuna

    out = out or sys.stdout
    repo, commit = source
    Task = server.task_class()
    project = load_config(base, extra).tracking.project
    template = server.sweep_template(
        project,
        repo=repo,
        commit=commit,
        base_config=agent.repo_relative(base),
        diff=git_patch(),
    )
    search = tracker.start_task(project, tune_id, "optimizer", tags=[tune_id], quiet=True)
    try:
        search.record_script(args)
        trial_base = Task.clone(source_task=template, name=f"{tune_id} base", parent=search.id)
        trial_base.set_parameters(agent.overrides_to_parameters(extra))
        trial_base.set_tags([tune_id])  # not the template's: the trials are clones of this one
        poll = server.POLL / 60.0  # minutes, as ClearML counts
        optimizer = HyperParameterOptimizer(
            base_task_id=str(trial_base.id),
            hyper_parameters=[parameter(d) for d in space.dimensions],
            objective_metric_title=OBJECTIVE_TITLE,
            objective_metric_series=OBJECTIVE_SERIES,
            objective_metric_sign="max_global",
            optimizer_class=OptimizerOptuna,
            max_number_of_concurrent_tasks=space.concurrent,
            execution_queue=queue,
            auto_connect_task=search.task,
            total_max_jobs=space.trials,
            max_iteration_per_job=None,
            min_iteration_per_job=None,
            pool_period_min=poll,
            optuna_sampler=optuna.samplers.TPESampler(seed=space.seed),
            # every trial trains its schedule (or until its own early stopping), as --local does:
            # Optuna's default MedianPruner would abort a trial whose score is below the median
            optuna_pruner=optuna.pruners.NopPruner(),
        )
        # ClearML's progress reports as often as the trials are polled: its reporter thread sleeps
        # a report period (5 min by default) and optimizer.stop() waits for its last report
        optimizer.set_report_period(poll)
        by_name = {d.parameter_name: d.key for d in space.dimensions}
        strategy = optimizer.get_optimizer()
        strategy.set_job_naming_scheme(
            lambda _, params: (
                f"{tune_id} trial: "
                + " ".join(f"{by_name.get(k, k)}={v}" for k, v in sorted(params.items()))
            )
        )
        print(f"{tune_id}: search task {search.id}, trials on {queue!r}", file=out, flush=True)
        optimizer.start()
        optimizer.wait()
        optimizer.stop()
        objective: Any = optimizer.objective_metric  # one objective: its Objective
        trials = []
        for number, (task_id, params) in enumerate(strategy.get_created_jobs_ids().items()):
            task = Task.get_task(task_id=task_id)
            status = str(task.get_status())
            value = objective.get_objective(task_id)
            stopped = next((STOPPED_TAGS[t] for t in task.get_tags() if t in STOPPED_TAGS), None)
            trials.append(
                Trial(
                    number,
                    {by_name.get(k, k): v for k, v in params.items()},
                    status,
                    value=value,
                    stopped=stopped,
                    task_id=task_id,
                    note=None if status in server.DONE else " | ".join(server.log_tail(task, 3)),
                )
            )
            shown = f"{value:.4f}" if value is not None else "no objective"
            print(f"trial {number} (task {task_id}): {status}, {shown}", file=out, flush=True)
        report(search, trials)
    finally:
        search.close()
    return trials
