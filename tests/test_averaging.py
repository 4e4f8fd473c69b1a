"""Weight averaging (train.ema, train.swa) and layer-wise learning-rate decay, through real runs
of the tiny fixture: the kept weights are the average of the raw weights after each step
(recomputed here from the steps), the average is what is chosen and tested, it begins where it
should, a resumed run averages as an uninterrupted one, and each layer trains at its rate."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from sst.config import load_config
from sst.errors import SstError
from sst.model.module import SstClassifier, layer_scales
from sst.run import folder as runs
from sst.verbs.train import train
from sst.viz.pictures import scalars
from tests.conftest import train_overrides

STEPS = 84  # the tiny fixture: 2 epochs of 42 batches


def run(tiny_model: Path, tiny_split: Path, where: Path, *extra: str):  # type: ignore[no-untyped-def]
    overrides = train_overrides(tiny_model, tiny_split, where, "tracking.enabled=false", *extra)
    return train(load_config(None, overrides))


def raw_steps(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, torch.Tensor]]:
    """The raw parameters after each optimizer step of the next run (the module's own
    ``on_train_batch_end``, after the averaging callback has read them)."""
    steps: list[dict[str, torch.Tensor]] = []

    def record(self, *args):  # type: ignore[no-untyped-def]
        steps.append({n: p.detach().clone() for n, p in self.named_parameters()})

    monkeypatch.setattr(SstClassifier, "on_train_batch_end", record)
    return steps


def kept(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / runs.WEIGHTS))


def assert_weights(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert set(expected) <= set(actual)
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, rtol=1e-5, atol=1e-7, msg=name)


def test_ema_keeps_the_moving_average_of_every_steps_weights(
    tiny_model, tiny_split, tmp_path: Path, monkeypatch
) -> None:
    steps = raw_steps(monkeypatch)
    result = run(tiny_model, tiny_split, tmp_path, "train.ema=0.9")
    assert len(steps) == STEPS
    average = dict(steps[0])
    for step in steps[1:]:
        average = {n: 0.9 * average[n] + 0.1 * step[n] for n in average}
    assert_weights(kept(result.run_dir), average)
    assert not torch.equal(kept(result.run_dir)["head.weight"], steps[-1]["head.weight"])


def test_swa_averages_the_last_share_and_validates_raw_weights_before_it_begins(
    tiny_model, tiny_split, tmp_path: Path, monkeypatch
) -> None:
    plain = run(tiny_model, tiny_split, tmp_path / "plain")
    steps = raw_steps(monkeypatch)
    swa = run(tiny_model, tiny_split, tmp_path / "swa", "train.swa=0.25")
    last = steps[-21:]  # a quarter of 84 steps, all in the second epoch
    expected = {n: torch.stack([s[n] for s in last]).mean(0) for n in last[0]}
    assert_weights(kept(swa.run_dir), expected)
    # the raw trajectory is the plain run's: averaging reads the weights, never changes them
    assert_weights(steps[-1], {n: t for n, t in kept(plain.run_dir).items() if n in steps[-1]})
    # epoch 1 ends before the average begins: validated on the raw weights, as the plain run was
    # (Lightning's callback would have scored the weights the fit started from)
    plain_loss, swa_loss = (scalars(r.run_dir / runs.TENSORBOARD)["val/loss"] for r in (plain, swa))
    assert plain_loss[0] == swa_loss[0]
    assert plain_loss[1] != swa_loss[1]  # the average from then on


def test_evaluate_best_tests_and_keeps_the_average_not_the_raw_weights(
    tiny_model, tiny_split, tmp_path: Path
) -> None:
    result = run(
        tiny_model,
        tiny_split,
        tmp_path,
        "train.ema=0.8",
        "train.evaluate=best",
        "train.keep_checkpoints=true",
    )
    (best,) = (result.run_dir / runs.CHECKPOINTS).glob(f"{runs.BEST}*.ckpt")
    checkpoint = torch.load(best, map_location="cpu", weights_only=True)
    average, raw = checkpoint["state_dict"], checkpoint["current_model_state"]
    weights = kept(result.run_dir)
    assert_weights(weights, {n: average[n] for n in weights})
    assert not torch.equal(weights["head.weight"], raw["head.weight"])


def test_a_resumed_ema_run_equals_the_uninterrupted_one(
    tiny_model, tiny_split, tmp_path: Path, monkeypatch
) -> None:
    extra = ("train.ema=0.9", "train.checkpoint_every=5")
    whole = run(tiny_model, tiny_split, tmp_path / "a", *extra)
    real_step = SstClassifier.training_step

    def dying_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        if self.global_step == 57:
            raise RuntimeError("simulated crash")
        return real_step(self, batch, batch_idx)

    monkeypatch.setattr(SstClassifier, "training_step", dying_step)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tiny_model, tiny_split, tmp_path / "b", *extra)
    monkeypatch.setattr(SstClassifier, "training_step", real_step)
    (partial,) = (tmp_path / "b").glob("*.partial")
    from sst.verbs.train import resume

    resumed = resume(partial)
    assert resumed.weights_sha256 == whole.weights_sha256


def test_lr_layer_decay_gives_each_layer_its_rate(tiny_model, tiny_split, tmp_path: Path) -> None:
    plain = run(tiny_model, tiny_split, tmp_path / "plain")
    decayed = run(tiny_model, tiny_split, tmp_path / "decayed", "train.lr_layer_decay=0.5")
    plain_peaks, decayed_peaks = (
        sorted(
            max(v for _, v in curve)
            for tag, curve in scalars(r.run_dir / runs.TENSORBOARD).items()
            if tag.startswith("lr-")
        )
        for r in (plain, decayed)
    )
    top = plain_peaks[-1]  # lr at the end of the warmup (logged every 10 steps)
    assert plain_peaks == pytest.approx([top, top])  # decayed and not-decayed weights: one rate
    # the tiny BERT has 2 layers: embeddings lr/4, layer 0 lr/2, layer 1 and the head lr; each
    # rate in a weight-decayed group and a not-decayed one
    assert sorted({round(p / top, 6) for p in decayed_peaks}) == [0.25, 0.5, 1.0]
    assert decayed.weights_sha256 != plain.weights_sha256


def test_layer_scales_map_each_parameter_of_the_real_encoder(tiny_model: Path) -> None:
    from sst.env.precision import decide

    cfg = load_config(None, [f"model.name={tiny_model}"])
    model = SstClassifier.from_config(cfg, decide("32-true", "auto"))
    scale = layer_scales(model, 0.5)
    factors = {name: scale(name) for name, _ in model.named_parameters()}
    expected = {  # the tiny BERT: 2 layers
        "backbone.embeddings.": 0.25,
        "backbone.encoder.layer.0.": 0.5,
        "backbone.encoder.layer.1.": 1.0,
        "backbone.pooler.": 1.0,
        "head.": 1.0,
    }
    for name, factor in factors.items():
        (prefix,) = [p for p in expected if name.startswith(p)]  # every parameter is one of them
        assert factor == expected[prefix], name
    assert set(factors.values()) == {0.25, 0.5, 1.0}
    assert layer_scales(nn.Linear(2, 2), 1.0)("weight") == 1.0  # off: nothing is read
    with pytest.raises(SstError, match="name no layers"):
        layer_scales(nn.Linear(2, 2), 0.9)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.ema=1", "train.ema=1.0 is not a decay in"),
        ("train.ema=-0.1", "train.ema=-0.1 is not a decay in"),
        ("train.swa=1.5", "train.swa=1.5 is not a share of the steps"),
        ("train.lr_layer_decay=0", "train.lr_layer_decay=0.0 is not in (0, 1]"),
        ("train.lr_layer_decay=1.2", "train.lr_layer_decay=1.2 is not in (0, 1]"),
        ("train.prune=0.5 train.ema=0.9", "train.prune with a weight average"),
    ],
)
def test_bad_averaging_and_decay_values_are_refused(override: str, message: str) -> None:
    with pytest.raises(SstError) as e:
        load_config(None, override.split())
    assert message in str(e.value)


def test_ema_and_swa_together_are_refused_and_the_defaults_keep_the_hash() -> None:
    with pytest.raises(SstError, match="train.ema and train.swa are both set"):
        load_config(None, ["train.ema=0.99", "train.swa=0.3"])
    plain = load_config(None, [])
    off = load_config(None, ["train.ema=0", "train.swa=0", "train.lr_layer_decay=1"])
    assert off.hash() == plain.hash()
    assert load_config(None, ["train.ema=0.99"]).hash() != plain.hash()
