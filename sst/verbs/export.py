"""``sst export runs/<id>``: the trained classifier as a folder plain transformers loads.

    sst export runs/<id>                    # → exports/<id>/
    AutoModelForSequenceClassification.from_pretrained("exports/<id>")
    AutoTokenizer.from_pretrained("exports/<id>")

Two kinds of folder, the card saying which and why:

- **standard**: a run whose head is the one the encoder's own ``*ForSequenceClassification``
  has (``model.pooling=pooler``: BERT's, ALBERT's pooler → dropout → one linear layer) is saved as
  that class — the same parameters, checked, and the same logits on probe inputs, checked — so
  any transformers loads it, no ``trust_remote_code``;
- **remote code** otherwise (``cls`` or ``mean`` pooling: a head no standard class has):
  ``config.json`` with the encoder's config inside, the pooling and the class names, and
  ``modeling_sst.py`` (:mod:`sst.model.modeling_sst`, which the kit itself pools with), loaded
  with ``trust_remote_code=True``.

Both hold ``model.safetensors``, ``model.onnx`` (the same model through torch.onnx's exporter,
dynamic batch and length, kept only when onnxruntime gives the kit's logits within
:data:`ONNX_PARITY` on probe inputs of two shapes; otherwise the card says why it is absent),
the tokenizer (truncating where training did), a model card
(``README.md``, written with huggingface_hub's ``ModelCard``: the base model by hub id and
commit, license, and model-index metadata with the test metrics) and ``manifest.json`` (every
file's sha256, the run and its weights' sha256). The run's files are verified against its
fingerprint first: a tampered run is refused. Written once, atomically: the same run exported
again is a no-op.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sst
from sst.data import LABELS
from sst.errors import SstError
from sst.io import write_once
from sst.model.metrics import HEADLINE, LEVELS
from sst.model.module import looks_local, resolve_model
from sst.run import fingerprint as fp
from sst.run.folder import CONFIG, FINGERPRINT, METRICS, WEIGHTS, Run
from sst.run.ranking import contamination
from sst.tracking.tracker import preflight, server_configured, tracked

CARD_METRICS = ("n", *HEADLINE)
# The embedded encoders (sst.model.embedded): the hub model each one ships
EMBEDDED_HUB_ID = {
    "minilm": "sentence-transformers/all-MiniLM-L6-v2",
    "mpnet": "sentence-transformers/all-mpnet-base-v2",
}


def export(
    folder: Path, out: Path | None = None, force: bool = False
) -> tuple[Path, str, str | None]:
    """Export the finished run at ``folder`` to ``out`` (default ``exports/<run id>``); returns
    the folder, whether it was ``written``, ``unchanged`` or ``replaced``, and online (a server
    configured, the run's tracking on) the ClearML model it was registered as."""
    if Run.open(folder).members:
        raise SstError(
            "an ensemble has no single model to export",
            path=folder,
            fix="export one of its member runs",
        )
    run = Run.open(folder, need=(CONFIG, FINGERPRINT, METRICS, WEIGHTS))
    classifier = run.load_classifier()  # verifies every file against the fingerprint
    out = Path(out or Path("exports") / run.name)

    standard, why = to_standard(classifier)

    def build(tmp: Path) -> dict[str, Any]:
        from sst.model.module import load_pretrained

        model = standard or to_transformers(classifier)
        model.save_pretrained(tmp)
        onnx = to_onnx(model, classifier, tmp / ONNX)
        m = run.pinned_config.model  # at the hub commit the run recorded
        tokenizer = load_pretrained("tokenizer", m.name, m.revision)
        tokenizer.model_max_length = m.max_length  # truncation=True cuts where training did
        for how_it_was_loaded in ("local_files_only", "is_local"):
            tokenizer.init_kwargs.pop(how_it_was_loaded, None)
        tokenizer.save_pretrained(tmp)
        standard_class = type(standard).__name__ if standard else None
        model_card(run, standard_class=standard_class, why=why, onnx=onnx).save(tmp / "README.md")
        return {
            "kind": "sst export",
            "class": "standard" if standard else "remote code",
            "onnx": onnx,
            "run": run.name,
            "run_weights_sha256": run.weights_sha256,
        }

    preflight(run.config.tracking.enabled)  # a server that does not answer: before writing
    status, manifest = write_once(out, build, force=force)
    return out, status, _register(run, out, manifest)


def _register(run: Run, out: Path, manifest: dict[str, Any]) -> str | None:
    """Online: the export as a model of an `sst export` task, tagged ``export``."""
    t = run.config.tracking
    if not (t.enabled and server_configured()):
        return None  # offline there is no registry: a run's session uploads with `sst upload`
    with tracked(t.project, f"export {run.name}", "custom", args=["export", str(run.path)]) as tr:
        return tr.register_export(out, run, manifest) if tr is not None else None


PARITY = 1e-5  # max |logit difference| between the kit's classifier and the standard class
ONNX_PARITY = 1e-4  # ... and onnxruntime's on the ONNX file (other kernels, fused differently)
ONNX = "model.onnx"
ONNX_OPSET = 18
EXTERNAL_DATA = 1.5e9  # bytes of parameters above which the weights go to model.onnx.data


def probes(vocab_size: int) -> list[tuple[Any, Any]]:
    """Fixed (input_ids, attention_mask) batches to compare logits on: two shapes (an export with
    dynamic axes must serve both), rows padded at different lengths."""
    import torch

    out = []
    for seed, (rows, length) in enumerate(((4, 16), (3, 37))):
        generator = torch.Generator().manual_seed(seed)
        ids = torch.randint(0, vocab_size, (rows, length), generator=generator)
        mask = torch.ones_like(ids)
        mask[rows // 2 :, length * 2 // 3 :] = 0
        out.append((ids, mask))
    return out


def kit_logits(classifier: Any, ids: Any, mask: Any) -> Any:
    """The kit's classifier's logits in eval mode (its training flag restored)."""
    import torch

    with torch.inference_mode():
        was = classifier.training
        classifier.eval()
        try:
            return classifier(ids, mask).float()
        finally:
            classifier.train(was)


def to_onnx(model: Any, classifier: Any, path: Path) -> dict[str, Any]:
    """``model`` (the folder's transformers model) as ONNX at ``path``: inputs ``input_ids`` and
    ``attention_mask`` (int64, batch × length, both dynamic), output ``logits``. Kept when
    onnxruntime's logits are within :data:`ONNX_PARITY` of the kit's on :func:`probes`; else
    removed. Returns what the manifest and card say: the file, opset and largest difference, or
    why there is none."""
    import contextlib
    import io
    import logging
    import warnings

    import numpy as np
    import onnxruntime
    import torch

    class Logits(torch.nn.Module):  # the tensor, not transformers' output object
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    cases = probes(classifier.backbone.config.vocab_size)
    dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("length")}
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    chatter = io.StringIO()  # the exporter's progress lines, optional-op and axis-name notes
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with (
            contextlib.redirect_stdout(chatter),
            contextlib.redirect_stderr(chatter),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Logits().eval(),
                cases[0],
                str(path),
                input_names=["input_ids", "attention_mask"],
                output_names=["logits"],
                dynamic_shapes={"input_ids": dims, "attention_mask": dims},
                opset_version=ONNX_OPSET,
                external_data=size > EXTERNAL_DATA,
                dynamo=True,
            )
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        gap = 0.0
        for ids, mask in cases:
            feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
            (got,) = session.run(["logits"], feed)
            gap = max(gap, float(np.abs(got - kit_logits(classifier, ids, mask).numpy()).max()))
        why = (
            f"onnxruntime gives other logits (max difference {gap:.1e})"
            if gap > ONNX_PARITY
            else ""
        )
    except Exception as e:  # an op the exporter or onnxruntime cannot take: no file, said why
        why = f"{type(e).__name__} from torch.onnx or onnxruntime: {' '.join(str(e).split())[:200]}"
    finally:
        quiet.setLevel(level)
    if why:
        for file in path.parent.glob(f"{path.name}*"):  # model.onnx and any external data
            file.unlink()
        return {"file": None, "why": why}
    return {"file": path.name, "opset": ONNX_OPSET, "max_logit_difference": gap}


def to_standard(classifier: Any) -> tuple[Any | None, str]:
    """The encoder's own ``*ForSequenceClassification`` holding the classifier's tensors, or
    None and why not. It must have exactly the classifier's parameters (encoder, pooler, one
    linear layer) and give its logits (within :data:`PARITY`) on probe inputs."""
    import torch
    from transformers import AutoModelForSequenceClassification

    pooling = classifier.hparams["pooling"]
    if pooling != "pooler":
        return None, (
            f"{pooling} pooling: the standard classes read the encoder's pooler "
            "(a run with model.pooling=pooler exports as one)"
        )
    config = classifier.backbone.config.__class__.from_dict(_backbone_config(classifier))
    config.update(
        {
            "num_labels": len(LABELS),
            "id2label": dict(enumerate(LABELS)),
            "label2id": {label: i for i, label in enumerate(LABELS)},
            "classifier_dropout": classifier.dropout.p,
        }
    )
    try:
        model = AutoModelForSequenceClassification.from_config(config)
    except ValueError as e:  # no sequence-classification class for this model type
        return None, f"transformers has no standard class for it: {str(e).splitlines()[0]}"
    prefix = f"{model.base_model_prefix}."
    ours = {
        (prefix + k.removeprefix("backbone.")) if k.startswith("backbone.") else k: v
        for k, v in classifier.state_dict().items()
        if k.startswith(("backbone.", "head."))
    }
    head = [k for k in model.state_dict() if not k.startswith(prefix)]
    if len(head) != 2:
        return None, f"{type(model).__name__}'s head is not one linear layer ({', '.join(head)})"
    ours |= {new: ours.pop(f"head.{new.rpartition('.')[2]}") for new in head}
    if set(ours) != set(model.state_dict()):
        missing = sorted(set(model.state_dict()) ^ set(ours))
        return None, f"{type(model).__name__} has other parameters: {', '.join(missing[:4])}"
    try:
        model.load_state_dict(ours, strict=True)
    except RuntimeError as e:  # a tensor of another shape
        return None, f"{type(model).__name__} has other shapes: {str(e).splitlines()[-1].strip()}"
    model.eval()
    gap = 0.0
    for ids, mask in probes(config.vocab_size):
        with torch.inference_mode():
            got = model(input_ids=ids, attention_mask=mask).logits.float()
        gap = max(gap, float((got - kit_logits(classifier, ids, mask)).abs().max()))
    if gap > PARITY:
        return None, f"{type(model).__name__} gives other logits (max difference {gap:.2e})"
    return model, ""


def _backbone_config(classifier: Any) -> dict[str, Any]:
    backbone = classifier.backbone.config.to_dict()
    backbone.pop("_name_or_path", None)  # where it was loaded from: not part of the model
    return backbone


def to_transformers(classifier: Any) -> Any:
    """The kit's classifier as :class:`SstForSequenceClassification`, the same tensors."""
    from sst.model.modeling_sst import SstConfig, SstForSequenceClassification

    SstConfig.register_for_auto_class()
    SstForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
    config = SstConfig(
        backbone=_backbone_config(classifier),
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


def model_card(run: Run, *, standard_class: str | None, why: str, onnx: dict[str, Any]) -> Any:
    """README.md of an export (huggingface_hub's ``ModelCard``): metadata a hub page reads (base
    model, license, model-index with the test metrics), then what it is, how it was made and
    scored, how to load and replay it."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    cfg, recorded, metrics = run.config, run.fingerprint, run.metrics
    t = cfg.train
    risk = contamination(cfg.model.name)
    hub_id = base_hub_id(cfg.model.name)
    license_ = base_license(cfg.model.name, recorded.get(fp.MODEL_COMMIT))
    results = [
        EvalResult(
            task_type="text-classification",
            dataset_type="sst5",
            dataset_name=f"SST-5, {level}s of the test split",
            dataset_config=f"{level}s",  # a result per level (huggingface_hub groups by it)
            dataset_split="test",
            metric_type=metric if metric == "accuracy" else "f1",
            metric_config=None if metric == "accuracy" else "macro",
            metric_value=round(float(metrics["test"][level][metric]), 4),
        )
        for level in LEVELS
        for metric in ("accuracy", "macro_f1")
    ]
    data = ModelCardData(
        model_name=cfg.name,
        base_model=hub_id,
        base_model_relation="finetune" if hub_id else None,
        license=license_,
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=["sentiment", "sst-5", "sst"],
        eval_results=results,
    )
    rows = [
        f"| {level} | " + " | ".join(_cell(metrics["test"][level][k]) for k in CARD_METRICS) + " |"
        for level in LEVELS
    ]
    remote = "" if standard_class else ", trust_remote_code=True"
    kind = (
        f"A standard `{standard_class}`: any transformers loads it, no remote code."
        if standard_class
        else f"Remote code: `modeling_sst.py` in this folder (the encoder, {cfg.model.pooling} "
        f"pooling and one linear layer; read it before trusting it), because {why}."
    )
    body = [
        f"# {cfg.name}: SST-5 sentiment ({', '.join(LABELS)})",
        "",
        f"Fine-tuned from {_base_model(run)} by sst {sst.__version__}, run `{run.name}`. Five "
        "classes: " + ", ".join(f"{i} {label}" for i, label in enumerate(LABELS)) + ".",
        "",
        "```python",
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
        f'model = AutoModelForSequenceClassification.from_pretrained("."{remote})',
        f'tokenizer = AutoTokenizer.from_pretrained("."{remote})',
        "```",
        "",
        kind,
        "",
        *_onnx_section(onnx),
        f"License: {license_ or 'that of the base model (see its card)'}.",
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
        f"{fp.value(recorded, fp.PRECISION) or t.precision}, weights tested: {t.evaluate}.",
        "",
        "## Test metrics",
        "",
        "| level | " + " | ".join(CARD_METRICS) + " |",
        "| --- |" + " ---: |" * len(CARD_METRICS),
        *rows,
        "",
        "Ordinal: within-one = prediction at most one class away; MAE in classes; QWK = "
        "quadratic weighted kappa; polarity flips = negative predicted positive or the reverse.",
        "",
        "## Reproduce",
        "",
        f"Run weights sha256 `{run.weights_sha256}`; config sha256 `{recorded.get(fp.CONFIG)}`; "
        f"git `{fp.value(recorded, fp.GIT_COMMIT)}`; ClearML task `{run.task_id}`. With the kit: "
        f"`sst replay {run.name}` (or the task link) retrains it and says BIT-IDENTICAL or what "
        "differs; `manifest.json` holds the sha256 of every file here.",
        "",
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n" + "\n".join(body))


def _onnx_section(onnx: dict[str, Any]) -> list[str]:
    if not onnx["file"]:
        return [f"No ONNX file: {onnx['why']}.", ""]
    return [
        f"`{onnx['file']}` (opset {onnx['opset']}) gives the same logits through onnxruntime, "
        f"within {onnx['max_logit_difference']:.1e} of the kit's on probe inputs:",
        "",
        "```python",
        "import onnxruntime",
        f'session = onnxruntime.InferenceSession("{onnx["file"]}")',
        'enc = tokenizer(texts, padding=True, truncation=True, return_tensors="np")',
        'logits = session.run(["logits"], {"input_ids": enc["input_ids"], '
        '"attention_mask": enc["attention_mask"]})[0]',
        "```",
        "",
    ]


def base_hub_id(name: str) -> str | None:
    """The base model's hub id: the name itself, the embedded model's origin, None for a folder."""
    if name in EMBEDDED_HUB_ID:
        return EMBEDDED_HUB_ID[name]
    return None if looks_local(name) else name


def base_license(name: str, commit: str | None) -> str | None:
    """The license the base model's own card declares: a folder's (the embedded model is one)
    README.md, or a hub model's at ``commit`` (downloaded once into the hub cache; offline, only
    a cached card); None when no card can be had."""
    from huggingface_hub import ModelCard, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    path = resolve_model(name)
    if looks_local(path):
        card = Path(path).expanduser() / "README.md"
    else:
        try:
            card = Path(hf_hub_download(path, "README.md", revision=commit))
        except (OSError, EntryNotFoundError):  # offline and not cached, no card, gated, gone
            return None
    if not card.is_file():
        return None
    license_ = ModelCard.load(card).data.license
    return str(license_) if license_ else None


def _base_model(run: Run) -> str:
    """What the run started from, by identity: a hub id and the commit its weights came from,
    or a folder's (or the embedded model's) files by sha256."""
    name, recorded = run.config.model.name, run.fingerprint
    if commit := recorded.get(fp.MODEL_COMMIT):
        return f"`{name}` at commit `{commit}`"
    if files := recorded.get(fp.MODEL_FILES):
        origin = f" = `{EMBEDDED_HUB_ID[name]}`" if name in EMBEDDED_HUB_ID else ""
        return f"`{name}`{origin} (files sha256 `{files}`)"
    return f"`{name}` (revision `{run.config.model.revision}`, commit not recorded)"


def _cell(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:.3f}"
