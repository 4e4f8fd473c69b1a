"""Rank runs by more than accuracy: rows, the balanced rule, contamination risk, ``--by``.

    sst report runs/ --by balanced              # the original project's preference (below)
    sst report runs/ --by phrase.qwk            # any headline metric, at root or phrase level

**balanced** — a run *qualifies* when every class reaches at least 50 % precision
(``min_class_precision >= 0.5``) and most of its errors land on a neighbouring class
(``neighbour_error_share >= 0.5``, where the share is ``(within_one - accuracy) / (1 -
accuracy)``). Qualifying runs rank first, by macro-F1; the rest follow by min-class precision.
It encodes the original write-up's choice: a model that predicts every class with some
confidence and "errs in blocks", rather than the one with the best accuracy from predicting
"neutral".

**contamination risk** — a checkpoint already fine-tuned on SST-2/SST-5/GLUE saw the SST training
sentences (and SST-2's test sentences overlap SST-5's). Flagged by the explicit list below, by
name (``sst2``, ``sst-5``, ``glue``, ``sentiment``…) and, for a local folder, by its
``config.json`` ``finetuning_task``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sst.errors import SstError
from sst.model.metrics import HEADLINE, LEVELS, LOWER_IS_BETTER, bootstrap_interval, mean_sd
from sst.run.folder import CONFIG, METRICS, PREDICTIONS, REPLAYS, Run

BALANCED_MIN_PRECISION = 0.5
BALANCED_NEIGHBOUR_SHARE = 0.5
BALANCED_RULE = (
    f"balanced = every class >= {BALANCED_MIN_PRECISION:.0%} precision and >= "
    f"{BALANCED_NEIGHBOUR_SHARE:.0%} of errors on a neighbouring class (root level)"
)
BY_HELP = f"balanced or [{'.|'.join(LEVELS)}.]{{{','.join(HEADLINE)}}}"
# Checkpoints known to be fine-tuned on SST or GLUE (name heuristics catch most others).
KNOWN_CONTAMINATED = {
    "echarlaix/bert-base-uncased-sst2-acc91.1-d37-hybrid",
    "distilbert/distilbert-base-uncased-finetuned-sst-2-english",
    "distilbert-base-uncased-finetuned-sst-2-english",
    "textattack/bert-base-uncased-SST-2",
    "textattack/roberta-base-SST-2",
    "textattack/albert-base-v2-SST-2",
    "textattack/distilbert-base-uncased-SST-2",
    "textattack/xlnet-base-cased-SST-2",
    "howey/electra-base-sst2",
    "gchhablani/bert-base-cased-finetuned-sst2",
    "siebert/sentiment-roberta-large-english",
    "cardiffnlp/twitter-roberta-base-sentiment",
    "nlptown/bert-base-multilingual-uncased-sentiment",
}
CONTAMINATION_NAME = re.compile(r"(?<![a-z])sst(?:[-_]?[25])?(?![a-z])|glue|sentiment|mnli", re.I)


def contamination(model: str) -> str | None:
    """Why ``model`` may have seen SST sentences, or None."""
    if model in KNOWN_CONTAMINATED:
        return "listed as fine-tuned on SST/GLUE"
    local = Path(model).expanduser()
    config = local / "config.json"
    if config.is_file():
        try:
            task = json.loads(config.read_text()).get("finetuning_task")
        except (ValueError, AttributeError):
            task = None  # unreadable: the run itself reports that
        if task and CONTAMINATION_NAME.search(str(task)):
            return f"config.json finetuning_task={task}"
    m = CONTAMINATION_NAME.search(local.name if local.exists() else model)
    return f"name contains {m.group(0)!r}" if m else None


def neighbour_error_share(summary: dict[str, Any]) -> float:
    """Share of the errors that land on an adjacent class (1.0 when there are no errors)."""
    errors = 1.0 - summary["accuracy"]
    return 1.0 if errors <= 0 else (summary["within_one"] - summary["accuracy"]) / errors


@dataclass
class Row:
    name: str
    model: str
    status: str  # completed | ensemble | failed
    path: str
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # level → metric → value
    confusion: list[list[int]] | None = None  # test root
    contamination: str | None = None
    error: str | None = None
    qualifies: bool = False
    neighbour_share: float | None = None
    seed_group: str | None = None  # the config without its seed: runs that differ only by seed
    seed: int | None = None
    config_sha256: str | None = None  # the whole config, seed included: equal means a repeat
    weights_sha256: str | None = None
    root_accuracy_ci: tuple[float, float] | None = None  # bootstrap 95 % (from predictions.tsv)

    def value(self, metric: str, level: str) -> float | None:
        return self.metrics.get(level, {}).get(metric)


def scored_row(
    name: str,
    model: str,
    status: str,
    path: str,
    scores: dict[str, Any],
    members: list[str] | None = None,
) -> Row:
    """A row from one set's scores (``{level: {metric: value, ...}}``); an ensemble's
    contamination is that of its ``members``."""
    row = Row(
        name=name,
        model=model,
        status=status,
        path=path,
        metrics={lv: {m: float(scores[lv][m]) for m in HEADLINE} for lv in LEVELS if lv in scores},
        confusion=scores.get("root", {}).get("confusion_matrix"),
    )
    risky = [f"{m}: {r}" if members else r for m in members or [model] if (r := contamination(m))]
    row.contamination = "; ".join(risky) or None
    root = scores.get("root")
    if root:
        row.neighbour_share = neighbour_error_share(root)
        row.qualifies = (
            root["min_class_precision"] >= BALANCED_MIN_PRECISION
            and row.neighbour_share >= BALANCED_NEIGHBOUR_SHARE
        )
    return row


def run_row(run: Run, stage: str = "test") -> Row:
    """A run or ensemble folder's row, scored on ``stage`` (test, or val to choose members);
    its files are verified against its fingerprint first."""
    run.verify(reads=(METRICS,))
    if stage not in run.metrics:
        raise SstError(
            f"{METRICS} has no {stage} scores",
            path=run.path / METRICS,
            fix="finish the run (sst train --resume)",
        )
    members = run.members
    row = scored_row(
        run.name,
        f"ensemble of {len(members)}" if members else run.model or "?",
        "ensemble" if members else "completed",
        str(run.path),
        run.metrics[stage],
        members=run.member_models if members else None,
    )
    if stage == "test" and (run.path / PREDICTIONS).is_file():
        roots = run.predictions[run.predictions["is_root"] == 1]
        row.root_accuracy_ci = bootstrap_interval((roots["pred"] == roots["label"]).to_numpy())
    if (run.path / CONFIG).is_file():
        cfg = run.config
        row.seed, row.seed_group = cfg.train.seed, cfg.without_seed().hash()[:12]
        row.config_sha256 = cfg.with_train(runs_dir="").hash()  # where it was written aside
    row.weights_sha256 = run.weights_sha256
    return row


@dataclass(frozen=True)
class Repeat:
    """A run of a config (seed included) that another row already ran: a replay (trained by
    `sst replay`, into ``replays/``), a copy of the same run folder, or another run of it. It
    reproduces a sample; it is not another one."""

    original: str  # that row's name
    kind: str  # replay | copy | repeat
    identical: bool  # the same recorded weights sha256

    def __str__(self) -> str:
        same = "BIT-IDENTICAL " if self.identical else ""
        other = "" if self.identical else " (other weights)"
        return f"{same}{self.kind} of {self.original}{other}"


def repeats(rows: list[Row]) -> dict[int, Repeat]:
    """``id(row)`` → what it repeats, for every completed row whose whole config (seed included,
    the folder it was written to aside) another row has. The original is one outside
    ``replays/``, then the oldest: run names start with their creation time."""
    by_config: dict[str, list[Row]] = {}
    for r in rows:
        if r.status == "completed" and r.config_sha256:
            by_config.setdefault(r.config_sha256, []).append(r)
    found = {}
    for same in by_config.values():
        first, *rest = sorted(same, key=lambda r: (REPLAYS in Path(r.path).parts, r.name, r.path))
        for r in rest:  # (the same folder listed twice is a copy of itself: one sample)
            kind = "copy" if r.name == first.name else "repeat"
            kind = "replay" if REPLAYS in Path(r.path).parts else kind
            identical = r.weights_sha256 is not None and r.weights_sha256 == first.weights_sha256
            found[id(r)] = Repeat(first.name, kind, identical)
    return found


@dataclass
class SeedGroup:
    """Runs whose configs differ only by ``train.seed``: the spread a seed alone makes."""

    key: str
    rows: list[Row]

    def stats(self, metric: str = "accuracy", level: str = "root") -> tuple[float, float]:
        """Mean and sample standard deviation (0 for one run)."""
        return mean_sd([v for r in self.rows if (v := r.value(metric, level)) is not None])


def seed_groups(rows: list[Row]) -> list[SeedGroup]:
    """Groups of two or more runs that differ only by seed, best mean root accuracy first; a
    repeat of a config (a replay) is the same sample, never counted twice."""
    groups: dict[str, list[Row]] = {}
    again = repeats(rows)
    for r in rows:
        if r.seed_group and r.status == "completed" and id(r) not in again:
            groups.setdefault(r.seed_group, []).append(r)
    found = [SeedGroup(k, sorted(v, key=lambda r: r.seed or 0)) for k, v in groups.items()]
    return sorted((g for g in found if len(g.rows) > 1), key=lambda g: -g.stats()[0])


def within_noise(a: SeedGroup, b: SeedGroup) -> bool:
    """Whether two groups' mean root accuracies differ by less than either's seed spread."""
    (ma, sa), (mb, sb) = a.stats(), b.stats()
    return abs(ma - mb) < max(sa, sb)


def failed_row(name: str, model: str, path: str, error: str | None) -> Row:
    return Row(name, model, "failed", path, error=error, contamination=contamination(model))


def parse_by(by: str) -> tuple[str, str]:
    """``macro_f1`` → (macro_f1, root); ``phrase.qwk`` → (qwk, phrase); ``balanced``."""
    level, _, metric = by.rpartition(".")
    level = level or "root"
    if (metric != "balanced" and metric not in HEADLINE) or level not in LEVELS:
        raise SstError(f"--by {by!r} is not a metric", fix=f"use {BY_HELP}")
    return metric, level


def rank(rows: list[Row], by: str) -> list[Row]:
    """Best first; failed rows last, in the order given."""
    metric, level = parse_by(by)
    scored = [r for r in rows if r.status != "failed"]
    failed = [r for r in rows if r.status == "failed"]

    def key(r: Row) -> tuple[float, ...]:
        if metric == "balanced":
            return (
                0.0 if r.qualifies else 1.0,
                -(r.value("macro_f1", "root") or 0.0)
                if r.qualifies
                else -(r.value("min_class_precision", "root") or 0.0),
                -(r.value("macro_f1", "root") or 0.0),
            )
        v = r.value(metric, level)
        if v is None or math.isnan(v):
            return (1.0, 0.0)
        return (0.0, v if metric in LOWER_IS_BETTER else -v)

    return sorted(scored, key=key) + failed
