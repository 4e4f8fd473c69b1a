"""Pseudo-labelling: a teacher run labels ``train.unlabeled``, the confident labels (capped per
class) join the gold train phrases, and the student records what it learned from; the
simulation split holds back whole train sentences as the unlabeled texts."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sst.config import load_config
from sst.data.pipeline import HELDOUT, UNLABELED, read_split, read_tsv, run_split
from sst.errors import SstError
from sst.io import sha256_file
from sst.model.datamodule import SstDataModule
from sst.model.inference import Predictor
from sst.run.fingerprint import PseudoInputs
from sst.run.folder import PSEUDO, WEIGHTS, Run
from sst.verbs.pseudo import held_back_agreement, select
from sst.verbs.train import train
from tests.conftest import split_config, synthetic_rows, train_overrides, write_kaggle


def test_select_keeps_confident_rows_and_caps_each_class_most_confident_first() -> None:
    probs = np.array(
        [
            [0.95, 0.05, 0, 0, 0],  # 0: class 0, 0.95
            [0.10, 0.10, 0.80, 0, 0],  # 1: class 2, 0.80
            [0.00, 0.00, 0.99, 0.01, 0],  # 2: class 2, 0.99
            [0.40, 0.30, 0.30, 0, 0],  # 3: class 0, 0.40 (below any threshold used)
            [0.00, 0.00, 0.90, 0.10, 0],  # 4: class 2, 0.90
            [0.00, 0.00, 0.90, 0.10, 0],  # 5: class 2, 0.90 (a tie with 4: the earlier wins)
        ]
    )
    assert select(probs, 0.85, 0).tolist() == [0, 2, 4, 5]
    assert select(probs, 0.85, 2).tolist() == [0, 2, 4]  # class 2: 0.99 and the earlier 0.90
    assert select(probs, 0.85, 1).tolist() == [0, 2]
    assert select(probs, 0.0, 0).tolist() == list(range(6))
    assert select(probs, 1.0, 0).tolist() == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.unlabeled=texts.txt"], "train.unlabeled is set but train.teacher is not"),
        (["train.teacher=runs/x"], "train.teacher is set but train.unlabeled is not"),
        (
            ["train.unlabeled=t.txt", "train.teacher=runs/x", "train.pseudo_threshold=1.5"],
            "train.pseudo_threshold=1.5 is not a probability",
        ),
        (
            ["train.unlabeled=t.txt", "train.teacher=runs/x", "train.pseudo_per_class=-1"],
            "train.pseudo_per_class=-1 is negative",
        ),
    ],
)
def test_inconsistent_pseudo_keys_are_refused_naming_the_key(
    overrides: list[str], message: str, tmp_path: Path
) -> None:
    """Refused when the config is read, before anything trains; in a file, naming its line."""
    with pytest.raises(SstError, match=message):
        load_config(None, overrides)
    preset = tmp_path / "p.yaml"  # train: at line 2, the keys from line 3 on
    preset.write_text("train:\n" + "".join(f"  {o[6:].replace('=', ': ')}\n" for o in overrides))
    key = message.split()[0].split("=")[0]  # the key the message names
    line = 2 + [o.split("=")[0] for o in overrides].index(key)
    with pytest.raises(SstError, match=rf"p\.yaml:{line}: {message}"):
        load_config(preset)


def test_the_simulation_split_holds_back_whole_train_sentences_and_leaves_val_and_test(
    tmp_path: Path,
) -> None:
    source = write_kaggle(tmp_path / "train.tsv", synthetic_rows(200))
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    plain = run_split(load_config(split_config(tmp_path / "a", source), []))
    cfg = load_config(split_config(tmp_path / "b", source), ["split.unlabeled_fraction=0.3"])
    held = run_split(cfg)
    before, _ = read_split(plain.out)
    after, manifest = read_split(held.out)
    for name in ("val", "test"):
        pd.testing.assert_frame_equal(after[name], before[name])
    out = read_tsv(held.out / f"{HELDOUT}.tsv")
    assert set(after["train"]["sentence_id"]).isdisjoint(out["sentence_id"])
    union = pd.concat([after["train"], out]).sort_values("phrase_id", ignore_index=True)
    pd.testing.assert_frame_equal(
        union, before["train"].sort_values("phrase_id", ignore_index=True)
    )
    n = out["sentence_id"].nunique()
    assert n == manifest["split"]["unlabeled"]["sentences"]
    assert abs(n / before["train"]["sentence_id"].nunique() - 0.3) < 0.02
    texts = (held.out / UNLABELED).read_text(encoding="utf-8").splitlines()
    assert texts == out[out["is_root"]]["text"].tolist()  # the sentences, one per line
    assert manifest["files"][UNLABELED]["sha256"] == sha256_file(held.out / UNLABELED)
    # the held-back gold scores a teacher's labels for those sentences: here 2 right of 3
    gold = out[out["is_root"]].drop_duplicates("text").head(3)
    guess = (gold["label"].to_numpy() + np.array([0, 0, 1])) % 5
    inner = out[~out["is_root"] & ~out["text"].isin(out[out["is_root"]]["text"])].iloc[0]
    texts = [*gold["text"], "not held back", inner["text"]]  # a phrase is not a sentence
    labels = pd.DataFrame({"text": texts, "label": [*guess, 0, inner["label"]]})
    assert held_back_agreement(labels, held.out) == (2, 3)
    assert held_back_agreement(labels, plain.out) is None  # not a simulation split


def test_a_fraction_outside_zero_and_one_is_refused_naming_the_key(tmp_path: Path) -> None:
    source = write_kaggle(tmp_path / "train.tsv", synthetic_rows(50))
    cfg = load_config(split_config(tmp_path, source), ["split.unlabeled_fraction=1.5"])
    with pytest.raises(SstError, match="split.unlabeled_fraction"):
        run_split(cfg)
    assert not (tmp_path / "out").exists()


def _student(tiny_model: Path, tiny_split: Path, tmp: Path, teacher: Path, *extra: str) -> Any:
    texts = tmp / "texts.txt"
    if not texts.exists():  # sentences of another synthetic table (some equal the split's)
        rows = [r[2] for r in synthetic_rows(60, seed=7) if r[2].count(" ") > 2]
        texts.write_text("".join(f"{t}\n" for t in [*rows, "", rows[0]]))  # a blank, a repeat
    return load_config(
        None,
        train_overrides(
            tiny_model,
            tiny_split,
            tmp / "runs",
            f"train.unlabeled={texts}",
            f"train.teacher={teacher}",
            "tracking.enabled=false",
            *extra,
        ),
    )


def test_a_student_trains_on_gold_plus_the_teachers_confident_labels_and_records_them(
    tracked_run: dict, tiny_model: Path, tiny_split: Path, tmp_path: Path
) -> None:
    teacher = tracked_run["run"]
    over = ("train.pseudo_threshold=0.2", "train.pseudo_per_class=4")
    cfg = _student(tiny_model, tiny_split, tmp_path, teacher, *over)
    lines = Path(cfg.train.unlabeled).read_text().splitlines()
    parts, _ = read_split(tiny_split)
    judged = set(parts["val"]["text"]) | set(parts["test"]["text"])
    distinct = list(dict.fromkeys(t for t in lines if t))
    texts = [t for t in distinct if t not in judged]
    assert len(distinct) == len(lines) - 2 and len(texts) < len(distinct)  # all three drops bite
    run = Run(teacher)
    probs = Predictor.from_config(run.load_classifier(), run.config).probabilities(texts)
    want = select(probs, 0.2, 4)
    assert 0 < len(want) < len(texts)  # the threshold and the caps both bite on this data
    result = train(cfg)
    kept = pd.read_csv(result.run_dir / PSEUDO, sep="\t", keep_default_na=False)
    assert kept["text"].tolist() == [texts[i] for i in want]
    assert kept["label"].tolist() == probs[want].argmax(1).tolist()  # the teacher's labels
    assert (np.bincount(probs[select(probs, 0.2, 0)].argmax(1)) > 4).any()  # a cap was needed
    fingerprint = Run(result.run_dir).fingerprint
    assert fingerprint["teacher_weights_sha256"] == tracked_run["weights"]
    assert fingerprint["unlabeled_sha256"] == sha256_file(Path(cfg.train.unlabeled))
    assert PSEUDO in fingerprint["files_sha256"]  # sst verify re-hashes it
    note = f"pseudo-labelled: kept {len(want)} of {len(texts)} texts"
    # the blank line is no text (as for `sst predict --file`); the repeat is dropped
    dropped = f"dropped 1 blank or repeated, {len(distinct) - len(texts)} dev/test texts"
    assert any(n.startswith(note) and n.endswith(dropped) for n in result.notes)
    # the student's training part: the split's gold rows, then the kept texts with their labels
    data = SstDataModule.from_config(cfg, kept)
    data.setup("fit")
    gold = read_tsv(tiny_split / "train.tsv")
    train_part = data.parts["train"]
    assert len(train_part) == len(gold) + len(kept)
    assert train_part.labels[len(gold) :].tolist() == kept["label"].tolist()
    assert (train_part.phrase_id[len(gold) :] < 0).all()  # never a split's phrase id
    # the same student again: bit-identical weights (the teacher's labels are recomputed) ...
    again = train(cfg.with_train(runs_dir=str(tmp_path / "again")))
    assert again.weights_sha256 == result.weights_sha256
    # ... and the pseudo labels are what made them: none kept, other weights and digest
    none = train(cfg.with_train(runs_dir=str(tmp_path / "none"), pseudo_threshold=1.0))
    assert none.weights_sha256 != result.weights_sha256
    assert Run(none.run_dir).fingerprint["pseudo_sha256"] != fingerprint["pseudo_sha256"]
    assert cfg.with_train(pseudo_threshold=0.3).hash() != cfg.hash()


def test_a_tampered_teacher_is_refused_before_the_run_folder_exists(
    tracked_run: dict, tiny_model: Path, tiny_split: Path, tmp_path: Path
) -> None:
    teacher = tmp_path / "teacher"
    shutil.copytree(tracked_run["run"], teacher)
    weights = teacher / WEIGHTS
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    with pytest.raises(SstError, match="is not the recorded"):
        train(_student(tiny_model, tiny_split, tmp_path, teacher))
    assert not (tmp_path / "runs").exists()


def test_an_ensemble_cannot_teach(tiny_model: Path, tiny_split: Path, tmp_path: Path) -> None:
    from sst.verbs.ensemble import ensemble
    from tests.test_ensemble import _fake_run

    rng = np.random.default_rng(0)
    labels, roots = rng.integers(0, 5, 20), np.arange(20) % 2 == 0
    members = [
        _fake_run(tmp_path / name, rng.dirichlet(np.ones(5), 20), labels, roots) for name in "ab"
    ]
    folder, _ = ensemble(members, tmp_path / "ensembles")
    with pytest.raises(SstError, match="an ensemble cannot teach"):
        train(_student(tiny_model, tiny_split, tmp_path, folder))


def test_a_resumed_run_refuses_other_pseudo_labels(tmp_path: Path) -> None:
    from sst.verbs.pseudo import PseudoLabels, _digest

    def labels(label: int) -> PseudoLabels:
        frame = pd.DataFrame({"text": ["a fine film"], "label": [label], "confidence": [0.95]})
        return PseudoLabels(frame, "note", PseudoInputs("teacher", "texts", _digest(frame)))

    assert labels(4).write(tmp_path) == "note"
    assert labels(4).write(tmp_path) == "note"  # the same labels again: resumed
    before = (tmp_path / PSEUDO).read_bytes()
    with pytest.raises(SstError, match="the teacher's labels differ from those this run started"):
        labels(3).write(tmp_path)
    assert (tmp_path / PSEUDO).read_bytes() == before
