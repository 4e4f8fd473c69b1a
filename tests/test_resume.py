"""A run that dies mid-epoch and is continued with --resume ends with the same weights, and the
resumed process trains only the steps the checkpoint had not done."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from sst.cli import main
from sst.config import load_config
from sst.io import sha256_file
from sst.model.module import SstClassifier
from sst.verbs.train import train
from tests.conftest import train_overrides

CRASH_AT = 57  # epoch 1, mid-epoch (42 batches per epoch)


def steps_per_epoch(split: Path, batch_size: int = 16) -> int:
    """One epoch draws every training phrase once (epoch_size 0), cut into batches."""
    return math.ceil(len(pd.read_csv(split / "train.tsv", sep="\t")) / batch_size)


def test_resume_after_a_crash_equals_uninterrupted(
    tiny_model, tiny_split, tmp_path: Path, monkeypatch
) -> None:
    per_epoch = steps_per_epoch(tiny_split)
    assert per_epoch == 42  # the numbers below are worked out for it
    total = 2 * per_epoch  # sampling stratified:1,alternate:1: two epochs
    extra = ["train.checkpoint_every=5", "tracking.enabled=false"]
    full = train(load_config(None, train_overrides(tiny_model, tiny_split, tmp_path / "a", *extra)))

    real_step = SstClassifier.training_step

    def dying_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        if self.global_step == CRASH_AT:
            raise RuntimeError("simulated crash")
        return real_step(self, batch, batch_idx)

    monkeypatch.setattr(SstClassifier, "training_step", dying_step)
    cfg = load_config(None, train_overrides(tiny_model, tiny_split, tmp_path / "b", *extra))
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg)
    (partial,) = (tmp_path / "b").glob("*.partial")
    ckpt = partial / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    # written when the crash ended the run: the steps before the crashed one were done
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"] == CRASH_AT

    trained: list[tuple[int, int, int]] = []  # (global step, epoch, batch index) per step

    def counting_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        trained.append((self.global_step, self.current_epoch, batch_idx))
        return real_step(self, batch, batch_idx)

    monkeypatch.setattr(SstClassifier, "training_step", counting_step)
    assert main(["train", "--resume", str(partial)]) == 0
    # only the remaining steps, starting with the one that crashed, at its place in epoch 1
    assert len(trained) == total - CRASH_AT == 27
    assert trained[0] == (CRASH_AT, 1, CRASH_AT - per_epoch)
    assert [s for s, _, _ in trained] == list(range(CRASH_AT, total))
    assert [b for _, _, b in trained] == list(range(CRASH_AT - per_epoch, per_epoch))
    (done,) = (p for p in (tmp_path / "b").iterdir() if not p.name.endswith(".partial"))
    assert done.name == partial.name.removesuffix(".partial")
    assert sha256_file(done / "weights.safetensors") == full.weights_sha256
