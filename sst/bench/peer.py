"""The quality peer: the plain HF Trainer script the kit's recipe must beat (DESIGN.md, "Quality
peer"), on the kit's split and embedded encoder, scored with the kit's metrics.

    sst bench quality -c configs/full.yaml train.seeds=0,1,2     # the peer and the kit, 3 seeds

What a user would write without the kit: ``AutoModelForSequenceClassification`` (its own head on
the encoder's pooled first token), lr 5e-5, batch 32, weight decay 0.01, a linear schedule with
6 % warmup, ``group_by_length``, fp32, one epoch over the train trees' phrases de-duplicated within
each sentence, no validation. Only the data (``train.split``), the encoder (``model.name`` and
``revision``), ``model.max_length``, ``train.threads`` and the seed come from the config (and
``train.eval_batch_size`` the batch it predicts the test set in): the recipe is the peer's,
whatever the kit's preset says.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

import numpy as np
import pandas as pd

from sst.config import Config
from sst.data import N_CLASSES
from sst.data.pipeline import read_split
from sst.env.determinism import configure_determinism
from sst.model.metrics import LEVELS, confusion, summarize

# The recipe, recorded with every result (and part of its cache key)
RECIPE: dict[str, Any] = {
    "version": 2,  # 1 scored the test set in shuffled order (Trainer.predict): never reuse it
    "classifier": "AutoModelForSequenceClassification",
    "data": "train phrases de-duplicated within each sentence",
    "epochs": 1,
    "lr": 5e-5,
    "batch_size": 32,
    "weight_decay": 0.01,
    "scheduler": "linear",
    "warmup_ratio": 0.06,
    "sampling": "group_by_length",
    "dtype": "fp32",
}


def peer_train_frame(parts: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The peer's training data: each distinct text once per sentence (a sub-phrase repeated
    within one tree is one example; the same text in two sentences stays twice)."""
    train = parts["train"]
    return train[~train.duplicated(subset=["sentence_id", "text"])].reset_index(drop=True)


def train_peer(cfg: Config, seed: int) -> dict[str, Any]:
    """Train and test the peer once; the kit's test metrics per level (root, phrase), the
    training seconds (``Trainer.train`` alone) and how many examples it trained on."""
    from transformers import (
        AutoModelForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from sst.model.module import load_pretrained, resolve_model

    m, t = cfg.model, cfg.train
    configure_determinism(t.threads)
    parts, _ = read_split(t.split)
    train = peer_train_frame(parts)
    tokenizer = load_pretrained("tokenizer", m.name, m.revision)  # an embedded one: fetched
    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_model(m.name), revision=m.revision, num_labels=N_CLASSES
    )
    ids = tokenizer(train["text"].tolist(), truncation=True, max_length=m.max_length)["input_ids"]
    labels = train["label"].tolist()
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            num_train_epochs=RECIPE["epochs"],
            learning_rate=RECIPE["lr"],
            per_device_train_batch_size=RECIPE["batch_size"],
            weight_decay=RECIPE["weight_decay"],
            lr_scheduler_type=RECIPE["scheduler"],
            warmup_steps=RECIPE["warmup_ratio"],  # a float below 1: a share of the steps
            train_sampling_strategy=RECIPE["sampling"],
            seed=seed,
            use_cpu=True,
            report_to="none",
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            dataloader_num_workers=0,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=[{"input_ids": x, "labels": y} for x, y in zip(ids, labels, strict=True)],
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
        )
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
    test = parts["test"]
    pred = predict(model, tokenizer, test["text"].tolist(), m.max_length, t.eval_batch_size)
    truth = test["label"].to_numpy()
    roots = test["is_root"].to_numpy().astype(bool)
    cms = {"root": confusion(truth[roots], pred[roots]), "phrase": confusion(truth, pred)}
    return {
        "test": {level: summarize(cms[level]) for level in LEVELS},
        "train_seconds": seconds,
        "examples": len(train),
    }


def predict(model: Any, tokenizer: Any, texts: list[str], max_length: int, batch: int) -> Any:
    """The class each text gets, in ``texts``' order: each distinct text predicted once, in
    length-sorted batches (not ``Trainer.predict``: under ``group_by_length`` it reads the
    evaluation set in shuffled length groups too, transformers 5.24)."""
    import torch

    codes, distinct = pd.factorize(pd.Series(texts))
    order = np.argsort([len(x) for x in distinct], kind="stable")
    out = np.empty(len(distinct), dtype=np.int64)
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch):
            rows = order[start : start + batch]
            enc = tokenizer(
                [distinct[i] for i in rows],
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            )
            out[rows] = model(**enc).logits.argmax(-1).numpy()
    return out[codes]
