"""Token ids: a fast tokenizer's encoding of texts, stored flat with offsets and cached on disk,
and the dynamic padding of a batch (training, evaluation and `sst predict` share them).

Token ids are cached in ``$SST_CACHE_DIR/tokens/<key>.npz`` where the key hashes the tokenizer
(its serialized JSON), ``max_length`` and what the caller says the texts are (a split file's
sha256 and its rows): a different tokenizer or split never reads a stale cache.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from typing import Any

import numpy as np
import torch

from sst.errors import SstError
from sst.io import default_cache_dir


def tokenizer_digest(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise SstError(
            f"{type(tokenizer).__name__} is not a fast tokenizer",
            fix="use a model that ships a tokenizer.json (fast tokenizer)",
        )
    return hashlib.sha256(backend.to_str().encode()).hexdigest()


def encode_texts(
    tokenizer: Any, texts: list[str], max_length: int
) -> tuple[np.ndarray, np.ndarray]:
    enc = tokenizer(texts, truncation=True, max_length=max_length, add_special_tokens=True)
    lists = enc["input_ids"]
    offsets = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum([len(x) for x in lists], out=offsets[1:])
    flat = np.fromiter((t for x in lists for t in x), dtype=np.int32, count=int(offsets[-1]))
    return flat, offsets


def encode_cached(
    tokenizer: Any, frame: Any, max_length: int, key_parts: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    key = hashlib.sha256(
        "\0".join([tokenizer_digest(tokenizer), str(max_length), *key_parts]).encode()
    ).hexdigest()
    path = default_cache_dir() / "tokens" / f"{key}.npz"
    if path.is_file():
        with np.load(path) as z:
            return z["ids"], z["offsets"]
    ids, offsets = encode_texts(tokenizer, frame["text"].tolist(), max_length)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tokens-", suffix=".npz", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        np.savez(f, ids=ids, offsets=offsets)
    os.replace(tmp, path)
    return ids, offsets


def pad_id(tokenizer: Any) -> int:
    return 0 if tokenizer.pad_token_id is None else int(tokenizer.pad_token_id)


def pad(sequences: list[np.ndarray], pad_token: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic padding: (input_ids, attention_mask) as wide as the longest sequence."""
    width = max(len(seq) for seq in sequences)
    ids = torch.full((len(sequences), width), pad_token, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.from_numpy(np.asarray(seq, dtype=np.int64))
        mask[row, : len(seq)] = 1
    return ids, mask
