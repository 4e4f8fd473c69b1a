"""The fingerprint: the one schema of what a run (or an ensemble) depended on and wrote, each
field declared once with the layer that produces it and what a difference in it means on replay,
and the functions that fill it. No other module writes a fingerprint field.

    python -c "from sst.run.fingerprint import FIELDS; print(*(f.name for f in FIELDS))"

A field's name is its path in ``fingerprint.json`` joined with "/" (as ClearML shows the connected
section); a name ending in ``/*`` declares a section whose keys are free (the files' digests).
What a difference means (:class:`Meaning`): another **input** (not a replay of the same run),
**expected** to break bit-identity (threads, CPU vs GPU, library versions, image), **may break**
it (the kit's own code, determinism settings), **not expected** to change a bit, the run's
**output** (its digests: the verdict itself), **ignored** (where something ran or is kept), or
**legacy** (written twice by runs made before each field was recorded once: dropped when
comparing, so those runs still compare equal to new ones). Writing a field the schema does not
declare is refused (:func:`check`), so a new field cannot be silently judged "not known to
matter" by `sst replay`.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from sst.config import Config
from sst.env import cpu
from sst.env.determinism import DETERMINISM_ENV
from sst.env.git import git_state
from sst.env.locks import drift, find_lock, installed, read_lock
from sst.env.precision import Decision
from sst.io import MANIFEST, sha256_file


class Meaning(Enum):
    INPUT = "input"
    EXPECTED = "expected to break bit-identity"
    MAY_BREAK = "may break bit-identity"
    NOT_EXPECTED = "not expected to change a bit"
    OUTPUT = "output"
    IGNORED = "ignored"
    LEGACY = "legacy"


INPUT, EXPECTED, MAY_BREAK, NOT_EXPECTED = (
    Meaning.INPUT,
    Meaning.EXPECTED,
    Meaning.MAY_BREAK,
    Meaning.NOT_EXPECTED,
)
OUTPUT, IGNORED, LEGACY = Meaning.OUTPUT, Meaning.IGNORED, Meaning.LEGACY
COMPARED = (INPUT, EXPECTED, MAY_BREAK, NOT_EXPECTED)


@dataclass(frozen=True)
class Field:
    """One fingerprint field: its name, the layer whose value it records, what a difference in
    it means on replay and why. ``pinned_by``: the portable levels (``SST_CPU_ISA``) under which
    a difference changes no bit when both runs pinned the same one: the kernels, not the CPU
    model (or, for the vendor-free level, the vendor), decide the bits. ``since``: a field runs
    recorded before that date lack; absent on one side, it is not a difference."""

    name: str
    producer: str
    meaning: Meaning
    why: str
    pinned_by: frozenset[str] = frozenset()
    since: str | None = None

    def matches(self, name: str) -> bool:
        if self.name.endswith("/*"):  # the section itself (empty) or any key in it
            return name == self.name[:-2] or name.startswith(self.name[:-1])
        return name == self.name


# the names other modules read (through these constants or :class:`sst.run.folder.Run`)
CONFIG = "config_sha256"
SEED = "seed"
SPLIT = "split_manifest_sha256"
MODEL = "model"
MODEL_COMMIT = "model_commit"  # the hub commit the weights came from (a replay loads it)
MODEL_FILES = "model_files_sha256"  # a folder's (or the embedded model's) files
WEIGHTS = "weights_sha256"
FILES = "files_sha256"
TASK_ID = "clearml_task_id"
MEMBERS = "members"
MEMBER_MODELS = "member_models"
PRECISION = "determinism/precision"
GIT_COMMIT = "git/commit"
PINNED = "environment/cpu_isa/level"  # SST_CPU_ISA: the kernels, not the CPU model, decide
VENDOR = "environment/cpu_isa/vendor"  # recorded next to the level: avx2's bits hold per vendor
LOCK_SHA256 = "environment/lock_sha256"
TORCH_CUDA = "environment/torch_cuda"

ENSEMBLE = "ensemble_sha256"
MEMBER_WEIGHTS = "member_weights_sha256"
# what a registered model carries of its run's (or ensemble's) fingerprint (sst.tracking.registry)
IDENTITY = (
    *(WEIGHTS, CONFIG, SPLIT, MODEL, MODEL_COMMIT, MODEL_FILES, GIT_COMMIT),
    *(ENSEMBLE, MEMBERS, MEMBER_WEIGHTS),
)

FIELDS: tuple[Field, ...] = (
    # what a run was made from
    Field(CONFIG, "run", INPUT, "another config: not a replay of the same run"),
    Field(SEED, "run", INPUT, "another seed"),
    Field(SPLIT, "run", INPUT, "another split (data)"),
    Field(
        "init_weights_sha256",
        "run",
        INPUT,
        "started from another run's weights (model.init_from)",
    ),
    Field("teacher_weights_sha256", "pseudo", INPUT, "another teacher labelled train.unlabeled"),
    Field("unlabeled_sha256", "pseudo", INPUT, "other unlabeled texts (train.unlabeled)"),
    Field(
        "pseudo_sha256",
        "pseudo",
        INPUT,
        "other pseudo labels (the teacher labelled the texts differently)",
    ),
    Field(
        "distill_teacher_weights_sha256",
        "distill",
        INPUT,
        "another teacher (train.distill_from) gave the soft labels",
    ),
    Field(
        "soft_labels_sha256",
        "distill",
        INPUT,
        "other soft labels (the teacher predicted the train phrases differently)",
    ),
    Field(MODEL, "run", INPUT, "another model"),
    Field("model_revision", "run", INPUT, "another hub revision of the model"),
    Field(
        MODEL_COMMIT,
        "model",
        INPUT,
        "another commit of the hub model (the revision it was asked at moved)",
    ),
    Field(MODEL_FILES, "run", INPUT, "other model files"),
    # an ensemble's members (sst ensemble)
    Field(
        "ensemble_sha256",
        "ensemble",
        INPUT,
        "other members (the sha256 of the members' weights sha256, in order)",
    ),
    Field(MEMBERS, "ensemble", INPUT, "other member runs"),
    Field(MEMBER_MODELS, "ensemble", INPUT, "other member models"),
    Field("member_weights_sha256", "ensemble", INPUT, "members with other weights"),
    Field("chosen_by", "ensemble", NOT_EXPECTED, "members chosen by another rule"),
    # the machine and the libraries
    Field(
        "threads",
        "env",
        EXPECTED,
        "CPU thread count changes the order of floating-point reductions",
    ),
    Field("environment/cuda_available", "env", EXPECTED, "CPU vs GPU kernels"),
    Field(
        "environment/devices",
        "env",
        EXPECTED,
        "another GPU model (architecture) runs other kernels",
    ),
    Field("environment/torch", "env", EXPECTED, "another torch build"),
    Field(TORCH_CUDA, "env", EXPECTED, "another CUDA version"),
    Field("environment/cudnn", "env", EXPECTED, "another cuDNN version"),
    Field(
        "environment/cpu",
        "env",
        EXPECTED,
        "another CPU model may take other kernels (e.g. AVX-512 vs AVX2); SST_CPU_ISA pins them",
        pinned_by=cpu.PINNED_LEVELS,
    ),
    Field(
        VENDOR,
        "env",
        EXPECTED,
        "another CPU vendor: MKL's own kernels and its AVX2 branch (SST_CPU_ISA=avx2) hold on "
        "one vendor's CPUs only; SST_CPU_ISA=portable is designed not to depend on it",
        pinned_by=cpu.VENDOR_FREE,
        since="2026-12-07",
    ),
    Field(PINNED, "env", EXPECTED, "another pinned instruction set (SST_CPU_ISA)"),
    Field(
        "environment/cpu_isa/aten",
        "env",
        EXPECTED,
        "torch ran other vector kernels (e.g. AVX-512 vs AVX2)",
        pinned_by=cpu.PINNED_LEVELS,
    ),
    *(
        Field(f"environment/cpu_isa/{cap}", "env", EXPECTED, f"{what} differs")
        for cap, what in cpu.LIBRARY_CAPS.items()
    ),
    Field("environment/machine", "env", EXPECTED, "another CPU architecture"),
    Field(
        "environment/image",
        "env",
        EXPECTED,
        "another container image, or host vs image (other system libraries)",
    ),
    Field("environment/platform", "env", EXPECTED, "another OS / C library"),
    Field("environment/python", "env", EXPECTED, "another Python"),
    Field("environment/implementation", "env", EXPECTED, "another Python implementation"),
    Field(LOCK_SHA256, "env", EXPECTED, "another locked environment"),
    Field("environment/lock_drift", "env", EXPECTED, "installed packages differ from the lock"),
    Field(
        PRECISION,
        "env.precision",
        EXPECTED,
        "another precision (train.precision=auto: bf16/16-mixed on a GPU)",
    ),
    Field(
        "determinism/attention",
        "model",
        EXPECTED,
        "other attention kernels (model.attention=auto: eager under bf16 on a CPU)",
    ),
    # the variables that must be set before Python, CUDA or the tokenizers start (DETERMINISM_ENV;
    # tests/test_fingerprint.py checks that each is declared here)
    Field(
        "environment/CUBLAS_WORKSPACE_CONFIG",
        "env",
        MAY_BREAK,
        "cuBLAS's workspace (deterministic GPU matrix products need :4096:8)",
    ),
    Field(
        "environment/PYTHONHASHSEED",
        "env",
        MAY_BREAK,
        "Python's hash order (the kit sorts what decides an order)",
    ),
    Field(
        "environment/TOKENIZERS_PARALLELISM",
        "env",
        NOT_EXPECTED,
        "tokenizer threads (the encodings are the same)",
    ),
    Field(
        "determinism/deterministic_algorithms",
        "env.determinism",
        MAY_BREAK,
        "determinism setting: torch's deterministic algorithms",
    ),
    Field(
        "determinism/cudnn_deterministic",
        "env.determinism",
        MAY_BREAK,
        "determinism setting: cuDNN's deterministic kernels",
    ),
    Field(
        "determinism/cudnn_benchmark",
        "env.determinism",
        MAY_BREAK,
        "determinism setting: cuDNN's kernel search",
    ),
    # the kit's own code
    Field(GIT_COMMIT, "env.git", MAY_BREAK, "another version of the kit's code"),
    Field("git/diff_sha256", "env.git", MAY_BREAK, "uncommitted changes to the kit's code"),
    # what the run wrote
    Field(WEIGHTS, "run", OUTPUT, "the weights: the verdict itself"),
    Field(f"{FILES}/*", "run", OUTPUT, "the written files: re-hashed by Run.verify, not compared"),
    # where things ran or are kept
    Field(TASK_ID, "tracking", IGNORED, "the ClearML task that tracked the run"),
    Field("environment/executable", "env", IGNORED, "where the interpreter is"),
    Field("environment/lock", "env", IGNORED, "where the lock file is"),
    Field("git/remote", "env.git", IGNORED, "where agents clone the kit from"),
    # written twice by runs made before the fingerprint recorded each field once
    Field("determinism/seed", "legacy", LEGACY, "seed"),
    Field("determinism/threads", "legacy", LEGACY, "threads"),
    Field("determinism/PYTHONHASHSEED", "legacy", LEGACY, "environment/PYTHONHASHSEED"),
    Field("environment/threads", "legacy", LEGACY, "threads"),
)


def field_of(name: str) -> Field | None:
    """The declaration of the field ``name`` (flattened with "/"), or None."""
    return next((f for f in FIELDS if f.matches(name)), None)


def names(tree: Any, prefix: str = "") -> list[str]:
    """Every field name in a fingerprint (nested dicts joined with "/")."""
    if isinstance(tree, dict) and (tree or not prefix):
        return [n for k, v in tree.items() for n in names(v, f"{prefix}{k}/")]
    return [prefix.removesuffix("/")]


def check(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """``fingerprint`` when every field it holds is declared here; a field that is not (or is
    legacy) is a programming error, refused before anything is written."""
    bad = [n for n in names(fingerprint) if (f := field_of(n)) is None or f.meaning is LEGACY]
    if bad:
        raise ValueError(f"fingerprint fields not declared in sst.run.fingerprint: {bad}")
    return fingerprint


def value(fingerprint: dict[str, Any], name: str) -> Any:
    """The value of the field ``name`` ("a/b" reads ``fingerprint["a"]["b"]``), or None."""
    node: Any = fingerprint
    for part in name.split("/"):
        node = node.get(part) if isinstance(node, dict) else None
    return node


@dataclass(frozen=True)
class PseudoInputs:
    """Pseudo-labelling's inputs, each by sha256 when it was read (:mod:`sst.verbs.pseudo`)."""

    teacher_weights: str
    unlabeled: str
    labels: str  # of the kept (text, label) pairs


