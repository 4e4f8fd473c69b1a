"""The kit's SST-5 classifier as plain transformers code: an encoder, mean, [CLS] or pooler
pooling, dropout and one linear layer. ``sst export`` copies this file into the exported folder, so

    AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)

loads the trained model where the kit is not installed. It imports nothing from the kit; the
kit's :class:`~sst.model.module.SstClassifier` pools with :func:`pool` from here, so the two
cannot drift apart.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


def pool(out: Any, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """One vector per sequence from the encoder's output ``out``: the first token's (``cls``), the
    encoder's own pooler over it (``pooler``: BERT's dense + tanh) or the mean over real tokens."""
    if pooling == "pooler":
        return out.pooler_output
    hidden = out.last_hidden_state
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class SstConfig(PretrainedConfig):
    model_type = "sst-classifier"

    def __init__(
        self,
        backbone: dict[str, Any] | None = None,
        pooling: str = "mean",
        classifier_dropout: float = 0.1,
        **kwargs: Any,
    ) -> None:
        self.backbone = backbone or {}  # the encoder's own config, as a dict with model_type
        self.pooling = pooling
        self.classifier_dropout = classifier_dropout
        super().__init__(**kwargs)


class SstForSequenceClassification(PreTrainedModel):
    config_class = SstConfig
    base_model_prefix = "backbone"

    def __init__(self, config: SstConfig) -> None:
        super().__init__(config)
        encoder = dict(config.backbone)
        self.backbone = AutoModel.from_config(AutoConfig.for_model(**encoder))
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.head = nn.Linear(self.backbone.config.hidden_size, int(config.num_labels or 5))
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        assert input_ids is not None
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        pooled = pool(out, attention_mask, self.config.pooling)
        logits = self.head(self.dropout(pooled))
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)
