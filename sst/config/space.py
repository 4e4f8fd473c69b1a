"""A search space for `sst tune`: which config keys a search varies, and how, in a small YAML file.

    trials: 12          # how many trials the search runs
    seed: 0             # the sampler's seed: the same trials again, given the same results
    concurrent: 1       # online: trials on the queue at once (locally they run one by one)
    space:
      train.lr: {log_uniform: [1.0e-5, 3.0e-4]}
      train.sampling: {choice: ["random:4", "stratified:4,alternate:4"]}
      model.pooling: {choice: [mean, cls]}
      model.dropout: {uniform: [0.0, 0.3]}
      train.batch_size: {int: [16, 64]}

A key is a ``model.`` or ``train.`` config key (``sst config`` lists them). ``log_uniform`` and
``uniform`` draw a float in [low, high] (log-uniform: evenly in the logarithm, as learning rates
are searched), ``int`` an integer in [low, high], ``choice`` one of the values as a config
override would give it. The same space drives Optuna in-process (:meth:`Dimension.suggest`)
and ClearML's HyperParameterOptimizer (:func:`sst.tracking.search.parameter`). Every problem of
the file is reported at once, one ``space.yaml:N: …`` line each.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from sst.config.loader import key_lines, load_config, read_yaml
from sst.errors import Problems, SstError

KINDS = ("log_uniform", "uniform", "int", "choice")
SECTIONS = ("model", "train")  # what a trial may vary: the encoder and its training
TOP = {"trials": 12, "seed": 0, "concurrent": 1, "space": None}  # the file's keys and defaults
EXAMPLE = "train.lr: {log_uniform: [1.0e-5, 3.0e-4]}"


@dataclass(frozen=True)
class Dimension:
    """One searched key: ``kind`` and its bounds (low, high) or its choices."""

    key: str  # section.name, as a config override writes it
    kind: str
    values: tuple[Any, ...]
    line: int

    @property
    def parameter_name(self) -> str:
        """The key as a cloned task's parameter: ``config/train/lr`` (what `sst train` connects)."""
        return "config/" + self.key.replace(".", "/")

    def suggest(self, trial: Any) -> Any:
        """The value an Optuna trial draws, named by the key (so a study's trials read as
        config overrides)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.values))
        low, high = self.values
        if self.kind == "int":
            return trial.suggest_int(self.key, low, high)
        return trial.suggest_float(self.key, low, high, log=self.kind == "log_uniform")


@dataclass(frozen=True)
class Space:
    path: Path
    trials: int
    seed: int
    concurrent: int
    dimensions: tuple[Dimension, ...]

    def overrides(self, params: dict[str, Any]) -> list[str]:
        """A trial's values as ``key=value`` config overrides, in the space's order."""
        return [f"{d.key}={params[d.key]}" for d in self.dimensions]

    def check(self, base: Path | None, extra: list[str]) -> None:
        """Each key and each bound or choice is a value the base config takes: one line per
        problem, at the space file's line, before any trial trains."""
        problems = []
        for d in self.dimensions:
            for value in d.values:
                try:
                    load_config(base, [*extra, f"{d.key}={value}"])
                except SstError as e:
                    what, why = f"{d.key} = {value!r}: {e.what}", e.fix or "see `sst config`"
                    problems.append(SstError(what, path=self.path, line=d.line, fix=why))
                    break
        if problems:
            raise Problems(problems)


def read_space(path: Path) -> Space:
    """The space file, checked for shape (every problem at once); its keys against a config by
    :meth:`Space.check`."""
    if not path.is_file():
        raise SstError("search space file not found", path=path, fix="see configs/spaces/demo.yaml")
    node, doc = read_yaml(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("space"), dict) or not doc["space"]:
        raise SstError(
            "a search space needs a `space:` mapping of config keys",
            path=path,
            line=key_lines(node).get("space", 1) if node is not None else 1,
            fix=f"write e.g.  space:\\n  {EXAMPLE}",
        )
    lines = key_lines(node) if node is not None else {}
    problems: list[SstError] = []

    def bad(key: str, what: str, fix: str) -> None:
        problems.append(SstError(what, path=path, line=lines.get(key, 1), fix=fix))

    for key in doc:
        if key not in TOP:
            bad(key, f"unknown key {key!r}", f"the keys are {', '.join(TOP)}")
    settings: dict[str, Any] = {}
    for key, default in TOP.items():
        value, least = doc.get(key, default), int(key != "seed")
        if default is not None:  # the counts; `space` is read below
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                bad(key, f"{key} must be an integer >= {least}", f"write e.g. {key}: {default}")
            settings[key] = value
    dimensions = []
    for key, spec in doc["space"].items():
        where = f"space.{key}"
        if dimension := _dimension(str(key), spec, lines.get(where, 1), partial(bad, where)):
            dimensions.append(dimension)
    if problems:
        raise Problems(problems)
    return Space(
        path, settings["trials"], settings["seed"], settings["concurrent"], tuple(dimensions)
    )


def _dimension(key: str, spec: Any, line: int, bad: Any) -> Dimension | None:
    """One ``key: {kind: values}`` entry, or None after reporting what is wrong with it."""
    section = key.partition(".")[0]
    if section not in SECTIONS or "." not in key:
        bad(f"{key}: not a model. or train. config key", f"write it dotted, e.g. {EXAMPLE}")
        return None
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in KINDS:
        bad(f"{key}: expected one of {', '.join(KINDS)}", f"write e.g. {EXAMPLE}")
        return None
    ((kind, values),) = spec.items()
    if kind == "choice":
        if not isinstance(values, list) or not values or len(set(map(str, values))) != len(values):
            bad(
                f"{key}: choice needs a list of distinct values", "write e.g. {choice: [mean, cls]}"
            )
            return None
        return Dimension(key, kind, tuple(values), line)
    try:  # YAML reads 1e-5 (no dot) as text: a number either way
        low, high = (float(v) for v in values) if isinstance(values, list) else (0.0, 0.0)
        ok = len(values) == 2 and low < high and (kind != "log_uniform" or low > 0)
        if kind == "int":  # whole numbers only: 1.5 is no bound of an integer
            ok = ok and low.is_integer() and high.is_integer()
            low, high = int(low), int(high)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        need = "0 < low < high" if kind == "log_uniform" else "low < high"
        bad(f"{key}: {kind} needs [low, high] numbers with {need}", f"write e.g. {EXAMPLE}")
        return None
    return Dimension(key, kind, (low, high), line)
