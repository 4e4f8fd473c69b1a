"""The training benchmarks (BENCHMARKS.md), each a ratio against a peer measured in the same run.

    make bench      # sst bench train (vs HF Trainer), profile (where a step goes), isa

train: our loop (random, stratified; with the word embeddings frozen; bf16 where the CPU has bf16
units) vs HF Trainer and an HF pipeline, same model, data, threads and batch. isa: our loop with the
CPU's own kernels vs each pinned level (avx2, portable), fresh processes. profile: the phases of
a training step, ours vs HF Trainer (:mod:`sst.bench.loops`).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import typing
from collections.abc import Callable
from pathlib import Path

import yaml

from sst.bench import loops
from sst.bench.harness import PHASES, Clock, PeakRss, print_and_save
from sst.bench.loops import hf_train, ours_train, train_data
from sst.config import Config
from sst.config.sections import Optimizer
from sst.env import cpu
from sst.errors import SstError
from sst.tracking.agent import child_environment

HF_GBL = "HF Trainer, dynamic padding, group_by_length"


OURS = "ours, random (length-bucketed)"
BF16 = f"{OURS}, bf16-mixed"
FROZEN = "word embeddings frozen"


def every_weight(cfg: Config) -> Config:
    """``cfg`` training every weight, as the HF peers do: the loops compare like with like."""
    return cfg.with_model(freeze_embeddings=False)


def require_peer() -> None:
    """HF Trainer, the peer, needs accelerate: a dev tool (environment-dev.lock), absent from the
    runtime images. One line before any work, not transformers' ImportError midway."""
    import importlib.util

    if importlib.util.find_spec("accelerate") is None:
        raise SstError(
            "the HF Trainer peer needs accelerate, which only environment-dev.lock installs",
            fix="`make setup` on the host, or the sst:dev image (docs/containers.md)",
        )


