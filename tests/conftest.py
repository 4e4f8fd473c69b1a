"""Shared fixtures: isolated caches and ClearML offline sessions, tiny data builders, real data."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from sst.env.bits import TINY_BERT
from sst.io import default_cache_dir

REPO = Path(__file__).resolve().parent.parent
# No hub here: read before huggingface_hub is imported, so an unknown id fails at once
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own sst cache and ClearML offline cache; never a server."""
    isolate(monkeypatch, tmp_path_factory.mktemp("env"))


def isolate(mp: pytest.MonkeyPatch, base: Path) -> Path:
    """Own sst cache and ClearML offline cache under ``base``, no server. Module-scoped fixtures
    (set up before the per-test isolation) call it in a ``MonkeyPatch.context()``. Returns the
    ClearML cache folder (offline sessions land in its ``offline/``)."""
    mp.setenv("SST_CACHE_DIR", str(base / "sst-cache"))
    mp.setenv("CLEARML_CACHE_DIR", str(base / "clearml-cache"))
    mp.setenv("CLEARML_OFFLINE_MODE", "1")
    mp.delenv("CLEARML_API_HOST", raising=False)
    mp.setenv("CLEARML_CONFIG_FILE", str(base / "no-clearml.conf"))
    from sst.tracking.agent import TASK_MARKS

    for mark in TASK_MARKS:  # recorded as absent, so the undo also drops what Task.init sets:
        mp.setenv(mark, "")  # left behind, it makes every later `sst` subprocess a ClearML stub
        mp.delenv(mark)
    return base / "clearml-cache"


@pytest.fixture(scope="session")
def docker() -> str:
    """The Docker client of an engine that answers (docker tier; scripts/ci-docker.sh)."""
    import subprocess

    client = os.environ.get("SST_DOCKER", "/usr/bin/docker")
    if subprocess.run([client, "info"], capture_output=True).returncode != 0:
        pytest.fail(f"no Docker engine answers {client}: run scripts/docker-engine.sh first")
    return client


def docker_logs_until(docker: str, name: str, pattern: str, timeout: float) -> str:
    """A container's logs once they match ``pattern`` (or at ``timeout`` seconds)."""
    import re
    import subprocess
    import time

    deadline = time.monotonic() + timeout
    logs = ""
    while time.monotonic() < deadline:
        res = subprocess.run([docker, "logs", name], capture_output=True, text=True)
        logs = res.stdout + res.stderr
        if re.search(pattern, logs):
            break
        time.sleep(2)
    return logs


def _built(docker: str, variable: str, default: str, make: str) -> str:
    import subprocess

    ref = os.environ.get(variable, default)
    if subprocess.run([docker, "image", "inspect", ref], capture_output=True).returncode != 0:
        pytest.fail(f"image {ref} not built: run `make {make}` first")
    return ref


@pytest.fixture(scope="session")
def image(docker: str) -> str:
    """The task image ($SST_IMAGE, default sst:cpu)."""
    return _built(docker, "SST_IMAGE", "sst:cpu", "image-cpu")


@pytest.fixture(scope="session")
def agent_image(docker: str) -> str:
    """The agent daemon's image ($SST_AGENT_IMAGE, default sst:agent)."""
    return _built(docker, "SST_AGENT_IMAGE", "sst:agent", "image-agent")


# The sst cache as the user has it, read before the per-test isolation moves SST_CACHE_DIR: real
# data fetched through the presets' fallback lands there once, for every later test session
USER_CACHE = default_cache_dir()
PTB_PARTS = ("train", "dev", "test")
KAGGLE = "kaggle_movie_reviews"


