"""Training on a tiny random BERT: the run directory, determinism, predict, and bad values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from sst.cli import main
from sst.config import load_config
from sst.env.precision import decide
from sst.model.datamodule import SstDataModule
from sst.tracking.agent import container_image
from sst.verbs.train import train
from tests.conftest import configuration, isolate, train_overrides

CONTRACT = {
    "config.yaml",
    "fingerprint.json",
    "metrics.json",
    "weights.safetensors",
    "confusion_matrix.png",
    "predictions.tsv",
    "tb",
}
METRIC_KEYS = {
    "accuracy",
    "macro_f1",
    "micro_f1",
    "precision_per_class",
    "recall_per_class",
    "min_class_precision",
    "within_one",
    "mae",
    "qwk",
    "polarity_flip_rate",
    "confusion_matrix",
}


@pytest.fixture(scope="module")
def two_runs(tiny_model: Path, tiny_split: Path, tmp_path_factory: pytest.TempPathFactory):
    """The same config trained twice (tracking on, offline) and once with another seed. Set up
    before the per-test isolation (module scope): isolated here the same way, so a clearml.conf
    of the user's never turns these into server tasks."""
    runs = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        isolate(mp, tmp_path_factory.mktemp("two-runs-env"))
        a = train(load_config(None, [*train_overrides(tiny_model, tiny_split, runs / "a")]))
        b = train(load_config(None, [*train_overrides(tiny_model, tiny_split, runs / "b")]))
        c = train(
            load_config(
                None, [*train_overrides(tiny_model, tiny_split, runs / "c"), "train.seed=1"]
            )
        )
    return a, b, c


def test_run_directory_contract(two_runs) -> None:
    run = two_runs[0].run_dir
    assert {p.name for p in run.iterdir()} >= CONTRACT
    assert not run.name.endswith(".partial")
    assert not (run / "checkpoints").exists()  # removed on success (train.keep_checkpoints)
    metrics = json.loads((run / "metrics.json").read_text())
    for stage in ("val", "test"):
        for level in ("phrase", "root"):
            assert set(metrics[stage][level]) >= METRIC_KEYS
    fp = json.loads((run / "fingerprint.json").read_text())
    assert (
        fp["threads"] == 1 and fp["seed"] == 0 and fp["weights_sha256"] == metrics["weights_sha256"]
    )
    assert fp["model_files_sha256"] and fp["split_manifest_sha256"]
    assert list((run / "tb").rglob("events.out.tfevents.*"))
    preds = pd.read_csv(run / "predictions.tsv", sep="\t")
    assert len(preds) == metrics["test"]["phrase"]["n"]
    assert (preds[[f"p{c}" for c in range(5)]].sum(axis=1) - 1).abs().max() < 1e-4


def test_same_config_same_threads_is_bit_identical(two_runs) -> None:
    a, b, c = two_runs
    wa, wb = (
        load_file(a.run_dir / "weights.safetensors"),
        load_file(b.run_dir / "weights.safetensors"),
    )
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a.weights_sha256 == b.weights_sha256
    assert a.metrics["test"] == b.metrics["test"]
    wc = load_file(c.run_dir / "weights.safetensors")
    assert c.weights_sha256 != a.weights_sha256
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_offline_session_has_the_training(two_runs) -> None:
    line = two_runs[0].tracking
    assert line and "ClearML offline session" in line
    session = Path(line.split("ClearML offline session ")[1].split(" ")[0])
    # in the fixture's own isolated ClearML cache: <env>/clearml-cache/offline/<session>
    assert session.parent.parent.parent.name.startswith("two-runs-env"), session
    task = json.loads((session / "task.json").read_text())
    assert task["type"] == "training"
    assert task["hyperparams"]["config"]["train/threads"]["value"] == "1"
    # the config is the one hyperparameter section: what the run records about itself is not
    assert list(task["hyperparams"]) == ["config"]
    assert configuration(task, "model")["lr"] == 1e-3  # the classifier's arguments
    assert configuration(task, "fingerprint")["weights_sha256"] == two_runs[0].weights_sha256
    container = configuration(task, "container")
    assert container["image"] == container_image()
    assert "CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL=1" in container["arguments"]
    docker_cmd = task["execution"]["docker_cmd"]  # what set_base_docker stores offline (API 2.9)
    assert docker_cmd.startswith(
        f"{container_image()} --user root -e CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL=1"
    )
    text = (session / "metrics.jsonl").read_text()
    for needle in ("test/root/accuracy", "test confusion matrix", "test per class"):
        assert needle in text


