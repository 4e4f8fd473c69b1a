"""``sst export runs/<id>``: the trained classifier as a folder plain transformers loads.

    sst export runs/<id>                    # → exports/<id>/
    AutoModelForSequenceClassification.from_pretrained("exports/<id>", trust_remote_code=True)
    AutoTokenizer.from_pretrained("exports/<id>", trust_remote_code=True)

The folder holds ``model.safetensors`` and ``config.json`` (the encoder's config inside, the
pooling and the class names), the tokenizer, ``modeling_sst.py`` (the model as transformers code:
:mod:`sst.model.modeling_sst`, which the kit itself pools with), a model card (``README.md``) and
``manifest.json`` (every file's sha256, the run and its weights' sha256). The run's files are
verified against its fingerprint first: a tampered run is refused. Written once, atomically: the
same run exported again is a no-op.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sst
from sst.data import LABELS
from sst.errors import SstError
from sst.io import write_once
from sst.model.metrics import HEADLINE, LEVELS
from sst.run import fingerprint as fp
from sst.run.folder import CONFIG, FINGERPRINT, METRICS, WEIGHTS, Run
from sst.run.ranking import contamination

CARD_METRICS = ("n", *HEADLINE)


def export(folder: Path, out: Path | None = None, force: bool = False) -> tuple[Path, str]:
    """Export the finished run at ``folder`` to ``out`` (default ``exports/<run id>``); returns
    the folder and whether it was ``written``, ``unchanged`` or ``replaced``."""
    if Run.open(folder).members:
        raise SstError(
            "an ensemble has no single model to export",
            path=folder,
            fix="export one of its member runs",
        )
    run = Run.open(folder, need=(CONFIG, FINGERPRINT, METRICS, WEIGHTS))
    classifier = run.load_classifier()  # verifies every file against the fingerprint
    out = Path(out or Path("exports") / run.name)

    def build(tmp: Path) -> dict[str, Any]:
        from sst.model.module import load_pretrained

        to_transformers(classifier).save_pretrained(tmp)
        m = run.pinned_config.model  # at the hub commit the run recorded
        tokenizer = load_pretrained("tokenizer", m.name, m.revision)
        tokenizer.model_max_length = m.max_length  # truncation=True cuts where training did
        for how_it_was_loaded in ("local_files_only", "is_local"):
            tokenizer.init_kwargs.pop(how_it_was_loaded, None)
        tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(model_card(run), encoding="utf-8")
        return {"kind": "sst export", "run": run.name, "run_weights_sha256": run.weights_sha256}

    status, _ = write_once(out, build, force=force)
    return out, status


def to_transformers(classifier: Any) -> Any:
    """The kit's classifier as :class:`SstForSequenceClassification`, the same tensors."""
    from sst.model.modeling_sst import SstConfig, SstForSequenceClassification

    SstConfig.register_for_auto_class()
    SstForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
    backbone = classifier.backbone.config.to_dict()
    backbone.pop("_name_or_path", None)  # where it was loaded from: not part of the model
    config = SstConfig(
        backbone=backbone,
        pooling=classifier.hparams["pooling"],
        classifier_dropout=classifier.dropout.p,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    model = SstForSequenceClassification(config)
    state = classifier.state_dict()
    state = {k: v for k, v in state.items() if k.startswith(("backbone.", "head."))}
    model.load_state_dict(state, strict=True)
    return model.eval()


def model_card(run: Run) -> str:
    """README.md of an export: what it is, how it was made and scored, how to load and replay."""
    cfg, recorded, metrics = run.config, run.fingerprint, run.metrics
    t = cfg.train
    risk = contamination(cfg.model.name)
    rows = [
        f"| {level} | " + " | ".join(_cell(metrics["test"][level][k]) for k in CARD_METRICS) + " |"
        for level in LEVELS
    ]
    return "\n".join(
        [
            "---",
            "library_name: transformers",
            "pipeline_tag: text-classification",
            "tags: [sentiment, sst-5, sst]",
            "---",
            f"# {cfg.name}: SST-5 sentiment ({', '.join(LABELS)})",
            "",
            f"Fine-tuned from {_base_model(run)} by sst "
            f"{sst.__version__}, run `{run.name}`. Five classes: "
            + ", ".join(f"{i} {label}" for i, label in enumerate(LABELS))
            + ".",
            "",
            "```python",
            "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
            "model = AutoModelForSequenceClassification.from_pretrained(",
            '    ".", trust_remote_code=True)',
            'tokenizer = AutoTokenizer.from_pretrained(".", trust_remote_code=True)',
            "```",
            "",
            f"`trust_remote_code` runs `modeling_sst.py` from this folder: the encoder, "
            f"{cfg.model.pooling} pooling and one linear layer (read it first).",
            "",
            "## Data and split",
            "",
            f"- format `{cfg.data.format}`, dedup `{cfg.data.dedup}`, sources sha256: "
            + ", ".join(f"`{s}`" for s in cfg.data.sha256),
            f"- split manifest sha256 `{run.split_sha256}` (`{t.split}`)",
            f"- contamination risk: {risk or 'none known for this base model'}",
            "",
            "## Recipe",
            "",
            f"sampling `{t.sampling}`, {t.epoch_size or 'all'} draws per epoch, batch "
            f"{t.batch_size}, lr {t.lr} ({t.scheduler}, warmup {t.warmup_ratio}), "
            f"{t.optimizer}, seed {t.seed}, {t.threads} threads, precision "
            f"{fp.value(recorded, fp.PRECISION) or t.precision}, weights tested: "
            f"{t.evaluate}.",
            "",
            "## Test metrics",
            "",
            "| level | " + " | ".join(CARD_METRICS) + " |",
            "| --- |" + " ---: |" * len(CARD_METRICS),
            *rows,
            "",
            "Ordinal: within-one = prediction at most one class away; MAE in classes; QWK = "
            "quadratic weighted kappa; polarity flips = negative predicted positive or the "
            "reverse.",
            "",
            "## Reproduce",
            "",
            f"Run weights sha256 `{run.weights_sha256}`; config sha256 "
            f"`{recorded.get(fp.CONFIG)}`; git `{fp.value(recorded, fp.GIT_COMMIT)}`; ClearML "
            f"task `{run.task_id}`. With the kit: `sst replay {run.name}` (or the "
            "task link) retrains it and says BIT-IDENTICAL or what differs; `manifest.json` "
            "holds the sha256 of every file here.",
            "",
        ]
    )


def _base_model(run: Run) -> str:
    """What the run started from, by identity: a hub id and the commit its weights came from,
    or a folder's (or the embedded model's) files by sha256."""
    name, recorded = run.config.model.name, run.fingerprint
    if commit := recorded.get(fp.MODEL_COMMIT):
        return f"`{name}` at commit `{commit}`"
    if files := recorded.get(fp.MODEL_FILES):
        return f"`{name}` (files sha256 `{files}`)"
    return f"`{name}` (revision `{run.config.model.revision}`, commit not recorded)"


def _cell(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:.3f}"
