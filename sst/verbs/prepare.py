"""`sst data` and `sst split`: read the sources, make the split once, record it in ClearML.

    sst data --config configs/kaggle.yaml       # what the sources hold
    sst split --config configs/ptb.yaml         # the split folder + a data_processing task

:func:`ensure_split` makes a missing split from the recorded sources before `sst train` and
`sst replay` (an agent's fresh clone, a new machine); the data pipeline itself
(:mod:`sst.data.pipeline`) knows nothing of ClearML.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

from sst.config import Config
from sst.data import LABELS
from sst.data.pipeline import SplitResult, fetch_sources, load_table, long_phrases, run_split
from sst.data.stats import class_counts
from sst.tracking import server
from sst.tracking.tracker import Tracker, tracked


def make_split(cfg: Config, *, force: bool = False) -> tuple[SplitResult, str | None]:
    """Write ``split.out`` once (see :func:`run_split`) and record it as a ClearML task; returns
    the result and the one line saying where the task is (None with tracking disabled)."""
    result = run_split(cfg, force=force)
    with tracked(
        cfg.tracking.project,
        f"split {cfg.name}",
        "data_processing",
        cfg.to_dict(),
        args=["split"],  # the connected config is the whole input
        enabled=cfg.tracking.enabled,
    ) as tracker:
        if tracker is None:
            return result, None
        _report_split(tracker, cfg, result)
        return result, tracker.describe()


def ensure_split(cfg: Config) -> SplitResult | None:
    """Make ``train.split`` when it is missing: under a clearml-agent whose task recorded the
    ClearML Dataset its split is, fetched from it (no sources needed); otherwise, when this
    config is the one that writes it (``split.out``), from the sources, checked against their
    sha256 exactly as `sst split` does. None when nothing was made from the sources."""
    folder = Path(cfg.train.split)
    if folder.is_dir():
        return None
    if (recorded := server.remote_dataset()) is not None:
        server.fetch_split(recorded, folder)
        print(f"split {folder} fetched from ClearML Dataset {recorded['id']}", file=sys.stderr)
        return None
    if Path(cfg.split.out) != folder:
        return None
    made, _ = make_split(cfg)
    print(f"split {made.out} made first ({made.status})", file=sys.stderr)
    return made


def _report_split(tracker: Tracker, cfg: Config, result: SplitResult) -> None:
    manifest = result.manifest
    rec = manifest["split"]
    split = {k: v for k, v in rec.items() if k != "overlap"}
    tracker.record("split_result", split, "the split: seed, distances, sizes")
    listed = {"files": manifest["files"], "sources": manifest["sources"]}
    tracker.record("manifest", listed, "the split's files and sources, by sha256")
    for key in ("seed", "distance", "original_distance", "test_distance"):
        if key in rec:
            tracker.report_single_value(key, rec[key])
    for name, c in manifest["counts"].items():
        tracker.report_histogram("class counts", name, c["class_counts"], list(LABELS))
        tracker.report_single_value(f"{name}_sentences", c["sentences"])
    for name, path in result.plots.items():
        tracker.report_image(name, "split", path)
    if result.status != "unchanged":
        files = sorted(
            p for p in result.out.rglob("*") if p.is_file() and p.name != server.DATASET_ID_FILE
        )
        dataset_id = tracker.create_split_dataset(
            cfg.tracking.project, cfg.name, result.out, files, result.raw_files
        )
        if dataset_id:
            (result.out / server.DATASET_ID_FILE).write_text(dataset_id + "\n")
            tracker.record("dataset", {"id": dataset_id}, "the ClearML Dataset of the split")


def print_data(cfg: Config, out: TextIO | None = None) -> None:
    """What `sst data` prints: each source with its sha256, then what the table holds."""
    out = out or sys.stdout
    fetched = fetch_sources(cfg)
    for source, f in zip(cfg.data.sources, fetched, strict=True):
        print(f"source   {source}\n  read   {f.uri}\n  path   {f.path}", file=out)
        print(f"  sha256 {f.sha256}", file=out)
        if f.content_sha256 != f.sha256:
            print(f"  content sha256 {f.content_sha256}", file=out)
    table = load_table(cfg, fetched)
    frame = table.frame
    print(
        f"format {cfg.data.format}, dedup {cfg.data.dedup}: {len(frame)} phrases, "
        f"{frame['sentence_id'].nunique()} sentences",
        file=out,
    )
    if (frame["label"] >= 0).all():
        print(f"class counts (0..4): {class_counts(frame)}", file=out)
    if note := long_phrases(cfg, table):
        print(note, file=out)
    for meta in table.meta["files"]:
        if meta.get("missing_sentence_ids"):
            print(f"absent sentence ids: {meta['missing_sentence_ids']}", file=out)
        if meta.get("empty_phrase_ids"):
            print(
                f"empty (single-space) phrase ids kept as is: {meta['empty_phrase_ids']}", file=out
            )


def split_and_print(cfg: Config, *, force: bool = False, out: TextIO | None = None) -> None:
    """`sst split`: make the split, then print the chosen seed, the counts and the plots."""
    out = out or sys.stdout
    t0 = time.perf_counter()
    result, where = make_split(cfg, force=force)
    rec = result.manifest["split"]
    lines = [f"split {result.out} ({result.status}, {time.perf_counter() - t0:.1f} s)"]
    if rec["mode"] == "search":
        lo, hi = rec["candidate_seeds"]
        lines += [
            f"chosen seed {rec['seed']} of {lo}..{hi}: Wasserstein {rec['distance']:.6f} "
            f"(scipy {rec['scipy_distance']:.6f})",
            f"original seed {rec['original_seed']}: Wasserstein {rec['original_distance']:.6f}",
        ]
    else:
        lines.append(
            f"canonical split kept; train+dev vs test Wasserstein {rec['test_distance']:.6f}"
        )
    lines.append(f"{'split':6} {'sentences':>9} {'phrases':>8}  class counts 0..4 (roots)")
    for name, c in result.manifest["counts"].items():
        lines.append(
            f"{name:6} {c['sentences']:>9} {c['phrases']:>8}  {c['class_counts']} "
            f"({c['root_class_counts']})"
        )
    shared = rec["overlap"]["shared_sentence_texts"]
    if shared:
        lines.append(
            "note: identical full-sentence texts across splits (kept, listed in the manifest): "
            f"{shared}"
        )
    if result.long_phrases:
        lines.append(result.long_phrases)
    lines += [f"plot   {name}: {path}" for name, path in result.plots.items()]
    lines.append(where or "ClearML tracking disabled (tracking.enabled=false)")
    print("\n".join(lines), file=out)
