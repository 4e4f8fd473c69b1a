"""``models.txt``, the zoo: one model per line, then ``key=value`` overrides, ``#`` comments.

    python -c "from pathlib import Path; from sst.config.zoo import read_models
               print(read_models(Path('models.txt'), None, []))"

A model is a hub id, a local folder, ``minilm`` or ``mpnet``; an override is ``section.key=value``
or a bare key that exists in only one of the model and train sections (``lr=3e-5``,
``sampling=stratified:4,alternate:4``, ``pooling=cls``). Every line is resolved into a full config
(keys, types, values) before anything runs; a bad line is an error naming the file and line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shlex
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sst.config.loader import Config, load_config
from sst.config.sections import ModelConfig, TrainConfig
from sst.errors import Problems, SstError

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


def read_models(
    path: Path,
    base: Path | None,
    extra: list[str],
    model_problem: Callable[[str], str | None] = lambda name: None,
) -> list[Entry]:
    """Every line of ``path`` resolved against the base config (plus ``extra`` overrides).
    ``model_problem`` says why a line's model cannot load (the sweep passes
    :func:`sst.model.module.model_problem`). Every bad line is reported at once
    (:class:`sst.errors.Problems`), before anything runs."""
    if not path.is_file():
        raise SstError("models file not found", path=path, fix="see models.txt / models.local.txt")
    base_cfg = load_config(base, extra)
    entries: list[Entry] = []
    problems: list[SstError] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            entry = _entry(raw, lineno, base, base_cfg.name, extra, model_problem)
        except SstError as e:
            problems.append(SstError(e.what, path=path, line=lineno, fix=e.fix))
            continue
        if entry is None:
            continue
        if entry.name in seen:
            problems.append(
                SstError(
                    f"the same model and overrides as line {seen[entry.name]}",
                    path=path,
                    line=lineno,
                    fix="delete one of the two lines",
                )
            )
            continue
        seen[entry.name] = lineno
        entries.append(entry)
    if problems:
        raise Problems(problems)
    if not entries:
        raise SstError("no models listed", path=path, line=1, fix="add one model per line")
    return entries


def _entry(
    raw: str,
    lineno: int,
    base: Path | None,
    base_name: str,
    extra: list[str],
    model_problem: Callable[[str], str | None],
) -> Entry | None:
    """One line resolved (None: blank or a comment); an SstError without the file and line."""
    try:
        tokens = shlex.split(raw, comments=True)
    except ValueError as e:
        raise SstError(f"cannot read the line: {e}", fix="close the quote") from None
    if not tokens:
        return None
    model, rest = tokens[0], tokens[1:]
    if "=" in model:
        raise SstError(
            f"the line starts with {model!r}, not a model",
            fix="write the model first, then key=value overrides",
        )
    overrides = []
    for item in rest:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SstError(
                f"{item!r} is not key=value",
                fix="write e.g. lr=3e-5 or train.sampling=stratified:4",
            )
        dotted = key if "." in key else SHORT_KEYS.get(key)
        if dotted is None:
            raise SstError(
                f"unknown key {key!r}",
                fix=f"use one of {', '.join(sorted(SHORT_KEYS))} or section.key",
            )
        overrides.append(f"{dotted}={value}")
    name = entry_name(base_name, model, overrides)
    cfg = load_config(base, [*extra, f"model.name={model}", f"name={name}", *overrides])
    if problem := model_problem(cfg.model.name):  # the line's model, or a model.name override
        raise SstError(
            problem, fix="write an existing folder, a hub id (org/name), minilm or mpnet"
        )
    return Entry(lineno, model, tuple(overrides), name, cfg)