def test_predict_round_trip(two_runs, tmp_path: Path, capsys) -> None:
    run = two_runs[0].run_dir
    preds = pd.read_csv(run / "predictions.tsv", sep="\t")
    from sst.data.pipeline import read_split

    parts, _ = read_split(load_config(run / "config.yaml").train.split)
    test = parts["test"].merge(preds, on=["phrase_id", "sentence_id"])
    src = tmp_path / "phrases.tsv"
    test[["phrase_id", "text"]].to_csv(src, sep="\t", index=False)
    out = tmp_path / "out" / "predictions.tsv"
    assert main(["predict", "--run", str(run), "--file", str(src), "--out", str(out)]) == 0
    got = pd.read_csv(out, sep="\t")
    assert got["phrase_id"].tolist() == test["phrase_id"].tolist()
    assert (got["pred"] == test["pred"]).all()
    assert (got["p2"] - test["p2"]).abs().max() < 1e-4
    capsys.readouterr()
    assert main(["predict", "--run", str(run), test["text"].iloc[0]]) == 0
    line = capsys.readouterr().out
    assert line.startswith(f"{test['pred'].iloc[0]} ") and test["text"].iloc[0] in line


def test_worker_processes_load_the_same_batches(two_runs, tiny_model, tiny_split, tmp_path) -> None:
    """num_workers=2: every batch is fetched in a worker process (seeded), and the run ends with
    the weights of the same config loaded in the main process (two_runs: num_workers=0)."""
    import os

    from sst.io import sha256_file

    fetched = tmp_path / "fetched-by.txt"  # each process that collated a batch: its pid
    collate = SstDataModule.from_config  # the loader's collate runs where the batch is fetched

    def spying(cfg, pseudo=None):  # type: ignore[no-untyped-def]
        data = collate(cfg, pseudo)
        real = data.collate

        def call(items):  # type: ignore[no-untyped-def]
            with fetched.open("a") as f:
                f.write(f"{os.getpid()}\n")
            return real(items)

        data.collate = call
        return data

    extra = ("train.num_workers=2", "tracking.enabled=false")
    cfg = load_config(None, train_overrides(tiny_model, tiny_split, tmp_path, *extra))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SstDataModule, "from_config", spying)
        result = train(cfg)
    pids = fetched.read_text().split()
    assert pids and str(os.getpid()) not in pids  # every batch was fetched by a worker
    assert sha256_file(result.run_dir / "weights.safetensors") == two_runs[0].weights_sha256