@dataclass(frozen=True)
class DistillInputs:
    """Distillation's inputs, by sha256 when they were read (:mod:`sst.verbs.distill`)."""

    teacher_weights: list[str]  # each teacher run's, in order
    soft_labels: str  # of the float32 soft labels, one row per train phrase


def for_run(
    cfg: Config,
    *,
    decided: Decision,
    attention: str,
    weights_sha256: str,
    files_sha256: dict[str, str],
    task_id: str | None,
    model_commit: str | None = None,
    init_weights: str | None = None,
    pseudo: PseudoInputs | None = None,
    distill: DistillInputs | None = None,
) -> dict[str, Any]:
    """What a trained run depended on and wrote, each field once (docs/replay.md "Fingerprint"):
    ``decided`` is the run's precision decision, ``attention`` the kernels the model runs,
    ``model_commit`` the hub commit its pretrained weights came from (None for a folder: its
    files' sha256 identify it), ``init_weights`` the weights sha256 of the run it started from
    (``model.init_from``)."""
    import torch

    fingerprint = {
        CONFIG: cfg.hash(),
        SEED: cfg.train.seed,
        "threads": torch.get_num_threads(),
        "determinism": {
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "precision": decided.lightning,
            "attention": attention,
        },
        SPLIT: sha256_file(Path(cfg.train.split) / MANIFEST),
        MODEL: cfg.model.name,
        "model_revision": cfg.model.revision,
        MODEL_FILES: model_files_sha256(cfg.model.name),
        "environment": environment(),
        "git": _git(),
        TASK_ID: task_id,
        WEIGHTS: weights_sha256,
        FILES: files_sha256,
    }
    if model_commit is not None:
        fingerprint[MODEL_COMMIT] = model_commit
    if cfg.model.init_from:
        fingerprint["init_weights_sha256"] = init_weights
    if pseudo is not None:
        fingerprint |= {
            "teacher_weights_sha256": pseudo.teacher_weights,
            "unlabeled_sha256": pseudo.unlabeled,
            "pseudo_sha256": pseudo.labels,
        }
    if distill is not None:
        fingerprint |= {
            "distill_teacher_weights_sha256": distill.teacher_weights,
            "soft_labels_sha256": distill.soft_labels,
        }
    return check(fingerprint)


