"""The seed search, train/validation splits and the guards, on synthetic tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wasserstein_distance

from sst.data import split as S
from sst.errors import SstError


def table(n_sentences: int = 300, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    pid = 0
    for sid in range(1, n_sentences + 1):
        n = int(rng.integers(1, 8))
        labels = rng.choice(5, size=n, p=[0.05, 0.2, 0.5, 0.2, 0.05])
        for k, lab in enumerate(labels):
            pid += 1
            rows.append((sid * 3, pid, int(lab), k == 0, f"s{sid} p{k}"))
    return pd.DataFrame(rows, columns=["sentence_id", "phrase_id", "label", "is_root", "text"])


def test_vectorised_distance_equals_scipy_per_seed() -> None:
    frame = table()
    index = S.SentenceIndex.of(frame)
    seeds = np.arange(40)
    fast = S.seed_distances(index, seeds, 0.2)
    for seed, d in zip(seeds, fast, strict=True):
        mask = S.test_mask(index, int(seed), 0.2)
        test = frame["sentence_id"].isin(index.ids[mask])
        ref = wasserstein_distance(frame.loc[~test, "label"], frame.loc[test, "label"])
        assert d == pytest.approx(ref, abs=1e-12)


def test_block_boundaries_do_not_change_results(monkeypatch: pytest.MonkeyPatch) -> None:
    index = S.SentenceIndex.of(table())
    seeds = np.arange(37)
    whole = S.seed_distances(index, seeds, 0.25)
    monkeypatch.setattr(S, "BLOCK", 5)
    assert np.array_equal(whole, S.seed_distances(index, seeds, 0.25))


def test_search_picks_the_minimum_and_keeps_sentences_whole() -> None:
    frame = table()
    index = S.SentenceIndex.of(frame)
    found = S.search_test_seed(index, 0.2, 200)
    dist = S.seed_distances(index, np.arange(200), 0.2)
    assert found.distance == dist.min() and found.seed == int(np.argmin(dist))
    assert found.scipy_distance == pytest.approx(found.distance, abs=1e-12)
    assert found.test_mask.sum() == round(0.2 * len(index))
    assert found.original_seed == 26894 and found.original_distance >= found.distance
    again = S.search_test_seed(index, 0.2, 200)
    assert again.seed == found.seed and np.array_equal(again.test_mask, found.test_mask)


def test_folds_are_grouped_stratified_and_deterministic() -> None:
    index = S.SentenceIndex.of(table(500))
    folds = S.assign_folds(index, 5, seed=3, stratify=True)
    assert np.array_equal(folds, S.assign_folds(index, 5, seed=3, stratify=True))
    assert not np.array_equal(folds, S.assign_folds(index, 5, seed=4, stratify=True))
    for c in np.unique(index.root_label):
        per_fold = np.bincount(folds[index.root_label == c], minlength=5)
        assert per_fold.max() - per_fold.min() <= 1  # every fold gets its share of every label
    with pytest.raises(SstError, match="at least 2 folds"):
        S.assign_folds(index, 1, 0, True)


def test_holdout_stratified_by_root_label() -> None:
    index = S.SentenceIndex.of(table(1000))
    mask = S.holdout_mask(index, 0.1, seed=0, stratify=True)
    for c in np.unique(index.root_label):
        members = index.root_label == c
        assert mask[members].sum() == round(0.1 * members.sum())


def test_bad_fraction_is_an_error() -> None:
    index = S.SentenceIndex.of(table(10))
    with pytest.raises(SstError, match=r"split.test_fraction=1.5 is not in \(0, 1\)"):
        S.search_test_seed(index, 1.5, 10)


def test_overlap_guard() -> None:
    frame = table(20)
    a, b = frame[frame["sentence_id"] <= 30], frame[frame["sentence_id"] > 30]
    report = S.overlap_report({"train": a, "test": b})
    assert report["shared_sentence_texts"] == {}
    dup = b.copy()
    dup.loc[dup["is_root"], "text"] = a.loc[a["is_root"], "text"].iloc[0]
    assert S.overlap_report({"train": a, "test": dup})["shared_sentence_texts"] == {"test/train": 1}
    with pytest.raises(SstError, match="are in both test and train"):
        S.overlap_report({"train": a, "test": frame})
