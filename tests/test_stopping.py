"""The training controls added after the first runs: gradient accumulation (k batches of n train
as one batch of k·n), early stopping on the validation metric and a wall-clock budget. Each
leaves the presets' config hashes as they were; a stopped run says why, and a run stopped early
or by its budget resumes after SIGKILL to the weights of the run nobody killed."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from sst.cli import main
from sst.config import load_config
from sst.env.precision import decide
from sst.errors import SstError
from sst.io import sha256_file
from sst.model.module import SstClassifier
from sst.run import folder as runs
from sst.run.trainer import Budget, build_trainer
from sst.verbs.train import train
from tests.conftest import train_overrides
from tests.test_replay import _sst_train
from tests.test_resume import steps_per_epoch

CONTROLS = ("train.accumulate=2", "train.early_stop=3", "train.early_stop_delta=0.01")


@pytest.mark.parametrize("control", [*CONTROLS, "train.max_minutes=30"])
def test_each_control_is_part_of_the_hash_only_when_set(control: str) -> None:
    plain = load_config(None, [])
    key = control.split("=")[0]
    at_default = f"{key}={getattr(plain.train, key.split('.')[1])}"
    assert load_config(None, [at_default]).hash() == plain.hash()  # earlier runs keep theirs
    assert load_config(None, [control]).hash() != plain.hash()


@pytest.mark.parametrize(
    "bad", ["train.accumulate=0", "train.early_stop=-1", "train.max_minutes=-5"]
)
def test_a_control_out_of_range_is_refused_naming_it(bad: str) -> None:
    with pytest.raises(SstError, match=bad.split("=")[0].replace(".", r"\.")):
        load_config(None, [bad])


def _still(model_dir: Path, out: Path) -> Path:
    """The tiny model without dropout: the same data order then gives the same gradients."""
    import shutil

    shutil.copytree(model_dir, out)
    config = json.loads((out / "config.json").read_text())
    config |= {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    (out / "config.json").write_text(json.dumps(config))
    return out


def test_k_accumulated_batches_of_n_train_as_one_batch_of_k_n(tiny_model, tmp_path) -> None:
    """Through the kit's own Trainer (Lightning's accumulate_grad_batches), in fp32, the same
    phrases in the same order: 4 batches of 8 with accumulate=4, one of 32 without."""
    model_dir = _still(tiny_model, tmp_path / "still")
    generator = torch.Generator().manual_seed(0)
    n, k, steps, length = 8, 4, 3, 12
    ids = torch.randint(5, 100, (steps * k * n, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[::3, length // 2 :] = 0  # some padded rows
    labels = torch.randint(0, 5, (steps * k * n,), generator=generator)

    def batches(size: int) -> list[dict[str, torch.Tensor]]:
        cut = range(0, len(ids), size)
        return [
            {"input_ids": ids[i : i + size], "attention_mask": mask[i : i + size],
             "labels": labels[i : i + size]}
            for i in cut
        ]  # fmt: skip

    weights = []
    for batch_size, accumulate in ((n, k), (k * n, 1)):
        cfg = load_config(
            None,
            [f"model.name={model_dir}", "model.dropout=0", "train.threads=1",
             f"train.batch_size={batch_size}", f"train.accumulate={accumulate}",
             "train.lr=1e-3", "train.warmup_ratio=0", "train.grad_clip=1.0"],
        )  # fmt: skip
        decided = decide("32-true", "auto")
        torch.manual_seed(0)
        model = SstClassifier.from_config(cfg, decided)
        trainer = build_trainer(cfg, decided, role="bench")
        assert trainer.accumulate_grad_batches == accumulate
        trainer.fit(model, train_dataloaders=DataLoader(batches(batch_size), batch_size=None))
        assert trainer.global_step == steps  # optimizer steps, not batches
        weights.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    accumulated, whole = weights
    moved = [name for name in whole if not torch.equal(whole[name], model.state_dict()[name])]
    assert not moved  # (the second model is the last one trained)
    start = SstClassifier.from_config(cfg, decide("32-true", "auto")).state_dict()
    assert any(not torch.allclose(whole[k], start[k]) for k in whole)  # it did train
    for name in whole:
        torch.testing.assert_close(accumulated[name], whole[name], rtol=1e-4, atol=1e-6)


def _training(run: Path) -> dict:
    return json.loads((run / runs.METRICS).read_text())["training"]


def test_a_run_records_its_effective_batch_and_optimizer_steps(
    tiny_model, tiny_split, tmp_path, tracked_run
) -> None:
    extra = ("train.accumulate=2", "tracking.enabled=false")
    result = train(load_config(None, train_overrides(tiny_model, tiny_split, tmp_path, *extra)))
    per_epoch = steps_per_epoch(tiny_split)  # 42 batches of 16: 21 steps of 32
    assert _training(result.run_dir) == {
        "epochs": 2,
        "scheduled_epochs": 2,
        "stopped": None,
        "optimizer_steps": 2 * per_epoch // 2,
        "effective_batch": 32,
    }
    # a run with none of the controls keeps the metrics.json of runs made before them
    assert "training" not in json.loads((tracked_run["run"] / runs.METRICS).read_text())


def _kill_when(process, ready, timeout: float = 120.0) -> None:
    """SIGKILL ``process`` as soon as ``ready()`` holds (it must, before the process ends)."""
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None and not ready():
            time.sleep(0.02)
        assert process.poll() is None, "the run ended before it could be killed"
        assert ready(), "the moment to kill never came"
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()


def _resume(partial: Path) -> Path:
    resumed = _sst_train("--resume", str(partial))
    assert resumed.wait(300) == 0, resumed.stderr.read().decode() if resumed.stderr else ""
    return partial.with_name(partial.name.removesuffix(runs.PARTIAL))


def _step(ckpt: Path) -> int:
    return int(torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"])


def test_early_stopping_stops_and_resumes_after_sigkill_to_the_same_weights(
    tiny_model, tiny_split, tmp_path
) -> None:
    """Nothing rises by 1.0 macro-F1: the first validation sets the best, the second is one
    without improvement, and patience 1 ends the run there (2 of 4 epochs). Killed in epoch 2,
    the resumed run must know epoch 1's score (EarlyStopping's state in the checkpoint), or it
    would take epoch 2's as its first and train on."""
    extra = ("train.sampling=random:4", "train.early_stop=1", "train.early_stop_delta=1.0",
             "train.checkpoint_every=5", "tracking.enabled=false")  # fmt: skip
    whole = train(
        load_config(None, train_overrides(tiny_model, tiny_split, tmp_path / "a", *extra))
    )
    assert _training(whole.run_dir)["epochs"] == 2
    assert _training(whole.run_dir)["stopped"] == "early"
    assert "early-stopped after 2 of 4 epochs" in whole.notes

    per_epoch = steps_per_epoch(tiny_split)
    killed = _sst_train(*train_overrides(tiny_model, tiny_split, tmp_path / "b", *extra))
    work = tmp_path / "b"

    def in_epoch_two() -> bool:
        val = list(work.glob("*.partial/confusion/val-epoch0.png"))
        ckpt = list(work.glob("*.partial/checkpoints/last.ckpt"))
        return bool(val and ckpt) and ckpt[0].stat().st_mtime > val[0].stat().st_mtime + 0.05

    _kill_when(killed, in_epoch_two)
    (partial,) = work.glob("*.partial")
    assert per_epoch < _step(partial / "checkpoints" / "last.ckpt") < 2 * per_epoch
    done = _resume(partial)
    assert _training(done)["epochs"] == 2
    assert sha256_file(done / runs.WEIGHTS) == whole.weights_sha256


