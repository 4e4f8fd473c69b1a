"""``train.prune`` (with ``model.init_from``): a trained run pruned by global L1 over the
encoder's linear weights and fine-tuned with the pruned weights held at zero."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from sst.config import load_config
from sst.runs import Run
from sst.train import train
from tests.conftest import train_overrides


def test_a_run_pruned_to_half_keeps_its_smallest_weights_at_zero_while_fine_tuning(
    tracked_run: dict, tiny_model: Path, tiny_split: Path, tmp_path: Path
) -> None:
    extra = (
        f"model.init_from={tracked_run['run']}",
        "train.prune=0.5",
        "train.sampling=random:2",
        "tracking.enabled=false",
    )
    result = train(load_config(None, train_overrides(tiny_model, tiny_split, tmp_path, *extra)))
    before = load_file(tracked_run["run"] / "weights.safetensors")
    after = load_file(result.run_dir / "weights.safetensors")
    assert set(after) == set(before)  # no masks or originals left in the weights
    linear = [k for k in before if k.startswith("backbone.") and k.endswith(".weight")]
    linear = [k for k in linear if before[k].dim() == 2 and "embeddings" not in k]
    assert len(linear) >= 4
    old = torch.cat([before[k].abs().flatten() for k in linear])
    new = torch.cat([after[k].flatten() for k in linear])
    zero = new == 0
    assert abs(float(zero.float().mean()) - 0.5) < 1e-3  # global: the share over all layers
    # global L1 on the weights it started from: every zeroed weight was no larger than every kept
    assert float(old[zero].max()) <= float(old[~zero].min())
    assert not torch.equal(after["head.weight"], before["head.weight"])  # it did fine-tune
    assert (after["head.weight"] != 0).all()  # the head is not pruned
    shares = [float((after[k] == 0).float().mean()) for k in linear]
    assert max(shares) - min(shares) > 0.01  # global, not the same share in every layer
    fingerprint = Run(result.run_dir).fingerprint
    assert fingerprint["init_weights_sha256"] == tracked_run["weights"]
    assert "pruned: 50.0% of the encoder's linear weights are 0" in result.notes
