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


def test_bench_quality_measures_each_arm_and_seed_once(
    tiny_model, tiny_split, tmp_path: Path, capsys, monkeypatch
) -> None:
    import json

    import pandas as pd

    from sst.bench import peer, quality
    from sst.run.folder import Run
    from sst.verbs import train as train_verb

    runs = tmp_path / "runs"
    overrides = train_overrides(
        tiny_model, tiny_split, runs, "tracking.enabled=false", "train.seeds=0,1"
    )
    out = tmp_path / "BENCHMARKS.md"
    store = tmp_path / "store"
    assert quality.bench_quality(None, overrides, ["ema train.ema=0.9"], out, store=store) == 0
    records = [json.loads(p.read_text()) for p in store.glob("*.json")]
    assert sorted((r["arm"], r["seed"]) for r in records) == [
        (a, s) for a in ("ema", "kit", "peer") for s in (0, 1)
    ]
    test = pd.read_csv(tiny_split / "test.tsv", sep="\t")
    for r in records:
        assert r["test"]["phrase"]["n"] == len(test)  # every node scored, by both
        assert r["test"]["root"]["n"] == int(test["is_root"].sum())
        assert r["cpu"] and r["date"] and r["commit"]
        if r["arm"] != "peer":  # an ordinary run: its own metrics are the record's
            run = Run.open(Path(r["run"]))
            assert run.metrics["test"]["root"]["accuracy"] == r["test"]["root"]["accuracy"]
            assert run.config.train.seed == r["seed"]
            assert run.config.train.ema == (0.9 if r["arm"] == "ema" else 0.0)
    table = out.read_text()
    for row in ("| peer | the plain HF Trainer script |", "| kit | the config as given |"):
        assert row in table
    assert "| ema | `train.ema=0.9` |" in table and "±" in table and "measured on: " in table

    # a second call trains nothing: every (arm, seed) is stored
    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("trained again")

    monkeypatch.setattr(peer, "train_peer", refuse)
    monkeypatch.setattr(train_verb, "train", refuse)
    assert quality.bench_quality(None, overrides, ["ema train.ema=0.9"], out, store=store) == 0
    assert out.read_text() == table
    # --only "": what is stored, and an arm not measured yet says so (nothing trains)
    arms = ["ema train.ema=0.9", "later train.lr=5e-4"]
    assert quality.bench_quality(None, overrides, arms, out, only=[], store=store) == 0
    assert "| later | `train.lr=5e-4` | not measured yet | — |" in out.read_text()
    with pytest.raises(SstError, match="--only kid: no such arm"):
        quality.bench_quality(None, overrides, arms, out, only=["kid"], store=store)


def test_bench_quality_refuses_bad_arms_before_training(
    tiny_model, tiny_split, tmp_path: Path, monkeypatch
) -> None:
    from sst.bench import quality
    from sst.verbs import train as train_verb

    monkeypatch.setattr(train_verb, "train", lambda *a, **k: pytest.fail("trained"))
    overrides = train_overrides(tiny_model, tiny_split, tmp_path, "tracking.enabled=false")
    for arm, message in [
        ("train.ema=0.9", "does not start with a label"),
        ("peer train.lr=1e-4", "always measured"),
        ("fast lr", "'lr' is not key=value"),
        ("fast train.ema=2", "train.ema=2.0 is not a decay"),
        ("fast 'train.lr=1", "close the quote"),
        ("fewer train.test_sentences=5", "changes train.split, train.test_sentences or"),
        ("one train.seeds=3", "changes train.split, train.test_sentences or"),
    ]:
        with pytest.raises(SstError, match=re.escape(message)):
            quality.bench_quality(None, overrides, [arm], None, store=tmp_path / "store")
    with pytest.raises(SstError, match="the peer scores the whole test set"):
        quality.bench_quality(
            None, [*overrides, "train.test_sentences=5"], [], None, store=tmp_path / "store"
        )
    assert not (tmp_path / "store").exists()


def test_the_peer_trains_on_each_sentences_distinct_phrases() -> None:
    import pandas as pd

    from sst.bench.peer import peer_train_frame

    train = pd.DataFrame(
        {"sentence_id": [1, 1, 1, 2], "text": ["good", "good", "a good film", "good"]}
    )
    kept = peer_train_frame({"train": train})
    assert kept[["sentence_id", "text"]].values.tolist() == [
        [1, "good"],
        [1, "a good film"],
        [2, "good"],
    ]


def test_welch_marks_only_differences_outside_the_seed_noise() -> None:
    from sst.bench.quality import _delta, welch_p

    apart, close = [0.50, 0.51, 0.52], [0.40, 0.41, 0.42]
    assert welch_p(apart, close) < 0.05
    assert welch_p([0.50, 0.52, 0.48], [0.49, 0.51, 0.50]) > 0.5
    assert welch_p([0.5], close) is None  # one seed: no spread to test against
    assert welch_p([0.5, 0.5], [0.5, 0.5]) is None
    assert _delta(apart, close, 3).startswith("**+0.100 (p=")
    assert _delta([0.50, 0.52, 0.48], [0.49, 0.51, 0.50], 3) == "+0.000 (p=1.00)"


def test_the_peer_predicts_each_text_in_its_own_order(tiny_model: Path, tiny_split: Path) -> None:
    """Length-sorted batches, each distinct text once, mapped back: the same class as the model
    gives each text alone (Trainer.predict under group_by_length would shuffle them)."""
    import pandas as pd
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from sst.bench.peer import predict

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=5).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    texts = pd.read_csv(tiny_split / "test.tsv", sep="\t")["text"].tolist()[:60]
    texts += texts[:7]  # repeated texts: predicted once, given to each
    with torch.inference_mode():  # a head along the texts' main directions: classes vary by text
        pooled = torch.cat(
            [model.bert(**tokenizer([x], return_tensors="pt")).pooler_output for x in texts]
        )
        _, _, directions = torch.pca_lowrank(pooled - pooled.mean(0), q=5)
        model.classifier.weight.copy_(directions.T * 1e3)
        model.classifier.bias.copy_(-(pooled.mean(0) @ directions) * 1e3)
    pred = predict(model, tokenizer, texts, 32, 8)
    with torch.inference_mode():
        alone = [int(model(**tokenizer([x], return_tensors="pt")).logits.argmax(-1)) for x in texts]
    assert pred.tolist() == alone
    assert len(set(alone)) > 1  # the check can tell orders apart