def test_predict_reads_a_plain_text_file(two_runs, tmp_path: Path, capsys) -> None:
    """A file without a text/Phrase header column: one phrase per non-blank line, as written
    (quotes and a leading "text" word are part of the phrase)."""
    from sst.data.lines import read_phrases
    from sst.verbs.predict import predict_texts

    src = tmp_path / "phrases.txt"
    src.write_text(
        'text messages are "dull"\n\na gorgeous , witty , seductive movie .\n   \nsolo\n',
        encoding="utf-8",
    )
    phrases = ['text messages are "dull"', "a gorgeous , witty , seductive movie .", "solo"]
    assert read_phrases(src)["text"].tolist() == phrases
    assert list(read_phrases(src).columns) == ["text"]
    run = two_runs[0].run_dir
    out = tmp_path / "out.tsv"
    assert main(["predict", "--run", str(run), "--file", str(src), "--out", str(out)]) == 0
    assert "3 predictions written" in capsys.readouterr().out
    got = pd.read_csv(out, sep="\t", quoting=3, escapechar="\\")
    assert got["text"].tolist() == phrases
    direct = predict_texts(run, phrases)  # the same phrases given on the command line
    assert got["pred"].tolist() == [int(p.argmax()) for _, p in direct]


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("train.sampling=stratified:four", "bad sampling schedule part 'stratified:four'"),
        ("model.pooling=max", "model.pooling='max'"),
        ("train.scheduler=step", "train.scheduler='step'"),
        ("train.batch_size=big", "train.batch_size='big' is not a valid int"),
        ("train.lrr=1", "unknown config key 'train.lrr'"),
        ("model.name=./no/such/model", "model folder not found"),
        ("model.name=nobody/no-such-model-xyz", "cannot load tokenizer 'nobody/no-such-model-xyz'"),
    ],
)
def test_bad_values_are_one_line_errors(
    override, needle, tiny_model, tiny_split, tmp_path, capsys
) -> None:
    args = ["train", *train_overrides(tiny_model, tiny_split, tmp_path / "runs"), override]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_evaluation_predicts_each_distinct_text_once_and_scores_every_node(
    two_runs, tiny_model, tiny_split, tmp_path
) -> None:
    """Nodes that share a text get one prediction (bit-equal probabilities) and keep their own
    labels; the confusion matrices in metrics.json are those of predictions.tsv."""
    from sst.data.pipeline import read_split
    from sst.model.datamodule import Collate, Distinct, Encoded
    from sst.model.module import SstClassifier

    run = two_runs[0].run_dir
    preds = pd.read_csv(run / "predictions.tsv", sep="\t")
    parts, _ = read_split(load_config(run / "config.yaml").train.split)
    test = parts["test"].merge(preds, on=["phrase_id", "sentence_id"], suffixes=("", "_p"))
    metrics = json.loads((run / "metrics.json").read_text())["test"]
    for level, rows in (("phrase", test), ("root", test[test["is_root"]])):
        cm = np.zeros((5, 5), dtype=int)
        np.add.at(cm, (rows["label"].to_numpy(), rows["pred"].to_numpy()), 1)
        assert cm.tolist() == metrics[level]["confusion_matrix"]
    # a hand-made part: 4 nodes, 2 distinct texts, through the collate and a real model's step
    frame = pd.DataFrame(
        {"label": [0, 4, 0, 2], "is_root": [True, False, False, True], "phrase_id": range(4)}
    )
    frame["sentence_id"] = [1, 1, 2, 2]
    part = Encoded(np.array([5, 6, 7, 5, 6, 7]), np.array([0, 2, 3, 5, 6]), frame)
    distinct = Distinct(part)
    assert [g.tolist() for g in distinct.groups] == [[0, 2], [1, 3]]
    batch = Collate(0)([distinct[0], distinct[1]])
    assert batch["input_ids"].tolist() == [[5, 6], [7, 0]]
    assert batch["expand"].tolist() == [0, 0, 1, 1]
    assert batch["index"].tolist() == [0, 2, 1, 3] and batch["labels"].tolist() == [0, 0, 4, 2]
    cfg = load_config(None, train_overrides(tiny_model, tiny_split, tmp_path))
    model = SstClassifier.from_config(cfg, decide(cfg.train.precision, cfg.model.attention)).eval()
    model.on_test_epoch_start()
    with torch.no_grad():
        model.test_step(batch, 0)
    assert sorted(model.test_probs) == [0, 1, 2, 3]
    assert torch.equal(model.test_probs[0], model.test_probs[2])
    assert torch.equal(model.test_probs[1], model.test_probs[3])
    assert int(model._cm("test", "phrase").compute().sum()) == 4
    assert int(model._cm("test", "root").compute().sum()) == 2
