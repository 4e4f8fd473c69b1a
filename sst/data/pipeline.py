"""source → phrase table → split → versioned folder + plots (`sst split` also tracks it).

    sst split --config configs/kaggle.yaml      # `make split`
    sst split --config configs/ptb.yaml         # `make split-ptb` (canonical train/dev/test)

The split folder holds ``train.tsv``, ``val.tsv`` (when asked for), ``test.tsv``, ``plots/*.png``
and ``manifest.json`` (sha256 of every file, counts per class, seed, distances, source sha256s and
parameters). Downstream code reads a split only through :func:`read_split`, which verifies it.
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import sst
from sst.config import Config
from sst.config.variables import expand, unset_variables
from sst.data import split as tree_split
from sst.data import stats
from sst.data.formats import COLUMNS, PTB_ROLES, PhraseTable, load_phrases, ptb_role
from sst.data.sources import Fetched, fetch, is_cached
from sst.errors import SstError
from sst.io import default_cache_dir, verify, write_once

SPLIT_NAMES = ("train", "val", "test")
HELDOUT, UNLABELED = "heldout", "unlabeled.txt"  # split.unlabeled_fraction (never read as a part)


@dataclass
class SplitResult:
    out: Path
    status: str  # written | unchanged | replaced
    manifest: dict[str, Any]
    plots: dict[str, Path]
    raw_files: list[Path]  # the fetched sources, as read
    long_phrases: str | None = None  # what is truncated at tokenization (see long_phrases)


def long_phrases(cfg: Config, table: PhraseTable) -> str | None:
    """A note on the phrases with more words than ``model.max_length`` (none: None): the
    tokenizer keeps their first ``max_length`` tokens (a word is one token or more, so at least
    these phrases are cut)."""
    n = table.frame["n_tokens"]
    limit = cfg.model.max_length
    if not (n > limit).any():
        return None
    return (
        f"note: {int((n > limit).sum())} phrases have more than model.max_length={limit} words "
        f"(longest {int(n.max())}): tokenization keeps their first {limit} tokens"
    )


def fetch_sources(cfg: Config) -> list[Fetched]:
    """Every ``data.sources`` entry as a local, verified file (its ``data.fallback`` when the
    source cannot be read here). Variables in a source expand now, never when recorded."""
    d = cfg.data
    if not d.sources:
        raise SstError("no data sources configured", fix="set data.sources (see configs/)")
    for name, values in (("sha256", d.sha256), ("fallback", d.fallback)):
        if values and len(values) != len(d.sources):
            raise SstError(
                f"{len(values)} data.{name} values for {len(d.sources)} sources",
                fix=f"give one data.{name} per source ('' to skip one)",
            )
    pins = list(d.sha256) or [""] * len(d.sources)
    fallbacks = list(d.fallback) or [""] * len(d.sources)
    return [
        fetch_source(source, pin or None, fallback or None)
        for source, pin, fallback in zip(d.sources, pins, fallbacks, strict=True)
    ]


def locate(source: str) -> tuple[str | None, str]:
    """``source`` (as written) expanded when it can be read here (a URL always can), else None
    and why not: a variable is unset or the file is missing."""
    if unset := unset_variables(source):
        return None, f"${{{unset[0]}}} is not set"
    path = expand(source)
    if "://" in path or Path(path).expanduser().is_file():
        return path, ""
    return None, f"{path} does not exist"


def fetch_source(source: str, pin: str | None, fallback: str | None) -> Fetched:
    """``source`` (as written) read here, or its ``fallback`` when it cannot be: a variable is
    unset or the local file is missing. The fallback must hold the pinned bytes."""
    path, why = locate(source)
    if path is not None:
        return fetch(path, sha256=pin)
    unset = unset_variables(source)
    if not fallback:
        raise SstError(
            f"data file {source} not found: {why}",
            fix=f"export {unset[0]}=<the data folder>" if unset else "check the path",
        )
    if not pin:
        raise SstError(
            f"data file {source} not found ({why}); its fallback serves pinned sources only",
            fix="give the source its data.sha256, or make the file readable here",
        )
    url = expand(fallback)
    print(f"{source}: {why}; fetching {url}", file=sys.stderr)
    try:
        return fetch(url, sha256=pin)
    except SstError as e:
        raise SstError(
            f"data file {source} not found ({why}) and {url} failed: {e.what}"
            + (f" [{e.fix}]" if e.fix else ""),
            fix=f"{'export ' + unset[0] + '=<the data folder>' if unset else 'put the file there'}"
            f", or download {url.partition('#')[0]} yourself and give its path in data.fallback",
        ) from None


@dataclass(frozen=True)
class Whereabouts:
    """Where a config's data would come from, before anything is read (`sst doctor`): the worst
    of its sources' states, and that source's detail."""

    state: str  # local | remote | fallback | missing | none
    detail: str


WORST_LAST = ("local", "remote", "fallback", "missing")


def whereabouts(cfg: Config) -> Whereabouts:
    """Each source as :func:`fetch_source` would get it — read where it is, or through its own
    fallback (which needs the source's sha256 pin) — and the worst of them."""
    d = cfg.data
    if not d.sources:
        return Whereabouts("none", "the config names no data.sources")
    n = len(d.sources)
    pins, fallbacks = list(d.sha256) or [""] * n, list(d.fallback) or [""] * n
    if len(pins) != n or len(fallbacks) != n:
        return Whereabouts("missing", "data.sha256 / data.fallback do not give one per source")
    found: list[tuple[str, str]] = []
    for source, pin, fallback in zip(d.sources, pins, fallbacks, strict=True):
        path, why = locate(source)
        if path is not None:
            found.append(("remote", path) if "://" in path else ("local", path))
        elif not fallback or not pin:
            lacks = "no data.fallback" if not fallback else "a fallback but no data.sha256 pin"
            found.append(("missing", f"{source}: {why}, and {lacks}"))
        else:
            url = expand(fallback).partition("#")[0]
            if "://" not in url:
                got = "a local copy" if Path(url).expanduser().is_file() else "NOT FOUND"
            else:
                got = "cached" if is_cached(url) else "downloaded on first use, then cached"
            found.append(("fallback", f"{why}: {url} ({got}, in {default_cache_dir()})"))
    state = max((s for s, _ in found), key=WORST_LAST.index)
    if state == "local":
        folders = sorted({str(Path(p).expanduser().resolve().parent) for _, p in found})
        return Whereabouts("local", f"{n} file{'s' * (n > 1)} in {', '.join(folders)}")
    detail = next(d for s, d in found if s == state)
    count = sum(s == state for s, _ in found)
    return Whereabouts(state, f"{detail}; {count} of {n} sources" if n > 1 else detail)


def ptb_roles(cfg: Config) -> list[str] | None:
    """The part (train, dev, test) of each PTB source: ``data.roles``, or the file's name."""
    d = cfg.data
    if d.format != "ptb":
        if d.roles:
            raise SstError("data.roles is for ptb sources", fix="drop data.roles")
        return None
    if d.roles and len(d.roles) != len(d.sources):
        raise SstError(
            f"{len(d.roles)} data.roles for {len(d.sources)} sources",
            fix="give one role (train, dev or test) per source",
        )
    return list(d.roles) or [ptb_role(s.partition("#")[2] or s) for s in d.sources]


def load_table(cfg: Config, fetched: list[Fetched]) -> PhraseTable:
    return load_phrases([f.path for f in fetched], cfg.data.format, cfg.data.dedup, ptb_roles(cfg))


def make_parts(cfg: Config, table: PhraseTable) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Split the table into named parts; returns the parts and what the manifest records."""
    frame = table.frame
    sc = cfg.split
    index = tree_split.SentenceIndex.of(frame)
    record: dict[str, Any] = {"mode": sc.mode}
    if sc.mode == "canonical":
        names = set(frame["split"].unique())
        if not set(PTB_ROLES) <= names:
            missing = ", ".join(r for r in PTB_ROLES if r not in names)
            raise SstError(
                f"canonical mode needs PTB train, dev and test trees; no {missing} among "
                f"data.sources (roles {', '.join(ptb_roles(cfg) or [])})",
                fix="list trees/{train,dev,test}.txt in data.sources (data.roles says which is "
                "which), or use split.mode=search",
            )
        is_test = frame.groupby("sentence_id")["split"].first().reindex(index.ids) == "test"
        test_mask = is_test.to_numpy()
        parts = {
            "train": frame[frame["split"] == "train"],
            "val": frame[frame["split"] == "dev"],
            "test": frame[frame["split"] == "test"],
        }
        train_dev = ~test_mask
        record["test_distance"] = float(
            tree_split.wasserstein_from_counts(
                index.counts[train_dev].sum(axis=0), index.counts[test_mask].sum(axis=0)
            )
        )
        record["scipy_test_distance"] = tree_split.scipy_wasserstein(index, test_mask)
        record["note"] = "official SST train/dev/test kept unchanged; dev is the validation set"
    elif sc.mode == "search":
        found = tree_split.search_test_seed(index, sc.test_fraction, sc.n_seeds, sc.first_seed)
        record.update(
            test_fraction=sc.test_fraction,
            candidate_seeds=[sc.first_seed, sc.first_seed + sc.n_seeds - 1],
            seed=found.seed,
            distance=found.distance,
            scipy_distance=found.scipy_distance,
            original_seed=found.original_seed,
            original_distance=found.original_distance,
        )
        test_ids = index.ids[found.test_mask]
        in_test = frame["sentence_id"].isin(test_ids).to_numpy()
        rest = frame[~in_test]
        parts = {"test": frame[in_test]}
        parts.update(_train_val(cfg, rest, record))
        parts = {name: parts[name] for name in SPLIT_NAMES if name in parts}
    else:
        raise SstError(f"unknown split mode {sc.mode!r}", fix="use search or canonical")
    parts = {k: v.reset_index(drop=True) for k, v in parts.items()}
    for name, part in parts.items():
        if part.empty:
            raise SstError(
                f"the {name} part of the split has no phrases",
                fix="use more data, or change split.test_fraction / split.val_fraction",
            )
    if sc.unlabeled_fraction:
        parts = _hold_back(parts, sc.unlabeled_fraction, sc.seed, record)
    record["overlap"] = tree_split.overlap_report(parts)
    return parts, record


def _hold_back(
    parts: dict[str, pd.DataFrame], fraction: float, seed: int, record: dict[str, Any]
) -> dict[str, pd.DataFrame]:
    """``split.unlabeled_fraction``: whole train sentences (stratified by root label) leave train
    for ``heldout`` (gold, to measure pseudo labels; never trained on); their sentences' texts
    are written to ``unlabeled.txt`` for a teacher to label. Dev and test are never touched."""
    train = parts["train"]
    index = tree_split.SentenceIndex.of(train)
    # its own random stream ([seed, 1]), not the validation holdout's (seed)
    mask = tree_split.holdout_mask(index, fraction, [seed, 1], True, "split.unlabeled_fraction")
    held = train["sentence_id"].isin(index.ids[mask]).to_numpy()
    record["unlabeled"] = {"fraction": fraction, "seed": seed, "sentences": int(mask.sum())}
    kept, out = train[~held].reset_index(drop=True), train[held].reset_index(drop=True)
    return {**parts, "train": kept, HELDOUT: out}


def _train_val(cfg: Config, rest: pd.DataFrame, record: dict[str, Any]) -> dict[str, pd.DataFrame]:
    sc = cfg.split
    index = tree_split.SentenceIndex.of(rest)
    if sc.folds:
        if not 0 <= sc.fold < sc.folds:
            raise SstError(f"fold {sc.fold} of {sc.folds}", fix=f"use 0..{sc.folds - 1}")
        val_mask = tree_split.assign_folds(index, sc.folds, sc.seed, sc.stratify) == sc.fold
        record["val"] = {
            "folds": sc.folds,
            "fold": sc.fold,
            "seed": sc.seed,
            "stratify": sc.stratify,
        }
    elif sc.val_fraction > 0:
        val_mask = tree_split.holdout_mask(index, sc.val_fraction, sc.seed, sc.stratify)
        record["val"] = {"fraction": sc.val_fraction, "seed": sc.seed, "stratify": sc.stratify}
    else:
        return {"train": rest}
    in_val = rest["sentence_id"].isin(index.ids[val_mask]).to_numpy()
    return {"train": rest[~in_val], "val": rest[in_val]}


def to_tsv(frame: pd.DataFrame) -> bytes:
    """The split file format: a header and one phrase per line, text last and verbatim."""
    out = io.StringIO()
    out.write("\t".join(COLUMNS) + "\n")
    cols = [frame[c].to_numpy() for c in COLUMNS]
    for sid, pid, label, n, root, split, text in zip(*cols, strict=True):
        out.write(f"{sid}\t{pid}\t{label}\t{n}\t{int(root)}\t{split}\t{text}\n")
    return out.getvalue().encode("utf-8")


def read_tsv(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(
        path,
        sep="\t",
        dtype={
            "sentence_id": np.int64,
            "phrase_id": np.int64,
            "label": np.int8,
            "n_tokens": np.int32,
            "is_root": np.int8,
            "split": str,
            "text": str,
        },
        keep_default_na=False,
        quoting=3,  # csv.QUOTE_NONE: quotes are part of the phrases
        na_filter=False,
    )
    frame["is_root"] = frame["is_root"].astype(bool)
    return frame


def read_split(folder: str | Path) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """The parts of a split folder after verifying every file against its manifest."""
    folder = Path(folder)
    manifest = verify(folder)
    parts = {
        n: read_tsv(folder / f"{n}.tsv") for n in SPLIT_NAMES if (folder / f"{n}.tsv").is_file()
    }
    return parts, manifest


def run_split(cfg: Config, *, force: bool = False) -> SplitResult:
    """Fetch, parse, split and write ``cfg.split.out`` once."""
    fetched = fetch_sources(cfg)
    table = load_table(cfg, fetched)
    parts, record = make_parts(cfg, table)
    counts = stats.split_stats(parts)
    title = _comparison_title(record)
    plots: dict[str, Path] = {}

    def build(tmp: Path) -> dict[str, Any]:
        for name, frame in parts.items():
            (tmp / f"{name}.tsv").write_bytes(to_tsv(frame))
        if HELDOUT in parts:  # what a teacher labels: the held-back sentences, one per line
            roots = parts[HELDOUT][parts[HELDOUT]["is_root"]]["text"]
            (tmp / UNLABELED).write_text("".join(f"{t}\n" for t in roots), encoding="utf-8")
        plots.update(stats.write_plots(parts, tmp / "plots", title))
        return {
            "kind": "split",
            "sst_version": sst.__version__,
            # each source as written (its variables unexpanded) and by content: no machine path
            "sources": [
                {"source": source, "sha256": f.sha256, "content_sha256": f.content_sha256}
                for source, f in zip(cfg.data.sources, fetched, strict=True)
            ],
            "data": {"format": cfg.data.format, "dedup": cfg.data.dedup, "parsed": table.meta},
            "split": record,
            "counts": counts,
        }

    out = Path(cfg.split.out)
    status, manifest = write_once(out, build, force=force)
    plot_paths = {name: out / "plots" / path.name for name, path in plots.items()}
    return SplitResult(
        out, status, manifest, plot_paths, [f.path for f in fetched], long_phrases(cfg, table)
    )


def _comparison_title(record: dict[str, Any]) -> str:
    if record["mode"] == "search":
        return (
            f"Train vs test: seed {record['seed']}, Wasserstein {record['distance']:.5f} "
            f"(seed {record['original_seed']}: {record['original_distance']:.5f})"
        )
    return f"Canonical SST split: train+dev vs test Wasserstein {record['test_distance']:.5f}"
