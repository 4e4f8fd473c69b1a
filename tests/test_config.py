"""Config: presets + overrides, typed, with file:line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from sst.config import describe, load_config
from sst.errors import SstError

REPO = Path(__file__).resolve().parent.parent


def test_presets_load_and_overrides_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SST_DATA", "/data")
    cfg = load_config(REPO / "configs" / "kaggle.yaml", ["split.n_seeds=12", "data.dedup=global"])
    assert cfg.split.n_seeds == 12 and cfg.data.dedup == "global"
    assert cfg.data.sources == ("/data/kaggle_movie_reviews/train.tsv.gz",)
    assert load_config(REPO / "configs" / "ptb.yaml").split.mode == "canonical"
    with pytest.raises(AttributeError):
        cfg.split.n_seeds = 3  # type: ignore[misc]


def test_unknown_key_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: x\nsplit:\n  n_seed: 3\n")
    with pytest.raises(SstError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}:3: unknown config key 'split.n_seed'")
    assert "n_seeds" in str(err.value)


def test_wrong_type_and_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("split:\n  test_fraction: lots\n")
    with pytest.raises(
        SstError, match=r"c\.yaml:2: split\.test_fraction='lots' is not a valid float"
    ):
        load_config(path)
    path.write_text("split: [unclosed\n")
    with pytest.raises(SstError, match=r"c\.yaml:\d+: invalid YAML"):
        load_config(path)
    with pytest.raises(SstError, match="is not key=value"):
        load_config(None, ["split.n_seeds"])


def test_unset_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SST_DATA", raising=False)
    with pytest.raises(SstError, match=r"kaggle\.yaml:6: \$\{SST_DATA\} is not set"):
        load_config(REPO / "configs" / "kaggle.yaml")


def test_every_key_has_help() -> None:
    lines = describe()
    assert any(line.startswith("split.n_seeds (int, default 10000): ") for line in lines)
    assert all(line.split("): ", 1)[1] for line in lines)