# Where the user keeps the SST data: $SST_DATA, else ../shared/data beside the clone; read before
# shared_data points SST_DATA at the trees it fetched when that folder lacks them
USER_DATA = Path(os.environ.get("SST_DATA") or REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def shared_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real SST data: the data folder when it holds the PTB trees, else the trees as
    `make demo` gets them (:func:`fetch_ptb`). The Kaggle release needs an account, so its tests
    take :func:`kaggle_release`, which skips without it."""
    path = USER_DATA
    if not (path / "sst_ptb" / "train.txt").is_file():
        path = fetch_ptb(tmp_path_factory.mktemp("sst-data"), USER_CACHE)
    os.environ["SST_DATA"] = str(path)  # what the presets in configs/ expand
    return path


def fetch_ptb(base: Path, cache: Path) -> Path:
    """``base/sst_ptb/{train,dev,test}.txt`` through configs/ptb.yaml's own fallback: the official
    release (or ``$SST_PTB_ZIP``, a mirror or a local copy), downloaded once into ``cache`` and
    checked against the preset's sha256 pins. A failure is one line saying how to provide it."""
    from sst.config import load_config
    from sst.data.pipeline import fetch_sources
    from sst.errors import SstError

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SST_CACHE_DIR", str(cache))
        mp.delenv("SST_DATA", raising=False)
        try:
            fetched = fetch_sources(load_config(REPO / "configs" / "ptb.yaml"))
        except SstError as e:
            pytest.fail(f"real SST data: no ../shared/data, no SST_DATA, and {e}", pytrace=False)
    (base / "sst_ptb").mkdir(parents=True)
    for part, f in zip(PTB_PARTS, fetched, strict=True):
        shutil.copyfile(f.path, base / "sst_ptb" / f"{part}.txt")
    return base


@pytest.fixture(scope="session")
def kaggle_release() -> Path:
    """The Kaggle release's folder (``train.tsv.gz``, ``test.tsv.gz``, as configs/kaggle.yaml reads
    it); the test skips, in one line, where it cannot be had: Kaggle serves it to accounts only.
    It never waits on the PTB download."""
    folder = USER_DATA / KAGGLE
    if not all((folder / f"{part}.tsv.gz").is_file() for part in ("train", "test")):
        pytest.skip(
            f"Kaggle release not in {folder}: it needs a Kaggle account; download train.tsv and "
            "test.tsv from kaggle.com/c/sentiment-analysis-on-movie-reviews, gzip them there "
            f"(gzip -9n), or point SST_DATA at a folder holding {KAGGLE}/"
        )
    return folder


def fresh_clone(dest: Path) -> Path:
    """A clone of this checkout at HEAD with its uncommitted changes applied (none in CI): the
    code under test, in a folder that shares nothing else with this one."""
    import subprocess

    from sst.env.git import git_patch

    subprocess.run(["git", "clone", "-q", str(REPO), str(dest)], check=True)
    if patch := git_patch():
        subprocess.run(["git", "-C", str(dest), "apply", "-"], input=patch.encode(), check=True)
    return dest


def write_kaggle(
    path: Path, rows: list[tuple], header: str | None = None, gz: bool = False
) -> Path:
    header = header or "PhraseId\tSentenceId\tPhrase\tSentiment"
    text = header + "\n" + "".join("\t".join(str(x) for x in r) + "\n" for r in rows)
    if gz:
        path.write_bytes(gzip.compress(text.encode(), mtime=0))
    else:
        path.write_text(text, encoding="utf-8")
    return path


def synthetic_rows(n_sentences: int = 120, seed: int = 0) -> list[tuple]:
    """A Kaggle-shaped table: each sentence listed first, then 2-5 of its phrases."""
    rng = np.random.default_rng(seed)
    rows: list[tuple] = []
    pid = 1
    for sid in range(1, n_sentences + 1):
        words = [f"w{sid}x{i}" for i in range(int(rng.integers(3, 9)))]
        root = int(rng.integers(0, 5))
        rows.append((pid, sid, " ".join(words), root))
        pid += 1
        for k in range(int(rng.integers(2, 6))):
            rows.append(
                (
                    pid,
                    sid,
                    " ".join(words[k : k + 2]) + f" p{k}",
                    int(rng.choice(5, p=[0.05, 0.2, 0.5, 0.2, 0.05])),
                )
            )
            pid += 1
    return rows


@pytest.fixture
def kaggle_file(tmp_path: Path) -> Path:
    return write_kaggle(tmp_path / "train.tsv", synthetic_rows())


def split_config(tmp_path: Path, source: Path, fmt: str = "kaggle", **split: object) -> Path:
    """A config file splitting ``source`` (Kaggle format unless ``fmt``) into tmp_path/out."""
    lines = [
        "name: tiny",
        "data:",
        f"  format: {fmt}",
        f'  sources: ["{source}"]',
        "split:",
        "  n_seeds: 50",
        f"  out: {tmp_path / 'out'}",
    ] + [f"  {k}: {v}" for k, v in split.items()]
    path = tmp_path / "tiny.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def build_tiny_bert(folder: Path, texts: list[str]) -> Path:
    """A random 2-layer BERT with a WordPiece vocab made from ``texts``, saved like a hub model.

    The vocab is built deterministically (every character, then the most frequent words, ties by
    spelling) rather than by the WordPiece trainer, whose token order differs between processes:
    the same texts give byte-identical model files on every machine (replay tests rely on it)."""
    import re
    from collections import Counter

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = Counter(w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower()))
    chars = sorted({c for w in words for c in w})
    frequent = [w for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))]
    vocab = specials + chars + [f"##{c}" for c in chars]
    vocab += [w for w in frequent if w not in set(vocab)][: max(0, 400 - len(vocab))]
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    import torch

    torch.manual_seed(0)
    config = BertConfig(vocab_size=tok.get_vocab_size(), **TINY_BERT)
    BertModel(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = synthetic_rows(200)
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), [r[2] for r in rows])


