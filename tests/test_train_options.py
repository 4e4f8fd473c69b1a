"""Training options against values worked out by hand: every learning-rate schedule (warmup
included), ``train.epoch_size``, ``model.freeze_backbone`` and ``model.freeze_embeddings``."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from sst.config import load_config
from sst.env.precision import decide
from sst.model.module import SstClassifier
from sst.verbs.train import train
from tests.conftest import train_overrides

TOTAL, WARMUP_RATIO = 20, 0.1  # 20 optimizer steps, int(0.1 * 20) = 2 of them warming up


def _cos(start: float, end: float, pct: float) -> float:
    """Cosine annealing from ``start`` to ``end`` (PyTorch's OneCycleLR formula)."""
    return end + (start - end) / 2 * (math.cos(math.pi * pct) + 1)


# The factor of the peak learning rate at steps 0..19, by hand. Warmup (linear, cosine) climbs
# (step + 1) / (warmup + 1): 1/3, 2/3; then the decay runs over the 18 steps left.
EXPECTED = {
    "constant": [1.0] * TOTAL,  # no warmup: the rate as given throughout
    "linear": [1 / 3, 2 / 3] + [1 - k / 18 for k in range(18)],
    "cosine": [1 / 3, 2 / 3] + [0.5 * (1 + math.cos(math.pi * k / 18)) for k in range(18)],
    # PyTorch's defaults: from max/25 up to max over the first 30 % (steps 0-5), then down to
    # max/25/1e4 at the last step (19)
    "one_cycle": [_cos(1 / 25, 1.0, s / 5) for s in range(6)]
    + [_cos(1.0, 1 / 25 / 1e4, (s - 5) / 14) for s in range(6, TOTAL)],
}
SPOT = {  # a few of them as plain numbers
    "linear": {0: 1 / 3, 2: 1.0, 11: 0.5, 19: 1 / 18},
    "cosine": {1: 2 / 3, 2: 1.0, 11: 0.5, 19: 0.0075961},
    "one_cycle": {0: 0.04, 5: 1.0, 12: 0.500002, 19: 4e-6},
    "constant": {0: 1.0, 19: 1.0},
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_learning_rate_schedules(kind: str, tiny_model: Path) -> None:
    model = SstClassifier(
        model_name=str(tiny_model), lr=1.0, scheduler=kind, warmup_ratio=WARMUP_RATIO
    )
    model.trainer = SimpleNamespace(estimated_stepping_batches=TOTAL)  # what sizes the schedule
    setup = model.configure_optimizers()
    optimizer, sched = setup["optimizer"], setup["lr_scheduler"]["scheduler"]
    assert setup["lr_scheduler"]["interval"] == "step"
    curve = []
    for _ in range(TOTAL):
        rates = {group["lr"] for group in optimizer.param_groups}
        assert len(rates) == 1  # decayed and not-decayed parameters alike
        curve.append(rates.pop())
        optimizer.step()
        sched.step()
    assert curve == pytest.approx(EXPECTED[kind], rel=1e-6, abs=1e-9)
    for step, value in SPOT[kind].items():
        assert curve[step] == pytest.approx(value, rel=1e-4), (kind, step)


def _recording(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Every training step's epoch, learning rate and batch labels, as the step trains."""
    steps: list[dict] = []
    real = SstClassifier.training_step

    def step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        steps.append(
            {
                "epoch": self.current_epoch,
                "lr": self.trainer.optimizers[0].param_groups[0]["lr"],
                "labels": batch["labels"].tolist(),
            }
        )
        return real(self, batch, batch_idx)

    monkeypatch.setattr(SstClassifier, "training_step", step)
    return steps


def test_epoch_size_and_warmup_in_a_real_run(
    tiny_model, tiny_split, tmp_path: Path, monkeypatch
) -> None:
    """epoch_size=40 draws with batches of 16: 3 batches (16, 16, 8) per epoch, 2 epochs, 6
    steps. The first epoch is stratified: 40 / 5 = 8 draws of every class. Cosine with
    warmup_ratio 0.34: int(0.34 * 6) = 2 warmup steps, then cosine over the 4 left."""
    steps = _recording(monkeypatch)
    extra = (
        "train.epoch_size=40",
        "train.scheduler=cosine",
        "train.warmup_ratio=0.34",
        "tracking.enabled=false",
    )
    train(load_config(None, train_overrides(tiny_model, tiny_split, tmp_path, *extra)))
    assert [s["epoch"] for s in steps] == [0, 0, 0, 1, 1, 1]
    for epoch in (0, 1):
        sizes = [len(s["labels"]) for s in steps if s["epoch"] == epoch]
        assert sorted(sizes) == [8, 16, 16]
    first = [label for s in steps if s["epoch"] == 0 for label in s["labels"]]
    assert [first.count(c) for c in range(5)] == [8, 8, 8, 8, 8]
    cosine = [0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]  # 1, .854, .5, .146
    expected = [1e-3 * f for f in [1 / 3, 2 / 3, *cosine]]
    assert [s["lr"] for s in steps] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    ("knob", "frozen"),
    [
        ("freeze_backbone", lambda name: True),  # every backbone weight
        ("freeze_embeddings", lambda name: name == "embeddings.word_embeddings.weight"),
    ],
)
def test_frozen_weights_stay_pretrained_and_the_rest_learns(
    knob: str, frozen: Callable[[str], bool], tiny_model, tiny_split, tmp_path: Path, monkeypatch
) -> None:
    from transformers import AutoModel

    steps = _recording(monkeypatch)
    extra = (f"model.{knob}=true", "train.epoch_size=40", "tracking.enabled=false")
    cfg = load_config(None, train_overrides(tiny_model, tiny_split, tmp_path, *extra))
    result = train(cfg)
    assert len(steps) == 6  # it did train
    weights = load_file(result.run_dir / "weights.safetensors")
    pretrained = AutoModel.from_pretrained(tiny_model).state_dict()
    backbone = {k.removeprefix("backbone."): v for k, v in weights.items() if k[:9] == "backbone."}
    assert backbone.keys() == pretrained.keys()
    unchanged = {k for k in pretrained if torch.equal(backbone[k], pretrained[k])}
    trained = {k for k in pretrained if not k.startswith("pooler.")}
    assert set(pretrained) - trained <= unchanged  # the pooler: the loss never reaches it
    assert {k for k in trained if frozen(k)} <= unchanged
    assert not {k for k in trained if not frozen(k)} & unchanged  # everything else moved
    # the head did learn: it is not the freshly drawn head it started from
    start = SstClassifier.from_config(cfg, decide(cfg.train.precision, cfg.model.attention)).head
    assert not torch.equal(weights["head.weight"], start.weight.detach())
    assert not torch.equal(weights["head.bias"], start.bias.detach())


def test_evaluate_best_tests_and_keeps_the_weights_chosen_on_dev(
    tiny_model: Path, tiny_split: Path, tmp_path: Path
) -> None:
    """train.evaluate=best: the weights written (and tested) are best.ckpt's, not the last
    epoch's; keep_checkpoints keeps both checkpoints to show it."""
    extra = ("train.sampling=random:3", "train.evaluate=best", "train.keep_checkpoints=true")
    result = train(load_config(None, train_overrides(tiny_model, tiny_split, tmp_path, *extra)))
    folder = result.run_dir / "checkpoints"
    best, last = (torch.load(folder / f"{n}.ckpt", weights_only=False) for n in ("best", "last"))
    weights = load_file(result.run_dir / "weights.safetensors")
    assert all(torch.equal(weights[k], best["state_dict"][k]) for k in weights)
    assert result.notes[0].startswith("tested the best weights (val root macro-F1 0.")
    assert best["global_step"] < last["global_step"]  # here the best epoch is not the last
    assert not all(torch.equal(weights[k], last["state_dict"][k]) for k in weights)


def test_checkpoints_are_removed_after_success_and_the_run_says_so(
    tiny_model: Path, tiny_split: Path, tmp_path: Path
) -> None:
    result = train(load_config(None, train_overrides(tiny_model, tiny_split, tmp_path)))
    assert not (result.run_dir / "checkpoints").exists()
    (note,) = result.notes
    assert note.startswith("removed checkpoints/ (best.ckpt, last.ckpt: ")
    assert "train.keep_checkpoints=true keeps them" in note


def test_fused_adamw_is_bit_identical_run_to_run_and_differs_from_the_loop(
    tiny_model: Path, tiny_split: Path, tmp_path: Path
) -> None:
    """train.optimizer=adamw_torch_fused (the presets): the same config twice gives the same
    bits; the per-tensor loop (the default, as earlier runs) gives other bits."""
    fused = [
        train(
            load_config(
                None,
                train_overrides(
                    tiny_model, tiny_split, tmp_path / d, "train.optimizer=adamw_torch_fused"
                ),
            )
        )
        for d in ("a", "b")
    ]
    loop = train(load_config(None, train_overrides(tiny_model, tiny_split, tmp_path / "c")))
    assert fused[0].weights_sha256 == fused[1].weights_sha256 != loop.weights_sha256


def test_precision_is_a_knob_recorded_in_the_fingerprint_and_part_of_the_bits(
    tiny_model: Path, tiny_split: Path, tmp_path: Path
) -> None:
    """train.precision=bf16-mixed trains under CPU autocast: other bits than fp32 ("auto" on a
    CPU), the resolved precision in the fingerprint, and a note where the CPU has no bf16 units
    (torch emulates them: slower, never a default there). model.attention=auto loads eager
    attention under bf16 on a CPU (sdpa's bf16 backward is slow there), the model's sdpa in fp32,
    and the fingerprint records which."""
    from sst.env.cpu import cpu_has_bf16
    from sst.run.folder import Run

    runs = {
        p: train(
            load_config(
                None, train_overrides(tiny_model, tiny_split, tmp_path / p, f"train.precision={p}")
            )
        )
        for p in ("auto", "bf16-mixed")
    }
    recorded = {p: Run(r.run_dir).fingerprint["determinism"]["precision"] for p, r in runs.items()}
    assert recorded == {"auto": "32-true", "bf16-mixed": "bf16-mixed"}
    attention = {p: Run(r.run_dir).fingerprint["determinism"]["attention"] for p, r in runs.items()}
    assert attention == {"auto": "sdpa", "bf16-mixed": "eager"}
    reloaded = Run(runs["bf16-mixed"].run_dir).load_classifier()  # predict, ensemble: fp32
    assert reloaded.backbone.config._attn_implementation == "sdpa"
    assert runs["auto"].weights_sha256 != runs["bf16-mixed"].weights_sha256
    emulated = [n for n in runs["bf16-mixed"].notes if "without bf16 units" in n]
    assert bool(emulated) != cpu_has_bf16()
    assert not [n for n in runs["auto"].notes if "bf16" in n]


def test_profile_writes_lightnings_per_hook_timings_and_leaves_the_hash(
    tiny_model: Path, tiny_split: Path, tmp_path: Path
) -> None:
    """train.profile=true: Lightning's SimpleProfiler table in the run folder (where a real run's
    time goes, evaluation included); a timing aid, so the config hash is that of the plain run."""
    overrides = train_overrides(tiny_model, tiny_split, tmp_path, "train.profile=true")
    result = train(load_config(None, overrides))
    fit = (result.run_dir / "fit-profile.txt").read_text()
    for action in ("run_training_batch", "[LightningModule]SstClassifier.optimizer_step"):
        assert action in fit, fit[:2000]
    assert "SingleDeviceStrategy.test_step" in (result.run_dir / "test-profile.txt").read_text()
    plain = load_config(None, train_overrides(tiny_model, tiny_split, tmp_path))
    assert load_config(None, overrides).hash() == plain.hash()


def test_root_weight_draws_the_split_roots_that_many_times_and_refuses_zero(
    tiny_model: Path, tiny_split: Path, tmp_path: Path
) -> None:
    import numpy as np

    from sst.errors import SstError
    from sst.model.datamodule import SstDataModule

    extra = ("train.sampling=random:1", "train.epoch_size=0")

    def sampler(weight: int) -> tuple[np.ndarray, np.ndarray]:
        over = (*extra, f"train.root_weight={weight}")
        data = SstDataModule.from_config(
            load_config(None, train_overrides(tiny_model, tiny_split, tmp_path, *over))
        )
        data.setup("fit")
        assert data.sampler is not None
        drawn = np.concatenate(data.sampler.epoch_batches(0))
        return np.bincount(drawn, minlength=len(data.parts["train"])), data.parts["train"].is_root

    once, roots = sampler(1)
    assert (once == 1).all() and roots.any() and not roots.all()
    twice, _ = sampler(2)
    assert (twice[roots] == 2).all() and (twice[~roots] == 1).all()
    with pytest.raises(SstError, match="train.root_weight=0 would drop the roots"):
        sampler(0)


@pytest.mark.parametrize(
    ("attention", "precision", "cuda", "expected"),
    [
        ("auto", "bf16-mixed", False, "eager"),
        ("auto", "bf16-true", False, "eager"),
        ("auto", "32-true", False, None),
        ("auto", "auto", False, None),  # fp32 on a CPU
        ("auto", "bf16-mixed", True, None),  # a GPU's fused attention is fast in bf16
        ("auto", "16-mixed", False, "eager"),  # bf16 on a CPU (Lightning's switch)
        ("sdpa", "bf16-mixed", False, "sdpa"),  # asked for: as asked
        ("eager", "32-true", False, "eager"),
    ],
)
def test_attention_auto_is_eager_only_under_bf16_on_a_cpu(
    attention: str,
    precision: str,
    cuda: bool,
    expected: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert decide(precision, attention).attention == expected


def test_an_explicit_attention_reaches_the_backbone(tiny_model: Path) -> None:
    """model.attention=eager on an fp32 run: the loaded encoder runs eager attention (the knob is
    not only a record), and its hash changes only when set (added=True keeps old hashes)."""
    plain = load_config(None, [f"model.name={tiny_model}"])
    eager = load_config(None, [f"model.name={tiny_model}", "model.attention=eager"])
    for cfg, runs in ((eager, "eager"), (plain, "sdpa")):
        model = SstClassifier.from_config(cfg, decide(cfg.train.precision, cfg.model.attention))
        assert model.backbone.config._attn_implementation == runs
    assert (
        plain.hash()
        == load_config(None, [f"model.name={tiny_model}", "model.attention=auto"]).hash()
    )
    assert plain.hash() != eager.hash()


def test_bf16_mixed_clips_gradients_beside_a_fused_optimizer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The presets clip (train.grad_clip) with the fused AdamW: Lightning 2.6.6's bf16-mixed plugin
    refuses that pair although bf16 has no scaler (Lightning#21435); the kit's clips. When the
    second assertion fails, a Lightning release has the fix and Bf16Mixed can go."""
    from lightning.pytorch.plugins.precision import MixedPrecision

    from sst.run.trainer import Bf16Mixed, trainer_precision

    param = torch.nn.Parameter(torch.ones(4))
    param.grad = torch.full((4,), 10.0)
    fused = torch.optim.AdamW([param], fused=True)
    Bf16Mixed("cpu").clip_gradients(fused, 1.0)
    assert float(param.grad.norm()) == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(RuntimeError, match="fused"):
        MixedPrecision("bf16-mixed", "cpu").clip_gradients(fused, 1.0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    (plugin,) = trainer_precision(decide("bf16-mixed", "auto"))["plugins"]
    assert isinstance(plugin, Bf16Mixed)
    assert trainer_precision(decide("auto", "auto")) == {"precision": "32-true"}
    (plugin,) = trainer_precision(decide("16-mixed", "auto"))[
        "plugins"
    ]  # bf16 on a CPU, as Lightning
    assert isinstance(plugin, Bf16Mixed)


def test_a_bf16_mixed_run_with_the_presets_fused_optimizer_and_clip_trains(
    tiny_model: Path, tiny_split: Path, tmp_path: Path
) -> None:
    """bf16-mixed + adamw_torch_fused + train.grad_clip (the presets' pair) trains to the end, and
    the clip acts: a tight clip gives other weights than none."""
    fused = ("train.precision=bf16-mixed", "train.optimizer=adamw_torch_fused")
    weights = {
        clip: train(
            load_config(
                None,
                train_overrides(
                    tiny_model, tiny_split, tmp_path / clip, *fused, f"train.grad_clip={clip}"
                ),
            )
        ).weights_sha256
        for clip in ("0.001", "0")
    }
    assert weights["0.001"] != weights["0"]


def test_a_gpu_without_bf16_units_trains_16_mixed_with_an_optimizer_that_clips(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A T4 (compute 7.5): torch reports bf16 "supported" by emulation, slow there; auto takes
    16-mixed. The presets' fused AdamW unscales a GradScaler's gradients itself, so Lightning
    refuses to clip them (the presets' train.grad_clip=1): under 16-mixed the per-tensor AdamW
    trains instead, and the run says so."""
    from lightning.fabric.plugins.precision.amp import _optimizer_handles_unscaling

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(
        torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation
    )
    decided = decide("auto", "auto")
    assert decided.lightning == "16-mixed" and decided.attention is None
    assert decide("bf16-mixed", "auto").optimizer("adamw_torch_fused") == "adamw_torch_fused"
    cfg = load_config(None, [f"model.name={tiny_model}", "train.optimizer=adamw_torch_fused"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # build the module on the CPU
    model = SstClassifier.from_config(cfg, decided)
    model.trainer = SimpleNamespace(estimated_stepping_batches=TOTAL)
    optimizer = model.configure_optimizers()["optimizer"]
    assert not _optimizer_handles_unscaling(optimizer)  # Lightning's clip check passes
    fused = torch.optim.AdamW([torch.nn.Parameter(torch.ones(2))], fused=True)
    assert _optimizer_handles_unscaling(fused)  # the trap it avoids
    (note,) = decided.notes("adamw_torch_fused")
    assert "trained with adamw_torch, not adamw_torch_fused" in note


@pytest.mark.parametrize(
    ("cuda", "cpu_bf16", "expected"),
    [
        (False, True, "bf16-mixed"),  # the CPU's bf16 units
        (False, False, "32-true"),  # never emulated
        (True, False, "bf16-mixed"),  # a GPU: as auto (its bf16 units here)
    ],
)
def test_auto_bf16_uses_bf16_only_where_the_device_has_the_units(
    cuda: bool, cpu_bf16: bool, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sst.env import precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: cpu_bf16)
    decided = precision.decide("auto-bf16", "auto")
    assert decided.lightning == expected
    assert decided.attention == ("eager" if expected == "bf16-mixed" and not cuda else None)
    assert load_config(None, ["train.precision=auto-bf16"]).hash() != load_config(None).hash()
