"""Predict with a finished run: one phrase, or a file of phrases (length-sorted, progress bar).

    sst predict --run runs/<id> "a gorgeous, witty, seductive movie ."
    sst predict --run runs/<id> --file phrases.tsv --out predictions.tsv

A file is a TSV whose header has a ``text`` (or Kaggle ``Phrase``) column, or plain text with one
phrase per line. The output keeps the input's columns and adds ``pred``, ``pred_label`` and
``p0``..``p4``.
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from sst.data import LABELS, N_CLASSES
from sst.data.lines import read_phrases
from sst.errors import SstError
from sst.model.inference import Predictor
from sst.run.folder import CONFIG, WEIGHTS, Run
from sst.tracking import server


def run_folder(run: str | None, task: str | None, model: str | None = None) -> Path:
    """``--run`` as given; for ``--task`` the run the shared task carries, downloaded; for
    ``--model`` a registered model, downloaded and its sha256 checked."""
    if sum(bool(x) for x in (run, task, model)) != 1:
        raise SstError(
            "name the model once",
            fix="pass --run runs/<id>, --task <task link> or --model <model id>",
        )
    if task:
        return server.fetch_run(server.require_task_id(task))
    if model:
        return server.fetch_model(model)
    return Path(str(run))


def load_predictor(folder: Path) -> Predictor:
    """The classifier a finished run trained, with its tokenizer."""
    run = Run.open(folder, need=(CONFIG, WEIGHTS))
    return Predictor.from_config(run.load_classifier(), run.pinned_config)


def predict_file(run: Path, src: Path, out: Path) -> int:
    frame = read_phrases(src)
    probs = load_predictor(run).probabilities(frame["text"].tolist(), progress=True)
    frame["pred"] = probs.argmax(1)
    frame["pred_label"] = [LABELS[i] for i in frame["pred"]]
    for c in range(N_CLASSES):
        frame[f"p{c}"] = np.round(probs[:, c], 6)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        frame.to_csv(f, sep="\t", index=False, quoting=csv.QUOTE_NONE, escapechar="\\")
    os.replace(tmp, out)
    return len(frame)


def format_one(text: str, probs: np.ndarray) -> str:
    best = int(probs.argmax())
    spread = "  ".join(f"{LABELS[c]} {probs[c]:.3f}" for c in range(N_CLASSES))
    return f"{best} {LABELS[best]}\t({spread})\t{text}"


def predict_texts(run: Path, texts: list[str]) -> list[tuple[str, Any]]:
    probs = load_predictor(run).probabilities(texts)
    return [(t, p) for t, p in zip(texts, probs, strict=True)]