def for_ensemble(
    members: list[tuple[str, str, str]],  # (run name, model, weights sha256), in order
    *,
    chosen_by: str,
    split: str,
    files_sha256: dict[str, str],
) -> dict[str, Any]:
    """An ensemble's fingerprint: its members and the split they share (no config: it trains
    nothing). ``ensemble_sha256`` names it by its members' weights."""
    weights = [w for _, _, w in members]
    models = [m for _, m, _ in members]
    return check(
        {
            ENSEMBLE: ensemble_sha256(weights),
            MEMBERS: [name for name, _, _ in members],
            MEMBER_MODELS: models,
            MEMBER_WEIGHTS: weights,
            "chosen_by": chosen_by,
            MODEL: f"ensemble({', '.join(models)})",
            SPLIT: split,
            FILES: files_sha256,
        }
    )


def ensemble_sha256(weights: list[str]) -> str:
    return hashlib.sha256("\n".join(weights).encode()).hexdigest()


def _git() -> dict[str, Any]:
    git = git_state()
    return {"commit": git.commit, "diff_sha256": git.diff_sha256, "remote": git.remote}


def environment() -> dict[str, Any]:
    """The fingerprint of this interpreter and machine (no secrets, no paths of the user's;
    `sst doctor` prints it)."""
    import torch

    lock = find_lock()
    cuda = torch.cuda.is_available()
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu.cpu_model(),
        "cpu_isa": {
            "level": cpu.isa_level(),
            "vendor": cpu.cpu_vendor(),
            "aten": cpu.torch_kernels(),
            **{k: os.environ.get(k) for k in cpu.LIBRARY_CAPS},
        },
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "cuda_available": cuda,
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if cuda
        else [],
        "executable": sys.executable,
        "lock": str(lock) if lock else None,
        "lock_sha256": hashlib.sha256(lock.read_bytes()).hexdigest() if lock else None,
        "lock_drift": _drift_summary(lock),
        "image": os.environ.get("SST_IMAGE"),  # set inside the kit's images and by agents
    }
    for var in DETERMINISM_ENV:
        info[var] = os.environ.get(var)
    return info


def _drift_summary(lock: Path | None) -> list[str] | None:
    """Missing and mismatched packages against the lock ([] when clean; None without a lock)."""
    if lock is None:
        return None
    d = drift(read_lock(lock), installed())
    return d.missing + d.mismatched


def model_files_sha256(name: str) -> str | None:
    """sha256 over the sorted (relative path, file sha256) of a local model folder."""
    from sst.model.module import resolve_model

    folder = Path(resolve_model(name)).expanduser()
    if not folder.is_dir():
        return None  # a hub id: the revision identifies it
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(f"{p.relative_to(folder).as_posix()}\0{sha256_file(p)}\n".encode())
    return h.hexdigest()