@pytest.fixture(scope="session")
def tiny_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A versioned split of the synthetic table (tracking off: nothing but the folder)."""
    from sst.config import load_config
    from sst.data.pipeline import run_split

    base = tmp_path_factory.mktemp("tiny-split")
    source = write_kaggle(base / "train.tsv", synthetic_rows(200))
    cfg = load_config(split_config(base, source), ["tracking.enabled=false"])
    return run_split(cfg).out


def train_overrides(tiny_model: Path, tiny_split: Path, runs: Path, *extra: str) -> list[str]:
    return [
        f"model.name={tiny_model}",
        f"train.split={tiny_split}",
        f"train.runs_dir={runs}",
        "train.sampling=stratified:1,alternate:1",
        "train.batch_size=16",
        "train.threads=1",
        "train.lr=1e-3",
        "tracking.monitor_resources=false",
        "model.max_length=32",
        *extra,
    ]


@pytest.fixture(scope="session")
def tracked_run(
    tiny_model: Path, tiny_split: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """One tracked tiny run: its folder, weights sha256, offline session (and its task.json)."""
    import json
    import zipfile

    from sst.config import load_config
    from sst.verbs.train import train

    tmp = tmp_path_factory.mktemp("tracked")
    with pytest.MonkeyPatch.context() as mp:
        clearml = isolate(mp, tmp)
        result = train(load_config(None, train_overrides(tiny_model, tiny_split, tmp / "runs")))
    (session,) = clearml.glob("offline/*.zip")
    return {
        "run": result.run_dir,
        "weights": result.weights_sha256,
        "session": session,
        "task": json.loads(zipfile.ZipFile(session).read("task.json")),
        "runs": tmp / "runs",
    }


def sweep_base(tmp_path: Path, tiny_model: Path, tiny_split: Path) -> Path:
    """A base preset for the tiny model (the sweep lines override the model)."""
    from sst.config import load_config

    cfg = load_config(
        None,
        train_overrides(
            tiny_model, tiny_split, tmp_path / "runs", "name=tiny", "train.val_sentences=0"
        ),
    )
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    return path


@pytest.fixture(scope="session")
def local_sweep(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, tiny_split: Path
) -> dict[str, Any]:
    """A real local sweep of three lines: two tiny-model variants and a model folder whose
    config is broken (shared by the sweep, report and ensemble tests)."""
    from sst.cli import main

    tmp = tmp_path_factory.mktemp("sweep")
    base = sweep_base(tmp, tiny_model, tiny_split)
    broken = tmp / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{ not json")
    models = tmp / "models.txt"
    models.write_text(
        f"{tiny_model}\n"
        f"{tiny_model}  sampling=random:2 pooling=cls lr=3e-3\n"
        f"{broken}      # fails when it loads\n"
    )
    report = tmp / "report"
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        clearml = isolate(mp, tmp)
        code = main(
            [
                "sweep",
                "--config",
                str(base),
                "--models",
                str(models),
                "--local",
                "--by",
                "macro_f1",
                "--report",
                str(report),
            ]
        )
    return {
        "code": code,
        "out": out.getvalue(),
        "base": base,
        "models": models,
        "runs": tmp / "runs",
        "report": report,
        "clearml": clearml,
    }


def configuration(task: dict[str, Any], name: str) -> dict[str, Any]:
    """A configuration object of a task document (the API double's, or an offline session's
    task.json) as the kit records it: JSON text (sst.tracking.tracker.Tracker.record)."""
    import json

    return json.loads(task["configuration"][name]["value"])
