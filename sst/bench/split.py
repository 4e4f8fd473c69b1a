"""The seed search's benchmark: the vectorised Wasserstein search against the per-seed loop the
original project ran (pandas rows, then ``scipy.stats.wasserstein_distance``); both use the same
seed → split rule, so their distances must agree.

    make bench-split      # sst bench split --seeds 10000 --peer-seeds 300
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.stats import wasserstein_distance

from sst.bench.harness import best_of, print_and_save
from sst.config import Config
from sst.data import split as tree_split
from sst.data.pipeline import fetch_sources, load_table


def bench_split(cfg: Config, n_seeds: int, n_peer: int, out_md: Path | None = None) -> int:
    table = load_table(cfg, fetch_sources(cfg))
    frame = table.frame
    index = tree_split.SentenceIndex.of(frame)
    fraction = cfg.split.test_fraction
    seeds = np.arange(n_seeds, dtype=np.int64)
    ours = best_of(lambda: tree_split.seed_distances(index, seeds, fraction))

    labels = frame["label"].to_numpy()
    sentence = frame["sentence_id"]
    peer_seeds = seeds[:n_peer]
    peer_dist = np.empty(len(peer_seeds))

    def peer() -> None:
        for i, seed in enumerate(peer_seeds):
            test_ids = index.ids[tree_split.test_mask(index, int(seed), fraction)]
            in_test = sentence.isin(test_ids).to_numpy()
            peer_dist[i] = wasserstein_distance(labels[~in_test], labels[in_test])

    peer_time = best_of(peer, repeat=1)
    ours_per_seed = ours / n_seeds
    peer_per_seed = peer_time / n_peer
    agree = np.allclose(
        tree_split.seed_distances(index, peer_seeds, fraction), peer_dist, atol=1e-12
    )
    print_and_save(
        out_md,
        "Seed search (`make bench-split`)",
        [
            f"{len(frame)} phrases, {len(index)} sentences, test fraction {fraction}",
            "",
            "| setup | seeds | seconds | us/seed | vs peer |",
            "| --- | ---: | ---: | ---: | ---: |",
            f"| vectorised search (ours) | {n_seeds} | {ours:.3f} | {ours_per_seed * 1e6:.1f} | "
            f"{peer_per_seed / ours_per_seed:.1f}x |",
            f"| pandas + scipy per seed (peer) | {n_peer} | {peer_time:.3f} | "
            f"{peer_per_seed * 1e6:.1f} | 1.0x |",
            "",
            f"distances agree on the peer's seeds: {agree}",
        ],
    )
    return 0 if agree else 1
