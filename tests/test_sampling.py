"""The sampler: schedules, class shares for alpha 0 and 1, padding waste, resumable batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sst.config.schedule import Schedule
from sst.errors import SstError
from sst.model.sampling import BucketBatchSampler, class_quotas, padding_waste

# SST-like: neutral dominates and is short
RNG = np.random.default_rng(0)
LABELS = RNG.choice(5, size=5000, p=[0.05, 0.2, 0.5, 0.2, 0.05])
LENGTHS = np.where(LABELS == 2, RNG.integers(1, 8, 5000), RNG.integers(3, 40, 5000))


def test_schedule_parsing() -> None:
    assert Schedule.parse("random:6").alphas == (1.0,) * 6
    assert Schedule.parse("stratified:4,random:2").alphas == (0.0,) * 4 + (1.0,) * 2
    assert Schedule.parse("stratified:4,alternate:4").alphas == (0.0,) * 4 + (1.0, 0.0, 1.0, 0.0)
    assert Schedule.parse("alpha=0.5:2").alphas == (0.5, 0.5)


@pytest.mark.parametrize(
    "bad", ["", "random", "random:0", "shuffled:2", "stratified:2,", "alpha=1.5:1", "random:-1"]
)
def test_schedule_errors_are_clear(bad: str) -> None:
    with pytest.raises(SstError, match=r"(bad sampling schedule part|outside \[0, 1\]).*fix: "):
        Schedule.parse(bad)


def test_alpha_one_is_a_permutation_alpha_zero_is_balanced() -> None:
    natural = BucketBatchSampler(LABELS, LENGTHS, 32, Schedule.parse("random:1"), seed=0)
    drawn = np.concatenate(natural.epoch_batches(0))
    assert sorted(drawn.tolist()) == list(range(len(LABELS)))  # every phrase exactly once
    strat = BucketBatchSampler(LABELS, LENGTHS, 32, Schedule.parse("stratified:1"), seed=0)
    drawn = np.concatenate(strat.epoch_batches(0))
    assert len(drawn) == len(LABELS)
    shares = np.bincount(LABELS[drawn], minlength=5) / len(drawn)
    assert np.allclose(shares, 0.2, atol=1e-3)
    # within a class, no phrase repeats before the whole class was drawn
    for c in range(5):
        members = drawn[LABELS[drawn] == c]
        n = int((c == LABELS).sum())
        assert len(set(members.tolist())) == min(len(members), n)


# sha256 of two epochs' batches, from the sampler before train.root_weight existed (4bc5acc):
# runs without the knob must keep their batches, or they would no longer replay
BATCHES_BEFORE_ROOT_WEIGHT = {
    ("random:1", 4000): "f7f96d08fba68267e2fdc59c3b23525cccd0be6782bea228ae7c3f6d71e5ef97",
    ("random:1", None): "3a2f1154bd40ba00c7b2db6ba4f2fca083c29357ad421dc35a48bcc13f073510",
    (
        "stratified:1,random:1",
        4000,
    ): "45bf4e1779dd52733c25df5fd9f1086910f67b380457e1778bb966b5d665480a",
    (
        "stratified:1,random:1",
        None,
    ): "bb00ffbebffce72618cc6b923c807e5534b26dfda8ead477885ce017f9ed52c0",
}


@pytest.mark.parametrize(("sampling", "size"), sorted(BATCHES_BEFORE_ROOT_WEIGHT, key=str))
@pytest.mark.parametrize(
    "repeats", [None, np.ones(len(LABELS), dtype=np.int64)], ids=["none", "ones"]
)
def test_root_weight_one_draws_the_batches_of_earlier_runs(
    sampling: str, size: int | None, repeats: np.ndarray | None
) -> None:
    import hashlib

    s = BucketBatchSampler(
        LABELS, LENGTHS, 32, Schedule.parse(sampling), 0, epoch_size=size, repeats=repeats
    )
    h = hashlib.sha256()
    for epoch in range(2):
        for batch in s.epoch_batches(epoch):
            h.update(np.asarray(batch, dtype=np.int64).tobytes())
    assert h.hexdigest() == BATCHES_BEFORE_ROOT_WEIGHT[(sampling, size)]


def test_roots_up_weighted_are_drawn_that_many_times() -> None:
    roots = RNG.random(len(LABELS)) < 0.1
    up = BucketBatchSampler(
        LABELS, LENGTHS, 32, Schedule.parse("random:1"), 0, repeats=np.where(roots, 3, 1)
    )
    drawn = np.bincount(np.concatenate(up.epoch_batches(0)), minlength=len(LABELS))
    assert len(up) * 32 >= len(LABELS) + 2 * roots.sum() > (len(up) - 1) * 32
    assert (drawn[roots] == 3).all() and (drawn[~roots] == 1).all()  # an epoch: roots 3x
    strat = BucketBatchSampler(
        LABELS, LENGTHS, 32, Schedule.parse("stratified:1"), 0, repeats=np.where(roots, 3, 1)
    )
    drawn = np.concatenate(strat.epoch_batches(0))
    assert np.allclose(np.bincount(LABELS[drawn], minlength=5) / len(drawn), 0.2, atol=1e-3)
    share = roots[drawn].mean()  # within each class, a root is three times as likely
    assert share > 1.8 * roots.mean()


def test_class_quotas_sum_and_shares() -> None:
    counts = np.array([10, 40, 100, 40, 10])
    assert class_quotas(counts, 1.0, 200).tolist() == [10, 40, 100, 40, 10]
    assert class_quotas(counts, 0.0, 203).sum() == 203
    half = class_quotas(counts, 0.5, 1000)
    assert half[2] < 500 and half[0] > 50


@pytest.mark.parametrize("sampling", ["random:1", "stratified:1", "alpha=0.5:1"])
def test_padding_waste_stays_under_five_percent(sampling: str) -> None:
    s = BucketBatchSampler(LABELS, LENGTHS, 32, Schedule.parse(sampling), seed=1)
    assert padding_waste(LENGTHS, s.epoch_batches(0)) <= 0.05
    random_batches = [np.arange(i, min(i + 32, 5000)) for i in range(0, 5000, 32)]
    assert padding_waste(LENGTHS, random_batches) > 0.3  # what bucketing saves


def test_real_sst_lengths_padding_waste(shared_data: Path) -> None:
    from sst.data.formats import load_phrases

    frame = load_phrases([shared_data / "sst_ptb" / "dev.txt"], "ptb").frame
    lengths = frame["n_tokens"].to_numpy() + 2  # [CLS] … [SEP]
    for sampling in ("random:1", "stratified:1"):
        s = BucketBatchSampler(frame["label"].to_numpy(), lengths, 32, Schedule.parse(sampling), 0)
        assert padding_waste(lengths, s.epoch_batches(0)) <= 0.05


def test_epochs_differ_and_resume_mid_epoch_gives_the_same_batches() -> None:
    def make() -> BucketBatchSampler:
        return BucketBatchSampler(LABELS, LENGTHS, 32, Schedule.parse("stratified:1,random:1"), 7)

    s = make()
    s.set_epoch(1)
    full = list(s)
    assert full != [b.tolist() for b in make().epoch_batches(0)]
    s = make()
    s.set_epoch(1)
    it = iter(s)
    head = [next(it) for _ in range(10)]
    state = s.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    resumed.set_epoch(1)  # Lightning calls this on restart: same epoch, the position stays
    assert head + list(resumed) == full
    with pytest.raises(SstError, match="sampler seed differs"):
        BucketBatchSampler(LABELS, LENGTHS, 32, Schedule.parse("random:1"), 8).load_state_dict(
            state
        )
