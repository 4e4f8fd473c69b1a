"""Golden values for what must never drift silently: a change that alters every run the same way
passes every run-against-run comparison, so these are pinned by value. None depends on the CPU:
a config's hash is canonical JSON of its resolved values, a split is pandas, numpy's seeded
permutations and PNGs drawn by the locked matplotlib.

When one of these fails, the change altered the identity of every run made from that preset or
split: earlier runs would replay as "another config" or "another split". Make such a change
deliberately (an ``added=True`` config field keeps old hashes), then update the value here and
say so in the commit."""

from __future__ import annotations

from pathlib import Path

import pytest

from sst.config import load_config
from sst.data.pipeline import run_split
from sst.io import MANIFEST, sha256_file

REPO = Path(__file__).resolve().parent.parent

CONFIG_SHA256 = {
    "demo.yaml": "001302ed5e3d3d656b517c5b1b8e6144a96fd59211877c855e505d532c5ae652",
    "full.yaml": "59adad7563af4c8c4edd2fd02fdefd8d033dbc28534f34cfc82c85de9b2f2a2e",
    "kaggle.yaml": "18d63436a1055b479c8a284edf26b00612dbf20135c6ebe275a762f7660476cf",
    "mpnet.yaml": "d9392934188a371f4148c417eea44c4ef46f81ed0e8e4451c79b55a27e9ab76c",
    "ptb.yaml": "8c4d3ad804914a2309b103e1bb525b1132e94503ae02e9f7ad242611e3d2c672",
    "sweep-local.yaml": "2e4ead287e8175c2b3fe42d051625f02196836b5ea47da4714d2d6088f89ebcc",
}
# the split each preset writes from the real releases (../shared/data), by its manifest's sha256
MANIFEST_SHA256 = {
    "ptb.yaml": "8ea659ab5ac55b692c5d4fcc6d54096bb634bf2419a5ebf960abfc4627416791",
    "kaggle.yaml": "59fdae433b13b8e49e3978bdf086581b522567207e3b67ac992ea179730a8115",
}


def test_every_preset_is_pinned() -> None:
    assert sorted(p.name for p in (REPO / "configs").glob("*.yaml")) == sorted(CONFIG_SHA256)


@pytest.mark.parametrize("preset", sorted(CONFIG_SHA256))
def test_a_presets_config_hash_is_pinned(preset: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Also where the data is elsewhere: the sources are hashed as written (``${SST_DATA}``)."""
    monkeypatch.setenv("SST_DATA", "/somewhere/else")
    assert load_config(REPO / "configs" / preset).hash() == CONFIG_SHA256[preset]


@pytest.mark.parametrize("preset", sorted(MANIFEST_SHA256))
def test_a_real_split_manifest_is_pinned(
    preset: str, shared_data: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if preset == "kaggle.yaml":
        request.getfixturevalue("kaggle_release")  # skips without it
    out = tmp_path / "split"  # where it is written is not part of it
    cfg = load_config(REPO / "configs" / preset, [f"split.out={out}", "tracking.enabled=false"])
    run_split(cfg)
    assert sha256_file(out / MANIFEST) == MANIFEST_SHA256[preset]


@pytest.mark.parametrize("preset", ["demo.yaml", "full.yaml", "mpnet.yaml", "sweep-local.yaml"])
def test_the_training_presets_train_on_the_pinned_ptb_split(preset: str) -> None:
    """The split they write when it is missing is ptb.yaml's: the same sources, the same mode."""
    cfg, ptb = (load_config(REPO / "configs" / p) for p in (preset, "ptb.yaml"))
    assert cfg.train.split == cfg.split.out == ptb.split.out
    assert (cfg.data, cfg.split) == (ptb.data, ptb.split)
