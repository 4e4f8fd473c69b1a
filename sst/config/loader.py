"""Reading a config: YAML presets in ``configs/`` plus ``section.key=value`` overrides, into the
typed, frozen :class:`Config` (its sections: :mod:`sst.config.sections`).

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

from sst.config.sections import (
    ConfigProblem,
    DataConfig,
    ModelConfig,
    SplitConfig,
    TrackingConfig,
    TrainConfig,
    option,
)
from sst.config.variables import expand
from sst.errors import SstError


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

    def with_model(self, **changes: Any) -> Config:
        """This config with ``model.<key>=value`` changed."""
        return dataclasses.replace(self, model=dataclasses.replace(self.model, **changes))

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


def flatten(tree: Any, sep: str = ".", prefix: str = "") -> dict[str, str]:
    """Nested dicts → ``a.b`` keys (``sep="/"``: as ClearML shows a connected section) with text
    values as an override spells them (lists, booleans and null as JSON)."""
    if isinstance(tree, dict):
        out: dict[str, str] = {}
        for key, value in tree.items():
            out.update(flatten(value, sep, f"{prefix}{key}{sep}"))
        return out
    text = json.dumps(tree) if isinstance(tree, list | bool) or tree is None else str(tree)
    return {prefix.removesuffix(sep): text}


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
    try:
        return cls(**kwargs)
    except ConfigProblem as e:  # keys that must agree: where the named one is written
        full = f"{prefix}{e.key}"
        raise SstError(
            e.what, path=path if full in lines else None, line=lines.get(full), fix=e.fix
        ) from None


def key_lines(node: yaml.Node, prefix: str = "") -> dict[str, int]:
    out: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            full = f"{prefix}{k.value}"
            out[full] = k.start_mark.line + 1
            out.update(key_lines(v, f"{full}."))
    return out


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for p in parts[:-1]:
        tree = tree.setdefault(p, {})
        if not isinstance(tree, dict):
            raise SstError(f"override {dotted!r}: {p} is not a section", fix="check the key")
    tree[parts[-1]] = value


def read_yaml(path: Path) -> tuple[yaml.Node | None, Any]:
    """A YAML file's node tree (for key lines) and its values; invalid YAML is one line naming
    the file and line."""
    text = path.read_text(encoding="utf-8")
    try:
        return yaml.compose(text), yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise SstError(
            f"invalid YAML: {getattr(e, 'problem', e)}",
            path=path,
            line=mark.line + 1 if mark else None,
            fix="fix the YAML syntax",
        ) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """The preset at ``path`` (or the defaults) with ``key=value`` overrides applied."""
    values: dict[str, Any] = {}
    lines: dict[str, int] = {}
    where = str(path) if path is not None else None
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise SstError("config file not found", path=p, fix="see configs/ for the presets")
        node, values = read_yaml(p)
        values = values or {}
        if not isinstance(values, dict):
            raise SstError("the config must be a mapping", path=p, line=1, fix="use key: value")
        lines = key_lines(node) if node is not None else {}
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
