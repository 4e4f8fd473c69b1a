"""Benchmarks, each reported as a ratio against a peer measured in the same run (BENCHMARKS.md).

    make bench-split      # sst bench split: vectorised seed search vs the original per-seed loop
    make bench            # sst bench train (vs HF Trainer) and sst bench isa (portable kernels)

split: the vectorised Wasserstein seed search against the per-seed loop the original project ran
(pandas rows, then ``scipy.stats.wasserstein_distance``); both use the same seed → split rule, so
their distances must agree. train: our loop vs HF Trainer and an HF pipeline. isa: our loop with
the CPU's own kernels vs pinned to AVX2, each in fresh processes.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy.stats import wasserstein_distance

from sst import repro
from sst.agent import child_environment
from sst.config import Config
from sst.data import N_CLASSES
from sst.data import split as tree_split
from sst.data.pipeline import fetch_sources, load_table, read_split


def _best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    """The fastest of ``repeat`` timed calls, in seconds."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_split(cfg: Config, n_seeds: int, n_peer: int, out_md: Path | None = None) -> int:
    table = load_table(cfg, fetch_sources(cfg))
    frame = table.frame
    index = tree_split.SentenceIndex.of(frame)
    fraction = cfg.split.test_fraction
    seeds = np.arange(n_seeds, dtype=np.int64)
    ours = _best_of(lambda: tree_split.seed_distances(index, seeds, fraction))

    labels = frame["label"].to_numpy()
    sentence = frame["sentence_id"]
    peer_seeds = seeds[:n_peer]
    peer_dist = np.empty(len(peer_seeds))

    def peer() -> None:
        for i, seed in enumerate(peer_seeds):
            test_ids = index.ids[tree_split.test_mask(index, int(seed), fraction)]
            in_test = sentence.isin(test_ids).to_numpy()
            peer_dist[i] = wasserstein_distance(labels[~in_test], labels[in_test])

    peer_time = _best_of(peer, repeat=1)
    ours_per_seed = ours / n_seeds
    peer_per_seed = peer_time / n_peer
    agree = np.allclose(
        tree_split.seed_distances(index, peer_seeds, fraction), peer_dist, atol=1e-12
    )
    text = "\n".join(
        [
            f"{len(frame)} phrases, {len(index)} sentences, test fraction {fraction}",
            "",
            "| setup | seeds | seconds | us/seed | vs peer |",
            "| --- | ---: | ---: | ---: | ---: |",
            f"| vectorised search (ours) | {n_seeds} | {ours:.3f} | {ours_per_seed * 1e6:.1f} | "
            f"{peer_per_seed / ours_per_seed:.1f}x |",
            f"| pandas + scipy per seed (peer) | {n_peer} | {peer_time:.3f} | "
            f"{peer_per_seed * 1e6:.1f} | 1.0x |",
            "",
            f"distances agree on the peer's seeds: {agree}",
        ]
    )
    print(text)
    if out_md is not None:
        _update_benchmarks(out_md, "Seed search (`make bench-split`)", text)
    return 0 if agree else 1


def _subset(frame: Any, n: int, seed: int) -> Any:
    if n >= len(frame):
        return frame.reset_index(drop=True)
    return frame.sample(n=n, random_state=seed).reset_index(drop=True)


def _train_data(cfg: Config, n_phrases: int) -> tuple[list[str], Any, Any, Any, Any, int]:
    """``n_phrases`` of the train split (seeded sample): texts, token ids, labels, lengths, the
    tokenizer and its pad id; after an untimed warm-up of our loop (allocator, thread pools)."""
    from sst.model.datamodule import pad_id
    from sst.model.module import load_pretrained

    t = cfg.train
    repro.configure_determinism(t.threads)
    parts, _ = read_split(t.split)
    frame = _subset(parts["train"], n_phrases, t.seed)
    texts = frame["text"].tolist()
    labels = frame["label"].to_numpy().astype(np.int64)
    tokenizer = load_pretrained("tokenizer", cfg.model.name, cfg.model.revision)
    enc = tokenizer(texts, truncation=True, max_length=cfg.model.max_length)["input_ids"]
    lengths = np.array([len(x) for x in enc])
    warm = min(len(enc), 10 * t.batch_size)
    _ours_train(cfg, enc[:warm], labels[:warm], lengths[:warm], "random", pad_id(tokenizer))
    return texts, enc, labels, lengths, tokenizer, pad_id(tokenizer)


