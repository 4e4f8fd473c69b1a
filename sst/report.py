"""`sst report`: a leaderboard of run folders that chooses by more than accuracy.

    sst report runs/ --by macro_f1 --out reports/sweep-<id>/
    sst report runs/ --by balanced              # the original project's preference (below)
    sst report runs/a runs/b --by phrase.qwk    # any metric, at root (default) or phrase level

Rows: every completed run (``metrics.json``), every ensemble, and every failed line of a sweep
(``<runs>/sweeps/*/sweep.json``) with its error. Columns: accuracy, macro/micro F1, min-class
precision, within-one, MAE, QWK and polarity-flip rate at root and phrase level on the test set.
Outputs ``leaderboard.md``, ``leaderboard.html``, ``leaderboard.json`` and ``confusion_grid.png``
(row-normalised root confusion matrices, one panel per run, in rank order); the table also goes
to ClearML (offline without a server).

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

import html
import json
import math
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from sst.errors import SstError

METRICS = (
    "accuracy",
    "macro_f1",
    "micro_f1",
    "min_class_precision",
    "within_one",
    "mae",
    "qwk",
    "polarity_flip_rate",
)
LOWER_IS_BETTER = {"mae", "polarity_flip_rate"}
LEVELS = ("root", "phrase")
BALANCED_MIN_PRECISION = 0.5
BALANCED_NEIGHBOUR_SHARE = 0.5
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

    def value(self, metric: str, level: str) -> float | None:
        return self.metrics.get(level, {}).get(metric)


def _row_from_run(folder: Path, stage: str = "test") -> Row:
    metrics = json.loads((folder / "metrics.json").read_text())
    fp_file = folder / "fingerprint.json"
    fp = json.loads(fp_file.read_text()) if fp_file.is_file() else {}
    model = fp.get("model") or "?"
    if stage not in metrics:
        raise SstError(
            f"metrics.json has no {stage} scores",
            path=folder / "metrics.json",
            fix="finish the run (sst train --resume)",
        )
    members = fp.get("members")
    return _scored(
        folder.name,
        model if not members else f"ensemble of {len(members)}",
        "ensemble" if members else "completed",
        str(folder),
        metrics[stage],
        members=fp.get("member_models") if members else None,
    )


def _scored(
    name: str,
    model: str,
    status: str,
    path: str,
    scores: dict[str, Any],
    members: list[str] | None = None,
) -> Row:
    """A row from one set's scores (``{level: {metric: value, ...}}``)."""
    row = Row(
        name=name,
        model=model,
        status=status,
        path=path,
        metrics={lv: {m: float(scores[lv][m]) for m in METRICS} for lv in LEVELS if lv in scores},
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


def from_project(project: str, tag: str) -> list[Row]:
    """Online: the training tasks of ``project`` tagged ``tag`` (a sweep id), scored from the
    test metrics each reported as single values (no confusion matrices: the grid skips them)."""
    from sst.tracking import project_results

    rows = []
    for task in project_results(project, tag):
        values = task["values"]
        scores = {
            lv: {
                m: values.get(f"test/{lv}/{m if m != 'micro_f1' else 'accuracy'}") for m in METRICS
            }
            for lv in LEVELS
        }
        if task["status"] not in ("completed", "closed", "published") or any(
            v is None for lv in scores.values() for v in lv.values()
        ):
            rows.append(
                Row(
                    name=task["name"],
                    model=task["model"],
                    status="failed",
                    path=task["id"],
                    error=f"task {task['status']}",
                    contamination=contamination(task["model"]),
                )
            )
            continue
        rows.append(_scored(task["name"], task["model"], "completed", task["id"], scores))
    if not rows:
        raise SstError(
            f"no training tasks tagged {tag!r} in project {project!r}",
            fix="check the sweep id (sst sweep prints it)",
        )
    return rows


def _failed(manifest: Path) -> list[Row]:
    return [
        Row(
            name=o["name"],
            model=o["model"],
            status="failed",
            path=str(manifest),
            error=o.get("error"),
            contamination=contamination(o["model"]),
        )
        for o in json.loads(manifest.read_text()).get("outcomes", [])
        if o["status"] == "failed"
    ]


def sweep_rows(sweep_dir: Path) -> list[Row]:
    """The rows of one sweep: its completed (or skipped, already completed) runs and failures."""
    manifest = sweep_dir / "sweep.json"
    outcomes = json.loads(manifest.read_text()).get("outcomes", [])
    runs = [_row_from_run(Path(o["run_dir"])) for o in outcomes if o.get("run_dir")]
    return runs + _failed(manifest)


def collect(paths: list[Path]) -> list[Row]:
    """Rows for run folders, folders of runs, and the failed lines of their sweeps."""
    rows: list[Row] = []
    for path in paths:
        if not path.exists():
            raise SstError("not found", path=path, fix="pass runs/ or runs/<id>")
        if (path / "metrics.json").is_file():
            rows.append(_row_from_run(path))
            continue
        rows += [
            _row_from_run(p)
            for p in sorted(path.iterdir())
            if (p / "metrics.json").is_file() and not p.name.endswith(".partial")
        ]
        for manifest in sorted(path.glob("sweeps/*/sweep.json")):
            rows += _failed(manifest)
    if not rows:
        raise SstError(
            "no runs found",
            path=paths[0] if paths else None,
            fix="train first (sst train / sst sweep) or pass runs/<id>",
        )
    return rows


def parse_by(by: str) -> tuple[str, str]:
    """``macro_f1`` → (macro_f1, root); ``phrase.qwk`` → (qwk, phrase); ``balanced``."""
    level, _, metric = by.rpartition(".")
    level = level or "root"
    if (metric != "balanced" and metric not in METRICS) or level not in LEVELS:
        raise SstError(
            f"--by {by!r} is not a metric",
            fix=f"use balanced or [root.|phrase.]{{{','.join(METRICS)}}}",
        )
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


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.3f}"


