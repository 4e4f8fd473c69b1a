"""Benchmarks, each reported as a ratio against a peer measured in the same run.

    make bench-split      # sst bench --config configs/kaggle.yaml

split: the vectorised Wasserstein seed search against the per-seed loop the original project ran
(select the test sentences' rows with pandas, then ``scipy.stats.wasserstein_distance`` on the two
label samples). Both use the same seed → split rule, so their distances must agree.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from scipy.stats import wasserstein_distance

from sst.config import Config
from sst.data import split as S
from sst.data.pipeline import fetch_sources, load_table


def _best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_split(cfg: Config, n_seeds: int, n_peer: int) -> int:
    table = load_table(cfg, fetch_sources(cfg))
    frame = table.frame
    index = S.SentenceIndex.of(frame)
    fraction = cfg.split.test_fraction
    seeds = np.arange(n_seeds, dtype=np.int64)
    ours = _best_of(lambda: S.seed_distances(index, seeds, fraction))

    labels = frame["label"].to_numpy()
    sentence = frame["sentence_id"]
    peer_seeds = seeds[:n_peer]
    peer_dist = np.empty(len(peer_seeds))

    def peer() -> None:
        for i, seed in enumerate(peer_seeds):
            test_ids = index.ids[S.test_mask(index, int(seed), fraction)]
            in_test = sentence.isin(test_ids).to_numpy()
            peer_dist[i] = wasserstein_distance(labels[~in_test], labels[in_test])

    peer_time = _best_of(peer, repeat=1)
    ours_per_seed = ours / n_seeds
    peer_per_seed = peer_time / n_peer
    agree = np.allclose(S.seed_distances(index, peer_seeds, fraction), peer_dist, atol=1e-12)
    print(f"phrases {len(frame)}, sentences {len(index)}, test fraction {fraction}")
    print(f"vectorised search: {n_seeds} seeds in {ours:.3f} s ({ours_per_seed * 1e6:.1f} us/seed)")
    print(
        f"peer (pandas + scipy per seed): {n_peer} seeds in {peer_time:.3f} s "
        f"({peer_per_seed * 1e6:.1f} us/seed) -> {n_seeds} seeds ~{peer_per_seed * n_seeds:.1f} s"
    )
    print(f"speed-up vs peer: {peer_per_seed / ours_per_seed:.1f}x; distances agree: {agree}")
    return 0 if agree else 1
