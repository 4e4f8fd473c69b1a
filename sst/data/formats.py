"""Parse the two real SST releases into one phrase table.

    sst data --format kaggle ../shared/data/kaggle_movie_reviews/train.tsv.gz

Columns of the phrase table (one row per phrase):

    sentence_id  int64   the sentence the phrase belongs to (its whole tree shares the id)
    phrase_id    int64   unique; Kaggle's PhraseId, or the node's pre-order index for PTB trees
    label        int8    0 negative … 4 positive; -1 for the unlabelled Kaggle test file
    n_tokens     int32   whitespace tokens in ``text``
    is_root      bool    the whole sentence (PTB root node; Kaggle: first listed phrase)
    split        str     PTB's official split (train/dev/test); "" for Kaggle
    text         str     the phrase (PTB: its leaves joined by single spaces)

Deduplication modes (``dedup``): ``none`` keeps every node (as in published all-phrase SST
results), ``sentence`` keeps the first occurrence of each text within a sentence, ``global`` keeps
each text once at its first occurrence (how the Kaggle release was built: its rows never repeat a
text). Every command takes ``data.dedup``; the default is ``none``.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sst.config.sections import Dedup, PtbRole
from sst.data import N_CLASSES
from sst.data.lines import iter_lines, tab_fields
from sst.errors import SstError

COLUMNS = ("sentence_id", "phrase_id", "label", "n_tokens", "is_root", "split", "text")
DEDUP_MODES = typing.get_args(Dedup)
FORMATS = ("kaggle", "ptb")
PTB_ROLES = typing.get_args(PtbRole)

KAGGLE_HEADER = ("PhraseId", "SentenceId", "Phrase", "Sentiment")


@dataclass
class PhraseTable:
    """The phrases of one or more source files, with what parsing noticed about them."""

    frame: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frame)


def _int(value: str, what: str, path: Path, lineno: int) -> int:
    try:
        return int(value)
    except ValueError:
        raise SstError(
            f"{what} {value!r} is not an integer",
            path=path,
            line=lineno,
            fix="fix or drop that row",
        ) from None


def _label(value: str, path: Path, lineno: int) -> int:
    label = _int(value, "label", path, lineno)
    if not 0 <= label < N_CLASSES:
        raise SstError(
            f"label {label} is outside 0-4", path=path, line=lineno, fix="labels are 0..4 (SST-5)"
        )
    return label


def parse_kaggle_tsv(path: Path) -> PhraseTable:
    """Kaggle "Sentiment Analysis on Movie Reviews" train.tsv (labelled) or test.tsv (not).

    Two quirks of the release are handled on purpose: the single-space phrases (train PhraseId
    2006, test 157451) are kept verbatim with ``n_tokens == 0`` and listed in ``meta``; and the
    SentenceIds that are absent (all their phrases occurred earlier) are listed in ``meta`` rather
    than assumed contiguous.
    """
    path = Path(path)
    seen_format: dict[str, Any] = {}
    lines = iter_lines(path, seen_format)
    first = next(lines, None)
    header = tuple(first[1].split("\t")) if first else ()
    if header not in (KAGGLE_HEADER, KAGGLE_HEADER[:3]):
        raise SstError(
            f"unexpected header {first[1] if first else ''!r}",
            path=path,
            line=1,
            fix="expected 'PhraseId<TAB>SentenceId<TAB>Phrase[<TAB>Sentiment]' (Kaggle release)",
        )
    labelled = len(header) == 4
    sids: list[int] = []
    pids: list[int] = []
    labels: list[int] = []
    texts: list[str] = []
    seen: dict[int, int] = {}
    empty: list[int] = []
    for lineno, line in lines:
        fields = tab_fields(line, len(header), path, lineno, "each row is " + "<TAB>".join(header))
        pid = _int(fields[0], "PhraseId", path, lineno)
        sid = _int(fields[1], "SentenceId", path, lineno)
        if pid in seen:
            raise SstError(
                f"duplicate PhraseId {pid} (first on line {seen[pid]})",
                path=path,
                line=lineno,
                fix="PhraseIds must be unique: use the file as released",
            )
        seen[pid] = lineno
        text = fields[2]
        if not text.strip():
            empty.append(pid)
        sids.append(sid)
        pids.append(pid)
        labels.append(_label(fields[3], path, lineno) if labelled else -1)
        texts.append(text)
    if not texts:
        raise SstError(
            "no phrases after the header", path=path, line=2, fix="pass the file as released"
        )
    frame = _frame(sids, pids, labels, texts, split="")
    # Kaggle lists each sentence's phrases with the whole sentence first.
    first_of_sentence = ~frame["sentence_id"].duplicated(keep="first")
    frame["is_root"] = first_of_sentence.to_numpy()
    present = np.unique(frame["sentence_id"].to_numpy())
    missing = (
        sorted(set(range(int(present[0]), int(present[-1]) + 1)) - set(present.tolist()))
        if len(present)
        else []
    )
    meta = {
        "format": "kaggle",
        "labelled": labelled,
        "rows": len(frame),
        "sentences": len(present),
        "missing_sentence_ids": missing,
        "empty_phrase_ids": empty,
        **seen_format,
    }
    return PhraseTable(frame, meta)


_TOKEN = re.compile(r"\(|\)|[^\s()]+")


def _parse_ptb_line(
    line: str, path: Path, lineno: int
) -> tuple[list[str], list[tuple[int, int, int]]]:
    """Leaves and nodes (label, first leaf, end leaf) of one tree, nodes in pre-order."""
    leaves: list[str] = []
    nodes: list[tuple[int, int, int]] = []
    stack: list[int] = []  # indices into nodes of the open brackets
    children: list[int] = []  # per node, its child nodes (SST trees are binary: 0 or 2)
    tokens = _TOKEN.findall(line)
    i = 0
    closed_root = False

    def bad(what: str) -> SstError:
        return SstError(
            f"unbalanced tree: {what}",
            path=path,
            line=lineno,
            fix="each line must be one complete '(label ...)' tree, as in trainDevTestTrees_PTB",
        )

    while i < len(tokens):
        tok = tokens[i]
        if closed_root and tok != ")":
            raise bad("text after the root closed")
        if tok == "(":
            if i + 1 >= len(tokens) or tokens[i + 1] in "()":
                raise bad("'(' without a label")
            label = _label(tokens[i + 1], path, lineno)
            if stack:
                children[stack[-1]] += 1
            stack.append(len(nodes))
            nodes.append((label, len(leaves), -1))
            children.append(0)
            i += 2
            j = i
            while j < len(tokens) and tokens[j] not in "()":
                j += 1
            if j > i:  # a leaf, which may hold a space: "(2 8 1\\/2)" is the film "8 1/2"
                leaves.append(" ".join(tokens[i:j]))
                i = j
        elif tok == ")":
            if not stack:
                raise bad("')' without a matching '('")
            k = stack.pop()
            label, start, _ = nodes[k]
            if start == len(leaves):
                raise bad("a node with no words")
            if children[k] not in (0, 2):
                raise SstError(
                    f"a node with {children[k]} child node{'s' * (children[k] > 1)} "
                    f"(node {k + 1} of the tree; SST trees are binary)",
                    path=path,
                    line=lineno,
                    fix="each node is a word '(label word)' or two nodes '(label (..) (..))', "
                    "as in trainDevTestTrees_PTB",
                )
            nodes[k] = (label, start, len(leaves))
            closed_root = not stack
            i += 1
        else:
            raise bad(f"word {tok!r} outside a node")
    if stack:
        raise bad(f"{len(stack)} unclosed '('")
    if not nodes:
        raise bad("empty line")
    return leaves, nodes


def ptb_role(name: str) -> str:
    """The part a PTB file holds, from its name: ``train.txt``, ``dev.txt``, ``test.txt``."""
    stem = Path(name).name.split(".")[0]
    if stem not in PTB_ROLES:
        raise SstError(
            "cannot tell whether this file holds train, dev or test trees",
            path=name,
            fix="name it train.txt, dev.txt or test.txt, or set data.roles (one per source, "
            "e.g. data.roles=[train,dev,test])",
        )
    return stem


def parse_ptb_file(
    path: Path, split: str | None = None, sentence_start: int = 1, phrase_start: int = 1
) -> PhraseTable:
    """SST ``trees/{train,dev,test}.txt``: one tree per line, every node becomes a phrase of
    the part ``split`` (train, dev or test; default: from the file name)."""
    path = Path(path)
    split = split or ptb_role(path.name)
    seen_format: dict[str, Any] = {}
    sids: list[int] = []
    pids: list[int] = []
    labels: list[int] = []
    texts: list[str] = []
    roots: list[bool] = []
    sid = sentence_start - 1
    pid = phrase_start
    for lineno, line in iter_lines(path, seen_format):
        leaves, nodes = _parse_ptb_line(line, path, lineno)
        sid += 1
        for k, (label, start, end) in enumerate(nodes):
            sids.append(sid)
            pids.append(pid)
            pid += 1
            labels.append(label)
            texts.append(" ".join(leaves[start:end]))
            roots.append(k == 0)
    if not texts:
        raise SstError("no trees in the file", path=path, fix="pass the file as released")
    frame = _frame(sids, pids, labels, texts, split=split)
    frame["is_root"] = np.asarray(roots, dtype=bool)
    meta = {
        "format": "ptb",
        "labelled": True,
        "rows": len(frame),
        "sentences": sid - sentence_start + 1,
        "splits": {split: sid - sentence_start + 1},
        **seen_format,
    }
    return PhraseTable(frame, meta)


def _frame(
    sids: list[int], pids: list[int], labels: list[int], texts: list[str], split: str
) -> pd.DataFrame:
    text = pd.Series(texts, dtype=object)
    return pd.DataFrame(
        {
            "sentence_id": np.asarray(sids, dtype=np.int64),
            "phrase_id": np.asarray(pids, dtype=np.int64),
            "label": np.asarray(labels, dtype=np.int8),
            "n_tokens": text.str.split().str.len().fillna(0).to_numpy(dtype=np.int32),
            "is_root": np.zeros(len(texts), dtype=bool),
            "split": split,
            "text": text,
        },
        columns=list(COLUMNS),
    )


def load_phrases(
    paths: list[Path], fmt: str, dedup: str = "none", roles: list[str] | None = None
) -> PhraseTable:
    """Parse ``paths`` (in order) as one table; PTB files are the parts ``roles`` names (one per
    path: train, dev or test; default: from their names) and get sentence/phrase ids that
    continue across files."""
    if fmt not in FORMATS:
        raise SstError(f"unknown data format {fmt!r}", fix=f"use one of {', '.join(FORMATS)}")
    tables: list[PhraseTable] = []
    if roles is not None and len(roles) != len(paths):
        raise ValueError(f"{len(roles)} roles for {len(paths)} files")
    for k, path in enumerate(paths):
        if fmt == "kaggle":
            tables.append(parse_kaggle_tsv(path))
        else:
            prev = tables[-1].frame if tables else None
            s0 = int(prev["sentence_id"].max()) + 1 if prev is not None and len(prev) else 1
            p0 = int(prev["phrase_id"].max()) + 1 if prev is not None and len(prev) else 1
            role = roles[k] if roles else None
            tables.append(parse_ptb_file(path, role, sentence_start=s0, phrase_start=p0))
    frame = pd.concat([t.frame for t in tables], ignore_index=True)
    meta: dict[str, Any] = {"format": fmt, "files": [t.meta for t in tables]}
    if fmt == "kaggle" and frame["phrase_id"].duplicated().any():
        raise SstError(
            "the same PhraseId appears in two input files", fix="pass each Kaggle file once"
        )
    table = PhraseTable(frame, meta)
    return deduplicate(table, dedup)


def deduplicate(table: PhraseTable, mode: str) -> PhraseTable:
    if mode not in DEDUP_MODES:
        raise SstError(f"unknown dedup mode {mode!r}", fix=f"use one of {', '.join(DEDUP_MODES)}")
    frame = table.frame
    if mode == "sentence":
        keep = ~frame.duplicated(subset=["sentence_id", "text"], keep="first")
    elif mode == "global":
        keep = ~frame["text"].duplicated(keep="first")
    else:
        keep = pd.Series(True, index=frame.index)
    out = frame[keep.to_numpy()].reset_index(drop=True)
    meta = dict(table.meta, dedup=mode, rows_before_dedup=len(frame), rows=len(out))
    return PhraseTable(out, meta)
