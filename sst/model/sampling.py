"""Class-balance knob + length bucketing in one batch sampler, and per-epoch schedules.

    sst train ... train.sampling="stratified:4,alternate:4"

**Epoch.** An epoch is ``epoch_size`` draws (default: the number of training phrases ``N``),
cut into ``ceil(epoch_size / batch_size)`` batches. The share of class ``c`` in an epoch is
``count_c ** alpha / sum_k count_k ** alpha`` (largest-remainder rounding to whole draws):

- ``alpha = 1`` (``random``): natural shares; with ``epoch_size == N`` every phrase exactly once.
- ``alpha = 0`` (``stratified``): every class the same share, the original project's
  "maximally informative stratified mini-batches"; rare classes repeat, neutral is subsampled.

``train.root_weight = w`` counts every root (a whole sentence; a pseudo-labelled text is one)
``w`` times in what an epoch draws from: ``N`` grows by ``w - 1`` per root, class counts and
shares follow, and a root's copies are drawn like distinct phrases.

Within a class, draws walk through seeded permutations of its phrases (without replacement until
the class is exhausted, then a new permutation), so no phrase repeats before its whole class has
been seen. The draws are shuffled, grouped into pools of ``pool_batches`` batches, each pool
sorted by token length and cut into batches, and the batch order shuffled: batches hold phrases of
nearly equal length (padding waste ~1-2 % on SST with the default 256-batch pools, <= 5 %
asserted by the tests) while each pool is a
random sample of the epoch's class mix.

Everything an epoch yields is a pure function of ``(seed, epoch, alpha)``; the state to resume
mid-epoch is ``{"epoch", "batches_done"}``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from sst.config.schedule import Schedule
from sst.data import N_CLASSES
from sst.errors import SstError


def class_quotas(counts: np.ndarray, alpha: float, total: int) -> np.ndarray:
    """Draws per class for one epoch: shares ∝ count**alpha, rounded by largest remainder."""
    counts = np.asarray(counts, dtype=np.float64)
    weights = np.where(counts > 0, counts**alpha, 0.0)
    exact = total * weights / weights.sum()
    quotas = np.floor(exact).astype(np.int64)
    short = total - int(quotas.sum())
    order = np.argsort(-(exact - quotas), kind="stable")
    quotas[order[:short]] += 1
    return quotas


def length_sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Evaluation/inference batches: indices sorted by length (stable), cut every batch_size."""
    order = np.argsort(lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def padding_waste(lengths: np.ndarray, batches: list[np.ndarray]) -> float:
    """Share of padded positions over all positions when each batch pads to its longest."""
    padded = sum(int(lengths[b].max()) * len(b) for b in batches)
    real = sum(int(lengths[b].sum()) for b in batches)
    return 1.0 - real / padded if padded else 0.0


class _EpochHook:
    """Lightning calls ``batch_sampler.sampler.set_epoch(epoch)`` at every epoch start (also when
    resuming); this forwards it to the batch sampler, which is not itself a ``sampler``."""

    def __init__(self, owner: BucketBatchSampler) -> None:
        self.owner = owner

    def set_epoch(self, epoch: int) -> None:
        self.owner.set_epoch(epoch)


class BucketBatchSampler:
    """Yields lists of dataset indices: class shares by ``schedule``, batches by length."""

    def __init__(
        self,
        labels: np.ndarray,
        lengths: np.ndarray,
        batch_size: int,
        schedule: Schedule,
        seed: int,
        epoch_size: int | None = None,
        pool_batches: int = 256,
        repeats: np.ndarray | None = None,
    ) -> None:
        if batch_size < 1:
            raise SstError(f"batch size {batch_size}", fix="use a positive batch size")
        self.labels = np.asarray(labels, dtype=np.int64)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        # what an epoch draws from: every phrase once, or ``repeats[i]`` times (roots up-weighted)
        n = len(self.labels)
        self.ids = np.arange(n) if repeats is None else np.repeat(np.arange(n), repeats)
        self.batch_size = batch_size
        self.schedule = schedule
        self.seed = seed
        self.epoch_size = epoch_size or len(self.ids)
        self.pool = pool_batches * batch_size
        self.by_class = [self.ids[self.labels[self.ids] == c] for c in range(N_CLASSES)]
        self.epoch = 0
        self.batches_done = 0  # batches of the current epoch already consumed (resume point)
        self.sampler = _EpochHook(self)

    def __len__(self) -> int:
        return math.ceil(self.epoch_size / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.batches_done = epoch, 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches_done": self.batches_done, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("seed", self.seed) != self.seed:
            raise SstError("the checkpoint's sampler seed differs", fix="resume with its config")
        self.epoch, self.batches_done = int(state["epoch"]), int(state["batches_done"])

    def _draws(self, rng: np.random.Generator, alpha: float) -> np.ndarray:
        if alpha == 1.0 and self.epoch_size == len(self.ids):
            return self.ids[rng.permutation(len(self.ids))]
        counts = np.array([len(m) for m in self.by_class])
        parts = []
        for members, quota in zip(
            self.by_class, class_quotas(counts, alpha, self.epoch_size), strict=True
        ):
            reps = math.ceil(quota / len(members)) if quota else 0
            walk = (
                np.concatenate([rng.permutation(members) for _ in range(reps)])
                if reps
                else members[:0]
            )
            parts.append(walk[:quota])
        return rng.permutation(np.concatenate(parts))

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """The batches of ``epoch``, in order: a pure function of (seed, epoch, schedule)."""
        rng = np.random.default_rng([self.seed, epoch])
        draws = self._draws(rng, self.schedule.alpha(epoch))
        batches: list[np.ndarray] = []
        for lo in range(0, len(draws), self.pool):
            pool = draws[lo : lo + self.pool]
            pool = pool[np.argsort(self.lengths[pool], kind="stable")]
            batches.extend(
                pool[i : i + self.batch_size] for i in range(0, len(pool), self.batch_size)
            )
        order = rng.permutation(len(batches))
        return [batches[i] for i in order]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.epoch_batches(self.epoch)
        start = self.batches_done
        for i in range(start, len(batches)):
            self.batches_done = i + 1
            yield batches[i].tolist()


class RankShare:
    """DDP: the same batches in the same order on every process, each taking its ``rank``-th
    share of every batch: one optimizer step sees the draws of one ``train.batch_size`` batch,
    and the schedule and epochs are a single-process run's. DDP averages the processes' mean
    losses, so a batch split unevenly (17 and 16) weighs its draws slightly unequally."""

    def __init__(self, sampler: BucketBatchSampler, rank: int, world: int) -> None:
        self.sampler, self.rank, self.world = sampler, rank, world

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.sampler:
            # a batch smaller than the process count: the last draw twice rather than a hang
            yield list(batch[self.rank :: self.world]) or list(batch[-1:])
