"""The model registry: a run's weights as a ClearML ``OutputModel`` of its task, carrying the run's
identity, and `sst predict --model <id>` loading a registered model back, its sha256 verified.

    sst train ...                         # online: "weights registered as ClearML model <id>"
    sst predict --model <id> "a gorgeous, witty, seductive movie ."

A model's file is the weights artifact the task already uploaded (registered by its URI, so the
weights travel once); its design is the run's ``config.yaml``; its labels are SST's five classes;
its metadata (:meth:`sst.run.folder.Run.registry_metadata`) the weights, config and split
manifest sha256, the base model and the hub commit or files it came from, the kit's commit, the
test headline metrics and the whole fingerprint (JSON), so a fetched model is a run folder that
verifies like any other.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sst.errors import SstError
from sst.io import default_cache_dir, sha256_file
from sst.run import fingerprint as fp
from sst.run import folder as runs

# what a model that is not a run's weights says it is (an export's file is a package, an
# ensemble's its fingerprint)
KIND, EXPORT, ENSEMBLE = "sst/kind", "export", "ensemble"


def _register(
    task: Any,
    run: runs.Run,
    store: Callable[[Any], Any],
    *,
    name: str,
    tag: str,
    framework: str,
    extra: dict[str, str],
) -> str:
    """A model of ``task``: ``store(model)`` gives it its file, then ``run``'s identity (and
    ``extra``) becomes its metadata. Its design is the run's config (an ensemble, which has
    none: its fingerprint). In that order: the model is made on the server by the first call
    that needs it, which takes the design given here; a later one would take the task's first
    configuration object instead (clearml's OutputModel._update_base_model)."""
    from clearml import OutputModel

    design = run.path / (runs.FINGERPRINT if run.members else runs.CONFIG)
    model = OutputModel(
        task=task,
        name=name,
        config_text=design.read_text(),
        label_enumeration=runs.LABEL_IDS,
        framework=framework,
        tags=[tag],
    )
    store(model)
    meta = run.registry_metadata() | extra
    model.set_all_metadata({k: {"value": v, "type": "str"} for k, v in meta.items()})
    return str(model.id)


def _at(uri: str) -> Callable[[Any], Any]:
    """A model's file that a task already uploaded (an artifact), registered by its URI."""
    return lambda model: model.update_weights(register_uri=uri, async_enable=False)


def register(task: Any, run: runs.Run, uri: str, *, name: str) -> str:
    """``run``'s weights, already at ``uri`` (the task's artifact), as an OutputModel of
    ``task`` tagged ``run``; returns the model id."""
    return _register(task, run, _at(uri), name=name, tag="run", framework="PyTorch", extra={})


def register_ensemble(task: Any, run: runs.Run, uri: str) -> str:
    """An `sst ensemble` folder as a model of ``task`` tagged ``ensemble``: its file is the
    fingerprint the task uploaded (at ``uri``), which names the members and their weights'
    sha256; its metadata the same, and the test metrics of the averaged probabilities."""
    extra = {KIND: ENSEMBLE}
    return _register(
        task, run, _at(uri), name=run.name, tag=ENSEMBLE, framework="custom", extra=extra
    )


def register_export(task: Any, run: runs.Run, folder: Path, manifest: dict[str, Any]) -> str:
    """`sst export`'s folder (transformers files, tokenizer, model.onnx when kept, the card) as
    one package model of ``task``, tagged ``export``, with its run's identity; returns its id."""
    onnx = manifest.get("onnx") or {}
    extra = {KIND: EXPORT, "export/class": str(manifest.get("class"))}
    extra["export/onnx"] = onnx.get("file") or f"none: {onnx.get('why', '?')}"

    def store(model: Any) -> None:
        # the SDK's default deletes the files it uploaded, and the folder: the user's export
        model.update_weights_package(
            weights_path=str(folder), auto_delete_file=False, async_enable=False
        )

    framework = "ONNX" if onnx.get("file") else "PyTorch"
    name = f"{run.name} (export)"
    return _register(task, run, store, name=name, tag=EXPORT, framework=framework, extra=extra)


def fetch_model(model_id: str, dest: Path | None = None) -> Path:
    """A registered model as a run folder (``config.yaml`` from its design, ``fingerprint.json``
    and the weights from its file), refused in one line unless the file's sha256 is the one
    its metadata records (and the folder verifies against its fingerprint)."""
    from clearml import Model
    from clearml.backend_api.session.client import APIClient

    # asked first: for an id the server does not know, Model's calls log errors and fail late
    if not APIClient().models.get_all(id=[model_id], only_fields=["id"]):
        raise SstError(
            f"the ClearML server has no model {model_id}",
            fix="copy the model id from the web UI (MODELS, or the task's ARTIFACTS)",
        )
    model = Model(model_id=model_id)
    recorded = {k: str(v.get("value")) for k, v in model.get_all_metadata().items()}
    if recorded.get(KIND) == ENSEMBLE:
        raise SstError(
            f"model {model_id} is an ensemble: its file lists its members, it holds no weights",
            fix="predict with each member's model (its metadata names their weights' sha256)",
        )
    if recorded.get(KIND) == EXPORT:
        raise SstError(
            f"model {model_id} is an `sst export` package (transformers and ONNX files), not a run",
            fix="load it with transformers' from_pretrained or onnxruntime (its README says "
            f"how), or predict with its run's model ({recorded.get(fp.WEIGHTS, '?')[:12]}…)",
        )
    if not recorded.get(fp.WEIGHTS) or runs.FINGERPRINT_META not in recorded:
        raise SstError(
            f"model {model_id} is not a model sst registered (no {fp.WEIGHTS} in its metadata)",
            fix="pass the id of a model an `sst train` task registered (its task page, MODELS)",
        )
    local = model.get_local_copy(raise_on_error=True)
    if (actual := sha256_file(Path(local))) != recorded[fp.WEIGHTS]:
        raise SstError(
            f"model {model_id}'s file has sha256 {actual}, its metadata records "
            f"{recorded[fp.WEIGHTS]}",
            path=model.url,
            fix="the registered file was replaced: register the run again (sst upload) or "
            "replay its task",
        )
    folder = dest or default_cache_dir() / "models" / model_id
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(local, folder / runs.WEIGHTS)
    (folder / runs.CONFIG).write_text(model.config_text)
    (folder / runs.FINGERPRINT).write_text(recorded[runs.FINGERPRINT_META])
    return (
        runs.Run.open(folder, need=(runs.CONFIG, runs.WEIGHTS))
        .verify(reads=(runs.CONFIG, runs.WEIGHTS))
        .path
    )
