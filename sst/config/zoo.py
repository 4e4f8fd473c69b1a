"""``models.txt``, the zoo: one model per line, then ``key=value`` overrides, ``#`` comments.

    python -c "from pathlib import Path; from sst.config.zoo import read_models
               print(read_models(Path('models.txt'), None, []))"

A model is a hub id, a local folder or ``minilm``; an override is ``section.key=value`` or a
bare key that exists in only one of the model and train sections (``lr=3e-5``,
``sampling=stratified:4,alternate:4``, ``pooling=cls``). Every line is resolved into a full config
(keys, types, values) before anything runs; a bad line is an error naming the file and line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shlex
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sst.config.loader import Config, load_config
from sst.config.sections import ModelConfig, TrainConfig
from sst.errors import SstError

# a bare key in models.txt → its section (keys that exist in both sections must be written dotted)
_FIELDS = {
    section: [f.name for f in dataclasses.fields(cls)]
    for section, cls in (("model", ModelConfig), ("train", TrainConfig))
}
_SEEN = Counter(name for names in _FIELDS.values() for name in names)
SHORT_KEYS = {
    n: f"{section}.{n}" for section, names in _FIELDS.items() for n in names if _SEEN[n] == 1
}


@dataclass(frozen=True)
class Entry:
    """One line of models.txt, resolved."""

    line: int
    model: str
    overrides: tuple[str, ...]  # dotted key=value, as given
    name: str
    cfg: Config

    @property
    def arguments(self) -> list[str]:
        """The ``sst train`` overrides that turn the base config into this entry's."""
        return [f"model.name={self.model}", f"name={self.name}", *self.overrides]


def entry_name(base: str, model: str, overrides: list[str]) -> str:
    """``<base>-<model>[-<overrides hash>]``: stable, so --resume finds the same config again."""
    local = Path(model).expanduser()
    short = local.name if local.exists() else model
    name = f"{base}-{re.sub(r'[^A-Za-z0-9]+', '-', short).strip('-').lower()}"
    if overrides:
        name += "-" + hashlib.sha256(" ".join(overrides).encode()).hexdigest()[:6]
    return name


def read_models(path: Path, base: Path | None, extra: list[str]) -> list[Entry]:
    """Every line of ``path`` resolved against the base config (plus ``extra`` overrides)."""
    if not path.is_file():
        raise SstError("models file not found", path=path, fix="see models.txt / models.local.txt")
    base_cfg = load_config(base, extra)
    entries: list[Entry] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            tokens = shlex.split(raw, comments=True)
        except ValueError as e:
            raise SstError(
                f"cannot read the line: {e}", path=path, line=lineno, fix="close the quote"
            ) from None
        if not tokens:
            continue
        model, rest = tokens[0], tokens[1:]
        if "=" in model:
            raise SstError(
                f"the line starts with {model!r}, not a model",
                path=path,
                line=lineno,
                fix="write the model first, then key=value overrides",
            )
        overrides = []
        for item in rest:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise SstError(
                    f"{item!r} is not key=value",
                    path=path,
                    line=lineno,
                    fix="write e.g. lr=3e-5 or train.sampling=stratified:4",
                )
            dotted = key if "." in key else SHORT_KEYS.get(key)
            if dotted is None:
                raise SstError(
                    f"unknown key {key!r}",
                    path=path,
                    line=lineno,
                    fix=f"use one of {', '.join(sorted(SHORT_KEYS))} or section.key",
                )
            overrides.append(f"{dotted}={value}")
        name = entry_name(base_cfg.name, model, overrides)
        try:
            cfg = load_config(base, [*extra, f"model.name={model}", f"name={name}", *overrides])
        except SstError as e:
            raise SstError(e.what, path=path, line=lineno, fix=e.fix) from None
        if name in seen:
            raise SstError(
                f"the same model and overrides as line {seen[name]}",
                path=path,
                line=lineno,
                fix="delete one of the two lines",
            )
        seen[name] = lineno
        entries.append(Entry(lineno, model, tuple(overrides), name, cfg))
    if not entries:
        raise SstError("no models listed", path=path, line=1, fix="add one model per line")
    return entries
