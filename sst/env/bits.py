"""The bits probe: does this machine reproduce portable runs? Seconds, on any x86-64 machine.

    sst doctor --bits        # the probe's digest next to the published one: match, or why not
    python -m sst.env.bits   # the digest alone, in the kernels this process was started with

A fixed, tiny, seeded computation: the tiny fixture's BERT architecture (:data:`TINY_BERT`, 2
layers, hidden 32; the tests build their fixture model from it) with a sequence-classification
head, :data:`STEPS` AdamW steps of forward and backward (dropout on) over fixed token ids, 2
threads, torch's deterministic algorithms. It runs in a fresh interpreter in the vendor-free
portable mode (``SST_CPU_ISA=portable``: the libraries choose kernels when torch loads). The
digest is the sha256 of the parameters it ends with; :data:`PUBLISHED` is the one measured on the
CPUs BENCHMARKS.md lists ("Bits across CPU vendors").
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from typing import Any

from sst.env import cpu

# The tiny fixture's encoder (tests/conftest.build_tiny_bert adds its vocabulary)
TINY_BERT: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 128,
}
PROBE_LEVEL = "portable"
STEPS = 3
THREADS = 2
# sha256 of the probe's parameters in the portable mode, torch 2.13.0+cpu from environment.lock;
# measured on: AMD EPYC (BENCHMARKS.md "Bits across CPU vendors" lists each CPU checked)
PUBLISHED = "c4d3f9c35f404a7106c1a49a89551a915ed62e3c48b0f856f5c7ff008054e98f"


def digest() -> str:
    """Run the probe in this process's kernels (the level must have been pinned before torch
    loaded: :func:`probe` starts a fresh interpreter for it)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from sst.env.determinism import configure_determinism

    configure_determinism(THREADS)
    torch.manual_seed(0)
    vocab, classes = 400, 5
    settings: dict[str, Any] = {**TINY_BERT, "vocab_size": vocab, "num_labels": classes}
    config = BertConfig(**settings, attn_implementation="sdpa")  # type: ignore[call-arg]
    model = BertForSequenceClassification(config).train()
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(5, vocab, (8, 24), generator=generator)
    mask = torch.ones_like(ids)
    mask[4:, 16:] = 0  # padded rows: the masked softmax runs too
    labels = torch.randint(0, classes, (8,), generator=generator)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(STEPS):
        optimizer.zero_grad()
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        optimizer.step()
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def probe(timeout: float = 300) -> dict[str, Any]:
    """The digest in the portable mode, from a fresh interpreter, with what decided its kernels:
    vendor, CPU model, torch's vector kernels and the libraries' caps."""
    env = {k: v for k, v in os.environ.items() if k not in cpu.PINNING_VARS}
    env |= {cpu.CPU_ISA_ENV: PROBE_LEVEL, "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "sst.env.bits", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the bits probe failed: {tail}")
    return json.loads(lines[-1])


def verdict(result: dict[str, Any]) -> tuple[bool, str]:
    """Whether the probe matches the published digest (:data:`PUBLISHED`), and the line that says
    so; a mismatch names the vendor, the kernels, the variables that decided them and the torch
    build (another one than the lock's changes the digest too: see the lock row)."""
    ran = f"{result['vendor']} {result['cpu']}"
    if result["digest"] == PUBLISHED:
        return True, f"{result['digest'][:16]}… = published: this machine reproduces portable runs"
    caps = ", ".join(f"{k} {result.get(k)}" for k in cpu.LIBRARY_CAPS)
    return False, (
        f"{result['digest'][:16]}… ≠ published {PUBLISHED[:16]}…: {ran}, torch "
        f"{result['torch']} kernels {result['aten']}, {caps}, {result['threads']} threads; a "
        "portable run from another machine will not replay bit-identically here (BENCHMARKS.md: "
        "Bits across CPU vendors)"
    )


def main() -> None:
    level = cpu.pin_cpu_isa()  # before torch loads
    value = digest()
    if "--json" not in sys.argv:
        print(value)
        return
    import torch

    result = {
        "digest": value,
        "level": level,
        "vendor": cpu.cpu_vendor(),
        "cpu": cpu.cpu_model(),
        "aten": cpu.torch_kernels(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        **{k: os.environ.get(k) for k in cpu.LIBRARY_CAPS},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
