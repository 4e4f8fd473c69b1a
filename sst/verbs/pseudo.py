"""Pseudo-labelling (the original project's future work): a teacher run labels unlabeled texts,
the confident labels join the gold training phrases.

    sst train -c configs/demo.yaml train.unlabeled=texts.txt train.teacher=runs/<id> \\
        train.pseudo_threshold=0.9 train.pseudo_per_class=2000

The teacher is a finished run, verified before it is loaded. A text keeps the teacher's label
when the teacher's probability reaches ``train.pseudo_threshold``; ``train.pseudo_per_class``
caps each class (the most confident first) so that neutral does not flood the training set.
The kept labels are written to the student's run folder (``pseudo.tsv``); the fingerprint records
the teacher's weights, the unlabeled file and the kept (text, label) pairs by sha256, inputs that
`sst verify` compares, and a resumed run refuses labels other than those it started with.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sst.config import Config
from sst.data import LABELS, N_CLASSES
from sst.data.lines import read_phrases
from sst.errors import SstError
from sst.io import sha256_file
from sst.run import folder as runs
from sst.run.fingerprint import PseudoInputs


@dataclass(frozen=True)
class PseudoLabels:
    """The kept texts (``text``, ``label``, ``confidence``; file order), the run's note, and
    what the fingerprint records of them (:attr:`inputs`)."""

    frame: pd.DataFrame
    note: str
    inputs: PseudoInputs

    def write(self, work: Path) -> str:
        """``pseudo.tsv`` in the run folder; a resumed run must get the labels it started with.
        Returns the run's note."""
        path = work / runs.PSEUDO
        started = path.is_file() and _digest(pd.read_csv(path, sep="\t", keep_default_na=False))
        if started and started != self.inputs.labels:
            raise SstError(
                "the teacher's labels differ from those this run started with",
                path=path,
                fix="resume with the train.unlabeled and train.teacher it started with",
            )
        self.frame.to_csv(path, sep="\t", index=False, float_format="%.6f")
        return self.note


def _digest(frame: pd.DataFrame) -> str:
    """sha256 of what training reads (text and label; not the confidence, whose last digits
    may differ between CPU kernels while the kept set is the same)."""
    rows = "".join(f"{t}\t{int(c)}\n" for t, c in zip(frame["text"], frame["label"], strict=True))
    return hashlib.sha256(rows.encode()).hexdigest()


def select(probs: np.ndarray, threshold: float, per_class: int) -> np.ndarray:
    """Positions (ascending) of the rows to keep: the top probability at least ``threshold``,
    and per predicted class at most ``per_class`` rows (0: all), the most confident first
    (ties: the earlier row)."""
    confidence, label = probs.max(axis=1), probs.argmax(axis=1)
    keep = np.flatnonzero(confidence >= threshold)
    if per_class:
        ranked = keep[np.lexsort((keep, -confidence[keep]))]
        keep = np.concatenate([ranked[label[ranked] == c][:per_class] for c in range(N_CLASSES)])
    return np.sort(keep)


def label(cfg: Config) -> PseudoLabels | None:
    """The teacher's confident labels for ``train.unlabeled``, or None when not asked for. Blank
    and repeated texts are dropped, and so are texts of the split's dev and test parts (labels
    for them would leak what the run is judged on)."""
    from sst.data.pipeline import read_split
    from sst.model.inference import Predictor

    t = cfg.train  # the keys agree: checked when the config was read (TrainConfig.problem)
    if not t.unlabeled:
        return None
    path = Path(t.unlabeled)
    read = read_phrases(path)["text"].tolist()
    frames, _ = read_split(t.split)
    judged = {x for name in ("val", "test") if name in frames for x in frames[name]["text"]}
    distinct = list(dict.fromkeys(x for x in read if x.strip()))
    texts = [x for x in distinct if x not in judged]
    if not texts:
        raise SstError("no texts to pseudo-label", path=path, fix="one text per line")
    teacher = runs.Run.open(Path(t.teacher))
    if teacher.members is not None:
        raise SstError(
            "an ensemble cannot teach (it has no single model)",
            path=teacher.path,
            fix="name one of its member runs as train.teacher",
        )
    teacher = runs.Run.open(teacher.path, need=(runs.CONFIG, runs.WEIGHTS))
    predictor = Predictor.from_config(teacher.load_classifier(), teacher.pinned_config)  # verified
    probs = predictor.probabilities(texts, batch_size=t.eval_batch_size)
    kept = select(probs, t.pseudo_threshold, t.pseudo_per_class)
    frame = pd.DataFrame(
        {
            "text": [texts[i] for i in kept],
            "label": probs[kept].argmax(axis=1),
            "confidence": probs[kept].max(axis=1),
        }
    )
    counts = np.bincount(frame["label"], minlength=N_CLASSES)
    note = (
        f"pseudo-labelled: kept {len(frame)} of {len(texts)} texts ("
        + ", ".join(f"{LABELS[c]} {n}" for c, n in enumerate(counts))
        + f"); dropped {len(read) - len(distinct)} blank or repeated, "
        f"{len(distinct) - len(texts)} dev/test texts"
    )
    if (scored := held_back_agreement(frame, Path(t.split))) and scored[1]:
        note += f"; the held-back gold agrees on {scored[0]} of {scored[1]}"
    inputs = PseudoInputs(
        teacher_weights=str(teacher.weights_sha256),  # present: load_classifier verified it
        unlabeled=sha256_file(path),
        labels=_digest(frame),
    )
    return PseudoLabels(frame, note, inputs)


def held_back_agreement(frame: pd.DataFrame, split: Path) -> tuple[int, int] | None:
    """On a simulation split (``split.unlabeled_fraction``): of the kept texts whose gold label
    the split held back, how many the teacher labelled right, and how many there are."""
    from sst.data.pipeline import HELDOUT, read_tsv

    held = split / f"{HELDOUT}.tsv"
    if not held.is_file():
        return None
    roots = read_tsv(held).query("is_root")  # what unlabeled.txt holds: the sentences
    gold = roots.drop_duplicates("text").set_index("text")["label"]
    truth = frame["text"].map(gold)
    known = truth.notna().to_numpy()
    return int((truth[known] == frame["label"][known]).sum()), int(known.sum())
