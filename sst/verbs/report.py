"""`sst report`: a leaderboard of run folders that chooses by more than accuracy.

    sst report runs/ --by macro_f1 --out reports/sweep-<id>/
    sst report runs/ --by balanced              # the default (see sst.run.ranking)
    sst report runs/a runs/b --by phrase.qwk    # any metric, at root (default) or phrase level
    sst report --tag <sweep-id>                 # online: a sweep's ClearML tasks

Rows: every completed run (``metrics.json``), every ensemble, and every failed line of a sweep
(``<runs>/sweeps/*/sweep.json``) with its error; ranked by :mod:`sst.run.ranking`. Columns: the
headline metrics (:data:`sst.model.metrics.HEADLINE`) at root and phrase level on the test set.
Outputs ``leaderboard.md``, ``leaderboard.html``, ``leaderboard.json`` and ``confusion_grid.png``
(row-normalised root confusion matrices, one panel per run, in rank order); the table also goes
to ClearML (offline without a server).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import TextIO

import pandas as pd

from sst.errors import SstError
from sst.io import private_sibling
from sst.model.metrics import HEADLINE, LEVELS
from sst.run import folder as runs
from sst.run.ranking import (
    BALANCED_RULE,
    Row,
    failed_row,
    parse_by,
    rank,
    repeats,
    run_row,
    scored_row,
    seed_groups,
    within_noise,
)
from sst.tracking import agent, server
from sst.tracking.tracker import tracked
from sst.viz import board, pictures
from sst.viz.figures import confusion_grid

NOTE = f"{BALANCED_RULE}; contamination RISK = the checkpoint was fine-tuned on SST/GLUE."
FILES = ("leaderboard.md", "leaderboard.html", "leaderboard.json", "confusion_grid.png")
TOP_CURVES = 3  # learning curves embedded in the page
CURVES = "run-pictures"  # their copies, and the pictures drawn for runs made before pictures


def from_project(project: str, tag: str) -> list[Row]:
    """Online: the training tasks of ``project`` tagged ``tag`` (a sweep id), scored from the
    test metrics each reported as single values (no confusion matrices: the grid skips them)."""
    rows = []
    for task in server.project_results(project, tag):
        values = task["values"]
        # micro-F1 equals accuracy (one label per phrase); tasks made before it was logged lack it
        scores = {
            lv: {
                m: values.get(f"test/{lv}/{m}", values.get(f"test/{lv}/accuracy")) for m in HEADLINE
            }
            for lv in LEVELS
        }
        if task["status"] not in ("completed", "closed", "published") or any(
            v is None for lv in scores.values() for v in lv.values()
        ):
            tail = " / ".join(task["log"][-3:])  # the end of its log: what went wrong
            why = f"task {task['status']}" + (f": {tail}" if tail else "")
            rows.append(failed_row(task["name"], task["model"], task["link"], why))
            continue
        rows.append(scored_row(task["name"], task["model"], "completed", task["link"], scores))
    if not rows:
        raise SstError(
            f"no training tasks tagged {tag!r} in project {project!r}",
            fix="check the sweep id (sst sweep prints it)",
        )
    return rows


def _failed(record: Path) -> list[Row]:
    return [
        failed_row(o["name"], o["model"], str(record), o.get("error"))
        for o in json.loads(record.read_text()).get("outcomes", [])
        if o["status"] == "failed"
    ]


def sweep_rows(sweep_dir: Path) -> list[Row]:
    """The rows of one sweep: its completed (or skipped, already completed) runs and failures."""
    record = sweep_dir / runs.SWEEP_RECORD
    outcomes = json.loads(record.read_text()).get("outcomes", [])
    done = [run_row(runs.Run(Path(o["run_dir"]))) for o in outcomes if o.get("run_dir")]
    return done + _failed(record)


def collect(paths: Iterable[Path]) -> list[Row]:
    """Rows for run folders, folders of runs, and the failed lines of their sweeps."""
    rows: list[Row] = []
    paths = list(paths)
    for path in paths:
        if not path.exists():
            raise SstError("not found", path=path, fix="pass runs/ or runs/<id>")
        if (path / runs.METRICS).is_file():
            rows.append(run_row(runs.Run(path)))
            continue
        rows += [run_row(run) for run in runs.finished_runs(path)]
        for record in runs.sweep_records(path):
            rows += _failed(record)
    if not rows:
        raise SstError(
            "no runs found",
            path=paths[0] if paths else None,
            fix="train first (sst train / sst sweep) or pass runs/<id>",
        )
    return rows


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.3f}"


def leaderboard_cells(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    """The header and the cells of every row, as text (shared by Markdown, HTML and ClearML)."""
    header = ["#", "run", "model", "status", "balanced", "contamination"]
    header += [f"{lv} {m}" for lv in LEVELS for m in HEADLINE]
    header += ["root accuracy 95% CI", "seed"]
    body = []
    again = repeats(rows)  # a replay: marked as one, and left out of the seed groups
    for i, r in enumerate(rows, start=1):
        status = f"failed: {r.error}" if r.error else r.status
        if id(r) in again:
            status = str(again[id(r)])
        balanced = ("yes" if r.qualifies else "no") if r.status != "failed" else ""
        cells = [
            str(i) if r.status != "failed" else "-",
            r.name,
            r.model,
            status,
            balanced,
            f"RISK: {r.contamination}" if r.contamination else "",
        ]
        cells += [_fmt(r.value(m, lv)) for lv in LEVELS for m in HEADLINE]
        ci = r.root_accuracy_ci
        cells += [f"{ci[0]:.3f}–{ci[1]:.3f}" if ci else "", "" if r.seed is None else str(r.seed)]
        body.append(cells)
    return header, body


def seed_lines(rows: list[Row]) -> list[str]:
    """Markdown: the seed groups (mean ± sd over runs differing only by seed), each marked when
    its difference from the next is within the seed noise."""
    groups = seed_groups(rows)
    if not groups:
        return []
    lines = [
        "## Seed groups (test root, mean ± sample sd)",
        "",
        "| config | model | n | seeds | accuracy | macro-F1 | vs next |",
        "| --- | --- | ---: | --- | --- | --- | --- |",
    ]
    for i, g in enumerate(groups):
        (acc, acc_sd), (f1, f1_sd) = g.stats(), g.stats("macro_f1")
        nxt = groups[i + 1] if i + 1 < len(groups) else None
        noise = "" if nxt is None else ("within seed noise" if within_noise(g, nxt) else "ahead")
        seeds = ",".join(str(r.seed) for r in g.rows)
        lines.append(
            f"| {g.key} | {g.rows[0].model} | {len(g.rows)} | {seeds} | {acc:.4f} ± {acc_sd:.4f} "
            f"| {f1:.4f} ± {f1_sd:.4f} | {noise} |"
        )
    return [*lines, ""]


def markdown(rows: list[Row], by: str) -> str:
    header, body = leaderboard_cells(rows)
    esc = [[c.replace("|", "\\|") for c in line] for line in body]
    lines = [
        f"# Leaderboard (ranked by {by}, test set)",
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in esc]
    lines += ["", NOTE, "", *seed_lines(rows), "![confusion matrices](confusion_grid.png)", ""]
    return "\n".join(lines)


def render_html(rows: list[Row], by: str, out_dir: Path, tmp: Path) -> str:
    """The browsable page (:mod:`sst.viz.board`); the top rows' learning curves are copied into
    ``tmp/run-pictures/`` (all its pictures drawn there first for a run made before them)."""
    header, body = leaderboard_cells(rows)
    configs = {}
    for r in rows:
        if r.status == "completed" and (Path(r.path) / runs.CONFIG).is_file():
            configs[r.name] = runs.Run(Path(r.path)).config.to_dict()
    curves = {}
    for r in [r for r in rows if r.name in configs][:TOP_CURVES]:
        run = runs.Run(Path(r.path))
        curve = run.path / runs.PICTURES / pictures.CURVE
        if not curve.is_file():
            curve = pictures.draw(run, tmp / CURVES / r.name).get(pictures.CURVE, curve)
        if curve.is_file():
            (tmp / CURVES).mkdir(exist_ok=True)
            shutil.copyfile(curve, tmp / CURVES / f"{r.name}.png")
            curves[r.name] = f"{CURVES}/{r.name}.png"
    title = f"Leaderboard (ranked by {by}, test set)"
    changes = board.overrides(configs)
    return board.render(
        rows, header, body, title=title, note=NOTE, out_dir=out_dir, changes=changes, curves=curves
    )


def write_report(
    rows: list[Row], by: str, out_dir: Path, track: bool = True, project: str = "sst"
) -> list[Path]:
    """The four report files, written into a temp folder and moved in place together."""
    ranked = rank(rows, by)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = private_sibling(out_dir, "tmp")
    try:
        md, page, table, grid = (tmp / name for name in FILES)
        md.write_text(markdown(ranked, by))
        page.write_text(render_html(ranked, by, out_dir.resolve(), tmp))
        table.write_text(
            json.dumps({"by": by, "rows": [asdict(r) for r in ranked]}, indent=1) + "\n"
        )
        shown = [(r.name, r.confusion) for r in ranked if r.confusion is not None]
        confusion_grid([(f"#{i} {name}", cm) for i, (name, cm) in enumerate(shown, 1)], grid)
        out_dir.mkdir(exist_ok=True)
        shutil.rmtree(out_dir / CURVES, ignore_errors=True)  # the previous report's
        for f in sorted(tmp.iterdir()):
            os.replace(f, out_dir / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    args = ["report", "--by", by, "--out", agent.repo_relative(out_dir)]
    with tracked(
        project, f"report {out_dir.name}", "qc", {"by": by}, args=args, enabled=track
    ) as t:
        if t is not None:
            header, body = leaderboard_cells(ranked)
            t.report_table("leaderboard", by, pd.DataFrame(body, columns=header).set_index("#"))
    return [out_dir / name for name in FILES]


def publish(
    rows: list[Row], by: str, out_dir: Path, track: bool = True, project: str = "sst"
) -> None:
    """Write the report, then print the best rows and where the files are."""
    paths = write_report(rows, by, out_dir, track=track, project=project)
    print_top(rows, by)
    print("\n".join(str(p) for p in paths))


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
