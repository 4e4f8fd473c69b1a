"""``leaderboard.html``: the page people browse. Every run links to its folder (a task of an online
report to its ClearML page), shows the config keys in which the runs differ (its overrides
against the others), the columns sort on a click (or from the address:
``leaderboard.html#sort=<column>`` / ``#sort=-<column>`` for descending), seed groups show mean
± sd, and the top rows' learning curves and the confusion grid are embedded. One self-contained
file: no script or style is fetched.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

from sst.config import flatten
from sst.run.ranking import Row, seed_groups, within_noise

SORT_SCRIPT = """
function sortBy(col, desc) {
  const body = document.querySelector("#board tbody");
  const rows = Array.from(body.rows);
  const key = r => r.cells[col].textContent.trim();
  const num = v => v !== "" && !isNaN(Number(v));
  rows.sort((a, b) => {
    const x = key(a), y = key(b);
    if (x === "" || y === "") return (x === "") - (y === "");  // blanks last either way
    const c = num(x) && num(y) ? Number(x) - Number(y) : x.localeCompare(y);
    return desc ? -c : c;
  });
  rows.forEach(r => body.appendChild(r));
  document.querySelectorAll("#board th").forEach((th, i) =>
    th.dataset.sorted = i === col ? (desc ? "desc" : "asc") : "");
}
document.querySelectorAll("#board th").forEach((th, i) => th.addEventListener("click", () =>
  sortBy(i, th.dataset.sorted === "asc")));
const m = location.hash.match(/^#sort=(-?)(\\d+)$/);
if (m) sortBy(Number(m[2]), m[1] === "-");
"""

STYLE = (
    "table{border-collapse:collapse;font:13px sans-serif}td,th{border:1px solid #ccc;"
    "padding:2px 6px;text-align:right}th{cursor:pointer;background:#f4f4f4}"
    "th[data-sorted=asc]::after{content:' ▲'}th[data-sorted=desc]::after{content:' ▼'}"
    "td.t{text-align:left}img{max-width:100%}"
)


def overrides(configs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Per run, ``key=value`` for each config key whose value differs among the runs (the seed
    and where things are written left out: the seed has its own column)."""
    flat = {name: flatten(c) for name, c in configs.items()}
    keys = sorted({k for f in flat.values() for k in f})
    ignored = ("train.seed", "train.seeds", "train.runs_dir", "name")
    varying = [
        k for k in keys if k not in ignored and len({repr(f.get(k)) for f in flat.values()}) > 1
    ]
    return {
        name: " ".join(f"{k}={f.get(k)}" for k in varying if k in f) for name, f in flat.items()
    }


def render(
    rows: list[Row],
    header: list[str],
    body: list[list[str]],
    *,
    title: str,
    note: str,
    out_dir: Path,
    changes: dict[str, str],
    curves: dict[str, str],
) -> str:
    """The page: ``header``/``body`` are the leaderboard's cells (the run column becomes a link
    to its folder, relative to ``out_dir``), ``changes`` each run's overrides, ``curves`` the
    learning-curve image (relative path) of the rows to embed."""
    run_col = header.index("run")
    th = "".join(
        f"<th>{html.escape(h)}</th>"
        for h in [*header[: run_col + 1], "overrides", *header[run_col + 1 :]]
    )
    trs = []
    for row, cells in zip(rows, body, strict=True):
        tds = []
        for i, cell in enumerate(cells):
            text = html.escape(cell)
            if i == run_col and (href := _href(row.path, out_dir)):
                text = f'<a class="run" href="{html.escape(href)}">{text}</a>'
            left = ' class="t"' if i <= run_col + 4 else ""
            tds.append(f"<td{left}>{text}</td>")
            if i == run_col:
                tds.append(f'<td class="t">{html.escape(changes.get(row.name, ""))}</td>')
        trs.append("<tr>" + "".join(tds) + "</tr>")
    figures = "".join(
        f'<h3>{html.escape(name)}</h3><img src="{html.escape(src)}" alt="learning curve">\n'
        for name, src in curves.items()
    )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>sst leaderboard</title><style>{STYLE}</style></head><body>\n"
        f"<h1>{html.escape(title)}</h1>\n<p>Click a column to sort.</p>\n"
        f'<table id="board">\n<thead><tr>{th}</tr></thead>\n<tbody>\n'
        + "\n".join(trs)
        + f"\n</tbody>\n</table>\n<p>{html.escape(note)}</p>\n"
        + _seed_table(rows)
        + (f"<h2>Learning curves of the top rows</h2>\n{figures}" if figures else "")
        + '<h2>Confusion matrices</h2><img src="confusion_grid.png" alt="confusion matrices">\n'
        + f"<script>{SORT_SCRIPT}</script>\n</body></html>\n"
    )


def _href(path: str, out_dir: Path) -> str | None:
    """Where a row's name links: its run folder (relative to the page) or its ClearML task's
    page (an online report); nothing for a path that is neither."""
    if path.startswith(("http://", "https://")):
        return path
    target = Path(path).resolve() if path else None
    if target is None or not target.exists():
        return None
    return os.path.relpath(target, out_dir) + ("/" if target.is_dir() else "")


def _seed_table(rows: list[Row]) -> str:
    groups = seed_groups(rows)
    if not groups:
        return ""
    lines = []
    for i, g in enumerate(groups):
        (acc, acc_sd), (f1, f1_sd) = g.stats(), g.stats("macro_f1")
        nxt = groups[i + 1] if i + 1 < len(groups) else None
        noise = "" if nxt is None else ("within seed noise" if within_noise(g, nxt) else "ahead")
        cells = [
            g.key,
            g.rows[0].model,
            str(len(g.rows)),
            f"{acc:.4f} ± {acc_sd:.4f}",
            f"{f1:.4f} ± {f1_sd:.4f}",
            noise,
        ]
        lines.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    head = "".join(
        f"<th>{h}</th>"
        for h in ("config", "model", "n", "root accuracy", "root macro-F1", "vs next")
    )
    return (
        "<h2>Seed groups (test root, mean ± sample sd)</h2>\n"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>\n"
    )