def bench_train(cfg: Config, n_phrases: int, out_md: Path | None) -> int:
    """Training and inference throughput: our loop (random, stratified) vs HF Trainer (dynamic
    padding, group_by_length) and a length-sorted HF pipeline, same model/data/threads/batch."""
    import torch  # torch, Lightning and the model modules: only for this benchmark

    t = cfg.train
    texts, enc, labels, lengths, tokenizer, pad_token = _train_data(cfg, n_phrases)
    rows: list[tuple[str, float, float | None, str]] = []
    for mode in ("random", "stratified"):
        rate, tokens, waste = _ours_train(cfg, enc, labels, lengths, mode, pad_token)
        rows.append((f"ours, {mode} (length-bucketed)", rate, tokens, f"padding {waste:.1%}"))
    for strategy in ("random", "group_by_length"):
        rate = _hf_train(cfg, tokenizer, enc, labels, strategy)
        rows.append(
            (f"HF Trainer, dynamic padding, {strategy}", rate, rate * float(lengths.mean()), "")
        )
    infer = texts[: min(len(texts), 4000)]
    rows.append(("ours, inference (length-sorted)", _ours_infer(cfg, tokenizer, infer), None, ""))
    rows.append(
        ("HF pipeline, inference (length-sorted)", _hf_infer(cfg, tokenizer, infer), None, "")
    )

    peer = {name: rate for name, rate, _, _ in rows}
    gbl = peer["HF Trainer, dynamic padding, group_by_length"]
    lines = [
        f"MiniLM-L6 ({cfg.model.name}), {len(texts)} train phrases, batch {t.batch_size}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}",
        "",
        "| setup | samples/s | vs peer | real tokens/s | note |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for name, rate, tok_rate, note in rows:
        ref = peer["HF pipeline, inference (length-sorted)"] if "inference" in name else gbl
        tok = f"{tok_rate:.0f}" if tok_rate is not None else ""
        lines.append(f"| {name} | {rate:.1f} | {rate / ref:.2f}x | {tok} | {note} |")
    ratio = peer["ours, stratified (length-bucketed)"] / gbl
    lines += [
        "",
        f"target: ours stratified >= 1.3x HF group_by_length: {ratio:.2f}x "
        f"({'met' if ratio >= 1.3 else 'NOT met'}). Peers: HF Trainer group_by_length for "
        "training, the length-sorted HF pipeline for inference. A stratified epoch draws the "
        "longer non-neutral phrases more often, so compare real tokens/s across modes.",
    ]
    text = "\n".join(lines)
    print(text)
    if out_md is not None:
        _update_benchmarks(out_md, "Training throughput (`make bench`)", text)
    return 0


def bench_ours(cfg: Config, n_phrases: int) -> int:
    """One line for :func:`bench_isa`: our random-batch loop under this process's kernels."""
    import torch

    _, enc, labels, lengths, _, pad_token = _train_data(cfg, n_phrases)
    rate, _, _ = _ours_train(cfg, enc, labels, lengths, "random", pad_token)
    print(f"kernels {torch.backends.cpu.get_cpu_capability()} samples/s {rate:.3f}")
    return 0


def bench_isa(cfg: Config, n_phrases: int, out_md: Path | None, rounds: int = 2) -> int:
    """The cost of portable bits: our training loop with the CPU's own kernels vs pinned to AVX2
    (SST_CPU_ISA), each level in fresh processes (the kernels are chosen when torch loads),
    alternated ``rounds`` times; the best of each level counts."""
    with tempfile.TemporaryDirectory() as tmp:
        preset = Path(tmp) / "bench.yaml"
        preset.write_text(yaml.safe_dump(cfg.to_dict()))
        best: dict[str, tuple[float, str]] = {}
        command = [sys.executable, "-m", "sst.cli", "bench", "ours", "-c", str(preset)]
        for _ in range(rounds):
            for level in repro.CPU_ISA_LEVELS:
                env = {k: v for k, v in child_environment().items() if k not in repro.PINNING_VARS}
                done = subprocess.run(
                    [*command, "--phrases", str(n_phrases)],
                    env={**env, repro.CPU_ISA_ENV: level},
                    capture_output=True,
                    text=True,
                )
                m = re.search(r"kernels (\S+) samples/s ([\d.]+)", done.stdout)
                if done.returncode or m is None:
                    print(done.stderr[-2000:], file=sys.stderr)
                    return 1
                rate = float(m.group(2))
                if rate > best.get(level, (0.0, ""))[0]:
                    best[level] = (rate, m.group(1))
    native = best["native"][0]
    lines = [
        f"our training loop, random batches, {n_phrases} phrases, {cfg.train.threads} threads, "
        f"best of {rounds} processes per level",
        "",
        "| SST_CPU_ISA | torch kernels | MKL_CBWR | oneDNN cap | samples/s | vs native |",
        "| --- | --- | --- | --- | ---: | ---: |",
    ]
    for level, (rate, kernels) in best.items():
        pins = repro.CPU_ISA_LEVELS[level]
        lines.append(
            f"| {level} | {kernels} | {pins.get('MKL_CBWR', 'auto')} | "
            f"{pins.get('ONEDNN_MAX_CPU_ISA', 'none')} | {rate:.1f} | {rate / native:.2f}x |"
        )
    text = "\n".join(lines)
    print(text)
    if out_md is not None:
        _update_benchmarks(out_md, "Portable CPU kernels (`make bench`)", text)
    return 0


def _ours_train(
    cfg: Config,
    enc: list[list[int]],
    labels: np.ndarray,
    lengths: np.ndarray,
    mode: str,
    pad_token: int,
) -> tuple[float, float, float]:
    import lightning as L
    from torch.utils.data import DataLoader

    from sst.model.datamodule import Collate
    from sst.model.module import SstClassifier
    from sst.model.sampling import BucketBatchSampler, Schedule, padding_waste

    t = cfg.train
    sampler = BucketBatchSampler(labels, lengths, t.batch_size, Schedule.parse(f"{mode}:1"), t.seed)
    waste = padding_waste(lengths, sampler.epoch_batches(0))
    items = [
        {"input_ids": np.asarray(x, dtype=np.int64), "label": int(y), "is_root": False, "index": i}
        for i, (x, y) in enumerate(zip(enc, labels, strict=True))
    ]
    loader: DataLoader[Any] = DataLoader(
        items,  # type: ignore[arg-type]
        batch_sampler=sampler,
        collate_fn=Collate(pad_token),
    )
    module = SstClassifier.from_config(cfg)
    trainer = L.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        deterministic=True,
    )
    repro.seed_everything(t.seed)
    tokens = int(lengths[np.concatenate(sampler.epoch_batches(0))].sum())
    t0 = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    seconds = time.perf_counter() - t0
    return len(labels) / seconds, tokens / seconds, waste


