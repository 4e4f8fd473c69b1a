"""The real embedded MiniLM on a small subset of the real trees (slow tier: `make test-all`):
two runs bit-identical, and `sst replay` of one identical too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sst.config import load_config
from sst.data.pipeline import run_split
from sst.verbs.replay import replay
from sst.verbs.train import train


@pytest.mark.slow
def test_minilm_trains_deterministically_on_real_trees(shared_data: Path, tmp_path: Path) -> None:
    split = run_split(
        load_config(
            None,
            [
                "data.format=ptb",
                f'data.sources=["{shared_data / "sst_ptb" / "dev.txt"}"]',
                "split.n_seeds=50",
                f"split.out={tmp_path / 'split'}",
                "tracking.enabled=false",
            ],
        )
    ).out
    overrides = [
        "model.name=minilm",
        f"train.split={split}",
        "train.sampling=stratified:1",
        "train.epoch_size=256",
        "train.val_sentences=20",
        "train.threads=2",
        "tracking.enabled=false",
    ]
    a = train(load_config(None, [*overrides, f"train.runs_dir={tmp_path / 'a'}"]))
    b = train(load_config(None, [*overrides, f"train.runs_dir={tmp_path / 'b'}"]))
    assert a.weights_sha256 == b.weights_sha256
    metrics = json.loads((a.run_dir / "metrics.json").read_text())
    assert metrics["test"]["root"]["n"] == 220
    assert metrics["test"]["phrase"]["accuracy"] > 0.3  # MiniLM learns something in 8 steps
    # and `sst replay` of the real model's run folder is bit-identical too
    _, _, verdict = replay(str(a.run_dir), out_root=tmp_path / "replays")
    assert verdict.identical, verdict.render()
