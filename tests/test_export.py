"""`sst export`: a run as a folder plain transformers loads where the kit cannot be imported,
with the kit's logits (1e-5) on the test phrases, a model card and a manifest; written once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
enc = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
with torch.no_grad():
    logits = model(**enc).logits
np.savez(out, input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], logits=logits,
         name=type(model).__name__, labels=[model.config.id2label[i] for i in range(5)])
"""


@pytest.fixture(scope="module")
def exported(tracked_run: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "model"
    assert main(["export", str(tracked_run["run"]), "--out", str(out)]) == 0
    return out


def test_transformers_alone_loads_it_with_the_kits_logits(
    exported: Path, tracked_run: dict, tmp_path: Path
) -> None:
    run = Run(tracked_run["run"])
    cfg = run.config
    texts = read_split(Path(cfg.train.split))[0]["test"]["text"].tolist()
    assert len(texts) > 100
    result = tmp_path / "plain.npz"
    done = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_THE_KIT, str(exported), "\n".join(texts), str(result)],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the checkout: nothing of the kit on the path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    plain = np.load(result)
    assert str(plain["name"]) == "SstForSequenceClassification"
    assert list(plain["labels"]) == list(LABELS)
    # the same token ids as the kit's tokenizer at the run's max_length …
    from sst.model.module import load_pretrained

    kit_tok = load_pretrained("tokenizer", cfg.model.name, cfg.model.revision)
    ids = kit_tok(texts, padding=True, truncation=True, max_length=cfg.model.max_length)
    assert np.array_equal(plain["input_ids"], np.array(ids["input_ids"]))
    # … and the kit's logits for them
    model = run.load_classifier()
    with torch.no_grad():
        kit = model(torch.from_numpy(plain["input_ids"]), torch.from_numpy(plain["attention_mask"]))
    assert np.abs(kit.numpy() - plain["logits"]).max() <= 1e-5
    assert len(set(plain["logits"].argmax(1).tolist())) > 1  # a trained model, not a constant


def test_model_card_and_manifest_record_the_run(exported: Path, tracked_run: dict) -> None:
    run = Run(tracked_run["run"])
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["run"] == run.name
    assert manifest["run_weights_sha256"] == tracked_run["weights"]
    weights = manifest["files"]["model.safetensors"]["sha256"]
    assert weights == sha256_file(exported / "model.safetensors")
    assert {"config.json", "modeling_sst.py", "README.md", "tokenizer_config.json"} <= set(
        manifest["files"]
    )
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
