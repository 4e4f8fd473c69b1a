"""`sst replay` / `sst verify` on the tiny model: a run folder and an offline session replay
bit-identically, a changed thread count is DIFFERENT naming threads, a tampered data file is
refused before training, and a run killed with SIGKILL resumes to the uninterrupted weights."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sst.cli import main
from sst.config import load_config
from sst.io import sha256_file
from sst.verbs.replay import Recorded, compare, from_run, from_session
from sst.verbs.train import train
from tests.conftest import train_overrides


@pytest.fixture
def recorded(tracked_run: dict[str, Any]) -> dict[str, Any]:
    return tracked_run


def _verdict(capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    out = capsys.readouterr().out.strip()
    return out, out.splitlines()[-1]


def test_replay_of_a_run_folder_is_bit_identical(recorded, capsys) -> None:
    assert main(["replay", str(recorded["run"])]) == 0
    out, last = _verdict(capsys)
    assert last == f"BIT-IDENTICAL (weights sha256 {recorded['weights']})"
    (replayed,) = (recorded["runs"] / "replays").iterdir()
    assert sha256_file(replayed / "weights.safetensors") == recorded["weights"]
    assert f"replayed {replayed}" in out
    # and the two folders verify as identical
    assert main(["verify", str(recorded["run"]), str(replayed)]) == 0
    assert _verdict(capsys)[1].startswith("BIT-IDENTICAL")


def test_replay_of_an_offline_session_is_bit_identical(recorded, tmp_path: Path, capsys) -> None:
    rec = from_session(recorded["session"])
    assert rec.weights == recorded["weights"]
    assert rec.config.hash() == from_run(recorded["run"]).config.hash()
    assert rec.metrics["test/root/accuracy"] == pytest.approx(
        json.loads((recorded["run"] / "metrics.json").read_text())["test"]["root"]["accuracy"]
    )
    assert main(["replay", str(recorded["session"]), "--out", str(tmp_path)]) == 0
    out, last = _verdict(capsys)
    assert last == f"BIT-IDENTICAL (weights sha256 {recorded['weights']})", out
    assert "recorded differences" not in out, out  # the session keeps every field, unredacted


def test_sessions_hide_secrets_but_keep_tokenizer_settings() -> None:
    from sst.tracking.tracker import REDACTED, scrub

    got = scrub(
        {
            "api_key": "k",
            "env": {"HF_TOKEN": "t", "TOKENIZERS_PARALLELISM": "false", "db_password": "p"},
            "list": [{"secret": 1}],
        }
    )
    assert got == {
        "api_key": REDACTED,
        "env": {"HF_TOKEN": REDACTED, "TOKENIZERS_PARALLELISM": "false", "db_password": REDACTED},
        "list": [{"secret": REDACTED}],
    }


def test_a_changed_thread_count_is_different_and_named(recorded, tmp_path: Path, capsys) -> None:
    code = main(["replay", str(recorded["run"]), "train.threads=2", "--out", str(tmp_path)])
    out, last = _verdict(capsys)
    assert code == 1, out
    assert last.startswith("DIFFERENT (weights sha256 ")
    assert "  threads: 1 → 2  (expected to break bit-identity: CPU thread count" in out
    assert "config_sha256" in out  # the config changed too: named as an input
    # verify names the same difference
    (replayed,) = tmp_path.iterdir()
    assert main(["verify", str(recorded["run"]), str(replayed)]) == 1
    assert "threads: 1 → 2" in capsys.readouterr().out


def test_a_tampered_data_file_is_refused_before_training(recorded, tmp_path: Path, capsys) -> None:
    split = Path(load_config(recorded["run"] / "config.yaml").train.split)
    copy = tmp_path / "split"
    shutil.copytree(split, copy)
    with (copy / "train.tsv").open("a") as f:
        f.write("tampered\n")
    out_dir = tmp_path / "replays"
    code = main(["replay", str(recorded["run"]), f"train.split={copy}", "--out", str(out_dir)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "train.tsv" in err and "sha256" in err and "\n" not in err, err
    assert not out_dir.exists()  # refused before any run folder existed


def test_a_split_other_than_the_recorded_one_is_refused(recorded, tmp_path: Path, capsys) -> None:
    split = Path(load_config(recorded["run"] / "config.yaml").train.split)
    copy = tmp_path / "split"
    shutil.copytree(split, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["note"] = "another version"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert (
        main(["replay", str(recorded["run"]), f"train.split={copy}", "--out", str(tmp_path / "r")])
        == 2
    )
    assert "is not the recorded" in capsys.readouterr().err


def test_replay_remakes_a_missing_split_from_the_recorded_sources(
    tiny_model, kaggle_file: Path, tmp_path: Path, capsys
) -> None:
    """A new machine (or an agent's fresh clone) has the data but not the split folder."""
    from sst.data.pipeline import run_split
    from tests.conftest import split_config

    base = split_config(tmp_path, kaggle_file)
    overrides = [f"train.split={tmp_path / 'out'}", "tracking.enabled=false"]
    run_split(load_config(base, overrides))
    cfg = load_config(
        base,
        [
            *train_overrides(tiny_model, tmp_path / "out", tmp_path / "runs"),
            "tracking.enabled=false",
        ],
    )
    result = train(cfg)
    shutil.rmtree(tmp_path / "out")
    assert main(["replay", str(result.run_dir), "--out", str(tmp_path / "replays")]) == 0
    assert capsys.readouterr().out.strip().endswith(f"(weights sha256 {result.weights_sha256})")
    assert (tmp_path / "out" / "manifest.json").is_file()


def _rec(weights: str, **fields: str) -> Recorded:
    cfg = load_config(None, [])
    return Recorded(
        "x", cfg, {"weights_sha256": weights, "threads": "1", **fields}, {"test/root/accuracy": 0.5}
    )


def test_compare_explains_each_kind_of_difference() -> None:
    same = compare(
        _rec("a" * 64, **{"environment/devices": "[]"}),
        _rec("a" * 64, **{"environment/devices": "[]"}),
    )
    assert same.identical and same.render() == f"BIT-IDENTICAL (weights sha256 {'a' * 64})"
    gpu = compare(
        _rec("a" * 64, **{"environment/devices": "[]"}),
        _rec("b" * 64, **{"environment/devices": '["NVIDIA H100 80GB HBM3"]'}),
    )
    assert not gpu.identical
    assert 'environment/devices: [] → ["NVIDIA H100 80GB HBM3"]  (expected to break' in gpu.render()
    kernels = compare(
        _rec("a" * 64, **{"determinism/attention": "sdpa"}),
        _rec("b" * 64, **{"determinism/attention": "eager"}),
    )
    assert (
        "determinism/attention: sdpa → eager  (expected to break bit-identity: other attention"
        in (kernels.render())
    )
    bug = compare(_rec("a" * 64), _rec("b" * 64))
    assert "determinism bug" in bug.render() and bug.render().endswith("…)")
    harmless = compare(
        _rec("a" * 64, **{"git/diff_sha256": "null"}),
        _rec("a" * 64, **{"git/diff_sha256": "c" * 64}),
    )
    assert harmless.identical
    assert harmless.render().startswith("recorded differences that did not change a bit:")


COUNTING_TRAIN = """
import sys
from sst.env.cpu import pin_cpu_isa
pin_cpu_isa()  # before torch loads, as sst.cli.main does
from sst.model.module import SstClassifier
real = SstClassifier.training_step
def step(self, batch, batch_idx):
    with open(sys.argv[1], "a") as f:
        f.write(f"{self.global_step} {self.current_epoch} {batch_idx}\\n")
    return real(self, batch, batch_idx)
SstClassifier.training_step = step
from sst.cli import main
sys.exit(main(["train", *sys.argv[2:]]))
"""


def _sst_train(*args: str, steps: Path | None = None) -> subprocess.Popen[bytes]:
    """`sst train` in a subprocess; with ``steps``, one that records its training steps there."""
    if steps is None:
        cmd = [sys.executable, "-m", "sst.cli", "train"]
    else:
        cmd = [sys.executable, "-c", COUNTING_TRAIN, str(steps)]
    return subprocess.Popen([*cmd, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_resume_after_sigkill_equals_uninterrupted(tiny_model, tiny_split, tmp_path: Path) -> None:
    from tests.test_resume import steps_per_epoch

    total = 2 * steps_per_epoch(tiny_split)  # stratified:1,alternate:1: two epochs
    extra = ("train.checkpoint_every=5", "tracking.enabled=false")
    full = _sst_train(*train_overrides(tiny_model, tiny_split, tmp_path / "a", *extra))
    killed = _sst_train(*train_overrides(tiny_model, tiny_split, tmp_path / "b", *extra))
    try:
        deadline = time.monotonic() + 120
        ckpt = None
        while time.monotonic() < deadline and killed.poll() is None:
            found = list((tmp_path / "b").glob("*.partial/checkpoints/last.ckpt"))
            if found:
                ckpt = found[0]
                break
            time.sleep(0.02)
        assert ckpt is not None, "no step checkpoint appeared"
        os.kill(killed.pid, signal.SIGKILL)
        assert killed.wait(30) == -signal.SIGKILL  # killed mid-epoch, not finished
    finally:
        if killed.poll() is None:
            killed.kill()
    assert full.wait(300) == 0, full.stderr.read().decode() if full.stderr else ""
    import torch

    done = torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"]
    assert 0 < done < total  # killed mid-run: a step checkpoint, not the last one
    (partial,) = (tmp_path / "b").glob("*.partial")
    steps = tmp_path / "resumed-steps.txt"
    resumed = _sst_train("--resume", str(partial), steps=steps)
    assert resumed.wait(300) == 0, resumed.stderr.read().decode() if resumed.stderr else ""
    # the resumed process trained the steps the checkpoint had not done, and no others
    trained = [tuple(map(int, line.split())) for line in steps.read_text().splitlines()]
    assert [s for s, _, _ in trained] == list(range(done, total)), (done, trained[:3])
    per_epoch = total // 2
    assert trained[0][1:] == (done // per_epoch, done % per_epoch)  # its place in its epoch
    (a,) = (tmp_path / "a").iterdir()
    (b,) = (tmp_path / "b").iterdir()
    assert b.name == partial.name.removesuffix(".partial")
    assert sha256_file(b / "weights.safetensors") == sha256_file(a / "weights.safetensors")
    assert main(["verify", str(a), str(b)]) == 0


def test_a_task_recorded_before_the_fingerprint_moved_out_of_its_parameters_still_reads(
    recorded,
) -> None:
    """Tasks recorded before the fingerprint became a configuration object hold it as
    ``fingerprint/…`` hyperparameters: still read, when the object is absent."""
    from sst.config import flatten
    from sst.verbs.replay import from_parameters

    run = from_run(recorded["run"])
    params = {f"config/{k}": v for k, v in flatten(run.config.to_dict(), "/").items()}
    params |= {f"fingerprint/{k}": v for k, v in run.fingerprint.items()}
    old = from_parameters("old-task", params, {}, {})
    assert old.fingerprint == run.fingerprint and old.config.hash() == run.config.hash()
    now = from_parameters(
        "task", params, json.loads((recorded["run"] / "fingerprint.json").read_text()), {}
    )
    assert now.fingerprint == run.fingerprint
