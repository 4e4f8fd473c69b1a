"""LightningDataModule: a verified split, tokenized once (cached), dynamically padded batches.

    python -c "from sst.model.datamodule import SstDataModule"   # used by `sst train`

Token ids are cached (:mod:`sst.model.tokens`) under a key of the tokenizer, ``max_length``, the
split file and the rows read (pseudo-labelled texts join train with their texts in the key).
Training batches come from :class:`BucketBatchSampler`; evaluation
predicts each distinct text once (:class:`Distinct`; the canonical test set's 82,600 nodes hold
46,663 texts) in length-sorted batches (order does not change metrics; predictions are re-sorted
by phrase id).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from sst.config import Config
from sst.config.schedule import Schedule
from sst.data.pipeline import read_split
from sst.errors import SstError
from sst.model.sampling import BucketBatchSampler, RankShare, length_sorted_batches
from sst.model.tokens import encode_cached, pad, pad_id


class Encoded(Dataset[dict[str, Any]]):
    """Token ids of one split part, stored flat with offsets, plus labels and root flags."""

    def __init__(self, ids: np.ndarray, offsets: np.ndarray, frame: Any) -> None:
        self.ids = ids
        self.offsets = offsets
        self.labels = frame["label"].to_numpy().astype(np.int64)
        self.is_root = frame["is_root"].to_numpy().astype(bool)
        self.phrase_id = frame["phrase_id"].to_numpy().astype(np.int64)
        self.sentence_id = frame["sentence_id"].to_numpy().astype(np.int64)
        self.lengths = np.diff(offsets)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {
            "input_ids": self.ids[self.offsets[i] : self.offsets[i + 1]],
            "label": self.labels[i],
            "is_root": self.is_root[i],
            "index": i,
        }


class Distinct(Dataset[dict[str, Any]]):
    """An evaluation part as its distinct token sequences, each with every phrase that has it: a
    text at several tree nodes (a phrase in several sentences, a repeated sub-phrase) is
    predicted once and its prediction mapped back to each node, which keeps its own label."""

    def __init__(self, part: Encoded) -> None:
        position: dict[bytes, int] = {}
        groups: list[list[int]] = []
        for i in range(len(part)):
            key = part.ids[part.offsets[i] : part.offsets[i + 1]].tobytes()
            k = position.setdefault(key, len(groups))
            if k == len(groups):
                groups.append([])
            groups[k].append(i)
        self.part = part
        self.groups = [np.asarray(g, dtype=np.int64) for g in groups]
        self.lengths = part.lengths[[g[0] for g in groups]]

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, k: int) -> dict[str, Any]:
        nodes, part = self.groups[k], self.part
        first = nodes[0]
        return {
            "input_ids": part.ids[part.offsets[first] : part.offsets[first + 1]],
            "label": part.labels[nodes],
            "is_root": part.is_root[nodes],
            "index": nodes,
        }


class Collate:
    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids, mask = pad([it["input_ids"] for it in items], self.pad_id)
        if np.ndim(items[0]["index"]) == 0:  # one phrase per sequence (training)
            return {
                "input_ids": ids,
                "attention_mask": mask,
                "labels": torch.tensor([it["label"] for it in items], dtype=torch.long),
                "is_root": torch.tensor([bool(it["is_root"]) for it in items], dtype=torch.bool),
                "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
            }
        counts = torch.tensor([len(it["index"]) for it in items])  # Distinct: nodes per sequence

        def nodes(key: str) -> torch.Tensor:
            return torch.from_numpy(np.concatenate([it[key] for it in items]))

        return {
            "input_ids": ids,
            "attention_mask": mask,
            "expand": torch.repeat_interleave(torch.arange(len(items)), counts),  # node → row
            "labels": nodes("label").long(),
            "is_root": nodes("is_root").bool(),
            "index": nodes("index").long(),
        }


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)


class SstDataModule(L.LightningDataModule):
    def __init__(
        self,
        split_dir: str | Path,
        tokenizer: Any,
        *,  # the config's values (from_config): its defaults are the only ones
        batch_size: int,
        eval_batch_size: int,
        sampling: str,
        epoch_size: int,
        max_length: int,
        seed: int,
        num_workers: int,
        val_sentences: int,
        test_sentences: int,
        root_weight: int,
        data: dict[str, str],
        pseudo: Any = None,
    ) -> None:
        super().__init__()
        self.pseudo = pseudo  # texts with teacher labels that join train (verbs.pseudo), or None
        self.data = data  # the config's data.format/dedup, checked against the split's
        self.split_dir = Path(split_dir)
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.schedule = Schedule.parse(sampling)
        self.epoch_size = epoch_size
        self.max_length = max_length
        self.seed = seed
        self.num_workers = num_workers
        self.val_sentences = val_sentences
        self.test_sentences = test_sentences
        self.root_weight = root_weight
        self.parts: dict[str, Encoded] = {}
        self.manifest: dict[str, Any] = {}
        self.sampler: BucketBatchSampler | None = None
        self.collate = Collate(pad_id(tokenizer))

    @classmethod
    def from_config(cls, cfg: Config, pseudo: Any = None) -> SstDataModule:
        """The split ``cfg`` trains on, tokenized by its model's tokenizer (pinned revision), and
        the ``pseudo`` labelled texts (``text``, ``label``) that join its train part."""
        from sst.model.module import load_pretrained

        m, t = cfg.model, cfg.train
        return cls(
            t.split,
            load_pretrained("tokenizer", m.name, m.revision),
            batch_size=t.batch_size,
            eval_batch_size=t.eval_batch_size,
            sampling=t.sampling,
            epoch_size=t.epoch_size,
            max_length=m.max_length,
            seed=t.seed,
            num_workers=t.num_workers,
            val_sentences=t.val_sentences,
            test_sentences=t.test_sentences,
            root_weight=t.root_weight,
            data={"format": cfg.data.format, "dedup": cfg.data.dedup},
            pseudo=pseudo,
        )

    def setup(self, stage: str | None = None) -> None:
        if self.parts:
            return
        if not self.split_dir.is_dir():
            raise SstError(
                "split folder not found",
                path=self.split_dir,
                fix="run `sst split` (make split-ptb)",
            )
        frames, self.manifest = read_split(self.split_dir)
        made = self.manifest.get("data", {})
        for key, want in self.data.items():
            if key in made and made[key] != want:
                raise SstError(
                    f"the split was made with data.{key}={made[key]}, the config asks {want}",
                    path=self.split_dir / "manifest.json",
                    fix=f"make a split for it (`sst split … data.{key}={want} "
                    "split.out=<new folder>`) and set train.split to that folder",
                )
        if "train" not in frames or "test" not in frames:
            raise SstError("the split has no train or test part", path=self.split_dir)
        if "val" in frames and self.val_sentences:
            frames["val"] = _subset_sentences(frames["val"], self.val_sentences, self.seed)
        if self.test_sentences:  # one fixed subset (seed 0): every run is scored on the same
            frames["test"] = _subset_sentences(frames["test"], self.test_sentences, 0)
        extra = {"train": _pseudo_rows(self.pseudo)} if self.pseudo is not None else {}
        for name, frame in frames.items():
            cached = [self.manifest["files"][f"{name}.tsv"]["sha256"]]
            if name in extra:  # appended after the split's rows; their texts join the key
                frame = frames[name] = pd.concat([frame, extra[name]], ignore_index=True)
                cached.append(hashlib.sha256("\n".join(extra[name]["text"]).encode()).hexdigest())
            # the rows encoded: a subset's key differs from the whole file's and from other subsets
            cached.append(hashlib.sha256(frame["phrase_id"].to_numpy().tobytes()).hexdigest())
            ids, offsets = encode_cached(self.tokenizer, frame, self.max_length, cached)
            self.parts[name] = Encoded(ids, offsets, frame)
        train = self.parts["train"]
        self.sampler = BucketBatchSampler(
            train.labels,
            train.lengths,
            self.batch_size,
            self.schedule,
            self.seed,
            epoch_size=self.epoch_size or None,
            repeats=np.where(train.is_root, self.root_weight, 1) if self.root_weight > 1 else None,
        )

    def _loader(self, dataset: Dataset[dict[str, Any]], batch_sampler: Any) -> DataLoader[Any]:
        return DataLoader(
            dataset,
            batch_sampler=batch_sampler,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            worker_init_fn=_seed_worker,
            generator=torch.Generator().manual_seed(self.seed),
            persistent_workers=False,
        )

    def _rank(self) -> tuple[int, int]:
        """This process's rank and the number of processes (DDP: ``train.devices``)."""
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader[Any]:
        assert self.sampler is not None
        rank, world = self._rank()
        batches = self.sampler if world == 1 else RankShare(self.sampler, rank, world)
        return self._loader(self.parts["train"], batches)

    def _eval_loader(self, name: str) -> DataLoader[Any]:
        """Each distinct text of the part once, length-sorted batches (see :class:`Distinct`);
        under DDP every process scores every ``world``-th batch (the metrics sync on compute)."""
        distinct = Distinct(self.parts[name])
        rank, world = self._rank()
        batches = length_sorted_batches(distinct.lengths, self.eval_batch_size)
        if len(batches) < world:  # every process needs a batch, or the metric sync waits forever
            if len(distinct) < world:
                raise SstError(
                    f"the {name} part holds {len(distinct)} distinct texts for {world} processes",
                    path=self.split_dir,
                    fix="use fewer train.devices or a larger part",
                )
            batches = np.array_split(np.argsort(distinct.lengths, kind="stable"), world)
        return self._loader(distinct, [b.tolist() for b in batches[rank::world]])

    def val_dataloader(self) -> DataLoader[Any]:
        return self._eval_loader("val" if "val" in self.parts else "test")

    def test_dataloader(self) -> DataLoader[Any]:
        return self._eval_loader("test")

    def state_dict(self) -> dict[str, Any]:
        if self.sampler is None:
            return {}
        state = self.sampler.state_dict()
        if self.trainer is not None:  # consumed by training, not prefetched by the loader
            # `processed`, not `completed`: a step checkpoint is written in on_train_batch_end,
            # after the batch's optimizer step but before Lightning counts it completed (it
            # re-counts it on restart); the two are equal when saved on an exception.
            current: Any = self.trainer.fit_loop.epoch_loop.batch_progress.current
            state["batches_done"] = current.processed
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.setup("fit")
            assert self.sampler is not None
            self.sampler.load_state_dict(state)


def _pseudo_rows(pseudo: Any) -> pd.DataFrame:
    """Pseudo-labelled texts as split rows: each its own root, negative ids (never a split's)."""
    ids = -np.arange(1, len(pseudo) + 1, dtype=np.int64)
    return pd.DataFrame(
        {
            "sentence_id": ids,
            "phrase_id": ids,
            "label": pseudo["label"].to_numpy().astype(np.int8),
            "n_tokens": [len(t.split()) for t in pseudo["text"]],
            "is_root": True,
            "split": "pseudo",
            "text": pseudo["text"].to_numpy(),
        }
    )


def _subset_sentences(frame: Any, n: int, seed: int) -> Any:
    ids = np.unique(frame["sentence_id"].to_numpy())
    if n >= len(ids):
        return frame
    keep = np.random.default_rng(seed).choice(ids, size=n, replace=False)
    return frame[frame["sentence_id"].isin(keep)].reset_index(drop=True)
