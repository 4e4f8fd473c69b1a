"""`sst bench quality`: test-set quality of the kit's recipe (and of levers on it) against the
plain HF Trainer script (:mod:`sst.bench.peer`), each over the config's seeds, as mean ± sd with
the differences outside the seed noise marked.

    sst bench quality -c configs/full.yaml train.seeds=0,1,2 --out BENCHMARKS.md
    sst bench quality -c configs/demo.yaml train.seeds=0,1,2 --arm "ema train.ema=0.998"

Arms: ``peer`` (the plain script), ``kit`` (the config as given) and each ``--arm "LABEL
key=value …"`` (the config with those overrides). Each (arm, seed) is one measurement, kept in
``benchmarks/quality/<key>.json`` (``--store``; a few kilobytes each, committed beside
BENCHMARKS.md) where the key is the sha256 of what decides the result (the kit: the run config's
hash, the encoder's hub commit and the split's content; the peer: its recipe, encoder, split and
seed): a second call, also from another clone,
measures only what is missing, so a table can grow over several sessions, and each record says
the CPU, date and commit it was measured on. A kit arm is an ordinary `sst train` run (its
folder in ``train.runs_dir``, replayable).

Noise: Welch's t-test of an arm's seeds against the peer's, per metric; a difference with
p < 0.05 is called outside the seed noise (two seeds or more on both sides).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sst.bench.harness import print_and_save
from sst.config import Config, load_config
from sst.env.cpu import cpu_summary
from sst.env.git import git_state
from sst.errors import SstError
from sst.io import MANIFEST, dumps, sha256_file

PEER, KIT = "peer", "kit"
STORE = Path("benchmarks/quality")  # beside BENCHMARKS.md, committed with it
HEADING = "Quality against the plain HF Trainer script (`sst bench quality`)"
# (label, level, metric): what the table reports of each run's test set
METRICS = (
    ("root accuracy", "root", "accuracy"),
    ("root macro-F1", "root", "macro_f1"),
    ("phrase accuracy", "phrase", "accuracy"),
)
TRAINING = "training min"
NOISE_P = 0.05


@dataclass(frozen=True)
class Arm:
    label: str
    overrides: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Arm:
        """``"LABEL key=value …"`` (``--arm``)."""
        try:
            tokens = shlex.split(text)
        except ValueError as e:
            raise SstError(f"--arm {text!r}: {e}", fix="close the quote") from None
        if not tokens or "=" in tokens[0]:
            raise SstError(
                f"--arm {text!r} does not start with a label",
                fix='write --arm "LABEL key=value ...", e.g. --arm "ema train.ema=0.998"',
            )
        label, overrides = tokens[0], tuple(tokens[1:])
        if label in (PEER, KIT):
            raise SstError(
                f"--arm {label!r}: the {PEER} and {KIT} arms are always measured",
                fix="give the arm another label",
            )
        if bad := [o for o in overrides if "=" not in o]:
            raise SstError(f"--arm {label}: {bad[0]!r} is not key=value", fix="write key=value")
        return cls(label, overrides)


def bench_quality(
    config: str | None,
    extra: list[str],
    arm_texts: list[str],
    out_md: Path | None,
    only: list[str] | None = None,
    store: Path = STORE,
) -> int:
    """Measure what is missing of every (arm, seed) — of the arms in ``only`` when given (the
    others' stored records only; ``[]``: train nothing) — then print (and save) the table."""
    from sst.bench.train import require_peer

    require_peer()
    base = load_config(config, extra)
    seeds = list(base.train.seeds) or [base.train.seed]
    arms = [Arm(PEER), Arm(KIT)] + [Arm.parse(t) for t in arm_texts]
    if len({a.label for a in arms}) < len(arms):
        raise SstError("two --arm options share a label", fix="give each arm its own label")
    if base.train.test_sentences:
        raise SstError(
            f"train.test_sentences={base.train.test_sentences}: the peer scores the whole test set",
            fix="drop train.test_sentences (compare on the whole test set)",
        )
    # every arm's config before anything trains: a bad override fails in one line first
    configs = {a.label: load_config(config, [*extra, *a.overrides]) for a in arms}
    for arm in arms[2:]:
        t = configs[arm.label].train
        if (t.split, t.test_sentences, t.seeds) != (base.train.split, 0, base.train.seeds):
            raise SstError(
                f"--arm {arm.label} changes train.split, train.test_sentences or train.seeds: "
                "every arm is scored on the same test set over the same seeds",
                fix="set those for all arms (before the --arm options), not in one",
            )
    if unknown := sorted(set(only or []) - {a.label for a in arms}):
        raise SstError(f"--only {unknown[0]}: no such arm", fix="name peer, kit or an --arm label")
    records: dict[str, list[dict[str, Any]]] = {}
    for arm in arms:
        may_train = only is None or arm.label in only
        measured = [measure(configs[arm.label], arm, s, store, may_train) for s in seeds]
        records[arm.label] = [r for r in measured if r is not None]
    print_and_save(out_md, HEADING, table(arms, records, base))
    return 0


def measurement_key(cfg: Config, arm: Arm, seed: int) -> str:
    """What decides a measurement's result, hashed: the same key, the same measurement."""
    from sst.bench.peer import RECIPE
    from sst.model.module import resolve_commit

    split = Path(cfg.train.split) / MANIFEST
    if not split.is_file():
        raise SstError(
            f"the split {cfg.train.split} is not here", fix="make it first (`sst split -c ...`)"
        )
    m = cfg.model
    commit = resolve_commit(m.name, m.revision)
    if arm.label != PEER:
        what: dict[str, Any] = {
            "config": cfg.with_train(seed=seed, seeds=()).hash(),
            "encoder_commit": commit,
            "split": sha256_file(split),
        }
    else:
        what = {
            "recipe": RECIPE,
            "model": [m.name, commit or m.revision, m.max_length],
            "threads": cfg.train.threads,
            "split": sha256_file(split),
            "seed": seed,
        }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def measure(
    cfg: Config, arm: Arm, seed: int, store: Path, may_train: bool = True
) -> dict[str, Any] | None:
    """One (arm, seed): the stored record when there is one, else trained now and stored (None:
    not stored and not to be trained)."""
    key = measurement_key(cfg, arm, seed)
    path = store / f"{key[:16]}.json"
    if path.is_file():
        record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        print(f"{arm.label} seed {seed}: measured {record['date']} ({path})")
        return record
    if not may_train:
        print(f"{arm.label} seed {seed}: not measured yet")
        return None
    print(f"{arm.label} seed {seed}: training")
    if arm.label == PEER:
        from sst.bench.peer import RECIPE, train_peer

        result = train_peer(cfg, seed)
        record = {"test": result["test"], "train_seconds": result["train_seconds"]}
        record["recipe"] = RECIPE
    else:
        from sst.verbs.train import train

        run = train(cfg.with_train(seed=seed, seeds=()))
        record = {
            "test": {level: run.metrics["test"][level] for level in ("root", "phrase")},
            "train_seconds": fit_seconds(run.run_dir),
            "run": str(run.run_dir),
        }
    state = git_state()
    record |= {
        "arm": arm.label,
        "key": key,
        "overrides": list(arm.overrides),
        "seed": seed,
        "cpu": cpu_summary(),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "commit": state.commit if state else None,
    }
    store.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(dumps(record), encoding="utf-8")
    tmp.replace(path)  # whole or absent: an interrupted measurement is measured again
    return record


def fit_seconds(run_dir: Path) -> float:
    """A kit run's training time: from its first logged step (the 10th: Lightning logs every
    10) to its last validation, by TensorBoard wall times (the test is not training)."""
    from sst.run.folder import TENSORBOARD
    from sst.viz.pictures import scalar_events

    times = [
        wall
        for tag, points in scalar_events(run_dir / TENSORBOARD).items()
        if not tag.startswith("test/")
        for _, (_, wall) in points
    ]
    return max(times) - min(times) if times else float("nan")


def values(records: list[dict[str, Any]], what: str) -> list[float]:
    """One number per seed: a metric's label from :data:`METRICS`, or :data:`TRAINING`."""
    if what == TRAINING:
        return [r["train_seconds"] / 60 for r in records]
    _, level, key = next(m for m in METRICS if m[0] == what)
    return [float(r["test"][level][key]) for r in records]


def welch_p(a: list[float], b: list[float]) -> float | None:
    """Welch's t-test p-value of two samples (None: fewer than two values on a side, or no
    spread at all)."""
    import warnings

    from scipy.stats import ttest_ind

    if len(a) < 2 or len(b) < 2:
        return None
    with warnings.catch_warnings():  # nearly equal samples: scipy warns, the p-value says it
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(ttest_ind(a, b, equal_var=False).pvalue)
    return None if p != p else p  # NaN: both samples constant


def _mean_sd(xs: list[float], digits: int) -> str:
    from sst.model.metrics import mean_sd

    if not xs:
        return "—"
    mean, sd = mean_sd(xs)
    return f"{mean:.{digits}f} ± {sd:.{digits}f}" if len(xs) > 1 else f"{mean:.{digits}f}"


def _delta(a: list[float], b: list[float], digits: int) -> str:
    """``a`` against ``b``: the difference of means, its p-value, bold when outside the noise."""
    if not (a and b):
        return "—"
    diff = sum(a) / len(a) - sum(b) / len(b)
    p = welch_p(a, b)
    text = f"{diff:+.{digits}f}" + (f" (p={p:.2f})" if p is not None else "")
    return f"**{text}**" if p is not None and p < NOISE_P else text


def table(arms: list[Arm], records: dict[str, list[dict[str, Any]]], base: Config) -> list[str]:
    """The Markdown section: one row per arm (mean ± sd over its seeds) and its difference from
    the peer per metric."""
    columns = [m[0] for m in METRICS] + [TRAINING]
    lines = [
        f"config {base.name}, model {base.model.name}; mean ± sd over each arm's seeds; Δ: "
        "against the peer, with Welch's t-test p-value, **bold** "
        f"when p < {NOISE_P} (outside the seed noise). Training: the peer's `Trainer.train`, the "
        "kit's fit from its 10th step to its last validation (its validations are part of its "
        "recipe); Δ training only between records of one CPU model.",
        "",
        "| arm | overrides | seeds | "
        + " | ".join(columns)
        + " | "
        + " | ".join(f"Δ {c}" for c in columns)
        + " |",
        "| --- | --- | --- |" + " ---: |" * (2 * len(columns)),
    ]
    peer = records[PEER]
    for arm in arms:
        own = records[arm.label]
        overrides = " ".join(f"`{o}`" for o in arm.overrides) or (
            "the plain HF Trainer script" if arm.label == PEER else "the config as given"
        )
        seeds = ", ".join(str(r["seed"]) for r in own) or "not measured yet"
        cells = [_mean_sd(values(own, c), 1 if c == TRAINING else 3) for c in columns]
        # times compare only on one CPU model (a table may hold records of several sessions)
        same_cpu = len({r["cpu"] for r in [*own, *peer]}) == 1
        deltas = [
            "—"
            if arm.label == PEER or (c == TRAINING and not same_cpu)
            else _delta(values(own, c), values(peer, c), 1 if c == TRAINING else 3)
            for c in columns
        ]
        lines.append(
            f"| {arm.label} | {overrides} | {seeds} | " + " | ".join(cells + deltas) + " |"
        )
    where = sorted(
        {
            f"{r['cpu']} ({r['date']}, {(r['commit'] or 'no commit')[:7]})"
            for rs in records.values()
            for r in rs
        }
    )
    lines += ["", "measured on: " + "; ".join(where)]
    return lines
