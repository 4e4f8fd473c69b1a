"""The console script: help for every verb; doctor's fingerprint and drift."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from sst.cli import build_parser, main
from sst.env.locks import drift, read_lock
from sst.errors import SstError

REPO = Path(__file__).resolve().parent.parent
VERBS = [
    "data",
    "split",
    "train",
    "distill",
    "predict",
    "doctor",
    "config",
    "bench",
    "sweep",
    "tune",
    "report",
    "ensemble",
    "replay",
    "verify",
    "upload",
    "export",
]


def test_console_script_help() -> None:
    exe = Path(sys.executable).parent / "sst"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True).stdout
    for verb in VERBS:
        assert verb in out
    for verb in VERBS:
        res = subprocess.run([str(exe), verb, "--help"], capture_output=True, text=True)
        assert res.returncode == 0 and "usage: sst " + verb in res.stdout


def test_parser_knows_every_verb() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "verb")
    assert sorted(sub.choices) == sorted(VERBS)  # type: ignore[union-attr]


def test_doctor_clean_in_the_locked_venv(capsys) -> None:
    code = main(["doctor"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.splitlines()[0].split() == ["what", "state", "detail"]  # one table
    assert re.search(r"^lock +ok +\S+environment\.lock, sha256 [0-9a-f]{12}…$", out, re.M), out
    assert re.search(r"^torch +ok +2\.\d+\.\d+.*, \d+ threads$", out, re.M), out


def test_doctor_says_where_tasks_and_data_come_from_and_never_shows_a_key(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Offline (the tests' state) with keys in the environment: named, not shown; the demo's
    data local, then (no SST_DATA) the official release to download; the Kaggle preset, which
    has no fallback, missing."""
    monkeypatch.setenv("CLEARML_API_ACCESS_KEY", "sentinel-access-key")
    monkeypatch.setenv("CLEARML_API_SECRET_KEY", "sentinel-secret-key")
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "sentinel" not in out
    assert re.search(r"^clearml +offline +CLEARML_OFFLINE_MODE is set: ", out, re.M), out
    assert re.search(
        r"^  credentials +found +CLEARML_API_ACCESS_KEY and CLEARML_API_SECRET_KEY$", out, re.M
    )
    ptb = (shared_data / "sst_ptb").resolve()
    assert re.search(rf"^data \(demo\) +local +3 files in {re.escape(str(ptb))}$", out, re.M), out
    monkeypatch.delenv("SST_DATA")
    monkeypatch.delenv("SST_PTB_ZIP", raising=False)  # the preset's own fallback, not a mirror
    assert main(["doctor", "--no-ping"]) == 0
    out = capsys.readouterr().out
    assert re.search(
        r"^data \(demo\) +fallback +\$\{SST_DATA\} is not set: https://nlp\.stanford\.edu/\S+"
        r"\.zip \(downloaded on first use, then cached, in .*\); 3 of 3 sources$",
        out,
        re.M,
    ), out
    assert main(["doctor", "-c", str(REPO / "configs" / "kaggle.yaml")]) == 0
    out = capsys.readouterr().out
    assert re.search(
        r"^data \(kaggle\) +missing +\$\{SST_DATA\}/kaggle_movie_reviews/train\.tsv\.gz: "
        r"\$\{SST_DATA\} is not set, and no data\.fallback$",
        out,
        re.M,
    ), out


def test_drift_detection(tmp_path: Path) -> None:
    lock = tmp_path / "environment.lock"
    lock.write_text(
        "--extra-index-url https://download.pytorch.org/whl/cpu\n"
        "numpy==1.0.0 \\\n    --hash=sha256:" + "a" * 64 + "\n"
        "notinstalled==2.0 --hash=sha256:" + "b" * 64 + "\n"
    )
    pins = read_lock(lock)
    d = drift(pins, {"numpy": "2.3.0", "extra-pkg": "1"})
    assert d.missing == ["notinstalled==2.0"]
    assert d.mismatched == ["numpy lock=1.0.0 installed=2.3.0"]
    assert d.extra == ["extra-pkg"] and not d.clean
    lock.write_text("numpy==1.0.0\n")
    with pytest.raises(SstError, match=r"environment\.lock:1: numpy has no --hash"):
        read_lock(lock)


def test_doctor_with_a_bad_config_still_shows_the_machine(capsys) -> None:
    assert main(["doctor", "--no-ping", "-c", "no/such.yaml"]) == 2
    out = capsys.readouterr().out
    assert re.search(r"^lock +ok ", out, re.M), out
    assert re.search(r"^data +ERROR +no/such\.yaml: config file not found \(fix: ", out, re.M)


def test_doctor_exits_nonzero_on_drift(tmp_path: Path, monkeypatch, capsys) -> None:
    lock = tmp_path / "environment.lock"
    lock.write_text("numpy==0.0.1 --hash=sha256:" + "a" * 64 + "\n")
    monkeypatch.setenv("SST_LOCK", str(lock))
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^lock +DRIFT +", out, re.M), out
    assert re.search(r"^  mismatched +DRIFT +numpy lock=0\.0\.1 installed=", out, re.M), out


def test_config_verb_prints_resolved(monkeypatch, capsys) -> None:
    monkeypatch.setenv("SST_DATA", "/d")
    assert main(["config", "-c", str(REPO / "configs" / "ptb.yaml")]) == 0
    assert '"mode": "canonical"' in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["bench", "prune", "--runs", "runs/a", "runs/b", "model.pooling=cls"], "bench prune"),
        (
            ["bench", "prune", "-c", "configs/demo.yaml", "--runs", "runs/a", "runs/b"],
            "bench prune",
        ),
        (["train", "--resume", "runs/a.partial", "train.lr=1e-3"], "--resume"),
    ],
    ids=["bench prune, key=value swallowed by --runs", "bench prune, a preset", "train --resume"],
)
def test_verbs_reading_a_recorded_config_refuse_another(argv: list[str], why: str, capsys) -> None:
    """bench prune reads each run's config, --resume the partial run's: a -c or key=value would
    silently change nothing, so it is refused before any run is opened (runs/a does not exist,
    and that is not the error)."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"sst {argv[0]}: error: {why}"), err
    assert err.endswith("(fix: drop --config and key=value arguments)"), err
    assert "runs/a" not in err


def test_bench_prune_takes_a_run_folder_with_an_equals_sign_for_a_folder(tmp_path, capsys) -> None:
    """runs_dir=runs/lr=5e-5 is a folder a user may choose: an existing directory is a run to
    read, not a key=value, so the error is about the folder's contents, not the config."""
    folder = tmp_path / "lr=5e-5"
    folder.mkdir()
    assert main(["bench", "prune", "--runs", str(folder), str(folder)]) == 2
    err = capsys.readouterr().err
    assert "reads each run's own config" not in err and "lr=5e-5" in err, err