def test_the_budget_ends_the_run_at_an_epoch_end_resumes_and_replays(
    tiny_model, tiny_split, tmp_path, monkeypatch, capsys
) -> None:
    """A budget of 30 ms is spent within epoch 1: the run ends when epoch 1 does (1 of 4),
    marked budget-stopped. Killed mid-epoch 1 with the budget already spent, the resumed run
    still trains to that epoch's end (Lightning's Timer would stop it at once); a replay trains
    the recorded epoch count, not what its own clock allows."""
    extra = ("train.sampling=random:4", "train.max_minutes=0.0005", "train.checkpoint_every=5",
             "tracking.enabled=false")  # fmt: skip
    whole = train(
        load_config(None, train_overrides(tiny_model, tiny_split, tmp_path / "a", *extra))
    )
    assert _training(whole.run_dir)["stopped"] == "budget"
    assert _training(whole.run_dir)["epochs"] == 1
    assert "budget-stopped after 1 of 4 epochs" in whole.notes

    per_epoch = steps_per_epoch(tiny_split)
    killed = _sst_train(*train_overrides(tiny_model, tiny_split, tmp_path / "b", *extra))
    work = tmp_path / "b"
    _kill_when(killed, lambda: bool(list(work.glob("*.partial/checkpoints/last.ckpt"))))
    (partial,) = work.glob("*.partial")
    ckpt = torch.load(partial / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert 0 < ckpt["global_step"] < per_epoch  # mid-epoch 1
    (timer,) = (v for k, v in ckpt["callbacks"].items() if k.startswith("Budget"))
    assert timer["time_elapsed"]["train"] > 0.03  # already spent when killed
    done = _resume(partial)
    assert _training(done)["epochs"] == 1
    assert sha256_file(done / runs.WEIGHTS) == whole.weights_sha256

    # a replay where the clock never runs out (a faster machine) still trains 1 epoch
    monkeypatch.setattr(Budget, "on_train_epoch_end", lambda *a, **k: None)
    assert main(["replay", str(whole.run_dir)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        f"BIT-IDENTICAL (weights sha256 {whole.weights_sha256})"
    )


def test_a_run_killed_after_its_stopping_epochs_checkpoint_resumes_to_its_end(
    tiny_model, tiny_split, tmp_path
) -> None:
    """The last checkpoint of an early-stopped run is written at the epoch end that stopped it:
    killed after that (while testing), the resumed run must stop there too, not train epoch 3
    (Lightning keeps no ``should_stop`` in a checkpoint; sst.run.trainer.KeepStop does)."""
    import shutil

    extra = ("train.sampling=random:4", "train.early_stop=1", "train.early_stop_delta=1.0",
             "train.keep_checkpoints=true", "tracking.enabled=false")  # fmt: skip
    whole = train(
        load_config(None, train_overrides(tiny_model, tiny_split, tmp_path / "a", *extra))
    )
    assert _step(whole.run_dir / "checkpoints" / "last.ckpt") == 2 * steps_per_epoch(tiny_split)
    # the folder as a kill during testing leaves it: the checkpoints, no outputs yet
    partial = tmp_path / "b" / f"{whole.run_dir.name}{runs.PARTIAL}"
    shutil.copytree(whole.run_dir, partial)
    for name in (runs.WEIGHTS, runs.METRICS, runs.FINGERPRINT, runs.PREDICTIONS):
        (partial / name).unlink()
    done = _resume(partial)
    assert _training(done)["epochs"] == 2
    assert sha256_file(done / runs.WEIGHTS) == whole.weights_sha256


def test_early_stopping_without_a_validation_set_is_refused_before_a_run_exists(
    tiny_model, tmp_path
) -> None:
    from sst.data.pipeline import run_split
    from tests.conftest import split_config, synthetic_rows, write_kaggle

    source = write_kaggle(tmp_path / "train.tsv", synthetic_rows(60))
    cfg = load_config(split_config(tmp_path, source, val_fraction=0), ["tracking.enabled=false"])
    split = run_split(cfg).out
    over = train_overrides(tiny_model, split, tmp_path / "runs", "train.early_stop=2",
                           "tracking.enabled=false")  # fmt: skip
    with pytest.raises(SstError, match="train.early_stop=2 needs a validation set"):
        train(load_config(None, over))
    assert not (tmp_path / "runs").exists()
