"""Typed, frozen configuration: YAML presets in ``configs/`` plus ``section.key=value`` overrides.

    sst split --config configs/kaggle.yaml split.n_seeds=2000 data.dedup=global

Every field has help text (``sst config`` lists them). ``${VAR}`` (or ``${VAR:-default}``) in a
string is expanded from the environment when the config is read, except in the data sources:
they are kept as written (``${SST_DATA}/sst_ptb/train.txt``) and expanded only when the files are
read, so a config, its hash and a split manifest do not depend on where the data sits. An
unknown key, a wrong type or an unset variable is an error naming the file and line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from sst.errors import SstError
from sst.variables import expand

# The choice fields: a value outside these is refused when the config is built, naming the key.
DataFormat = Literal["kaggle", "ptb"]
Dedup = Literal["none", "sentence", "global"]
SplitMode = Literal["search", "canonical"]
PtbRole = Literal["train", "dev", "test"]
Checkpoint = Literal["last", "best"]
Optimizer = Literal["adamw_torch", "adamw_torch_fused"]  # HF TrainingArguments.optim names
Pooling = Literal["cls", "mean"]
Scheduler = Literal["linear", "cosine", "constant", "one_cycle"]
Precision = Literal["auto", "32-true", "64-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true"]
Strategy = Literal["auto", "ddp_fork", "ddp_spawn"]  # Lightning's; its "ddp" re-runs the command


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


@dataclass(frozen=True)
class ModelConfig:
    name: str = option(
        "minilm",
        "encoder: 'minilm' (the embedded all-MiniLM-L6-v2), a hub id, or a local folder",
    )
    revision: str = option("main", "hub revision (branch, tag or commit) to pin")
    pooling: Pooling = option("mean", "sentence vector: cls (first token) or mean (masked mean)")
    dropout: float = option(0.1, "dropout before the classification layer")
    freeze_backbone: bool = option(False, "train only the classification layer")
    max_length: int = option(128, "tokens per phrase at most (SST phrases: p95 22, max ~70)")
    init_from: str = option("", "start from this run's weights (runs/<id>, verified)", added=True)


@dataclass(frozen=True)
class TrainConfig:
    split: str = option("splits/ptb", "split folder written by `sst split` (verified on read)")
    sampling: str = option(
        "stratified:4,alternate:4",
        "per-epoch class balance: random|stratified|alternate|alpha=A with :epochs, comma-joined",
    )
    epoch_size: int = option(0, "draws per epoch (0: the number of training phrases)")
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
    precision: Precision = option("auto", "auto: bf16/16-mixed on a GPU, 32-true on a CPU")
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
    evaluate: Checkpoint = option(
        "last", "weights tested and kept: last, or best (by val root macro-F1)", added=True
    )
    keep_checkpoints: bool = option(
        False, "keep checkpoints/ after a successful run (default: only the weights)", added=True
    )
    prune: float = option(0.0, "sparsity of the encoder's linear weights (L1)", added=True)
    profile: bool = option(
        False, "write Lightning's per-hook timings (fit-profile.txt) to the run", identity=False
    )
    runs_dir: str = option("runs", "where run folders are written")


@dataclass(frozen=True)
class TrackingConfig:
    project: str = option("sst", "ClearML project")
    enabled: bool = option(True, "record the command as a ClearML task (offline without a server)")
    monitor_resources: bool = option(True, "let ClearML sample CPU/GPU/memory during training")


@dataclass(frozen=True)
class Config:
    name: str = option("sst", "experiment name (ClearML task name)")
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "data source"})
    split: SplitConfig = field(default_factory=SplitConfig, metadata={"help": "splits"})
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "the encoder"})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "training"})
    tracking: TrackingConfig = field(default_factory=TrackingConfig, metadata={"help": "ClearML"})

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def with_train(self, **changes: Any) -> Config:
        """This config with ``train.<key>=value`` changed, e.g. ``with_train(seed=1, seeds=())``
        for one run of a multi-seed config."""
        return dataclasses.replace(self, train=dataclasses.replace(self.train, **changes))

    def without_seed(self) -> Config:
        """What runs that differ only by seed (or by the folder they were written to) share."""
        return self.with_train(seed=0, seeds=(), runs_dir="")

    def hash(self) -> str:
        """sha256 of the resolved config (canonical JSON) without the fields that only say where
        something is fetched from (``data.fallback``), nor added fields at their default: same
        config, same hash."""
        values = self.to_dict()
        for f in dataclasses.fields(self):
            section = getattr(self, f.name)
            if dataclasses.is_dataclass(section):
                for g in dataclasses.fields(section):
                    at_default = getattr(section, g.name) == _default(g)
                    if not g.metadata["identity"] or (g.metadata["added"] and at_default):
                        del values[f.name][g.name]
        text = json.dumps(values, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def _default(f: dataclasses.Field[Any]) -> Any:
    return f.default_factory() if callable(f.default_factory) else f.default


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _coerce(
    tp: Any, value: Any, key: str, where: tuple[str | None, int | None], as_written: bool = False
) -> Any:
    def bad() -> SstError:
        return SstError(
            f"{key}={value!r} is not a valid {getattr(tp, '__name__', tp)}",
            path=where[0],
            line=where[1],
            fix=f"give {key} a {getattr(tp, '__name__', tp)} value",
        )

    origin = typing.get_origin(tp)
    if origin is tuple:
        if isinstance(value, str) and typing.get_args(tp)[0] is int:  # `train.seeds=0,1,2`
            value = [yaml.safe_load(v) for v in value.split(",") if v.strip()]
        items = value if isinstance(value, list | tuple) else [value]
        return tuple(_coerce(typing.get_args(tp)[0], v, key, where, as_written) for v in items)
    if tp in (bool, int):  # a YAML true is an int to Python, not to a config
        if isinstance(value, tp) and (tp is bool or not isinstance(value, bool)):
            return value
        raise bad()
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise bad() from None
        raise bad()
    if tp is str:
        if isinstance(value, str):
            return value if as_written else expand(value, where)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise bad()
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value in allowed:
            return value
        raise SstError(
            f"{key}={value!r} is not one of {', '.join(allowed)}",
            path=where[0],
            line=where[1],
            fix=f"set {key} to one of {', '.join(allowed)}",
        )
    raise bad()


def _build(cls: type, values: dict[str, Any], lines: dict[str, int], path: str | None, prefix=""):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    known = set(fields)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        full = f"{prefix}{key}"
        where = (path if full in lines else None, lines.get(full))
        if key not in known:
            raise SstError(
                f"unknown config key {full!r}",
                path=where[0] or path,
                line=where[1],
                fix=f"known keys under {prefix or 'the top level'}: {', '.join(sorted(known))}",
            )
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise SstError(
                    f"{full} must be a mapping", path=where[0], line=where[1], fix="indent its keys"
                )
            kwargs[key] = _build(tp, value, lines, path, prefix=f"{full}.")  # type: ignore[arg-type]
        else:
            as_written = fields[key].metadata.get("as_written", False)
            kwargs[key] = _coerce(tp, value, full, where, as_written)
    return cls(**kwargs)


def _key_lines(node: yaml.Node, prefix: str = "") -> dict[str, int]:
    out: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            full = f"{prefix}{k.value}"
            out[full] = k.start_mark.line + 1
            out.update(_key_lines(v, f"{full}."))
    return out


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for p in parts[:-1]:
        tree = tree.setdefault(p, {})
        if not isinstance(tree, dict):
            raise SstError(f"override {dotted!r}: {p} is not a section", fix="check the key")
    tree[parts[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """The preset at ``path`` (or the defaults) with ``key=value`` overrides applied."""
    values: dict[str, Any] = {}
    lines: dict[str, int] = {}
    where = str(path) if path is not None else None
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise SstError("config file not found", path=p, fix="see configs/ for the presets")
        text = p.read_text(encoding="utf-8")
        try:
            node = yaml.compose(text)
            values = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            raise SstError(
                f"invalid YAML: {getattr(e, 'problem', e)}",
                path=p,
                line=mark.line + 1 if mark else None,
                fix="fix the YAML syntax",
            ) from None
        if not isinstance(values, dict):
            raise SstError("the config must be a mapping", path=p, line=1, fix="use key: value")
        lines = _key_lines(node) if node is not None else {}
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SstError(
                f"override {item!r} is not key=value", fix="write e.g. split.n_seeds=100"
            )
        _set(values, key.strip(), yaml.safe_load(raw) if raw.strip() else "")
        lines.pop(key.strip(), None)  # an override has no line in the file
    return _build(Config, values, lines, where)


def describe(cls: type = Config, prefix: str = "") -> list[str]:
    """One line per config key: ``section.key (type, default): help``."""
    out: list[str] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out.extend(describe(tp, f"{prefix}{f.name}."))  # type: ignore[arg-type]
            continue
        default = _default(f)
        name = (
            "|".join(typing.get_args(tp))
            if typing.get_origin(tp) is Literal
            else getattr(tp, "__name__", str(tp))
        )
        out.append(f"{prefix}{f.name} ({name}, default {default!r}): {f.metadata.get('help', '')}")
    return out
