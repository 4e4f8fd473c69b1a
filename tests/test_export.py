"""`sst export`: a run as a folder plain transformers loads where the kit cannot be imported,
with the kit's logits (1e-5) on the test phrases, a model card and a manifest; written once. A
pooler-pooling run is the encoder's own BertForSequenceClassification, loaded without
trust_remote_code; any other is remote code, and its card says why. Both hold model.onnx, whose
logits through onnxruntime (again without the kit) are the kit's within 1e-4."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sst.cli import main
from sst.data import LABELS
from sst.data.pipeline import read_split
from sst.io import sha256_file
from sst.run.folder import Run

# Runs in a fresh interpreter where `import sst` fails: only transformers and the export folder.
LOAD_WITHOUT_THE_KIT = """
import sys
sys.modules["sst"] = None
import numpy as np, torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
folder, texts, out = sys.argv[1], sys.argv[2].split("\\n"), sys.argv[3]
remote = {"trust_remote_code": True} if sys.argv[4] == "remote" else {}
model = AutoModelForSequenceClassification.from_pretrained(folder, **remote).eval()
tokenizer = AutoTokenizer.from_pretrained(folder, **remote)
enc = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
with torch.no_grad():
    logits = model(**enc).logits
import onnxruntime
session = onnxruntime.InferenceSession(folder + "/model.onnx", providers=["CPUExecutionProvider"])
feed = {k: enc[k].numpy() for k in ("input_ids", "attention_mask")}
np.savez(out, input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], logits=logits,
         onnx_logits=session.run(["logits"], feed)[0],
         name=type(model).__name__, labels=[model.config.id2label[i] for i in range(5)])
"""


@pytest.fixture(scope="module")
def exported(tracked_run: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "model"
    assert main(["export", str(tracked_run["run"]), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def pooler_run(
    tiny_model: Path, tiny_split: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """A tiny run whose head reads the encoder's pooler, and its export."""
    from tests.conftest import isolate, train_overrides

    base = tmp_path_factory.mktemp("pooler")
    with pytest.MonkeyPatch.context() as mp:
        isolate(mp, base / "env")
        over = train_overrides(tiny_model, tiny_split, base / "runs", "model.pooling=pooler")
        assert main(["train", *over, "tracking.enabled=false"]) == 0
        (run,) = (base / "runs").iterdir()
        assert main(["export", str(run), "--out", str(base / "model")]) == 0
    return run, base / "model"


def _load_without_the_kit(folder: Path, run: Run, tmp_path: Path, remote: bool) -> Any:
    """The folder loaded by transformers alone on the run's test phrases, and the kit's logits
    for the same token ids."""
    cfg = run.config
    texts = read_split(Path(cfg.train.split))[0]["test"]["text"].tolist()
    assert len(texts) > 100
    result = tmp_path / "plain.npz"
    how = "remote" if remote else "standard"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_WITHOUT_THE_KIT,
            str(folder),
            "\n".join(texts),
            str(result),
            how,
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the checkout: nothing of the kit on the path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    plain = np.load(result)
    assert list(plain["labels"]) == list(LABELS)
    model = run.load_classifier()
    with torch.no_grad():
        kit = model(torch.from_numpy(plain["input_ids"]), torch.from_numpy(plain["attention_mask"]))
    return plain, texts, kit.numpy()


def test_a_pooler_run_is_the_standard_class_loaded_without_remote_code(
    pooler_run: tuple[Path, Path], tmp_path: Path
) -> None:
    from huggingface_hub import ModelCard

    folder, exported = pooler_run
    run = Run(folder)
    plain, _, kit = _load_without_the_kit(exported, run, tmp_path, remote=False)
    assert str(plain["name"]) == "BertForSequenceClassification"
    assert np.abs(kit - plain["logits"]).max() <= 1e-5
    assert np.abs(kit - plain["onnx_logits"]).max() <= 1e-4
    assert plain["logits"].std(0).max() > 1e-4  # logits that depend on the phrase
    config = json.loads((exported / "config.json").read_text())
    assert "auto_map" not in config and config["architectures"] == ["BertForSequenceClassification"]
    assert not (exported / "modeling_sst.py").exists()
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["class"] == "standard"
    card = ModelCard.load(exported / "README.md")
    assert (
        "trust_remote_code" not in card.text
        and "A standard `BertForSequenceClassification`" in card.text
    )
    assert card.data.base_model is None  # a local folder: no hub id to name
    (index,) = card.data.to_dict()["model-index"]
    values = {
        (r["dataset"]["name"], m["type"]): m["value"]
        for r in index["results"]
        for m in r["metrics"]
    }
    root = run.metrics["test"]["root"]
    assert values[("SST-5, roots of the test split", "accuracy")] == round(root["accuracy"], 4)
    assert values[("SST-5, roots of the test split", "f1")] == round(root["macro_f1"], 4)


def test_a_head_without_a_standard_class_says_why_in_its_card(exported: Path) -> None:
    card = (exported / "README.md").read_text()
    assert "Remote code: `modeling_sst.py`" in card
    assert "because mean pooling: the standard classes read the encoder's pooler" in card


