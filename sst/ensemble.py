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

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from sst.errors import SstError

PROBS = [f"p{c}" for c in range(5)]


def select(runs_dir: Path, top: int, by: str) -> list[Path]:
    """The ``top`` completed single runs in ``runs_dir`` by ``by`` on the validation set."""
    from sst.report import _row_from_run, rank

    folders = (
        sorted(
            p
            for p in runs_dir.iterdir()
            if (p / "metrics.json").is_file() and (p / "weights.safetensors").is_file()
        )
        if runs_dir.is_dir()
        else []
    )
    rows = []
    for folder in folders:
        if "val" not in json.loads((folder / "metrics.json").read_text()):
            continue
        rows.append(_row_from_run(folder, stage="val"))
    if len(rows) < max(top, 2):
        raise SstError(
            f"{len(rows)} runs with validation scores, need {max(top, 2)}",
            path=runs_dir,
            fix="train more runs (sst sweep) or lower --top",
        )
    return [Path(r.path) for r in rank(rows, by)[:top]]


def _read(run: Path) -> tuple[Any, dict[str, Any]]:
    import pandas as pd

    pred, fp_file = run / "predictions.tsv", run / "fingerprint.json"
    if not pred.is_file() or not fp_file.is_file():
        raise SstError(
            "not a completed run (no predictions.tsv / fingerprint.json)",
            path=run,
            fix="pass finished runs/<id> folders",
        )
    return pd.read_csv(pred, sep="\t"), json.loads(fp_file.read_text())


def ensemble(runs: list[Path], out_root: Path, *, by: str = "given") -> Path:
    """Average the members' test probabilities; write and return the ensemble's run folder."""
    import pandas as pd

    from sst.data.versioning import dumps
    from sst.model.metrics import confusion, summarize

    if len(runs) < 2:
        raise SstError("an ensemble needs at least two runs", fix="pass two or more runs/<id>")
    frames, prints = zip(*(_read(r) for r in runs), strict=True)
    first = frames[0]
    for run, frame, fp in zip(runs[1:], frames[1:], prints[1:], strict=True):
        if fp["split_manifest_sha256"] != prints[0]["split_manifest_sha256"]:
            raise SstError(
                f"trained on another split than {runs[0]}",
                path=run / "fingerprint.json",
                fix="ensemble runs of the same split only",
            )
        if not frame["phrase_id"].equals(first["phrase_id"]):
            raise SstError(
                f"predicted other test phrases than {runs[0]}",
                path=run / "predictions.tsv",
                fix="ensemble runs scored on the same test set",
            )
    probs = np.mean([f[PROBS].to_numpy(dtype=np.float64) for f in frames], axis=0)
    pred = probs.argmax(axis=1)
    labels = first["label"].to_numpy()
    roots = first["is_root"].to_numpy().astype(bool)
    test = {
        "phrase": summarize(confusion(labels, pred)),
        "root": summarize(confusion(labels[roots], pred[roots])),
    }
    for level in test:
        test[level]["n"] = int(test[level]["n"])
    weights = [fp["weights_sha256"] for fp in prints]
    ident = hashlib.sha256("\n".join(weights).encode()).hexdigest()
    name = f"ensemble-{len(runs)}-{ident[:8]}"
    fingerprint = {
        "config_sha256": ident,
        "members": [r.name for r in runs],
        "member_models": [fp["model"] for fp in prints],
        "member_weights_sha256": weights,
        "chosen_by": by,
        "model": f"ensemble({', '.join(fp['model'] for fp in prints)})",
        "split_manifest_sha256": prints[0]["split_manifest_sha256"],
    }
    frame = pd.DataFrame(
        {
            **{c: first[c] for c in ("phrase_id", "sentence_id", "is_root", "label")},
            "pred": pred,
            **{p: np.round(probs[:, i], 6) for i, p in enumerate(PROBS)},
        }
    )
    final = out_root / name
    if final.exists():
        raise SstError("this ensemble exists already", path=final, fix="delete it to redo it")
    out_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{name}.", suffix=".partial", dir=out_root))
    try:
        (work / "metrics.json").write_text(dumps({"test": test, "weights_sha256": None}))
        (work / "fingerprint.json").write_text(dumps(fingerprint))
        frame.to_csv(work / "predictions.tsv", sep="\t", index=False)
        _plot(test, name, work / "confusion_matrix.png")
        os.replace(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return final


def _plot(test: dict[str, Any], name: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    from sst.figures import plot_test_confusion

    fig = plot_test_confusion(test, name)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
