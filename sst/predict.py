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
import pandas as pd
import torch

from sst.data.formats import LABELS
from sst.errors import SstError


class Predictor:
    """A classifier, its tokenizer and ``max_length``; :meth:`from_run` loads a finished run."""

    def __init__(self, model: Any, tokenizer: Any, max_length: int) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length

    @classmethod
    def from_run(cls, run: Path) -> Predictor:
        from safetensors.torch import load_model

        from sst.model.module import SstClassifier, load_pretrained
        from sst.train import load_run_config

        weights = run / "weights.safetensors"
        if not weights.is_file():
            raise SstError(
                "no weights.safetensors (is the run finished?)",
                path=run,
                fix="pass a completed runs/<id> folder",
            )
        cfg = load_run_config(run)
        tokenizer = load_pretrained("tokenizer", cfg.model.name, cfg.model.revision)
        model = SstClassifier(
            model_name=cfg.model.name, revision=cfg.model.revision, pooling=cfg.model.pooling
        )
        load_model(model, str(weights))
        return cls(model, tokenizer, cfg.model.max_length)

    @torch.inference_mode()
    def probabilities(
        self, texts: list[str], batch_size: int = 128, progress: bool = False
    ) -> np.ndarray:
        from tqdm.auto import tqdm

        from sst.model.datamodule import encode_texts, pad, pad_id
        from sst.model.sampling import length_sorted_batches

        ids, offsets = encode_texts(self.tokenizer, texts, self.max_length)
        out = np.zeros((len(texts), 5), dtype=np.float32)
        batches = length_sorted_batches(np.diff(offsets), batch_size)  # little padding
        for idx in tqdm(batches, disable=not progress, unit="batch"):
            input_ids, mask = pad(
                [ids[offsets[i] : offsets[i + 1]] for i in idx], pad_id(self.tokenizer)
            )
            out[idx] = self.model(input_ids, mask).float().softmax(-1).numpy()
        return out


def read_phrases(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise SstError("input file not found", path=path, fix="check the path")
    first = path.read_text(encoding="utf-8").split("\n", 1)[0].split("\t")
    for column in ("text", "Phrase"):
        if column in first:
            frame = pd.read_csv(
                path, sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE
            )
            return frame.rename(columns={column: "text"}) if column != "text" else frame
    lines = path.read_text(encoding="utf-8").splitlines()
    return pd.DataFrame({"text": [line for line in lines if line.strip()]})


def predict_file(run: Path, src: Path, out: Path) -> int:
    frame = read_phrases(src)
    probs = Predictor.from_run(run).probabilities(frame["text"].tolist(), progress=True)
    frame["pred"] = probs.argmax(1)
    frame["pred_label"] = [LABELS[i] for i in frame["pred"]]
    for c in range(5):
        frame[f"p{c}"] = np.round(probs[:, c], 6)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        frame.to_csv(f, sep="\t", index=False, quoting=csv.QUOTE_NONE, escapechar="\\")
    os.replace(tmp, out)
    return len(frame)


def format_one(text: str, probs: np.ndarray) -> str:
    best = int(probs.argmax())
    spread = "  ".join(f"{LABELS[c]} {probs[c]:.3f}" for c in range(5))
    return f"{best} {LABELS[best]}\t({spread})\t{text}"


def predict_texts(run: Path, texts: list[str]) -> list[tuple[str, Any]]:
    probs = Predictor.from_run(run).probabilities(texts)
    return [(t, p) for t, p in zip(texts, probs, strict=True)]