def bench_train(cfg: Config, n_phrases: int, out_md: Path | None) -> int:
    """Training and inference throughput: our loop (random, stratified) vs HF Trainer (dynamic
    padding, group_by_length) and a length-sorted HF pipeline, same model/data/threads/batch."""
    require_peer()
    import torch  # torch, Lightning and the model modules: only for this benchmark

    cfg = every_weight(cfg)
    t = cfg.train
    texts, enc, labels, lengths, tokenizer, pad_token = train_data(cfg, n_phrases)
    rows: list[tuple[str, float, float | None, str, float]] = []  # name, rate, tokens, note, MiB
    for mode in ("random", "stratified"):
        with PeakRss() as rss:
            rate, tokens, waste = ours_train(cfg, enc, labels, lengths, mode, pad_token)
        rows.append(
            (f"ours, {mode} (length-bucketed)", rate, tokens, f"padding {waste:.1%}", rss.mib)
        )
    frozen = cfg.with_model(freeze_embeddings=True)
    variants = [(f"{OURS}, {FROZEN}", frozen)]
    if cpu.cpu_has_bf16():  # emulated elsewhere: slower than fp32, not worth a row
        for name, c in ((BF16, cfg), (f"{BF16}, {FROZEN}", frozen)):
            variants.append((name, c.with_train(precision="bf16-mixed")))
    for name, variant in variants:
        if variant.train.precision == "bf16-mixed":
            # untimed first: oneDNN builds its bf16 kernels once per batch shape (a real run
            # repeats each shape hundreds of times); fp32 runs MKL's prebuilt ones
            ours_train(variant, enc, labels, lengths, "random", pad_token)
        with PeakRss() as rss:
            rate, tokens, _ = ours_train(variant, enc, labels, lengths, "random", pad_token)
        rows.append((name, rate, tokens, "", rss.mib))
    for strategy in ("random", "group_by_length"):
        with PeakRss() as rss:
            rate = hf_train(cfg, tokenizer, enc, labels, strategy)
        tokens = rate * float(lengths.mean())
        rows.append((f"HF Trainer, dynamic padding, {strategy}", rate, tokens, "", rss.mib))
    infer = texts[: min(len(texts), 4000)]
    for name, run in (
        ("ours, inference (length-sorted)", loops.ours_infer),
        ("HF pipeline, inference (length-sorted)", loops.hf_infer),
    ):
        with PeakRss() as rss:
            rate = run(cfg, tokenizer, infer)
        rows.append((name, rate, None, "", rss.mib))

    peer = {row[0]: row[1] for row in rows}
    gbl = peer[HF_GBL]
    lines = [
        f"MiniLM-L6 ({cfg.model.name}), {len(texts)} train phrases, batch {t.batch_size}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}; peak RSS: the process's "
        "high-water mark during that setup (data and tokenizer already loaded)",
        "",
        "| setup | samples/s | vs peer | real tokens/s | peak RSS MiB | note |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, rate, tok_rate, note, mib in rows:
        ref = peer["HF pipeline, inference (length-sorted)"] if "inference" in name else gbl
        tok = f"{tok_rate:.0f}" if tok_rate is not None else ""
        lines.append(f"| {name} | {rate:.1f} | {rate / ref:.2f}x | {tok} | {mib:.0f} | {note} |")
    random = peer[OURS] / gbl
    per_token = {row[0]: row[2] or 0.0 for row in rows}
    strat = per_token["ours, stratified (length-bucketed)"] / per_token[HF_GBL]
    lines += [
        "",
        f"targets (issue 13): ours random >= 1.1x HF group_by_length: {random:.2f}x; ours "
        f"stratified >= 1.1x per real token: {strat:.2f}x. A stratified epoch draws the longer "
        "non-neutral phrases more often, so modes compare by real tokens/s. Inference peer: the "
        "length-sorted HF pipeline.",
        f"{FROZEN}: model.freeze_embeddings=true (the peers train every weight); bf16-mixed: "
        "train.precision=bf16-mixed. bf16 (issue 13: >= 1.5x the fp32 peer where the CPU has bf16 "
        "units): "
        + (
            f"{peer[BF16] / gbl:.2f}x training every weight, "
            f"{peer[f'{BF16}, {FROZEN}'] / gbl:.2f}x with the word embeddings frozen"
            if BF16 in peer
            else "not measured, no bf16 units here"
        ),
    ]
    print_and_save(out_md, "Training throughput (`make bench`)", lines)
    return 0


def bench_ours(cfg: Config, n_phrases: int) -> int:
    """One line for :func:`bench_isa`: our random-batch loop under this process's kernels."""
    import torch

    cfg = every_weight(cfg)
    _, enc, labels, lengths, _, pad_token = train_data(cfg, n_phrases)
    rate, _, _ = ours_train(cfg, enc, labels, lengths, "random", pad_token)
    print(f"kernels {torch.backends.cpu.get_cpu_capability()} samples/s {rate:.3f}")
    return 0


def bench_isa(cfg: Config, n_phrases: int, out_md: Path | None, rounds: int = 2) -> int:
    """The cost of portable bits: our training loop with the CPU's own kernels vs each pinned
    level (SST_CPU_ISA: avx2, portable), each in fresh processes (the kernels are chosen when
    torch loads), alternated ``rounds`` times; the best of each level counts."""
    with tempfile.TemporaryDirectory() as tmp:
        preset = Path(tmp) / "bench.yaml"
        preset.write_text(yaml.safe_dump(cfg.to_dict()))
        best: dict[str, tuple[float, str]] = {}
        command = [sys.executable, "-m", "sst.cli", "bench", "ours", "-c", str(preset)]
        for _ in range(rounds):
            for level in cpu.CPU_ISA_LEVELS:
                env = {k: v for k, v in child_environment().items() if k not in cpu.PINNING_VARS}
                done = subprocess.run(
                    [*command, "--phrases", str(n_phrases)],
                    env={**env, cpu.CPU_ISA_ENV: level},
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
        f"| SST_CPU_ISA | same bits on | torch kernels | {' | '.join(cpu.LIBRARY_CAPS)} "
        "| samples/s | vs native |",
        "| --- | --- | --- | --- | --- | ---: | ---: |",
    ]
    for level, (rate, kernels) in best.items():
        pins = cpu.CPU_ISA_LEVELS[level]
        lines.append(
            f"| {level} | {cpu.SAME_BITS_ON[level]} | {kernels} | "
            + " | ".join(pins.get(cap, "unset") for cap in cpu.LIBRARY_CAPS)
            + f" | {rate:.1f} | {rate / native:.2f}x |"
        )
    print_and_save(out_md, "Portable CPU kernels (`make bench`)", lines)
    return 0


def bench_profile(cfg: Config, n_phrases: int, out_md: Path | None) -> int:
    """One epoch of ``n_phrases`` random batches through each loop, phases per step: ours with
    each AdamW implementation (the per-tensor loop was where our time went), HF Trainer with its
    default (fused)."""
    require_peer()
    import torch

    cfg = every_weight(cfg)
    texts, enc, labels, lengths, tokenizer, pad_token = train_data(cfg, n_phrases)
    rows = []

    def ours(optimizer: Optimizer) -> Callable[[Clock], float]:
        one = cfg.with_train(optimizer=optimizer)
        return lambda c: ours_train(one, enc, labels, lengths, "random", pad_token, clock=c)[0]

    timed = [(f"ours (Lightning), random, {o}", ours(o)) for o in typing.get_args(Optimizer)]
    timed.append(
        (
            "HF Trainer, group_by_length, adamw_torch_fused",
            lambda c: hf_train(cfg, tokenizer, enc, labels, "group_by_length", clock=c),
        )
    )
    for name, run in timed:
        clock = Clock()
        rate = run(clock)
        ms = clock.per_step_ms(len(labels) / rate)
        rows.append((name, rate, clock.steps, ms))
    lines = [
        f"one epoch of {len(texts)} train phrases, batch {cfg.train.batch_size}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}; ms per optimizer step",
        "",
        f"| loop | samples/s | steps | {' | '.join(PHASES)} | total |",
        "| --- | ---: | ---: |" + " ---: |" * (len(PHASES) + 1),
    ]
    for name, rate, steps, ms in rows:
        cells = " | ".join(f"{ms[p]:.1f}" for p in PHASES)
        lines.append(f"| {name} | {rate:.1f} | {steps} | {cells} | {sum(ms.values()):.1f} |")
    loop, fused = rows[0][3], rows[1][3]
    lines += [
        "",
        f"The optimizer step: {loop['optimizer']:.0f} ms with torch's per-tensor AdamW loop (its "
        f"CPU default), {fused['optimizer']:.0f} ms fused (HF Trainer's default); the whole step "
        f"{sum(loop.values()) / sum(fused.values()):.2f}x faster fused. Collate, logging and "
        "Lightning's hooks (rest) cost about 1 ms a step. The presets use adamw_torch_fused; the "
        "default stays adamw_torch so that earlier runs replay bit-identically.",
    ]
    print(cpu.cpu_summary())
    print_and_save(out_md, "Where a training step goes (`sst bench profile`)", lines)
    return 0
