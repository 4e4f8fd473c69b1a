"""Class probabilities for texts: length-sorted batches (little padding), progress bar or lines.

python -c "from sst.model.inference import Predictor"   # used by `sst predict` and the bench
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sst.config import Config
from sst.data import N_CLASSES
from sst.io import progress as bar
from sst.model.module import load_pretrained
from sst.model.sampling import length_sorted_batches
from sst.model.tokens import encode_texts, pad, pad_id


class Predictor:
    """A classifier, its tokenizer and ``max_length``."""

    def __init__(self, model: Any, tokenizer: Any, max_length: int) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length

    @classmethod
    def from_config(cls, model: Any, cfg: Config) -> Predictor:
        """``model`` with the tokenizer and ``max_length`` that ``cfg`` trained it with."""
        m = cfg.model
        return cls(model, load_pretrained("tokenizer", m.name, m.revision), m.max_length)

    @torch.inference_mode()
    def probabilities(
        self, texts: list[str], batch_size: int = 128, progress: bool = False
    ) -> np.ndarray:
        ids, offsets = encode_texts(self.tokenizer, texts, self.max_length)
        out = np.zeros((len(texts), N_CLASSES), dtype=np.float32)
        batches = length_sorted_batches(np.diff(offsets), batch_size)
        for idx in bar(batches, disable=not progress, unit="batch", desc="predict"):
            input_ids, mask = pad(
                [ids[offsets[i] : offsets[i + 1]] for i in idx], pad_id(self.tokenizer)
            )
            out[idx] = self.model(input_ids, mask).float().softmax(-1).numpy()
        return out
