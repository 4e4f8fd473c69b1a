"""The benchmarks run end to end (tiny inputs; no timing is asserted: `make bench` measures)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sst.bench.split import bench_split
from sst.bench.train import BF16, FROZEN, OURS, bench_isa, bench_profile, bench_train
from sst.config import load_config
from sst.env.cpu import cpu_has_bf16
from sst.errors import SstError
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
    assert "targets (issue 13): ours random >= 1.1x HF group_by_length: " in text
    assert f"| {OURS}, {FROZEN} |" in text  # the same loop, the word embeddings not trained
    for row in (BF16, f"{BF16}, {FROZEN}"):  # bf16 rows only where the CPU has bf16 units
        assert (f"| {row} |" in text) == cpu_has_bf16()
    assert out.read_text().count("## Training throughput") == 1
    assert bench_train(cfg, 150, out) == 0  # the section is replaced, not appended
    assert out.read_text().count("## Training throughput") == 1


def test_bench_split_agrees_with_the_peer(kaggle_file: Path, tmp_path: Path, capsys) -> None:
    cfg = load_config(split_config(tmp_path, kaggle_file))
    assert bench_split(cfg, 200, 20, tmp_path / "B.md") == 0
    assert "distances agree on the peer's seeds: True" in capsys.readouterr().out


def test_bench_profile_times_every_phase_of_both_loops(
    tiny_model, tiny_split, tmp_path: Path, capsys
) -> None:
    """150 phrases in batches of 16: 10 optimizer steps per loop, each phase measured (> 0), the
    phases adding up to the step's total; the table lands in BENCHMARKS.md."""
    cfg = load_config(None, train_overrides(tiny_model, tiny_split, tmp_path / "runs"))
    out = tmp_path / "BENCHMARKS.md"
    assert bench_profile(cfg, 150, out) == 0
    text = capsys.readouterr().out
    for loop in (
        "ours (Lightning), random, adamw_torch",
        "ours (Lightning), random, adamw_torch_fused",
        "HF Trainer, group_by_length, adamw_torch_fused",
    ):
        row = next(line for line in text.splitlines() if line.startswith(f"| {loop} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        steps, phases, total = int(cells[2]), [float(c) for c in cells[3:8]], float(cells[8])
        assert steps == 10, row
        assert all(ms > 0 for ms in phases[:4]), row  # collate, forward, backward, optimizer
        # each printed cell is rounded to 0.1 ms (error <= 0.05): six cells bound the gap by 0.3
        assert abs(sum(phases) - total) <= 0.05 * (len(phases) + 1) + 1e-9, row
    assert re.search(r"## Where a training step goes .*\n\nMeasured ", out.read_text())


def test_without_accelerate_the_peer_benchmarks_stop_in_one_line(
    tiny_model, tiny_split, tmp_path: Path, monkeypatch
) -> None:
    """A runtime image has no dev tools: the HF Trainer peer is refused before any work, with
    the route to them, and nothing is written."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "accelerate" else real(name, *a),
    )
    cfg = load_config(None, train_overrides(tiny_model, tiny_split, tmp_path / "runs"))
    out = tmp_path / "BENCHMARKS.md"
    for bench in (bench_train, bench_profile):
        with pytest.raises(SstError, match=r"needs accelerate.*\(fix: `make setup`.*sst:dev"):
            bench(cfg, 150, out)
    assert not out.exists()


def test_bench_isa_gives_each_level_its_kernels_and_a_ratio_to_native(
    tiny_model, tiny_split, tmp_path: Path, capsys
) -> None:
    """Fresh processes per level: the pinned ones run AVX2 kernels with their MKL branch, and
    each row says which CPUs it gives the same bits on."""
    cfg = load_config(None, train_overrides(tiny_model, tiny_split, tmp_path / "runs"))
    out = tmp_path / "BENCHMARKS.md"
    assert bench_isa(cfg, 150, out, rounds=1) == 0
    rows = {r.split(" | ")[0].strip("| "): r for r in capsys.readouterr().out.splitlines()}
    assert re.match(
        r"\| native \| this CPU model \| \w+ \| unset \| unset \| [\d.]+ \| 1\.00x", rows["native"]
    )
    assert "| avx2 | Intel CPUs with AVX2 | AVX2 | AVX2,STRICT | AVX2 |" in rows["avx2"]
    assert (
        "| portable | Intel and AMD CPUs with AVX2 | AVX2 | COMPATIBLE,STRICT | AVX2 |"
        in rows["portable"]
    )
    assert "## Portable CPU kernels (`make bench`)" in out.read_text()