def _hf_train(
    cfg: Config, tokenizer: Any, enc: list[list[int]], labels: np.ndarray, strategy: str
) -> float:
    import tempfile

    from transformers import (
        AutoModelForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from sst.model.module import resolve_model

    t = cfg.train
    data = [{"input_ids": x, "labels": int(y)} for x, y in zip(enc, labels, strict=True)]
    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_model(cfg.model.name), revision=cfg.model.revision, num_labels=N_CLASSES
    )
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=t.batch_size,
            num_train_epochs=1,
            learning_rate=t.lr,
            report_to="none",
            save_strategy="no",
            logging_strategy="no",
            train_sampling_strategy=strategy,
            seed=t.seed,
            use_cpu=True,
            dataloader_num_workers=0,
            disable_tqdm=True,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=data,
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
        )
        t0 = time.perf_counter()
        trainer.train()
        return len(data) / (time.perf_counter() - t0)


def _ours_infer(cfg: Config, tokenizer: Any, texts: list[str]) -> float:
    import torch

    from sst.model.inference import Predictor
    from sst.model.module import SstClassifier

    predictor = Predictor(SstClassifier.from_config(cfg), tokenizer, cfg.model.max_length)
    with torch.inference_mode():
        t0 = time.perf_counter()
        predictor.probabilities(texts, batch_size=cfg.train.eval_batch_size)
        return len(texts) / (time.perf_counter() - t0)


def _hf_infer(cfg: Config, tokenizer: Any, texts: list[str]) -> float:
    from transformers import AutoModelForSequenceClassification, pipeline

    from sst.model.module import resolve_model

    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_model(cfg.model.name), revision=cfg.model.revision, num_labels=N_CLASSES
    )
    pipe = pipeline("text-classification", model=model, tokenizer=tokenizer, device="cpu")
    ordered = sorted(texts, key=len)  # length-sorted: the peer's best case
    t0 = time.perf_counter()
    pipe(
        ordered,
        batch_size=cfg.train.eval_batch_size,
        truncation=True,
        max_length=cfg.model.max_length,
    )
    return len(texts) / (time.perf_counter() - t0)


def _update_benchmarks(path: Path, heading: str, body: str) -> None:
    """Replace (or add) the ``## heading`` section of BENCHMARKS.md with ``body``."""
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmarks\n"
    marker = f"## {heading}"
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    section = (
        f"{marker}\n\nMeasured {stamp} on {repro.cpu_summary()}, peers in the same run.\n\n{body}\n"
    )
    if marker in text:
        head, rest = text.split(marker, 1)
        tail = rest.split("\n## ", 1)
        text = head + section + ("\n## " + tail[1] if len(tail) > 1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")
