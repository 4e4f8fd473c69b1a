"""Hub models pinned by commit, without the hub: a local hub cache in the hub's own layout
(``models--org--name/refs/main`` naming a commit, ``snapshots/<commit>/``), read offline by
revision exactly as a download would be. A run records the commit its weights came from; when
``main`` moves, its replay still loads that commit; a sweep line that names no commit is warned
about before anything trains; the exported model card names the hub id and the commit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, build_tiny_bert, synthetic_rows, train_overrides

HUB_ID = "sst-test/tiny-bert"
FIRST, SECOND = "a" * 40, "b" * 40


def publish(hub: Path, commit: str, folder: Path) -> None:
    """``folder``'s files as the snapshot ``commit`` of HUB_ID, and ``main`` pointing at it."""
    repo = hub / f"models--{HUB_ID.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for f in folder.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """The hub cache with the tiny BERT at FIRST; main names FIRST."""
    hub = tmp_path_factory.mktemp("hub")
    publish(hub, FIRST, tiny_model)
    snapshot = hub / f"models--{HUB_ID.replace('/', '--')}" / "snapshots" / FIRST
    (snapshot / "README.md").write_text("---\nlicense: mit\n---\n# tiny-bert\n")  # its card
    return hub


def second_model(tmp: Path) -> Path:
    """Other weights of the same architecture (what a moved ``main`` would serve)."""
    texts = [r[2] for r in synthetic_rows(200)]
    folder = build_tiny_bert(tmp / "second", texts)
    import torch
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    save_file(
        {k: v + 0.01 * torch.ones_like(v) for k, v in weights.items()}, folder / "model.safetensors"
    )
    return folder


def sst(*args: str, hub: Path, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "sst.cli", *args], env=env, cwd=cwd, capture_output=True, text=True
    )


def test_a_hub_run_records_its_commit_and_replays_it_after_main_moves(
    hub: Path, tiny_split: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    over = train_overrides(Path(HUB_ID), tiny_split, runs)  # model.name=sst-test/tiny-bert
    first = sst("train", *over, "tracking.enabled=false", hub=hub)
    assert first.returncode == 0, first.stderr[-3000:]
    (run,) = runs.iterdir()
    recorded = json.loads((run / "fingerprint.json").read_text())
    assert recorded["model_commit"] == FIRST and recorded["model_revision"] == "main"
    assert recorded["model_files_sha256"] is None  # a hub id: its commit identifies it
    publish(hub, SECOND, second_model(tmp_path))  # main moves
    replayed = sst("replay", str(run), "--out", str(tmp_path / "replays"), hub=hub)
    assert replayed.returncode == 0, replayed.stderr[-3000:]
    assert replayed.stdout.strip().endswith(
        f"BIT-IDENTICAL (weights sha256 {recorded['weights_sha256']})"
    )
    # a new run of the same config trains main as it is now, and says which commit that was
    again = sst(
        "train", *over, "tracking.enabled=false", f"train.runs_dir={tmp_path / 'again'}", hub=hub
    )
    assert again.returncode == 0, again.stderr[-3000:]
    (other,) = (tmp_path / "again").iterdir()
    moved = json.loads((other / "fingerprint.json").read_text())
    assert moved["model_commit"] == SECOND and moved["weights_sha256"] != recorded["weights_sha256"]
    verdict = sst("verify", str(run), str(other), hub=hub)
    assert verdict.returncode == 1  # DIFFERENT, and why
    assert (
        "model_commit: " in verdict.stdout and "another commit of the hub model" in verdict.stdout
    )
    # the exported card names the hub id and the commit the weights came from
    exported = sst("export", str(run), "--out", str(tmp_path / "export"), hub=hub)
    assert exported.returncode == 0, exported.stderr[-3000:]
    card = (tmp_path / "export" / "README.md").read_text()
    assert f"`{HUB_ID}` at commit `{FIRST}`" in card
    from huggingface_hub import ModelCard

    data = ModelCard.load(tmp_path / "export" / "README.md").data
    assert data.base_model == HUB_ID and data.license == "mit"  # from the base's own card


def test_a_sweep_names_each_unpinned_hub_line_before_anything_trains(tmp_path: Path) -> None:
    from sst.config.zoo import read_models
    from sst.verbs.sweep import unpinned

    models = tmp_path / "models.txt"
    models.write_text(
        f"minilm\n{HUB_ID}\n{HUB_ID} model.revision={FIRST} lr=3e-5\nbert-base-uncased "
        "model.revision=v1.0\n"
    )
    warnings = unpinned(models, read_models(models, None, []))
    assert [w.split(": ", 1)[0] for w in warnings] == [f"{models}:2", f"{models}:4"]
    assert "revision 'main', not a commit" in warnings[0] and "model.revision=" in warnings[0]


def test_sst_sweep_warns_before_the_first_line_trains(
    hub: Path, tiny_split: Path, tmp_path: Path
) -> None:
    """The warning comes from `sst sweep` itself, ahead of the first line's process."""
    from sst.config import load_config
    from sst.io import dumps

    over = train_overrides(Path(HUB_ID), tiny_split, tmp_path / "runs", "tracking.enabled=false")
    base = tmp_path / "base.yaml"
    base.write_text(dumps(load_config(None, over).to_dict()))
    models = tmp_path / "models.txt"
    models.write_text(f"{HUB_ID}\n")
    report = str(tmp_path / "report")
    done = sst(
        "sweep",
        "--config",
        str(base),
        "--models",
        str(models),
        "--local",
        "--report",
        report,
        hub=hub,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    warning = f"sst sweep: warning: {models}:1: {HUB_ID} at revision 'main', not a commit"
    assert done.stderr.startswith(warning), done.stderr[:500]
