"""``train.prune`` (with ``model.init_from``): a trained run pruned by global L1 over the
encoder's linear weights and fine-tuned with the pruned weights held at zero; what the zeros buy
(``sst bench prune``: sparse kernels, size on disk)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sst.bench.prune import bench_prune
from sst.config import load_config
from sst.data.pipeline import read_split
from sst.model.inference import Predictor
from sst.model.pruning import CsrLinear, gzip_bytes, sparsity, to_csr
from sst.run.folder import Run
from sst.verbs.train import RunResult, train
from tests.conftest import train_overrides


@pytest.fixture(scope="module")
def pruned(
    tracked_run: dict, tiny_model: Path, tiny_split: Path, tmp_path_factory: Any
) -> RunResult:
    """The tracked tiny run pruned to half and fine-tuned."""
    extra = (
        f"model.init_from={tracked_run['run']}",
        "train.prune=0.5",
        "train.sampling=random:2",
        "tracking.enabled=false",
    )
    runs = tmp_path_factory.mktemp("pruned")
    return train(load_config(None, train_overrides(tiny_model, tiny_split, runs, *extra)))


def test_a_run_pruned_to_half_keeps_its_smallest_weights_at_zero_while_fine_tuning(
    tracked_run: dict, pruned: RunResult
) -> None:
    result = pruned
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


def test_sparse_kernels_compute_what_the_dense_ones_do(pruned: RunResult, tiny_split) -> None:
    run = Run(pruned.run_dir)
    model = run.load_classifier()
    assert sparsity(model) == pytest.approx(0.5, abs=1e-3)
    texts = read_split(tiny_split)[0]["test"]["text"].tolist()[:64]
    dense = Predictor.from_config(model, run.config).probabilities(texts)
    sparse = Predictor.from_config(to_csr(model), run.config).probabilities(texts)
    assert not [m for m in model.backbone.modules() if isinstance(m, torch.nn.Linear)]
    csr = [m for m in model.backbone.modules() if isinstance(m, CsrLinear)]
    assert len(csr) >= 4 and all(m.weight.layout == torch.sparse_csr for m in csr)
    assert np.abs(dense - sparse).max() < 1e-5


def test_bench_prune_tables_the_dense_and_the_pruned_run(
    tracked_run: dict, pruned: RunResult, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "BENCHMARKS.md"
    assert bench_prune([pruned.run_dir, tracked_run["run"]], 50, out) == 0
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if re.match(r"\| (?!---|runs )", line)]
    assert len(rows) == 2
    dense, half = (line.split(" | ") for line in rows)  # the least sparse row first
    assert (dense[2], half[2]) == ("0.0%", "50.0%")
    assert "→ train.prune=0.5, random:2" in half[0]  # named by where it came from
    assert dense[6] == "1.00"  # the reference: the unpruned run, though given last
    for row in (dense, half):  # CSR ×: against the same row's dense kernels
        assert float(row[8]) == pytest.approx(float(row[7]) / float(row[5]), abs=0.02, rel=0.05)
    assert [row[3][:5] for row in (dense, half)] == [
        f"{Run(r).metrics['test']['root']['accuracy']:.3f}"
        for r in (tracked_run["run"], pruned.run_dir)
    ]
    weights = [r / "weights.safetensors" for r in (tracked_run["run"], pruned.run_dir)]
    assert weights[0].stat().st_size == weights[1].stat().st_size  # dense storage: no smaller
    assert gzip_bytes(weights[1]) < 0.9 * gzip_bytes(weights[0])  # but the zeros compress
    assert out.read_text().count("## Pruning (`sst bench prune`)") == 1


def test_bench_prune_without_runs_says_what_to_pass(capsys) -> None:
    from sst.cli import main

    assert main(["bench", "prune"]) != 0
    assert "pass --runs runs/<dense> runs/<pruned>" in capsys.readouterr().err
