"""`sst ensemble`: average the class probabilities of the best runs; scored exactly like a run.

    sst ensemble --top 3 --by macro_f1                 # best 3 in runs/ by validation root macro-F1
    sst ensemble runs/a runs/b                         # these runs

Members are chosen on the **validation** scores (choosing on test would leak it into the
ensemble); every member must come from the same split (manifest sha256) and have predicted the
same test phrases in the same order. The ensemble is written like a run folder,
``runs/ensemble-<k>-<hash>/``: ``metrics.json`` (test, phrase and root, the run contract's
metrics), ``predictions.tsv``, ``confusion_matrix.png`` and ``fingerprint.json`` listing the
members, their models and weight sha256 — so ``sst report`` ranks it beside single runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sst.config.sections import TrackingConfig
from sst.errors import SstError
from sst.io import save_png, write_json
from sst.model.metrics import confusion, summarize
from sst.run import fingerprint as fp
from sst.run import folder as runs
from sst.run.ranking import rank, run_row
from sst.tracking.tracker import preflight, server_configured, tracked
from sst.viz.figures import plot_test_confusion


def select(runs_dir: Path, top: int, by: str) -> list[Path]:
    """The ``top`` finished single runs in ``runs_dir`` by ``by`` on the validation set."""
    rows = [
        run_row(run, stage="val")
        for run in runs.finished_runs(runs_dir)
        if run.weights.is_file() and "val" in run.metrics
    ]
    if len(rows) < max(top, 2):
        raise SstError(
            f"{len(rows)} runs with validation scores, need {max(top, 2)}",
            path=runs_dir,
            fix="train more runs (sst sweep) or lower --top",
        )
    return [Path(r.path) for r in rank(rows, by)[:top]]


def ensemble(folders: list[Path], out_root: Path, *, by: str = "given") -> tuple[Path, str | None]:
    """Average the members' test probabilities; write the ensemble's run folder and, online (a
    server configured, the first member's tracking on), register it as a ClearML model tagged
    ``ensemble``. Returns the folder and the model id (None offline)."""
    if len(folders) < 2:
        raise SstError("an ensemble needs at least two runs", fix="pass two or more runs/<id>")
    members = [
        runs.Run.open(f, need=(runs.PREDICTIONS, runs.FINGERPRINT)).verify(
            reads=(runs.PREDICTIONS,)
        )
        for f in folders
    ]
    for run in members:
        if run.members is not None or not run.weights_sha256:
            raise SstError(
                "not a trained run (an ensemble, or no recorded weights)",
                path=run.path / runs.FINGERPRINT,
                fix="ensemble trained runs: runs/<id> folders written by sst train",
            )
    first = members[0]
    split = first.split_sha256
    for run in members[1:]:
        if run.split_sha256 != split:
            raise SstError(
                f"trained on another split than {first.path}",
                path=run.path / runs.FINGERPRINT,
                fix="ensemble runs of the same split only",
            )
        if not run.predictions["phrase_id"].equals(first.predictions["phrase_id"]):
            raise SstError(
                f"predicted other test phrases than {first.path}",
                path=run.path / runs.PREDICTIONS,
                fix="ensemble runs scored on the same test set",
            )
    probs = np.mean(
        [run.predictions[list(runs.PROBS)].to_numpy(dtype=np.float64) for run in members], axis=0
    )
    pred = probs.argmax(axis=1)
    labels = first.predictions["label"].to_numpy()
    roots = first.predictions["is_root"].to_numpy().astype(bool)
    test = {
        "phrase": summarize(confusion(labels, pred)),
        "root": summarize(confusion(labels[roots], pred[roots])),
    }
    # tracked as its first member was (a folder without a config: as the defaults say)
    tracking = first.config.tracking if (first.path / runs.CONFIG).is_file() else TrackingConfig()
    preflight(tracking.enabled)  # a server that does not answer: before anything is written
    recorded = [(run.name, str(run.model), str(run.weights_sha256)) for run in members]
    name = f"ensemble-{len(members)}-{fp.ensemble_sha256([w for _, _, w in recorded])[:8]}"
    with runs.created_whole(out_root / name, "ensemble") as work:
        write_json(work / runs.METRICS, {"test": test, fp.WEIGHTS: None})
        runs.write_predictions(work / runs.PREDICTIONS, first.predictions, probs)
        save_png(plot_test_confusion(test, name), work / runs.CONFUSION_PNG)
        fingerprint = fp.for_ensemble(
            recorded, chosen_by=by, split=str(split), files_sha256=runs.files_sha256(work)
        )
        write_json(work / runs.FINGERPRINT, fingerprint)
    return out_root / name, _register(runs.Run(out_root / name), tracking)


def _register(made: runs.Run, t: TrackingConfig) -> str | None:
    """Online: the ensemble's files as artifacts of an `sst ensemble` task, and its model."""
    if not (t.enabled and server_configured()):
        return None  # offline there is no registry; the folder is the record
    args = ["ensemble", *(made.members or [])]  # run names: re-run where those runs are, in runs/
    with tracked(t.project, made.name, "custom", args=args) as tracker:
        return tracker.register_ensemble(made, runs.ENSEMBLE_SHARED) if tracker else None
