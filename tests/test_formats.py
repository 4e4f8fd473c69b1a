"""Parsers: both SST releases into one phrase table; every bad input is a one-line file:line error."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from sst.data.formats import deduplicate, load_phrases, parse_kaggle_tsv, parse_ptb_file
from sst.errors import SstError
from tests.conftest import write_kaggle

TREE = "(3 (2 (2 The) (2 film)) (4 (3 (2 is) (4 great)) (2 .)))"


def test_kaggle_columns_roots_and_quirks(tmp_path: Path) -> None:
    rows = [
        (1, 1, "a good film", 3),
        (2, 1, "a good", 3),
        (3, 1, " ", 2),  # the release's single-space phrase: kept, 0 tokens
        (4, 3, "bad", 0),  # sentence 2 is absent, as 15 ids are in the real file
    ]
    table = parse_kaggle_tsv(write_kaggle(tmp_path / "t.tsv", rows))
    f = table.frame
    assert list(f.columns) == [
        "sentence_id",
        "phrase_id",
        "label",
        "n_tokens",
        "is_root",
        "split",
        "text",
    ]
    assert f["is_root"].tolist() == [True, False, False, True]
    assert f["n_tokens"].tolist() == [3, 2, 0, 1]
    assert f.loc[2, "text"] == " "
    assert table.meta["empty_phrase_ids"] == [3]
    assert table.meta["missing_sentence_ids"] == [2]


def test_kaggle_unlabelled_test_file(tmp_path: Path) -> None:
    path = write_kaggle(
        tmp_path / "test.tsv", [(9, 1, "x y")], header="PhraseId\tSentenceId\tPhrase"
    )
    table = parse_kaggle_tsv(path)
    assert table.frame["label"].tolist() == [-1] and not table.meta["labelled"]


@pytest.mark.parametrize(
    ("content", "line", "needle"),
    [
        ("Id\tSentenceId\tPhrase\tSentiment\n1\t1\tx\t1\n", 1, "unexpected header"),
        (
            "PhraseId\tSentenceId\tPhrase\tSentiment\n1\t1\tx\t1\n2\t1\ty\n",
            3,
            "3 tab-separated fields",
        ),
        ("PhraseId\tSentenceId\tPhrase\tSentiment\n1\t1\tx\t5\n", 2, "label 5 is outside 0-4"),
        (
            "PhraseId\tSentenceId\tPhrase\tSentiment\n1\t1\tx\tpos\n",
            2,
            "label 'pos' is not an integer",
        ),
        (
            "PhraseId\tSentenceId\tPhrase\tSentiment\nA1\t1\tx\t1\n",
            2,
            "PhraseId 'A1' is not an integer",
        ),
        (
            "PhraseId\tSentenceId\tPhrase\tSentiment\n1\ts\tx\t1\n",
            2,
            "SentenceId 's' is not an integer",
        ),
        (
            "PhraseId\tSentenceId\tPhrase\tSentiment\n1\t1\tx\t1\n1\t1\ty\t2\n",
            3,
            "duplicate PhraseId 1 (first on line 2)",
        ),
    ],
)
def test_kaggle_bad_input(tmp_path: Path, content: str, line: int, needle: str) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text(content)
    with pytest.raises(SstError) as err:
        parse_kaggle_tsv(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:{line}: ") and needle in msg and "(fix: " in msg
    assert "\n" not in msg


def test_truncated_gzip_names_file_and_line(tmp_path: Path) -> None:
    body = "PhraseId\tSentenceId\tPhrase\tSentiment\n" + "".join(
        f"{i}\t{i}\tphrase number {i}\t2\n" for i in range(1, 5000)
    )
    data = gzip.compress(body.encode())
    path = tmp_path / "cut.tsv.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SstError, match=r"cut\.tsv\.gz:\d+: truncated or corrupt gzip"):
        parse_kaggle_tsv(path)


def test_ptb_every_node_is_a_phrase(tmp_path: Path) -> None:
    path = tmp_path / "dev.txt"
    path.write_text(TREE + "\n" + "(1 (2 8 1\\/2) (0 bad))\n")
    table = parse_ptb_file(path, sentence_start=10, phrase_start=100)
    f = table.frame
    first = f[f["sentence_id"] == 10]
    assert len(first) == 9  # 5 leaves -> 2*5-1 nodes in a binary tree
    assert first["text"].tolist()[0] == "The film is great ."
    assert first["label"].tolist() == [3, 2, 2, 2, 4, 3, 2, 4, 2]
    assert first["is_root"].tolist() == [True] + [False] * 8
    assert set(f["split"]) == {"dev"} and f["phrase_id"].tolist()[0] == 100
    second = f[f["sentence_id"] == 11]
    assert second["text"].tolist() == ["8 1\\/2 bad", "8 1\\/2", "bad"]  # a leaf may hold a space


@pytest.mark.parametrize(
    ("tree", "needle"),
    [
        ("(3 (2 a) (2 b)", "1 unclosed '('"),
        ("(3 (2 a) (2 b)))", "')' without a matching '('"),
        ("(3 (2 a) (2 b)) (2 c)", "text after the root closed"),
        ("(3 (7 a) (2 b))", "label 7 is outside 0-4"),
        ("(3 (x a) (2 b))", "label 'x' is not an integer"),
        ("", "empty line"),
        ("(3 ( (2 a)))", "'(' without a label"),
    ],
)
def test_ptb_bad_trees(tmp_path: Path, tree: str, needle: str) -> None:
    path = tmp_path / "train.txt"
    path.write_text(TREE + "\n" + tree + "\n")
    with pytest.raises(SstError) as err:
        parse_ptb_file(path)
    assert str(err.value).startswith(f"{path}:2: ") and needle in str(err.value)


def test_dedup_modes(tmp_path: Path) -> None:
    path = tmp_path / "train.txt"
    # sentence 1 repeats "a" inside itself; sentence 2 repeats "a" from sentence 1
    path.write_text("(2 (2 a) (2 (2 a) (2 b)))\n(3 (2 a) (3 c))\n")
    table = load_phrases([path], "ptb", "none")
    assert len(table) == 8
    assert len(deduplicate(table, "sentence")) == 7
    glob = deduplicate(table, "global")
    assert glob.frame["text"].is_unique and len(glob) == 6
    assert glob.meta["rows_before_dedup"] == 8
    with pytest.raises(SstError, match="unknown dedup mode 'all'"):
        deduplicate(table, "all")


def test_ptb_files_continue_ids(tmp_path: Path) -> None:
    a, b = tmp_path / "train.txt", tmp_path / "test.txt"
    a.write_text(TREE + "\n")
    b.write_text(TREE + "\n")
    f = load_phrases([a, b], "ptb").frame
    assert f["phrase_id"].is_unique
    assert f.groupby("split")["sentence_id"].unique().map(list).to_dict() == {
        "test": [2],
        "train": [1],
    }
