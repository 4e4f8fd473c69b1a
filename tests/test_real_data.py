"""Integration on the real releases in ../shared/data: counts from the data README, both splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sst.cli import main
from sst.config import load_config
from sst.data.formats import load_phrases
from sst.data.pipeline import read_split
from sst.data.sources import fetch

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def kaggle(kaggle_release: Path):
    return load_phrases([kaggle_release / "train.tsv.gz"], "kaggle")


@pytest.fixture(scope="module")
def ptb(shared_data: Path):
    return load_phrases(
        [shared_data / "sst_ptb" / f"{s}.txt" for s in ("train", "dev", "test")], "ptb"
    )


def test_kaggle_release_as_documented(kaggle, kaggle_release: Path) -> None:
    f = kaggle.frame
    meta = kaggle.meta["files"][0]
    assert len(f) == 156_060 and f["sentence_id"].nunique() == 8_529
    assert np.bincount(f["label"], minlength=5).tolist() == [7_072, 27_273, 79_582, 32_927, 9_206]
    assert meta["missing_sentence_ids"] == [
        2628,
        2746,
        4044,
        4365,
        4761,
        5695,
        5916,
        6231,
        6358,
        6673,
        6922,
        7325,
        7473,
        8443,
        8530,
    ]
    assert meta["empty_phrase_ids"] == [2006]
    assert f.loc[f["phrase_id"] == 2006, "sentence_id"].item() == 76
    assert f["text"].is_unique  # the release's own global deduplication
    assert f.loc[0, "text"].startswith("A series of escapades") and bool(f.loc[0, "is_root"])
    got = fetch(
        str(kaggle_release / "train.tsv.gz"),
        sha256="b59d3b8ab798d0d4f2469932e32ebfa89c9efd0dd2989aa34437c93004974bee",
    )
    assert got.content_sha256.startswith("b59d3b8a")


def test_kaggle_test_file_is_unlabelled(kaggle_release: Path) -> None:
    t = load_phrases([kaggle_release / "test.tsv.gz"], "kaggle")
    assert len(t) == 66_292 and (t.frame["label"] == -1).all()
    assert t.meta["files"][0]["missing_sentence_ids"] == [9147]


def test_ptb_release_as_documented(ptb) -> None:
    f = ptb.frame
    nodes = f.groupby("split").size().to_dict()
    assert nodes == {"train": 318_582, "dev": 41_447, "test": 82_600}
    roots = f[f["is_root"]]
    by_split = {s: np.bincount(g["label"], minlength=5).tolist() for s, g in roots.groupby("split")}
    assert by_split == {
        "train": [1092, 2218, 1624, 2322, 1288],
        "dev": [139, 289, 229, 279, 165],
        "test": [279, 633, 389, 510, 399],
    }
    all_nodes = {s: np.bincount(g["label"], minlength=5).tolist() for s, g in f.groupby("split")}
    assert all_nodes["dev"] == [1070, 4613, 28305, 5781, 1678]
    assert f.groupby("sentence_id")["is_root"].sum().eq(1).all()


def test_dedup_modes_on_real_trees(ptb) -> None:
    from sst.data.formats import deduplicate

    sizes = {m: len(deduplicate(ptb, m)) for m in ("none", "sentence", "global")}
    assert sizes["none"] == 442_629 > sizes["sentence"] > sizes["global"]
    assert deduplicate(ptb, "global").frame["text"].is_unique


def test_make_split_kaggle_twice_is_byte_identical(
    kaggle_release: Path, tmp_path: Path, capsys
) -> None:
    """The real `make split`: 10,000 candidate seeds over the 156k-phrase Kaggle file."""
    args = ["split", "-c", str(REPO / "configs" / "kaggle.yaml"), f"split.out={tmp_path / 'k'}"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "chosen seed" in out and "original seed 26894: Wasserstein" in out
    first = {p.name: p.read_bytes() for p in (tmp_path / "k").rglob("*") if p.is_file()}
    assert main(args) == 0 and "(unchanged" in capsys.readouterr().out
    parts, manifest = read_split(tmp_path / "k")
    rec = manifest["split"]
    assert rec["candidate_seeds"] == [0, 9999]
    assert rec["distance"] <= rec["original_distance"]
    assert rec["distance"] == pytest.approx(rec["scipy_distance"], abs=1e-12)
    assert sum(len(p) for p in parts.values()) == 156_060
    assert {p.name: p.read_bytes() for p in (tmp_path / "k").rglob("*") if p.is_file()} == first


def test_make_split_ptb_keeps_canonical_split(shared_data: Path, tmp_path: Path, capsys) -> None:
    args = ["split", "-c", str(REPO / "configs" / "ptb.yaml"), f"split.out={tmp_path / 'p'}"]
    assert main(args) == 0
    assert "canonical split kept" in capsys.readouterr().out
    _, manifest = read_split(tmp_path / "p")
    assert {k: v["sentences"] for k, v in manifest["counts"].items()} == {
        "train": 8544,
        "val": 1101,
        "test": 2210,
    }
    assert manifest["split"]["overlap"]["shared_sentence_ids"] == 0
    cfg = load_config(REPO / "configs" / "ptb.yaml")
    assert [s["sha256"] for s in manifest["sources"]] == list(cfg.data.sha256)
