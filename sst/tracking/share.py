"""`sst upload`: put a run recorded offline on the ClearML server, results included.

    sst upload ~/.clearml/cache/offline/offline-<id>.zip               # finds its run folder
    sst upload ~/.clearml/cache/offline/offline-<id>.zip --run runs/<id>

The session becomes a server task (``Task.import_offline_session``) and the run folder's shared
files (:data:`sst.run.folder.SHARED`: config, fingerprint, metrics, predictions, weights, figure)
its artifacts, so the printed link is all a colleague needs: ``sst replay <link>``,
``sst verify <link> runs/<theirs>``, ``sst predict --task <link> …``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sst.errors import SstError
from sst.run import folder as runs
from sst.tracking import server
from sst.tracking.agent import remote_problem
from sst.tracking.tracker import read_session


def find_run(session: Path) -> Path | None:
    """The finished run folder an offline training session belongs to: named by the session's
    run-id tag in its ``train.runs_dir``, with the session's task id in its fingerprint."""
    recorded = read_session(session)
    task_id = recorded.task.get("id")
    runs_dir = Path(recorded.parameters.get("config/train/runs_dir") or "runs")
    for tag in recorded.task.get("tags", []):
        folder = runs_dir / tag
        if runs.Run(folder).task_id == task_id:  # None when there is no such run
            return folder
    return None


def upload(session: Path, run: Path | None = None) -> tuple[str, str, Path | None, str | None]:
    """Import ``session``, attach its run folder; (new task id, its link, the folder attached,
    the model its weights were registered as)."""
    if not session.exists():
        raise SstError("no such offline session", path=session, fix="pass the .zip sst printed")
    if problem := remote_problem(read_session(session).task.get("script", {}).get("repository")):
        print(f"sst upload: warning: {problem}", file=sys.stderr)
    folder = run if run is not None else find_run(session)
    if folder is not None:
        runs.Run.open(folder, need=runs.SHARED).verify()  # refuse before importing
    task_id = server.upload_session(session)
    model_id = server.attach_run(task_id, folder) if folder is not None else None
    return task_id, server.link(task_id), folder, model_id