def table(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    header = ["#", "run", "model", "status", "balanced", "contamination"]
    header += [f"{lv} {m}" for lv in LEVELS for m in METRICS]
    body = []
    for i, r in enumerate(rows, start=1):
        balanced = ("yes" if r.qualifies else "no") if r.status != "failed" else ""
        cells = [
            str(i) if r.status != "failed" else "-",
            r.name,
            r.model,
            r.status if not r.error else f"failed: {r.error}",
            balanced,
            f"RISK: {r.contamination}" if r.contamination else "",
        ]
        cells += [_fmt(r.value(m, lv)) for lv in LEVELS for m in METRICS]
        body.append(cells)
    return header, body


def markdown(rows: list[Row], by: str) -> str:
    header, body = table(rows)
    esc = [[c.replace("|", "\\|") for c in line] for line in body]
    lines = [
        f"# Leaderboard (ranked by {by}, test set)",
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in esc]
    lines += ["", BALANCED_NOTE, "", "![confusion matrices](confusion_grid.png)", ""]
    return "\n".join(lines)


BALANCED_NOTE = (
    f"balanced = every class >= {BALANCED_MIN_PRECISION:.0%} precision and >= "
    f"{BALANCED_NEIGHBOUR_SHARE:.0%} of errors on a neighbouring class (root level); "
    "contamination RISK = the checkpoint was fine-tuned on SST/GLUE."
)


def render_html(rows: list[Row], by: str) -> str:
    header, body = table(rows)
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    trs = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>" for cells in body
    )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>sst leaderboard</title>'
        "<style>table{border-collapse:collapse;font:13px sans-serif}td,th{border:1px solid #ccc;"
        "padding:2px 6px;text-align:right}td:nth-child(-n+6){text-align:left}</style></head>"
        f"<body><h1>Leaderboard (ranked by {html.escape(by)}, test set)</h1>\n"
        f"<table>\n<thead><tr>{th}</tr></thead>\n<tbody>\n{trs}\n</tbody>\n</table>\n"
        f"<p>{html.escape(BALANCED_NOTE)}</p>\n"
        '<img src="confusion_grid.png" alt="confusion matrices">\n</body></html>\n'
    )


def confusion_grid(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sst.figures import draw_confusion

    shown = [r for r in rows if r.confusion is not None]
    cols = min(4, max(1, len(shown)))
    n_rows = max(1, math.ceil(len(shown) / cols))
    fig, axes = plt.subplots(n_rows, cols, figsize=(3.4 * cols, 3.4 * n_rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, r) in enumerate(zip(axes.flat, shown, strict=False), start=1):
        ax.axis("on")
        draw_confusion(ax, r.confusion, f"#{i} {r.name}"[:40], counts_too=False)
    fig.suptitle("test root confusion, row-normalised (rows: truth)")
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)


def write_report(
    rows: list[Row], by: str, out_dir: Path, track: bool = True, project: str = "sst"
) -> list[Path]:
    """The four report files, written into a temp folder and moved in place together."""
    import os
    import shutil
    import tempfile

    ranked = rank(rows, by)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        (tmp / "leaderboard.md").write_text(markdown(ranked, by))
        (tmp / "leaderboard.html").write_text(render_html(ranked, by))
        (tmp / "leaderboard.json").write_text(
            json.dumps({"by": by, "rows": [asdict(r) for r in ranked]}, indent=1) + "\n"
        )
        confusion_grid(ranked, tmp / "confusion_grid.png")
        out_dir.mkdir(exist_ok=True)
        for f in sorted(tmp.iterdir()):
            os.replace(f, out_dir / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if track:
        _track(ranked, by, out_dir, project)
    return [
        out_dir / n
        for n in ("leaderboard.md", "leaderboard.html", "leaderboard.json", "confusion_grid.png")
    ]


def _track(rows: list[Row], by: str, out_dir: Path, project: str) -> None:
    import pandas as pd

    from sst.tracking import start_task

    header, body = table(rows)
    tracker = start_task(project, f"report {out_dir.name}", "qc", {"by": by}, quiet=True)
    try:
        tracker.report_table("leaderboard", by, pd.DataFrame(body, columns=header).set_index("#"))
    finally:
        tracker.close()


def print_top(rows: list[Row], by: str, out: TextIO | None = None, n: int = 10) -> None:
    out = out or sys.stdout
    metric, level = parse_by(by)
    for i, r in enumerate(rank(rows, by)[:n], start=1):
        if r.status == "failed":
            print(f"  -  {r.name:44} FAILED {r.error}", file=out)
            continue
        if metric == "balanced":
            shown = (
                f"{'qualifies' if r.qualifies else 'does not qualify'} (min-class precision "
                f"{_fmt(r.value('min_class_precision', 'root'))}, errors on a neighbour "
                f"{_fmt(r.neighbour_share)})"
            )
        else:
            shown = f"{by} {_fmt(r.value(metric, level))}"
        risk = "  [contamination risk]" if r.contamination else ""
        print(
            f"{i:3}  {r.name:44} {shown}  root macro-F1 {_fmt(r.value('macro_f1', 'root'))}{risk}",
            file=out,
        )
