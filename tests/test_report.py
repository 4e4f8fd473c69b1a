"""`sst report`: the leaderboard of a real local sweep, contamination flags, and the online
leaderboard from a ClearML project (Task class replaced at the tracking boundary)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from sst import tracking
from sst.model.metrics import HEADLINE
from sst.ranking import contamination, rank
from sst.report import collect, from_project, write_report


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
    assert header[:3] == ["#", "run", "model"] and len(body) == 3
    assert body[0][1] == rows[0]["name"] and body[2][3].startswith("failed")

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


def test_online_report_ranks_the_sweeps_tasks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The online leaderboard source (a ClearML project's tasks tagged with the sweep id), with
    only the Task class replaced at the tracking boundary: no server can run here."""

    def values(f1: float) -> dict[str, float]:
        v = {
            f"test/{lv}/{m}": 0.5 for lv in ("root", "phrase") for m in HEADLINE if m != "micro_f1"
        }
        v["test/root/macro_f1"] = f1
        return v

    class T:
        def __init__(self, i: str, status: str, model: str, single: dict[str, float]) -> None:
            self.id, self.name, self.status, self.model, self.single = (
                i,
                f"run-{i}",
                status,
                model,
                single,
            )

        def get_parameters(self) -> dict[str, str]:
            return {"config/model/name": self.model}

        def get_status(self) -> str:
            return self.status

        def get_reported_single_values(self) -> dict[str, float]:
            return self.single

    asked: list[tuple] = []

    class Tasks:
        @classmethod
        def get_tasks(cls, project_name: str, tags: list[str], task_filter: dict) -> list[T]:
            asked.append((project_name, tags, task_filter))
            return [
                T("1", "completed", "bert-base-uncased", values(0.41)),
                T("2", "completed", "howey/electra-base-sst2", values(0.52)),
                T("3", "failed", "roberta-base", {}),
            ]

    monkeypatch.setattr(tracking, "clearml_task", lambda: Tasks)
    rows = rank(from_project("sst", "sweep-x"), "macro_f1")
    assert asked == [("sst", ["sweep-x"], {"type": ["training"]})]
    assert [(r.name, r.status) for r in rows] == [
        ("run-2", "completed"),
        ("run-1", "completed"),
        ("run-3", "failed"),
    ]
    assert rows[0].contamination and rows[0].value("micro_f1", "root") == 0.5
    assert rows[2].error == "task failed"
    paths = write_report(rows, "macro_f1", tmp_path / "r", track=False)
    assert all(p.is_file() for p in paths)
