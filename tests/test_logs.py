"""Output that reads well in a log: through a pipe (CI, `| tee`, an agent's console as ClearML
stores it) every progress report is a whole line, never tqdm's carriage-return refreshes; on a
terminal the bar stays a bar."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sst.io import progress
from tests.conftest import REPO, train_overrides


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_lines_in_a_log_and_a_bar_on_a_terminal(monkeypatch) -> None:
    monkeypatch.setenv("SST_LOG_EVERY_S", "0")
    log = io.StringIO()
    for _ in progress(range(5), file=log, desc="predict", unit="batch"):
        pass
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and log.getvalue().endswith("\n")
    assert lines[0].startswith("predict:   0%") and lines[-1].startswith("predict: 100%")
    assert len(lines) == 6  # 0..5: one whole line per report, the closing one not repeated
    tty = Terminal()
    for _ in progress(range(5), file=tty, desc="predict", unit="batch"):
        pass
    assert "\r" in tty.getvalue()  # tqdm itself, redrawing in place


def test_a_bad_interval_is_one_line(monkeypatch) -> None:
    from sst.errors import SstError

    monkeypatch.setenv("SST_LOG_EVERY_S", "often")
    with pytest.raises(SstError, match="SST_LOG_EVERY_S='often' is not a number"):
        progress(range(1), file=io.StringIO())


def piped(*args: str, every: str) -> subprocess.CompletedProcess[str]:
    """``sst <args>`` with its output through pipes, as CI, ``| tee`` and an agent see it, and
    ``SST_LOG_EVERY_S=every``."""
    return subprocess.run(
        [sys.executable, "-m", "sst.cli", *args],
        env={**os.environ, "SST_LOG_EVERY_S": every},
        cwd=REPO,
        capture_output=True,
        text=True,
    )


def test_with_the_default_interval_a_short_run_logs_its_epochs_only(
    tiny_model: Path, tiny_split: Path, tmp_path: Path
) -> None:
    """An hour between lines (the default is 10 s; a tiny epoch takes about one): what a log
    gets is a line per epoch and the test's, nothing in between."""
    over = train_overrides(tiny_model, tiny_split, tmp_path / "runs", "tracking.enabled=false")
    done = piped("train", *over, every="3600")
    assert done.returncode == 0, done.stderr[-3000:]
    progress = [ln for ln in done.stdout.splitlines() if ln.startswith(("epoch ", "test: "))]
    assert [ln.split(":")[0] for ln in progress] == ["epoch 1/2", "epoch 2/2", "test"], progress
    assert all(": done, " in ln for ln in progress[:2])


def test_train_and_predict_through_a_pipe_write_whole_lines(
    tiny_model: Path, tiny_split: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    over = train_overrides(tiny_model, tiny_split, runs, "tracking.enabled=false")
    trained = piped("train", *over, every="0")  # a line per batch: the most a log can get
    assert trained.returncode == 0, trained.stderr[-3000:]
    log = trained.stdout + trained.stderr
    assert "\r" not in log
    epochs = re.findall(
        r"^epoch (\d)/2: done, (\d+) batches in \d+ s · train/loss [\d.]+ · val/root/macro_f1 [\d.]+$",
        log,
        re.M,
    )
    assert [e for e, _ in epochs] == ["1", "2"], log[-3000:]
    batches = int(epochs[0][1])
    assert re.search(
        rf"^epoch 1/2: {batches}/{batches} batches \(100%\) · [\d.]+ batch/s", log, re.M
    )
    assert re.search(r"^test: \d+ batches scored$", log, re.M)
    (run,) = runs.iterdir()
    phrases = tmp_path / "phrases.txt"
    phrases.write_text("".join(f"a fine phrase number {i}\n" for i in range(300)))
    out = tmp_path / "predictions.tsv"
    predicted = piped(
        "predict", "--run", str(run), "--file", str(phrases), "--out", str(out), every="0"
    )
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert "\r" not in predicted.stdout + predicted.stderr
    assert re.search(r"^predict: 100%.* 3/3 ", predicted.stderr, re.M), predicted.stderr
