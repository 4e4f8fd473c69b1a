"""Config: presets + overrides, typed, with file:line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from sst.config import describe, load_config
from sst.config.variables import expand, unset_variables
from sst.errors import SstError

REPO = Path(__file__).resolve().parent.parent


def test_presets_load_and_overrides_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SST_DATA", "/data")
    cfg = load_config(REPO / "configs" / "kaggle.yaml", ["split.n_seeds=12", "data.dedup=global"])
    assert cfg.split.n_seeds == 12 and cfg.data.dedup == "global"
    # a list field takes the spelling and YAML's alike
    for seeds in ("train.seeds=0,1,2", "train.seeds=[0, 1, 2]", "train.seeds= 0, 1 ,2"):
        assert load_config(None, [seeds]).train.seeds == (0, 1, 2)
    # sources are kept as written (identity is content, not where it sits) and expand when read
    assert cfg.data.sources == ("${SST_DATA}/kaggle_movie_reviews/train.tsv.gz",)
    assert expand(cfg.data.sources[0]) == "/data/kaggle_movie_reviews/train.tsv.gz"
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
    monkeypatch.delenv("SST_RUNS", raising=False)
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ntrain:\n  runs_dir: ${SST_RUNS}/runs\n")
    with pytest.raises(SstError, match=r"c\.yaml:3: \$\{SST_RUNS\} is not set"):
        load_config(path)
    path.write_text("name: x\ntrain:\n  runs_dir: ${SST_RUNS:-/tmp}/runs\n")
    assert load_config(path).train.runs_dir == "/tmp/runs"
    # a source's variable is not needed to read the config: only to read the file
    cfg = load_config(REPO / "configs" / "kaggle.yaml")
    assert unset_variables(cfg.data.sources[0]) == ["SST_DATA"]
    with pytest.raises(SstError, match=r"\$\{SST_DATA\} is not set"):
        expand(cfg.data.sources[0])


def test_every_key_has_help() -> None:
    lines = describe()
    assert any(line.startswith("split.n_seeds (int, default 10000): ") for line in lines)
    assert all(line.split("): ", 1)[1] for line in lines)


@pytest.mark.parametrize(
    ("override", "key", "allowed"),
    [
        ("model.pooling=foo", "model.pooling", "cls, mean"),
        ("train.scheduler=bar", "train.scheduler", "linear, cosine, constant, one_cycle"),
        ("split.mode=zzz", "split.mode", "search, canonical"),
        ("data.dedup=all", "data.dedup", "none, sentence, global"),
        ("data.format=csv", "data.format", "kaggle, ptb"),
        ("train.precision=fp16", "train.precision", "auto, auto-bf16, 32-true"),
        ("model.attention=flash", "model.attention", "auto, sdpa, eager"),
    ],
)
def test_a_choice_outside_its_values_is_one_line_naming_key_and_values(
    override: str, key: str, allowed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from sst.cli import main

    assert main(["config", override]) == 2
    captured = capsys.readouterr()
    value = override.split("=")[1]
    assert captured.out == ""
    assert captured.err.startswith(f"sst config: error: {key}='{value}' is not one of {allowed}")
    assert captured.err.count("\n") == 1


def test_a_choice_in_a_file_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: x\nmodel:\n  pooling: max\n")
    with pytest.raises(SstError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}:3: model.pooling='max' is not one of cls, mean")
    assert load_config(None, ["model.pooling=cls"]).model.pooling == "cls"
    assert any(
        line.startswith("model.pooling (cls|mean|pooler, default 'mean'): ") for line in describe()
    )


def test_the_classifiers_own_defaults_are_the_configs() -> None:
    """SstClassifier keeps keyword defaults (Lightning saves and reloads its hyper-parameters by
    name): each must be the config's default for that key, so the two cannot disagree."""
    import inspect

    from sst.config.sections import ModelConfig, TrainConfig
    from sst.model.module import SstClassifier

    renamed = {"model_name": "name"}
    decided = {"attention"}  # the kernels a precision decision chose, not model.attention
    defaults = {**ModelConfig().__dict__, **TrainConfig().__dict__}
    params = inspect.signature(SstClassifier.__init__).parameters
    checked = {
        name: p.default
        for name, p in params.items()
        if p.default is not inspect.Parameter.empty
        and renamed.get(name, name) in defaults
        and name not in decided
    }
    assert len(checked) >= 10
    for name, value in checked.items():
        assert value == defaults[renamed.get(name, name)], name
