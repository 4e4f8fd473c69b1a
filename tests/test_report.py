"""`sst report`: the leaderboard of a real local sweep, contamination flags, and the online
leaderboard from a ClearML project (Task class replaced at the tracking boundary)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from sst.run.ranking import contamination, rank
from sst.verbs.report import collect


def test_leaderboard_ranks_by_the_chosen_metric_and_lists_the_failure(local_sweep) -> None:
    report = local_sweep["report"]
    board = json.loads((report / "leaderboard.json").read_text())
    rows = board["rows"]
    assert board["by"] == "macro_f1" and [r["status"] for r in rows][-1] == "failed"
    f1 = [r["metrics"]["root"]["macro_f1"] for r in rows if r["status"] == "completed"]
    assert len(f1) == 2 and f1 == sorted(f1, reverse=True)
    md = (report / "leaderboard.md").read_text()
    assert "failed: exit 2" in md and "| root macro_f1 |" in md
    assert (report / "confusion_grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    class Cells(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.rows: list[list[str]] = []
            self.cell: list[str] | None = None

        def handle_starttag(self, tag: str, attrs: Any) -> None:
            if tag == "tr":
                self.rows.append([])
            elif tag in ("td", "th"):
                self.cell = []

        def handle_endtag(self, tag: str) -> None:
            if tag in ("td", "th") and self.cell is not None:
                self.rows[-1].append("".join(self.cell))
                self.cell = None

        def handle_data(self, data: str) -> None:
            if self.cell is not None:
                self.cell.append(data)

    parser = Cells()
    parser.feed((report / "leaderboard.html").read_text())
    header, *body = parser.rows
    assert header[:4] == ["#", "run", "overrides", "model"] and len(body) == 3
    assert body[0][1] == rows[0]["name"] and body[2][4].startswith("failed")

    # any other metric re-ranks the same rows; lower-is-better metrics ascend
    ranked = rank(collect([local_sweep["runs"]]), "mae")
    maes = [r.value("mae", "root") for r in ranked if r.status == "completed"]
    assert maes == sorted(maes)


# -- contamination --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "risky"),
    [
        ("echarlaix/bert-base-uncased-sst2-acc91.1-d37-hybrid", True),
        ("distilbert-base-uncased-finetuned-sst-2-english", True),
        ("textattack/roberta-base-SST-2", True),
        ("howey/electra-base-sst2", True),
        ("someone/deberta-v3-base-glue-mnli", True),
        ("siebert/sentiment-roberta-large-english", True),
        ("bert-base-uncased", False),
        ("roberta-base", False),
        ("minilm", False),
        ("microsoft/deberta-v3-base", False),
        ("google/electra-small-discriminator", False),
    ],
)
def test_contamination_flag(model: str, risky: bool) -> None:
    assert (contamination(model) is not None) == risky


def test_contamination_of_a_local_folder_reads_its_finetuning_task(tmp_path: Path) -> None:
    folder = tmp_path / "my-encoder"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"finetuning_task": "sst-2"}))
    assert "finetuning_task=sst-2" in contamination(str(folder))
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert contamination(str(folder)) is None


CMS = {
    "A": [[6, 4, 0, 0, 0], [2, 6, 2, 0, 0], [0, 2, 6, 2, 0], [0, 0, 2, 6, 2], [0, 0, 0, 4, 6]],
    "B": [[5, 0, 5, 0, 0], [0, 5, 5, 0, 0], [0, 0, 10, 0, 0], [0, 0, 5, 5, 0], [0, 0, 5, 0, 5]],
    "C": [[6, 0, 4, 0, 0], [0, 6, 0, 4, 0], [4, 0, 6, 0, 0], [0, 4, 0, 6, 0], [0, 0, 0, 0, 10]],
    "D": [[10 if i == j else 0 for j in range(5)] for i in range(5)],
}
MACRO_F1 = {"A": (2 / 3 + 6 / 11 + 0.6 + 6 / 11 + 2 / 3) / 5, "B": 19 / 30, "C": 0.68, "D": 1.0}
MIN_PRECISION = {"A": 0.5, "B": 1 / 3, "C": 0.6, "D": 1.0}
NEIGHBOUR_SHARE = {"A": 1.0, "B": 0.5, "C": 0.0, "D": 1.0}
QUALIFIES = {"A": True, "B": False, "C": False, "D": True}


def scored_run(folder: Path, **stages: str) -> Path:
    """A finished run folder scored, per stage (``test="A"``, ``val="D"``), by one of CMS (the
    same matrix at root and phrase level)."""
    from sst.model.metrics import summarize

    folder.mkdir(parents=True)
    metrics = {
        stage: {level: summarize(CMS[key]) for level in ("root", "phrase")}
        for stage, key in stages.items()
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "fingerprint.json").write_text(json.dumps({"model": f"model-{folder.name}"}))
    (folder / "weights.safetensors").write_bytes(b"not read")
    return folder


def test_rows_qualify_by_the_balanced_rule() -> None:
    from sst.model.metrics import summarize
    from sst.run.ranking import scored_row

    for key, cm in CMS.items():
        s = summarize(cm)
        row = scored_row(key, "m", "completed", key, {"root": s, "phrase": s})
        assert row.qualifies is QUALIFIES[key], key
        assert row.neighbour_share == pytest.approx(NEIGHBOUR_SHARE[key]), key
        assert row.value("min_class_precision", "root") == pytest.approx(MIN_PRECISION[key])
        assert row.value("macro_f1", "root") == pytest.approx(MACRO_F1[key]), key


def test_report_ranks_by_balanced_unless_told_otherwise(tmp_path: Path, capsys) -> None:
    from sst.cli import main

    runs = tmp_path / "runs"
    for key in "ABCD":
        scored_run(runs / key, test=key)
    assert main(["report", str(runs), "--out", str(tmp_path / "r"), "--no-clearml"]) == 0
    board = json.loads((tmp_path / "r" / "leaderboard.json").read_text())
    assert board["by"] == "balanced"
    # qualifying runs first by macro-F1 (D, then A although B and C score higher), then the
    # rest by min-class precision (C 0.6 before B 1/3)
    assert [r["name"] for r in board["rows"]] == ["D", "A", "C", "B"]
    assert [r["qualifies"] for r in board["rows"]] == [True, True, False, False]
    md = (tmp_path / "r" / "leaderboard.md").read_text().splitlines()
    assert "balanced" in md[0]
    assert [ln.split("|")[5].strip() for ln in md[4:8]] == ["yes", "yes", "no", "no"]
    out = capsys.readouterr().out
    assert (
        "A" in out and "qualifies (min-class precision 0.500, errors on a neighbour 1.000)" in out
    )
    # the same rows by macro-F1 alone: the order the balanced rule overrides
    ranked = rank(collect([runs]), "macro_f1")
    assert [r.name for r in ranked] == ["D", "C", "B", "A"]
