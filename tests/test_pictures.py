"""A run's pictures (drawn by train from the run's own files, redrawn by `sst report` for runs
made before them) and the browsable leaderboard, checked in a real headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sst.cli import main
from sst.data import LABELS
from sst.run.folder import PROBS, Run
from sst.viz import pictures

PNGS = (pictures.CURVE, pictures.PER_CLASS, pictures.BY_LENGTH, pictures.RELIABILITY)


def test_a_run_has_its_pictures_in_its_folder_and_its_offline_session(tracked_run: dict) -> None:
    folder = tracked_run["run"] / "pictures"
    for name in PNGS:
        assert (folder / name).read_bytes().startswith(b"\x89PNG"), name
    session = zipfile.ZipFile(tracked_run["session"]).namelist()
    for name in PNGS:
        assert any(f"/metrics/pictures/{Path(name).stem}/" in n for n in session), name
    # what the learning curve is drawn from: a val loss and the learning rate were logged
    curves = pictures.scalars(tracked_run["run"] / "tb")
    assert {"train/loss", "val/loss", "val/root/macro_f1"} <= set(curves)
    lr = [t for t in curves if t.startswith("lr-")]
    assert lr and curves[lr[0]][-1][1] < curves[lr[0]][0][1]  # the linear decay


def test_confident_errors_are_the_wrong_predictions_most_sure_first(tracked_run: dict) -> None:
    table = pd.read_csv(tracked_run["run"] / "pictures" / pictures.ERRORS, sep="\t")
    assert len(table) > 3 and (table["truth"] != table["prediction"]).all()
    assert list(table["probability"]) == sorted(table["probability"], reverse=True)
    run = Run(tracked_run["run"])
    frame = pictures.test_frame(run).set_index("phrase_id")
    for row in table.itertuples():
        assert frame.loc[row.phrase_id, "text"] == row.text
        assert LABELS[frame.loc[row.phrase_id, "label"]] == row.truth
        top = frame.loc[row.phrase_id, list(PROBS)].max()
        assert abs(top - row.probability) < 1e-4


def test_reliability_and_ece_by_hand() -> None:
    # four predictions: two at confidence 0.9 (one right), two at 0.6 (both right)
    probs = np.array(
        [
            [0.9, 0.1, 0, 0, 0],
            [0.9, 0.1, 0, 0, 0],
            [0.4, 0.6, 0, 0, 0],
            [0.0, 0.0, 0.6, 0.4, 0],
        ]
    )
    labels = np.array([0, 1, 1, 2])
    r = pictures.reliability(probs, labels)
    assert r["count"][9] == 2 and r["count"][6] == 2 and r["count"].sum() == 4
    assert r["accuracy"][9] == 0.5 and r["accuracy"][6] == 1.0
    # ECE = 2/4 * |0.5 - 0.9| + 2/4 * |1.0 - 0.6| = 0.4
    assert r["ece"] == pytest.approx(0.4)


def test_accuracy_by_length_buckets() -> None:
    frame = pd.DataFrame(
        {"n_tokens": [1, 1, 2, 3, 4, 7, 40], "label": [0, 1, 2, 2, 2, 3, 4]}
        | {"pred": [0, 0, 2, 2, 1, 3, 0]}
    )
    table = pictures.by_length(frame)
    assert table.to_dict("list") == {
        "tokens": ["1", "2", "3-4", "5-8", "33+"],
        "n": [2, 1, 2, 1, 1],
        "accuracy": [0.5, 1.0, 0.5, 1.0, 0.0],
    }


def test_report_redraws_the_pictures_of_a_run_made_before_them(
    tracked_run: dict, tmp_path: Path
) -> None:
    old = tmp_path / "runs" / tracked_run["run"].name
    shutil.copytree(tracked_run["run"], old)
    shutil.rmtree(old / "pictures")
    out = tmp_path / "report"
    assert main(["report", str(old.parent), "--out", str(out), "--no-clearml"]) == 0
    redrawn = out / "run-pictures" / old.name
    for name in PNGS:
        assert (redrawn / name).is_file(), name
    assert (out / "run-pictures" / f"{old.name}.png").is_file()  # embedded in the page
    assert not (old / "pictures").exists()  # the run folder is not written to


def _cells(dom: str) -> tuple[list[str], list[list[str]]]:
    header = re.findall(r"<th[^>]*>(.*?)</th>", dom.split('id="board"')[1].split("</thead>")[0])
    body = dom.split('id="board"')[1].split("<tbody>")[1].split("</tbody>")[0]
    rows = [
        [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", tr)]
        for tr in re.findall(r"<tr>(.*?)</tr>", body, flags=re.S)
    ]
    return header, rows


def test_leaderboard_sorts_and_links_in_a_real_browser(local_sweep: dict) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no Chromium: install Debian's chromium (.ci/run does: scripts/chromium.sh)")
    page = local_sweep["report"] / "leaderboard.html"

    def dom(fragment: str) -> str:
        done = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--dump-dom",
                f"{page.as_uri()}{fragment}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    header, rows = _cells(dom(""))
    run, acc, changes = (
        header.index("run"),
        header.index("root accuracy"),
        header.index("overrides"),
    )
    names = [r[run] for r in rows]
    # the overrides: the sweep's variant line, against the other run
    varied = {r[run]: r[changes] for r in rows if r[changes]}
    assert any("model.pooling=cls" in v and "train.lr=0.003" in v for v in varied.values())
    _, by_name = _cells(dom(f"#sort=-{run}"))  # the script ran: rows re-ordered in the DOM
    assert [r[run] for r in by_name] == sorted(names, reverse=True)
    asc = dom(f"#sort={acc}")
    _, by_acc = _cells(asc)
    values = [float(r[acc]) for r in by_acc if r[acc]]
    assert values == sorted(values) and len(values) >= 2
    assert not by_acc[-1][acc]  # the failed line (no scores) last
    assert re.search(r'<th data-sorted="asc">root accuracy</th>', asc)
    links = re.findall(r'class="run" href="([^"]+)"', asc)
    assert len(links) == len(rows)  # the failed line links to its sweep record
    for href in links:
        target = page.parent / href
        assert (target / "config.yaml").is_file() if href.endswith("/") else target.is_file()
    assert re.findall(r'<img src="(run-pictures/[^"]+)"', asc)
    for src in re.findall(r'<img src="([^"]+)"', asc):
        assert (page.parent / src).is_file(), src
