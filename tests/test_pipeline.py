"""`sst split` end to end on a small Kaggle-shaped file: versioned output, refusals, tracking."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from sst.cli import main
from sst.data.pipeline import read_split
from tests.conftest import configuration, split_config, write_kaggle


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def offline_sessions() -> list[Path]:
    return sorted((Path(os.environ["CLEARML_CACHE_DIR"]) / "offline").glob("*/task.json"))


def test_split_written_once_and_byte_identical(tmp_path: Path, kaggle_file: Path, capsys) -> None:
    cfg = split_config(tmp_path, kaggle_file)
    assert main(["split", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert (
        "chosen seed" in out and "original seed 26894" in out and "ClearML offline session" in out
    )
    first = tree_bytes(tmp_path / "out")
    assert {
        "train.tsv",
        "val.tsv",
        "test.tsv",
        "manifest.json",
        "plots/ngram_distribution.png",
        "plots/class_distribution.png",
        "plots/split_comparison.png",
    } <= set(first)
    assert main(["split", "-c", str(cfg)]) == 0
    assert "(unchanged" in capsys.readouterr().out
    assert tree_bytes(tmp_path / "out") == first
    # the same inputs in a new folder give the same bytes (no timestamps anywhere)
    other = tmp_path / "again"
    other.mkdir()
    cfg2 = split_config(other, kaggle_file)
    assert main(["split", "-c", str(cfg2)]) == 0
    assert tree_bytes(other / "out") == first

    parts, manifest = read_split(tmp_path / "out")
    ids = [set(p["sentence_id"]) for p in parts.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert sum(len(p) for p in parts.values()) == sum(1 for _ in kaggle_file.open()) - 1
    rec = manifest["split"]
    assert rec["distance"] == pytest.approx(rec["scipy_distance"], abs=1e-12)
    assert manifest["sources"][0]["sha256"] and set(manifest["counts"]) == {"train", "val", "test"}


def test_different_content_is_refused_without_force(
    tmp_path: Path, kaggle_file: Path, capsys
) -> None:
    cfg = split_config(tmp_path, kaggle_file)
    assert main(["split", "-c", str(cfg)]) == 0
    before = tree_bytes(tmp_path / "out")
    assert main(["split", "-c", str(cfg), "split.seed=7"]) == 2
    err = capsys.readouterr().err
    assert "manifest.json: exists with different content (fix: pass --force" in err
    assert err.count("\n") == 1
    assert tree_bytes(tmp_path / "out") == before
    assert main(["split", "-c", str(cfg), "split.seed=7", "--force"]) == 0
    assert tree_bytes(tmp_path / "out") != before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_k_fold_and_no_validation(tmp_path: Path, kaggle_file: Path) -> None:
    cfg = split_config(tmp_path, kaggle_file, folds=4, fold=1)
    assert main(["split", "-c", str(cfg)]) == 0
    parts, manifest = read_split(tmp_path / "out")
    assert manifest["split"]["val"] == {"folds": 4, "fold": 1, "seed": 0, "stratify": True}
    total = parts["train"]["sentence_id"].nunique() + parts["val"]["sentence_id"].nunique()
    assert parts["val"]["sentence_id"].nunique() == pytest.approx(total / 4, abs=5)
    other = tmp_path / "no-val"
    other.mkdir()
    assert main(["split", "-c", str(split_config(other, kaggle_file, val_fraction=0))]) == 0
    assert sorted(p.name for p in (other / "out").glob("*.tsv")) == ["test.tsv", "train.tsv"]


HEADER = "PhraseId\tSentenceId\tPhrase\tSentiment\n"
GOOD_TREE = "(3 (2 (2 The) (2 film)) (4 (3 (2 is) (4 great)) (2 .)))\n"


def truncated_gzip_bytes() -> bytes:
    body = HEADER + "".join(f"{i}\t{i}\tphrase number {i}\t2\n" for i in range(1, 5000))
    data = gzip.compress(body.encode())
    return data[: len(data) // 2]


BAD_INPUTS = {
    "wrong header": ("kaggle", b"PhraseId\tSentence\tPhrase\tSentiment\n", ":1: unexpected header"),
    "field count": ("kaggle", (HEADER + "1\t1\tx\n").encode(), ":2: 3 tab-separated fields"),
    "label range": ("kaggle", (HEADER + "1\t1\tx\t9\n").encode(), ":2: label 9 is outside 0-4"),
    "non-integer id": ("kaggle", (HEADER + "x1\t1\tx\t1\n").encode(), ":2: PhraseId 'x1' is not"),
    "duplicate PhraseId": (
        "kaggle",
        (HEADER + "1\t1\tx\t1\n1\t1\ty\t1\n").encode(),
        ":3: duplicate PhraseId 1 (first on line 2)",
    ),
    "unbalanced tree": ("ptb", (GOOD_TREE + "(3 (2 a) (2 b)\n").encode(), ":2: unbalanced tree"),
    "truncated gzip": ("kaggle", truncated_gzip_bytes(), "truncated or corrupt gzip data"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_writes_nothing(tmp_path: Path, capsys, case: str) -> None:
    fmt, content, needle = BAD_INPUTS[case]
    bad = tmp_path / ("bad.tsv.gz" if case == "truncated gzip" else "train.txt")
    bad.write_bytes(content)
    cfg = split_config(tmp_path, bad, fmt=fmt)
    assert main(["split", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:" in err and needle in err and "(fix: " in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([bad.name, "tiny.yaml"])
    assert offline_sessions() == []


def test_offline_session_records_config_and_values(
    tmp_path: Path, kaggle_file: Path, monkeypatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-record-me")
    cfg = split_config(tmp_path, kaggle_file)
    assert main(["split", "-c", str(cfg)]) == 0
    (task_json,) = offline_sessions()
    task = json.loads(task_json.read_text())
    assert task["type"] == "data_processing" and task["name"] == "split tiny"
    params = {k: v["value"] for k, v in task["hyperparams"]["config"].items()}
    assert params["split/n_seeds"] == "50" and params["data/format"] == "kaggle"
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert list(task["hyperparams"]) == ["config"]
    assert configuration(task, "split_result")["seed"] == manifest["split"]["seed"]
    events = [
        json.loads(line) for line in (task_json.parent / "metrics.jsonl").read_text().splitlines()
    ]
    flat = [e for batch in events for e in (batch if isinstance(batch, list) else [batch])]
    singles = {e["variant"]: e["value"] for e in flat if e.get("metric") == "Summary"}
    assert singles["seed"] == manifest["split"]["seed"]
    assert singles["distance"] == pytest.approx(manifest["split"]["distance"])
    assert singles["original_distance"] == pytest.approx(manifest["split"]["original_distance"])
    assert {"class_distribution", "ngram_distribution", "split_comparison"} <= {
        e.get("metric") for e in flat
    }
    session = task_json.parent
    blob = b"".join(p.read_bytes() for p in session.rglob("*") if p.is_file())
    assert b"do-not-record-me" not in blob
    assert session.with_suffix(".zip").is_file()


def test_tracking_can_be_disabled(tmp_path: Path, kaggle_file: Path, capsys) -> None:
    cfg = split_config(tmp_path, kaggle_file)
    assert main(["split", "-c", str(cfg), "tracking.enabled=false"]) == 0
    assert "tracking disabled" in capsys.readouterr().out and offline_sessions() == []


def test_gzip_source_with_content_sha(tmp_path: Path, capsys) -> None:
    from tests.conftest import synthetic_rows

    path = write_kaggle(tmp_path / "train.tsv.gz", synthetic_rows(60), gz=True)
    cfg = split_config(tmp_path, path)
    assert main(["split", "-c", str(cfg), 'data.sha256=["' + "0" * 64 + '"]']) == 2
    assert "sha256 mismatch" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