def test_the_embedded_model_is_named_by_its_hub_id_and_license() -> None:
    from sst.verbs.export import base_hub_id, base_license

    assert base_hub_id("minilm") == "sentence-transformers/all-MiniLM-L6-v2"
    assert base_license("minilm", None) == "apache-2.0"  # its own card, inside the wheel
    assert base_hub_id("bert-base-uncased") == "bert-base-uncased"
    assert base_license("bert-base-uncased", None) is None  # no card cached: not guessed


def test_transformers_alone_loads_it_with_the_kits_logits(
    exported: Path, tracked_run: dict, tmp_path: Path
) -> None:
    run = Run(tracked_run["run"])
    cfg = run.config
    plain, texts, kit = _load_without_the_kit(exported, run, tmp_path, remote=True)
    assert str(plain["name"]) == "SstForSequenceClassification"
    # the same token ids as the kit's tokenizer at the run's max_length …
    from sst.model.module import load_pretrained

    kit_tok = load_pretrained("tokenizer", cfg.model.name, cfg.model.revision)
    ids = kit_tok(texts, padding=True, truncation=True, max_length=cfg.model.max_length)
    assert np.array_equal(plain["input_ids"], np.array(ids["input_ids"]))
    # … and the kit's logits for them, from the transformers model and from the ONNX file
    assert np.abs(kit - plain["logits"]).max() <= 1e-5
    assert np.abs(kit - plain["onnx_logits"]).max() <= 1e-4
    assert len(set(plain["logits"].argmax(1).tolist())) > 1  # a trained model, not a constant


def test_model_card_and_manifest_record_the_run(exported: Path, tracked_run: dict) -> None:
    run = Run(tracked_run["run"])
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["run"] == run.name
    assert manifest["run_weights_sha256"] == tracked_run["weights"]
    weights = manifest["files"]["model.safetensors"]["sha256"]
    assert weights == sha256_file(exported / "model.safetensors")
    assert {
        "config.json",
        "modeling_sst.py",
        "README.md",
        "tokenizer_config.json",
        "model.onnx",
    } <= set(manifest["files"])
    onnx = manifest["onnx"]
    assert onnx["file"] == "model.onnx" and 0 <= onnx["max_logit_difference"] <= 1e-4
    card = (exported / "README.md").read_text()
    accuracy = run.metrics["test"]["root"]["accuracy"]
    for needle in (
        tracked_run["weights"],
        run.fingerprint["split_manifest_sha256"],
        f"| root | {run.metrics['test']['root']['n']:,} | {accuracy:.3f} |",
        "qwk",
        "trust_remote_code=True",
        f"sst replay {run.name}",
        "contamination risk: none known",
        'onnxruntime.InferenceSession("model.onnx")',
    ):
        assert needle in card, needle
    config = json.loads((exported / "config.json").read_text())
    assert config["auto_map"]["AutoModelForSequenceClassification"] == (
        "modeling_sst.SstForSequenceClassification"
    )
    assert "_name_or_path" not in config["backbone"]  # no path of this machine in the model


def test_exporting_again_is_a_no_op_and_another_folder_is_never_overwritten(
    exported: Path, tracked_run: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in exported.iterdir()}
    assert main(["export", str(tracked_run["run"]), "--out", str(exported)]) == 0
    assert capsys.readouterr().out.startswith(f"{exported}: unchanged")
    assert {p.name: p.stat().st_mtime_ns for p in exported.iterdir()} == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["export", str(tracked_run["run"]), "--out", str(mine)]) == 2
    assert "is not an sst output folder" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_an_onnx_file_with_other_logits_is_left_out_and_the_card_says_why(
    pooler_run: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parity check is what keeps the file: one that fails it is not shipped."""
    from sst.verbs import export

    monkeypatch.setattr(export, "ONNX_PARITY", -1.0)  # any difference, even none, is too much
    out = tmp_path / "model"
    assert main(["export", str(pooler_run[0]), "--out", str(out)]) == 0
    assert not list(out.glob("model.onnx*"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["onnx"]["file"] is None and "model.onnx" not in manifest["files"]
    assert (
        "No ONNX file: onnxruntime gives other logits (max difference"
        in (out / "README.md").read_text()
    )
    assert (out / "model.safetensors").is_file()  # the transformers folder stands without it


def test_an_op_the_exporter_cannot_take_leaves_the_folder_without_onnx(
    pooler_run: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        Path(args[2]).write_bytes(b"half a file")  # what an exporter may leave behind
        raise RuntimeError("no translation for aten::frobnicate\nmore detail")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    out = tmp_path / "model"
    assert main(["export", str(pooler_run[0]), "--out", str(out)]) == 0
    assert not list(out.glob("model.onnx*"))
    card = (out / "README.md").read_text()
    assert (
        "No ONNX file: RuntimeError from torch.onnx or onnxruntime: no translation for "
        "aten::frobnicate more detail." in card
    )
