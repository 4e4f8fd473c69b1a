"""The benchmarks run end to end (tiny inputs; no timing is asserted: `make bench` measures)."""

from __future__ import annotations

from pathlib import Path

from sst.bench import bench_split, bench_train
from sst.config import load_config
from tests.conftest import split_config, train_overrides


def test_bench_train_prints_the_ratio_table(tiny_model, tiny_split, tmp_path: Path, capsys) -> None:
    cfg = load_config(None, train_overrides(tiny_model, tiny_split, tmp_path / "runs"))
    out = tmp_path / "BENCHMARKS.md"
    assert bench_train(cfg, 150, out) == 0
    text = capsys.readouterr().out
    for row in (
        "ours, random",
        "ours, stratified",
        "HF Trainer, dynamic padding, random",
        "HF Trainer, dynamic padding, group_by_length",
        "HF pipeline, inference",
    ):
        assert row in text
    assert "target: ours stratified >= 1.3x HF group_by_length" in text
    assert out.read_text().count("## Training throughput") == 1
    assert bench_train(cfg, 150, out) == 0  # the section is replaced, not appended
    assert out.read_text().count("## Training throughput") == 1


def test_bench_split_agrees_with_the_peer(kaggle_file: Path, tmp_path: Path, capsys) -> None:
    cfg = load_config(split_config(tmp_path, kaggle_file))
    assert bench_split(cfg, 200, 20, tmp_path / "B.md") == 0
    assert "distances agree on the peer's seeds: True" in capsys.readouterr().out
