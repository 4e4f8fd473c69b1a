"""Distillation (sst distill, train.distill_from) on the tiny fixture: the soft labels are the
members' softened probabilities averaged, the student's loss is the documented mix, the run
records its teacher and soft labels and replays BIT-IDENTICAL, and bad teachers fail in one line
before any run folder exists."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sst.cli import main
from sst.config import load_config
from sst.data.pipeline import read_split
from sst.errors import SstError
from sst.model.inference import Predictor
from sst.run import folder as runs
from sst.verbs.distill import digest, soft_labels
from sst.verbs.ensemble import ensemble
from sst.verbs.replay import replay
from sst.verbs.train import train
from tests.conftest import train_overrides


@pytest.fixture(scope="module")
def teachers(tiny_model, tiny_split, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """Two tiny runs (seeds 0 and 1) and their ensemble, side by side in one runs folder."""
    from tests.conftest import isolate

    base = tmp_path_factory.mktemp("teachers")
    with pytest.MonkeyPatch.context() as mp:
        isolate(mp, base / "env")
        made = [
            train(load_config(None, cfg_overrides(tiny_model, tiny_split, base, f"train.seed={s}")))
            for s in (0, 1)
        ]
        folder, _ = ensemble([r.run_dir for r in made], base)
    return folder


def cfg_overrides(tiny_model: Path, tiny_split: Path, runs_dir: Path, *extra: str) -> list[str]:
    return train_overrides(tiny_model, tiny_split, runs_dir, "tracking.enabled=false", *extra)


def member_probs(teachers: Path, texts: list[str]) -> list[np.ndarray]:
    out = []
    for name in runs.Run.open(teachers).members or []:
        member = runs.Run.open(teachers.parent / name)
        predictor = Predictor.from_config(member.load_classifier(), member.pinned_config)
        out.append(predictor.probabilities(texts, batch_size=64).astype(np.float64))
    return out


def test_soft_labels_average_the_members_softened_probabilities(
    teachers: Path, tiny_model, tiny_split, tmp_path: Path
) -> None:
    cfg = load_config(
        None,
        cfg_overrides(
            tiny_model,
            tiny_split,
            tmp_path,
            f"train.distill_from={teachers}",
            "train.distill_temperature=2",
        ),
    )
    soft = soft_labels(cfg)
    assert soft is not None
    texts = read_split(tiny_split)[0]["train"]["text"].tolist()
    assert soft.probs.shape == (len(texts), 5) and soft.probs.dtype == np.float32
    members = member_probs(teachers, texts)
    expected = sum(np.sqrt(p) / np.sqrt(p).sum(1, keepdims=True) for p in members) / len(members)
    np.testing.assert_allclose(soft.probs, expected, rtol=1e-5)
    np.testing.assert_allclose(soft.probs.sum(1), 1.0, rtol=1e-5)
    # softer than the teachers' own average (T=2 flattens), same ranking of classes
    plain = sum(members) / len(members)
    assert (soft.probs.max(1) <= plain.max(1) + 1e-6).all()
    assert soft.inputs.soft_labels == digest(soft.probs)
    assert len(soft.inputs.teacher_weights) == 2
    assert "distilled from 2 teacher run(s) at temperature 2, mix 0.5" in soft.note


def test_the_students_loss_is_the_documented_mix(tiny_model, tiny_split) -> None:
    from sst.env.precision import decide
    from sst.model.module import SstClassifier

    cfg = load_config(
        None,
        cfg_overrides(
            tiny_model,
            tiny_split,
            Path("unused"),
            "train.distill_temperature=3",
            "train.distill_mix=0.25",
        ),
    )
    model = SstClassifier.from_config(cfg, decide("32-true", "auto")).eval()  # no dropout
    model.log = lambda *a, **k: None  # type: ignore[method-assign]  # not attached to a Trainer
    batch = {
        "input_ids": torch.tensor([[2, 10, 11, 3], [2, 12, 3, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]),
        "labels": torch.tensor([4, 0]),
        "index": torch.tensor([1, 0]),
    }
    soft = torch.tensor([[0.1, 0.2, 0.3, 0.2, 0.2], [0.0, 0.1, 0.1, 0.2, 0.6]])
    gold_only = model.training_step(batch, 0)
    model.soft_labels = soft
    mixed = model.training_step(batch, 0)
    logits = model(batch["input_ids"], batch["attention_mask"])
    teacher = soft[batch["index"]]
    kl = (teacher * (torch.log(teacher.clamp_min(1e-30)) - F.log_softmax(logits / 3, -1))).sum(1)
    expected = 0.75 * F.cross_entropy(logits, batch["labels"]) + 0.25 * 9 * kl.mean()
    torch.testing.assert_close(mixed, expected)
    torch.testing.assert_close(gold_only, F.cross_entropy(logits, batch["labels"]))


def test_sst_distill_records_its_teacher_and_replays_bit_identical(
    teachers: Path, tiny_model, tiny_split, tmp_path: Path, capsys
) -> None:
    args = cfg_overrides(tiny_model, tiny_split, tmp_path / "runs")
    assert main(["distill", "--teacher", str(teachers), *args]) == 0
    (student,) = runs.finished_runs(tmp_path / "runs")
    assert student.config.train.distill_from == str(teachers)
    assert "distilled from 2 teacher run(s)" in capsys.readouterr().out
    recorded = json.loads((student.path / runs.FINGERPRINT).read_text())
    saved = np.load(student.path / runs.SOFT_LABELS)
    assert recorded["soft_labels_sha256"] == digest(saved)
    members = [runs.Run.open(teachers.parent / n) for n in runs.Run.open(teachers).members or []]
    assert recorded["distill_teacher_weights_sha256"] == [m.weights_sha256 for m in members]
    # the soft labels changed the training: another run than the same config without a teacher
    plain = train(load_config(None, [*args, f"train.runs_dir={tmp_path / 'plain'}"]))
    assert plain.weights_sha256 != student.weights_sha256
    _, _, verdict = replay(str(student.path))
    assert verdict.identical, verdict.render()


def test_bad_teachers_fail_in_one_line_before_any_run(
    teachers: Path, tiny_model, tiny_split, tmp_path: Path
) -> None:
    out = tmp_path / "runs"

    def refused(*extra: str) -> str:
        with pytest.raises(SstError) as e:
            train(load_config(None, cfg_overrides(tiny_model, tiny_split, out, *extra)))
        assert not out.exists() or not any(out.iterdir())
        return str(e.value)

    assert "not a finished run (no fingerprint.json)" in refused(
        f"train.distill_from={tmp_path / 'nowhere'}"
    )
    # a teacher that trained on another split has seen the student's validation or test phrases
    from sst.data.pipeline import run_split
    from tests.conftest import split_config, synthetic_rows, write_kaggle

    source = write_kaggle(tmp_path / "other.tsv", synthetic_rows(200))
    (tmp_path / "other").mkdir()
    split_cfg = split_config(tmp_path / "other", source, test_fraction=0.3)
    other = run_split(load_config(split_cfg, ["tracking.enabled=false"])).out
    outsider = train(load_config(None, cfg_overrides(tiny_model, other, tmp_path / "outsider")))
    assert "trained on another split" in refused(f"train.distill_from={outsider.run_dir}")
    # a member whose weights are not those the ensemble recorded
    record = json.loads((teachers / runs.FINGERPRINT).read_text())
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    shutil.copytree(teachers, tampered / teachers.name)
    for name in record["members"]:
        shutil.copytree(teachers.parent / name, tampered / name)
    other = json.loads((tampered / teachers.name / runs.FINGERPRINT).read_text())
    other["member_weights_sha256"][0] = "0" * 64
    (tampered / teachers.name / runs.FINGERPRINT).write_text(json.dumps(other))
    message = refused(f"train.distill_from={tampered / teachers.name}")
    assert "has other weights than the ensemble recorded" in message
    with pytest.raises(SstError, match="train.distill_from and train.teacher are both set"):
        load_config(
            None, ["train.distill_from=runs/x", "train.teacher=runs/y", "train.unlabeled=t"]
        )
    with pytest.raises(SstError, match="train.distill_temperature=0.0 is not positive"):
        load_config(None, ["train.distill_temperature=0"])
    with pytest.raises(SstError, match="train.distill_mix=1.5 is not a share of the loss"):
        load_config(None, ["train.distill_mix=1.5"])
