"""The model registry: a run's weights as a ClearML ``OutputModel`` of its task, carrying the run's
identity, and `sst predict --model <id>` loading a registered model back, its sha256 verified.

    sst train ...                         # online: "model <id> registered" with the task's link
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
from pathlib import Path
from typing import Any

from sst.errors import SstError
from sst.io import default_cache_dir, sha256_file
from sst.run import fingerprint as fp
from sst.run import folder as runs


def register(task: Any, run: runs.Run, uri: str, *, name: str, tags: list[str]) -> str:
    """``run``'s weights, already at ``uri`` (the task's artifact), as an OutputModel of
    ``task``; returns the model id."""
    from clearml import OutputModel

    model = OutputModel(
        task=task,
        name=name,
        config_text=(run.path / runs.CONFIG).read_text(),
        label_enumeration=runs.LABEL_IDS,
        framework="PyTorch",
        tags=tags,
    )
    model.update_weights(register_uri=uri, async_enable=False)
    model.set_all_metadata(
        {k: {"value": v, "type": "str"} for k, v in run.registry_metadata().items()}, replace=True
    )
    return str(model.id)


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
    if not recorded.get(fp.WEIGHTS) or runs.FINGERPRINT_META not in recorded:
        raise SstError(
            f"model {model_id} is not a model sst registered (no {fp.WEIGHTS} in its metadata)",
            fix="pass the id of a model an `sst train` task registered (its task page, MODELS)",
        )
    folder = dest or default_cache_dir() / "models" / model_id
    folder.mkdir(parents=True, exist_ok=True)
    local = model.get_local_copy(raise_on_error=True)
    if (actual := sha256_file(Path(local))) != recorded[fp.WEIGHTS]:
        raise SstError(
            f"model {model_id}'s file has sha256 {actual}, its metadata records "
            f"{recorded[fp.WEIGHTS]}",
            path=model.url,
            fix="the registered file was replaced: register the run again (sst upload) or "
            "replay its task",
        )
    shutil.copyfile(local, folder / runs.WEIGHTS)
    (folder / runs.CONFIG).write_text(model.config_text)
    (folder / runs.FINGERPRINT).write_text(recorded[runs.FINGERPRINT_META])
    return (
        runs.Run.open(folder, need=(runs.CONFIG, runs.WEIGHTS))
        .verify(reads=(runs.CONFIG, runs.WEIGHTS))
        .path
    )
