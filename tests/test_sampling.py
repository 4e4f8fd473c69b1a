"""The sampler: schedules, class shares for alpha 0 and 1, padding waste, resumable batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sst.errors import SstError
from sst.model.sampling import BucketBatchSampler, Schedule, class_quotas, padding_waste

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
