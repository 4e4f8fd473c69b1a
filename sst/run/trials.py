"""A hyperparameter search's trials (`sst tune`, here or on a queue) and their leaderboard.

python -c "import json; from sst.run.trials import Trial, leaderboard
           print(leaderboard([Trial(**t) for t in json.load(open('tune.json'))['trials']]))"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from sst.run.trainer import MONITOR

OBJECTIVE = f"best {MONITOR} over the trial's validations (maximised)"


@dataclass
class Trial:
    number: int
    params: dict[str, Any]  # config key → value
    state: str  # completed | pruned | failed (online: the trial task's ClearML status)
    value: float | None = None  # the objective
    stopped: str | None = None  # early | budget: the run did not train its whole schedule
    run_dir: str | None = None
    task_id: str | None = None
    note: str | None = None  # a failed trial's error, a pruned one's reason


def leaderboard(trials: list[Trial]) -> pd.DataFrame:
    """The trials, best objective first (then those without one, by number), with their values,
    how each ended, and its run folder or task."""
    rows = [
        {
            "trial": t.number,
            MONITOR: t.value,
            "state": t.state,
            "stopped": t.stopped or "",
            **t.params,
            "run": t.run_dir or t.task_id or "",
            "note": t.note or "",
        }
        for t in sorted(trials, key=lambda t: (t.value is None, -(t.value or 0.0), t.number))
    ]
    return pd.DataFrame(rows).set_index("trial") if rows else pd.DataFrame()


def best(trials: list[Trial]) -> Trial | None:
    """The trial with the highest objective (the first such, by number), or None."""
    done = [t for t in trials if t.value is not None]
    return max(done, key=lambda t: t.value or 0.0) if done else None
