"""Scale-out with Lightning (``train.devices=2``): two real CPU processes over gloo.

The runs finish, the workers' synced validation equals one process validating the same weights,
two identical DDP runs write identical weights, and every process sees its own share of every
batch (and of the evaluation batches) with nothing lost or seen twice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sst.config import load_config
from sst.config.schedule import Schedule
from sst.model.metrics import HEADLINE, LEVELS
from sst.model.sampling import BucketBatchSampler, RankShare
from sst.run.folder import Run
from sst.verbs.train import train
from sst.viz.pictures import scalars
from tests.conftest import train_overrides


@pytest.fixture(scope="module")
def ddp_runs(tiny_model: Path, tiny_split: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("ddp")
    extra = ("train.devices=2", "tracking.enabled=false", "train.keep_checkpoints=true")
    best = (*extra, "train.evaluate=best", "train.sampling=random:3")
    return [
        train(load_config(None, train_overrides(tiny_model, tiny_split, tmp / f"runs{i}", *extra)))
        for i in range(2)
    ] + [train(load_config(None, train_overrides(tiny_model, tiny_split, tmp / "best", *best)))]


def _last_logged(run: Path) -> dict[str, float]:
    """The last value of every scalar the DDP workers logged."""
    return {tag: points[-1][1] for tag, points in scalars(run / "tb").items()}


def test_two_process_run_finishes_and_repeats_bit_identically(ddp_runs) -> None:
    first, second, _ = ddp_runs
    assert first.weights_sha256 == second.weights_sha256
    assert first.run_dir.name != second.run_dir.name and not first.run_dir.name.endswith(".partial")
    run = Run(first.run_dir)
    run.verify()
    assert run.fingerprint["determinism"]["precision"] == "32-true"
    assert (first.run_dir / "checkpoints" / "best.ckpt").is_file()
    # every test node scored once, by the main process, from the weights the workers trained
    predictions = (first.run_dir / "predictions.tsv").read_text().splitlines()
    assert len(predictions) - 1 == first.metrics["test"]["phrase"]["n"]
    weights = load_file(first.run_dir / "weights.safetensors")
    pooler = [k for k in weights if "pooler" in k]
    assert pooler  # kept in the file, as a one-process run keeps it (never trained)


def test_workers_synced_validation_equals_one_process_on_the_same_weights(ddp_runs) -> None:
    """Each worker scores every other evaluation batch; the metrics sync on compute. The main
    process then validates the same (last) weights alone: every headline must agree."""
    run = ddp_runs[0]
    logged = _last_logged(run.run_dir)
    alone = run.metrics["val"]
    compared = 0
    for level in LEVELS:
        for key in HEADLINE:
            assert logged[f"val/{level}/{key}"] == pytest.approx(alone[level][key], abs=1e-6)
            compared += 1
    assert compared == len(LEVELS) * len(HEADLINE)


def test_best_on_dev_under_ddp_tests_the_checkpoint_the_workers_chose(ddp_runs) -> None:
    run = ddp_runs[2]
    best = torch.load(run.run_dir / "checkpoints" / "best.ckpt", weights_only=False)
    weights = load_file(run.run_dir / "weights.safetensors")
    assert all(torch.equal(weights[k], best["state_dict"][k]) for k in weights)
    (note,) = [n for n in run.notes if n.startswith("tested the best weights")]
    logged = max(v for _, v in scalars(run.run_dir / "tb")["val/root/macro_f1"])
    assert note == f"tested the best weights (val root macro-F1 {logged:.4f})"


def test_rank_shares_cover_every_batch_once_in_the_same_order() -> None:
    labels = np.repeat(np.arange(5), 40)
    lengths = np.arange(200) % 17 + 1

    def sampler() -> BucketBatchSampler:  # one per process, as each DDP worker builds its own
        return BucketBatchSampler(labels, lengths, 16, Schedule.parse("random:1"), seed=3)

    whole = [list(b) for b in sampler()]
    shares = [list(RankShare(sampler(), rank, 2)) for rank in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == len(whole) == len(RankShare(sampler(), 0, 2))
    for batch, a, b in zip(whole, *shares, strict=True):
        assert sorted(a + b) == sorted(batch) and not set(a) & set(b)
        assert abs(len(a) - len(b)) <= 1


def test_a_batch_smaller_than_the_process_count_still_gives_every_process_a_draw() -> None:
    class One:
        def __iter__(self):
            yield [7]

    assert list(RankShare(One(), 1, 2)) == [[7]]  # type: ignore[arg-type]


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("eval_batch", [256, 8])
def test_evaluation_shares_every_distinct_text_once_among_the_processes(
    tiny_model: Path, tiny_split: Path, world: int, eval_batch: int
) -> None:
    """The worker side of the synced validation: each process gets at least one batch (a part
    smaller than one batch per process is cut into ``world`` pieces), and together they score
    every distinct text exactly once."""
    from types import SimpleNamespace

    from sst.model.datamodule import SstDataModule

    cfg = load_config(
        None,
        train_overrides(
            tiny_model, tiny_split, Path("unused"), f"train.eval_batch_size={eval_batch}"
        ),
    )
    data = SstDataModule.from_config(cfg)
    data.setup("fit")
    seen: list[int] = []
    for rank in range(world):
        data.trainer = SimpleNamespace(global_rank=rank, world_size=world)  # type: ignore[assignment]
        batches = list(data.val_dataloader().batch_sampler)  # type: ignore[arg-type]
        assert batches and all(batches)
        seen += [i for b in batches for i in b]
    data.trainer = None  # type: ignore[assignment]
    n = len(list(i for b in data.val_dataloader().batch_sampler for i in b))  # type: ignore[union-attr]
    assert sorted(seen) == list(range(n))


def test_plain_ddp_that_reruns_the_command_is_refused() -> None:
    from sst.errors import SstError

    with pytest.raises(SstError, match="train.strategy='ddp' is not one of auto, ddp_fork"):
        load_config(None, ["train.strategy=ddp"])
