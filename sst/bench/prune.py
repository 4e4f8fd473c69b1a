"""``sst bench prune``: what sparsity buys on this CPU. Pruned runs beside dense ones, read from
their run folders (each with its own config): test scores over seeds, inference with dense and
with sparse (CSR) kernels, and the weights' size on disk.

    sst bench prune --runs runs/<dense>... runs/<pruned>...
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import NamedTuple

from sst.bench.harness import best_of, print_and_save
from sst.data.pipeline import read_split
from sst.errors import SstError
from sst.model.metrics import mean_sd
from sst.run.folder import CONFIG, METRICS, WEIGHTS, Run


class _Group(NamedTuple):
    """One row of the table: runs that differ only by seed."""

    sparsity: float
    label: str
    members: list[Run]
    scores: list[list[float]]  # root accuracy, root macro-F1: one value per member
    dense: float  # phrases/s, dense kernels
    csr: float  # phrases/s, sparse CSR kernels
    mib: tuple[float, float]  # the weights' size raw, gzip-compressed


def bench_prune(paths: list[Path], n_texts: int, out_md: Path | None) -> int:
    """Pruned runs beside dense ones, grouped by config without seed and starting run: test
    root accuracy (mean ± sd over seeds), the measured sparsity, inference phrases/s on the same
    test texts with dense kernels (the zeros are still multiplied) and with sparse CSR kernels,
    and the weights' size raw and gzip-compressed; ratios against the least sparse group."""
    import torch

    from sst.model.inference import Predictor
    from sst.model.pruning import gzip_bytes, sparsity, to_csr

    if not paths:
        raise SstError("no runs to compare", fix="pass --runs runs/<dense> runs/<pruned> ...")
    groups: dict[str, list[Run]] = {}
    for path in paths:
        run = Run.open(path, need=(CONFIG, WEIGHTS, METRICS))
        cfg = run.config.without_seed()
        key = cfg.with_model(init_from="").hash()
        groups.setdefault(key, []).append(run)
    first = next(iter(groups.values()))[0]
    parts, _ = read_split(Path(first.config.train.split))  # one test set: the first run's split
    texts = parts["test"]["text"].drop_duplicates()
    texts = texts.sample(min(n_texts, len(texts)), random_state=0).tolist()
    rows: list[_Group] = []
    for members in groups.values():
        run, batch = members[0], members[0].config.train.eval_batch_size
        model = run.load_classifier()
        zeros = sparsity(model)
        rates = []
        for kernels, passes in ((model, 2), (to_csr(copy.deepcopy(model)), 1)):  # CSR: slow
            predict = Predictor.from_config(kernels, run.pinned_config).probabilities
            rates.append(len(texts) / best_of(functools.partial(predict, texts, batch), passes))
        dense, csr = rates
        scores = [[r.metrics["test"]["root"][m] for r in members] for m in ("accuracy", "macro_f1")]
        mib = (run.weights.stat().st_size / 2**20, gzip_bytes(run.weights) / 2**20)
        rows.append(_Group(zeros, _prune_label(run), members, scores, dense, csr, mib))
    # by sparsity; an unpruned preset before the runs that started from it
    rows.sort(key=lambda g: (g.sparsity, bool(g.members[0].config.model.init_from)))
    ref = rows[0]
    lines = [
        f"{len(texts)} test phrases, batch {ref.members[0].config.train.eval_batch_size}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}; sparsity: the share of "
        "zeros among the encoder's linear weights; dense ×: against the first row; CSR ×: "
        "against the same row's dense kernels",
        "",
        "| runs | n (seeds) | sparsity | root accuracy | root macro-F1 | dense phrases/s | dense × "
        "| CSR phrases/s | CSR × | weights MiB | gzip MiB |",
        "| --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for zeros, label, members, scores, dense, csr, (raw, packed) in rows:
        acc, f1 = ("{:.3f} ± {:.3f}".format(*mean_sd(v)) for v in scores)
        seeds = ",".join(str(r.config.train.seed) for r in members)
        lines.append(
            f"| {label} | {len(members)} ({seeds}) | {zeros:.1%} | {acc} | {f1} | {dense:.0f} | "
            f"{dense / ref.dense:.2f} | {csr:.0f} | {csr / dense:.2f} | {raw:.1f} | {packed:.1f} |"
        )
    print_and_save(out_md, "Pruning (`sst bench prune`)", lines)
    return 0


def _prune_label(run: Run) -> str:
    """A group's name: its preset, or the preset it was pruned from and how it was fine-tuned."""
    cfg, t = run.config, run.config.train
    if not cfg.model.init_from:
        return cfg.name + (f", train.prune={t.prune:g}" if t.prune else "")
    init = Path(cfg.model.init_from)
    parent = Run(init).config.name if (init / CONFIG).is_file() else init.name
    return f"{parent} → train.prune={t.prune:g}, {t.sampling} × {t.epoch_size} draws, lr {t.lr:g}"
