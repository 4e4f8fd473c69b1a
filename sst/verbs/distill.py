"""Distillation: one student trained on a teacher's soft labels, to ship an ensemble's quality
at one model's cost.

    sst distill --teacher runs/ensemble-3-<hash> -c configs/full.yaml
    sst train -c configs/full.yaml train.distill_from=runs/ensemble-3-<hash> \\
        train.distill_temperature=2 train.distill_mix=0.5          # the same run

The teacher is an ensemble folder (`sst ensemble`; its member runs are found beside it) or one
run. Each member is verified, then predicts every distinct text of the split's train part once;
its probabilities are softened by the temperature T (``softmax(logits / T)``, computed as
``p ** (1 / T)`` renormalised) and the members' are averaged. The student's loss per phrase is
``(1 - mix) × cross-entropy(gold) + mix × T² × KL(teacher_T ‖ student_T)`` (Hinton et al., 2015:
T² keeps the soft term's gradients at the scale of the gold term's), computed in
:meth:`sst.model.module.SstClassifier.training_step`.

The soft labels go into the run folder (``soft_labels.npy``, one row per train phrase) and, by
sha256 with the teacher members' weights, into the fingerprint: `sst replay` recomputes them
from the teacher runs and compares, and a resumed run refuses labels other than those it began
with. Validation and test are never read from the teacher: the student is judged on gold labels.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sst.config import Config
from sst.data import N_CLASSES
from sst.errors import SstError
from sst.io import MANIFEST, sha256_file
from sst.run import fingerprint as fp
from sst.run import folder as runs


@dataclass(frozen=True)
class SoftLabels:
    """The teacher's softened probabilities, one row per train phrase (the split's order)."""

    probs: np.ndarray  # float32 [train phrases, classes]
    note: str
    inputs: fp.DistillInputs

    def write(self, work: Path) -> str:
        """``soft_labels.npy`` in the run folder; a resumed run must get the labels it started
        with. Returns the run's note."""
        path = work / runs.SOFT_LABELS
        if path.is_file() and digest(np.load(path)) != self.inputs.soft_labels:
            raise SstError(
                "the teacher's soft labels differ from those this run started with",
                path=path,
                fix="resume with the train.distill_from (and temperature) it started with",
            )
        tmp = path.with_name(f".{runs.SOFT_LABELS}.tmp")
        with tmp.open("wb") as f:
            np.save(f, self.probs)
        tmp.replace(path)  # whole or absent: a resumed run reads it back
        return self.note


def digest(probs: np.ndarray) -> str:
    """sha256 of the float32 soft labels as trained on. Unlike pseudo labels (a class each),
    their last bits are an input: other bits from the teacher's kernels train other weights."""
    return hashlib.sha256(np.ascontiguousarray(probs, dtype=np.float32).tobytes()).hexdigest()


def teacher_runs(teacher: Path) -> list[runs.Run]:
    """The runs that teach: an ensemble's members (beside it, each the weights it recorded) or
    the one run; each opened with its config and weights."""
    run = runs.Run.open(teacher)
    if run.members is None:
        return [runs.Run.open(run.path, need=(runs.CONFIG, runs.WEIGHTS))]
    recorded = run.fingerprint.get(fp.MEMBER_WEIGHTS) or []
    if len(recorded) != len(run.members):
        raise SstError(
            "the ensemble's fingerprint lists its members and their weights unevenly",
            path=run.path / runs.FINGERPRINT,
            fix="make the ensemble again (`sst ensemble`)",
        )
    members = []
    for name, weights in zip(run.members, recorded, strict=True):
        member = runs.Run.open(run.path.parent / name, need=(runs.CONFIG, runs.WEIGHTS))
        if member.weights_sha256 != weights:
            raise SstError(
                f"member {name} of the ensemble has other weights than the ensemble recorded",
                path=member.path,
                fix="distil from an ensemble of the runs as they are (`sst ensemble` again)",
            )
        members.append(member)
    return members


def soft_labels(cfg: Config) -> SoftLabels | None:
    """The teacher's softened probabilities for each phrase of the split's train part (in its
    order), or None when ``train.distill_from`` is not set."""
    from sst.data.pipeline import read_split
    from sst.model.inference import Predictor

    t = cfg.train
    if not t.distill_from:
        return None
    members = teacher_runs(Path(t.distill_from))
    train = read_split(t.split)[0]["train"]
    train_texts = train["text"].tolist()
    distinct = list(dict.fromkeys(train_texts))
    position = {text: i for i, text in enumerate(distinct)}
    rows = np.fromiter((position[x] for x in train_texts), dtype=np.int64, count=len(train_texts))
    softened = np.zeros((len(distinct), N_CLASSES), dtype=np.float64)
    split = sha256_file(Path(t.split) / MANIFEST)
    for member in members:
        if member.split_sha256 != split:
            raise SstError(
                f"the teacher run {member.path.name} trained on another split: it has seen "
                f"phrases that {t.split} keeps for validation or test",
                path=member.path,
                fix="distil from runs of the student's split (train.split)",
            )
        predictor = Predictor.from_config(member.load_classifier(), member.pinned_config)
        own = predictor.probabilities(distinct, batch_size=t.eval_batch_size)
        powered = np.power(own.astype(np.float64), 1.0 / t.distill_temperature)
        softened += powered / powered.sum(axis=1, keepdims=True)
    probs = (softened / len(members)).astype(np.float32)[rows]  # each train phrase's row
    agree = float((probs.argmax(1) == train["label"].to_numpy()).mean()) if len(probs) else 0.0
    note = (
        f"distilled from {len(members)} teacher run(s) at temperature {t.distill_temperature:g}, "
        f"mix {t.distill_mix:g}: the teacher agrees with {agree:.1%} of the train labels"
    )
    inputs = fp.DistillInputs(
        teacher_weights=[str(m.weights_sha256) for m in members], soft_labels=digest(probs)
    )
    return SoftLabels(probs, note, inputs)
