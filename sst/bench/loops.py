"""The two training loops the benchmarks time, on the same data in the same process: ours
(Lightning, length-bucketed batches) and HF Trainer (dynamic padding); each optionally with a
:class:`Clock` of where a step's time goes: batch preparation (collate), forward (with the loss
and its logging), backward, the optimizer step, and the rest (framework hooks, scheduler,
logging, the loop itself).

    sst bench profile -c configs/demo.yaml --phrases 3000    # the phases, ours vs HF Trainer

Each phase is timed by the framework's own hooks (Lightning callbacks; HF ``TrainerCallback`` and
``Trainer.compute_loss``/``training_step``) and by the collate function; "rest" is the step's
wall time minus the phases. Gradient clipping falls in "optimizer" for ours (Lightning clips
after ``on_before_optimizer_step``) and in "rest" for HF (it clips before
``on_pre_optimizer_step``). Ours is built by the production Trainer builder
(:func:`sst.run.trainer.build_trainer`, role "bench"): the same precision, determinism and gradient
clipping as `sst train`, without the files a run writes (the HF peer writes none either).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from sst.bench.harness import Clock
from sst.config import Config
from sst.data import N_CLASSES
from sst.data.pipeline import read_split
from sst.env.determinism import configure_determinism, seed_everything
from sst.env.precision import INFERENCE, decide


def lightning_callback(clock: Clock) -> Any:
    """Marks on Lightning's hooks around each training batch (automatic optimization)."""
    from lightning.pytorch.callbacks import Callback

    class Marks(Callback):
        def on_train_batch_start(self, *args: Any) -> None:
            clock.mark("start")

        def on_before_backward(self, *args: Any) -> None:
            clock.mark("backward")
            clock.span("forward", "start", "backward")

        def on_after_backward(self, *args: Any) -> None:
            clock.mark("after_backward")
            clock.span("backward", "backward", "after_backward")

        def on_before_optimizer_step(self, *args: Any) -> None:
            clock.mark("optimizer")

        def on_train_batch_end(self, *args: Any) -> None:
            clock.mark("end")
            clock.span("optimizer", "optimizer", "end")
            clock.steps += 1

    return Marks()


def hf_trainer_class(clock: Clock) -> Any:
    """HF Trainer with its forward and whole training step timed, and callbacks around the
    optimizer step."""
    from transformers import Trainer, TrainerCallback

    class Marks(TrainerCallback):
        def on_pre_optimizer_step(self, *args: Any, **kwargs: Any) -> None:
            clock.mark("optimizer")

        def on_optimizer_step(self, *args: Any, **kwargs: Any) -> None:
            clock.mark("stepped")
            clock.span("optimizer", "optimizer", "stepped")
            clock.steps += 1

    class TimedTrainer(Trainer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.add_callback(Marks())

        def compute_loss(self, *args: Any, **kwargs: Any) -> Any:
            return clock.timed("forward", super().compute_loss)(*args, **kwargs)

        def training_step(self, *args: Any, **kwargs: Any) -> Any:
            before = clock.seconds["forward"]
            t0 = time.perf_counter()
            out = super().training_step(*args, **kwargs)
            forward = clock.seconds["forward"] - before
            clock.seconds["backward"] += time.perf_counter() - t0 - forward
            return out

    return TimedTrainer


def subset(frame: Any, n: int, seed: int) -> Any:
    if n >= len(frame):
        return frame.reset_index(drop=True)
    return frame.sample(n=n, random_state=seed).reset_index(drop=True)


def train_data(cfg: Config, n_phrases: int) -> tuple[list[str], Any, Any, Any, Any, int]:
    """``n_phrases`` of the train split (seeded sample): texts, token ids, labels, lengths, the
    tokenizer and its pad id; after an untimed warm-up of our loop (allocator, thread pools)."""
    from sst.model.module import load_pretrained
    from sst.model.tokens import pad_id

    t = cfg.train
    configure_determinism(t.threads)
    parts, _ = read_split(t.split)
    frame = subset(parts["train"], n_phrases, t.seed)
    texts = frame["text"].tolist()
    labels = frame["label"].to_numpy().astype(np.int64)
    tokenizer = load_pretrained("tokenizer", cfg.model.name, cfg.model.revision)
    enc = tokenizer(texts, truncation=True, max_length=cfg.model.max_length)["input_ids"]
    lengths = np.array([len(x) for x in enc])
    warm = min(len(enc), 10 * t.batch_size)
    ours_train(cfg, enc[:warm], labels[:warm], lengths[:warm], "random", pad_id(tokenizer))
    return texts, enc, labels, lengths, tokenizer, pad_id(tokenizer)


def ours_train(
    cfg: Config,
    enc: list[list[int]],
    labels: np.ndarray,
    lengths: np.ndarray,
    mode: str,
    pad_token: int,
    clock: Clock | None = None,
) -> tuple[float, float, float]:
    from torch.utils.data import DataLoader

    from sst.config.schedule import Schedule
    from sst.model.datamodule import Collate
    from sst.model.module import SstClassifier
    from sst.model.sampling import BucketBatchSampler, padding_waste
    from sst.run.trainer import build_trainer

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
        collate_fn=clock.timed("collate", Collate(pad_token)) if clock else Collate(pad_token),
    )
    decided = decide(t.precision, cfg.model.attention)  # as `sst train` decides it
    module = SstClassifier.from_config(cfg, decided)
    marks = [lightning_callback(clock)] if clock else []
    trainer = build_trainer(cfg, decided, role="bench", callbacks=marks)
    seed_everything(t.seed)
    tokens = int(lengths[np.concatenate(sampler.epoch_batches(0))].sum())
    t0 = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    seconds = time.perf_counter() - t0
    return len(labels) / seconds, tokens / seconds, waste


def hf_train(
    cfg: Config,
    tokenizer: Any,
    enc: list[list[int]],
    labels: np.ndarray,
    strategy: str,
    clock: Clock | None = None,
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
        collate = DataCollatorWithPadding(tokenizer)
        trainer = (hf_trainer_class(clock) if clock else Trainer)(
            model=model,
            args=args,
            train_dataset=data,
            data_collator=clock.timed("collate", collate) if clock else collate,
            processing_class=tokenizer,
        )
        t0 = time.perf_counter()
        trainer.train()
        return len(data) / (time.perf_counter() - t0)


def ours_infer(cfg: Config, tokenizer: Any, texts: list[str]) -> float:
    """Our inference (length-sorted batches) with ``cfg``'s model."""
    from sst.model.inference import Predictor
    from sst.model.module import SstClassifier

    model = SstClassifier.from_config(cfg, decide(INFERENCE, cfg.model.attention))
    predictor = Predictor(model, tokenizer, cfg.model.max_length)
    t0 = time.perf_counter()
    predictor.probabilities(texts, batch_size=cfg.train.eval_batch_size)
    return len(texts) / (time.perf_counter() - t0)


def hf_infer(cfg: Config, tokenizer: Any, texts: list[str]) -> float:
    """The peer: an HF text-classification pipeline over the length-sorted texts."""
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
