"""A run that dies mid-epoch and is continued with --resume ends with the same weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from sst.cli import main
from sst.config import load_config
from sst.model.module import SstClassifier
from sst.train import train
from tests.conftest import train_overrides


def test_resume_after_a_crash_equals_uninterrupted(
    tiny_model, tiny_split, tmp_path: Path, monkeypatch
) -> None:
    extra = ["train.checkpoint_every=5", "tracking.enabled=false"]
    full = train(load_config(None, train_overrides(tiny_model, tiny_split, tmp_path / "a", *extra)))

    real_step = SstClassifier.training_step

    def dying_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        if self.global_step == 57:  # epoch 1 (42 batches per epoch), mid-epoch
            raise RuntimeError("simulated crash")
        return real_step(self, batch, batch_idx)

    monkeypatch.setattr(SstClassifier, "training_step", dying_step)
    cfg = load_config(None, train_overrides(tiny_model, tiny_split, tmp_path / "b", *extra))
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg)
    monkeypatch.setattr(SstClassifier, "training_step", real_step)
    (partial,) = (tmp_path / "b").glob("*.partial")
    assert (partial / "checkpoints" / "last.ckpt").is_file()
    assert main(["train", "--resume", str(partial)]) == 0
    (done,) = (p for p in (tmp_path / "b").iterdir() if not p.name.endswith(".partial"))
    assert done.name == partial.name.removesuffix(".partial")
    from sst.data.sources import sha256_file

    assert sha256_file(done / "weights.safetensors") == full.weights_sha256
