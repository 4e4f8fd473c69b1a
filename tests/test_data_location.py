"""Identity is content, never location; and the data comes to a user who has none.

The same SST files in two folders give byte-identical split manifests and equal config hashes;
with ``SST_DATA`` unset the PTB presets download the official release (here: a zip built from the
real files, served by an HTTP server on 127.0.0.1), a corrupt download is refused and fetched
again, and a failed one is one line naming the URL and how to provide the files."""

from __future__ import annotations

import http.server
import io
import json
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sst.cli import main
from sst.config import load_config
from sst.data.pipeline import run_split
from sst.tracking import agent
from tests.conftest import fresh_clone

REPO = Path(__file__).resolve().parent.parent
ZIP_NAME = "trainDevTestTrees_PTB.zip"


def release_zip(ptb: Path, corrupt: bool = False) -> bytes:
    """The official release's layout (``trees/{train,dev,test}.txt``) from the real files."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name in ("train", "dev", "test"):
            data = (ptb / f"{name}.txt").read_bytes()
            if corrupt and name == "dev":
                data = data.replace(b"(3 ", b"(4 ", 1)  # one label flipped: same size, other bytes
            z.writestr(f"trees/{name}.txt", data)
    return out.getvalue()


class Release:
    """An HTTP server on 127.0.0.1 answering each GET with the next body (the last repeats;
    None is a 404); ``hits`` counts the downloads."""

    def __init__(self, bodies: list[bytes | None]) -> None:
        self.bodies, self.hits = list(bodies), 0
        release = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = release.bodies[min(release.hits, len(release.bodies) - 1)]
                release.hits += 1
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/{ZIP_NAME}"


@pytest.fixture
def release() -> Iterator[list[Release]]:
    made: list[Release] = []
    yield made
    for r in made:
        r.server.shutdown()


def _split(tmp: Path, *overrides: str) -> tuple[int, Path]:
    out = tmp / "splits" / "ptb"
    code = main(
        [
            "split",
            "-c",
            str(REPO / "configs" / "ptb.yaml"),
            f"split.out={out}",
            "tracking.enabled=false",
            *overrides,
        ]
    )
    return code, out


@pytest.fixture(scope="module")
def local_manifest(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The canonical split made from the files in ``$SST_DATA``."""
    out = tmp_path_factory.mktemp("local") / "out"
    cfg = load_config(REPO / "configs" / "ptb.yaml", [f"split.out={out}", "tracking.enabled=false"])
    return (run_split(cfg).out / "manifest.json").read_bytes()


def test_the_same_data_in_another_folder_gives_the_same_manifest_and_config(
    shared_data: Path, local_manifest: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "somewhere" / "else"
    shutil.copytree(shared_data / "sst_ptb", elsewhere / "sst_ptb")
    preset = REPO / "configs" / "ptb.yaml"
    here = load_config(preset, ["tracking.enabled=false"])
    monkeypatch.setenv("SST_DATA", str(elsewhere))
    there = load_config(preset, ["tracking.enabled=false"])
    assert there.hash() == here.hash()
    code, out = _split(tmp_path)
    assert code == 0
    assert (out / "manifest.json").read_bytes() == local_manifest
    manifest = json.loads(local_manifest)
    assert [s["source"] for s in manifest["sources"]] == list(here.data.sources)
    assert str(shared_data) not in local_manifest.decode()


def test_without_the_data_folder_the_official_release_is_downloaded_once(
    shared_data: Path,
    local_manifest: bytes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    release: list[Release],
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = Release([release_zip(shared_data / "sst_ptb")])
    release.append(server)
    monkeypatch.delenv("SST_DATA")
    monkeypatch.setenv("SST_PTB_ZIP", server.url)
    fallback = re.escape(f"${{SST_DATA}} is not set: {server.url} (")
    assert main(["doctor", "--no-ping", "-c", str(REPO / "configs" / "ptb.yaml")]) == 0
    doctor = capsys.readouterr().out
    assert re.search(rf"^data \(ptb\) +fallback +{fallback}downloaded on first use", doctor, re.M)
    code, out = _split(tmp_path)
    err = capsys.readouterr().err
    assert code == 0, err
    assert "${SST_DATA} is not set; fetching " + server.url + "#trees/train.txt" in err
    assert server.hits == 1  # one download serves the three members
    assert (out / "manifest.json").read_bytes() == local_manifest  # the same split, byte for byte
    assert _split(tmp_path / "again")[0] == 0 and server.hits == 1  # the cache answers now
    assert main(["doctor", "--no-ping", "-c", str(REPO / "configs" / "ptb.yaml")]) == 0
    doctor = capsys.readouterr().out
    assert re.search(rf"^data \(ptb\) +fallback +{fallback}cached, in ", doctor, re.M), doctor


def test_a_corrupt_download_is_refused_and_fetched_again(
    shared_data: Path,
    local_manifest: bytes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    release: list[Release],
) -> None:
    good, bad = release_zip(shared_data / "sst_ptb"), release_zip(shared_data / "sst_ptb", True)
    server = Release([bad, good])
    release.append(server)
    monkeypatch.delenv("SST_DATA")
    monkeypatch.setenv("SST_PTB_ZIP", server.url)
    code, out = _split(tmp_path)
    assert code == 0 and server.hits == 2
    assert (out / "manifest.json").read_bytes() == local_manifest


def test_a_download_that_stays_wrong_leaves_nothing(
    shared_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    release: list[Release],
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = Release([release_zip(shared_data / "sst_ptb", corrupt=True)])
    release.append(server)
    monkeypatch.delenv("SST_DATA")
    monkeypatch.setenv("SST_PTB_ZIP", server.url)
    fallback = re.escape(f"${{SST_DATA}} is not set: {server.url} (")
    assert main(["doctor", "--no-ping", "-c", str(REPO / "configs" / "ptb.yaml")]) == 0
    doctor = capsys.readouterr().out
    assert re.search(rf"^data \(ptb\) +fallback +{fallback}downloaded on first use", doctor, re.M)
    code, out = _split(tmp_path)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and not out.exists()
    assert "${SST_DATA}/sst_ptb/dev.txt not found" in err and server.url in err
    assert "downloaded twice, both differ from the pin" in err
    cache = Path(__import__("os").environ["SST_CACHE_DIR"])
    assert not list(cache.glob("sha256/*/*.zip"))  # the bad archive was not kept


def test_no_data_and_no_download_is_one_line_naming_the_url_and_the_fix(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    release: list[Release],
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = Release([None])
    release.append(server)
    monkeypatch.setenv("SST_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("SST_PTB_ZIP", server.url)
    code, out = _split(tmp_path)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and not out.exists()
    assert err.startswith("sst split: error: data file ${SST_DATA}/sst_ptb/train.txt not found")
    assert f"{server.url}#trees/train.txt failed: cannot download" in err and "HTTP 404" in err
    assert "(fix: put the file there, or download" in err and "data.fallback" in err


def test_a_fallback_serves_only_a_pinned_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SST_DATA", raising=False)
    code, _ = _split(tmp_path, 'data.sha256=["", "", ""]')
    err = capsys.readouterr().err
    assert code == 2 and "its fallback serves pinned sources only" in err


@pytest.mark.skipif(shutil.which("make") is None, reason="no make (the CPU image has none)")
def test_make_demo_runs_from_a_fresh_clone_with_no_data_beside_it(
    shared_data: Path, tmp_path: Path, release: list[Release]
) -> None:
    """`make demo` as a new user runs it: a clone with no ../shared, no SST_DATA, the official
    release answering (here on 127.0.0.1). A short budget (ARGS) keeps it a fast test; the
    venv is this checkout's, the code the clone's (PYTHONPATH)."""
    server = Release([release_zip(shared_data / "sst_ptb")])
    release.append(server)
    clone = fresh_clone(tmp_path / "elsewhere" / "sst")
    assert not (clone.parent / "shared").exists()
    env = {k: v for k, v in agent.child_environment().items() if k != "SST_DATA"}
    env.update(PYTHONPATH=str(clone), SST_PTB_ZIP=server.url, CLEARML_OFFLINE_MODE="1")
    short = (
        "train.epoch_size=64 train.val_sentences=8 train.test_sentences=16 "
        "train.eval_batch_size=64 tracking.monitor_resources=false"
    )
    venv = Path(sys.prefix)  # the venv running the tests: .venv, or the devcontainer's /opt/venv
    make = ["make", "-C", str(clone), "-o", f"{venv}/.lock.sha256"]  # -o: never reinstall it
    done = subprocess.run(
        [*make, "demo", f"VENV={venv}", f"ARGS={short}"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert server.hits == 1
    assert "${SST_DATA} is not set; fetching" in done.stderr
    assert (clone / "splits" / "ptb" / "manifest.json").is_file()
    assert re.search(r"^test root +n=\d+ +acc ", done.stdout, re.M), done.stdout
    (run,) = (clone / "runs").iterdir()
    assert (run / "weights.safetensors").is_file()


def test_the_tests_get_the_real_data_on_a_fresh_clone_with_none_beside_it(
    shared_data: Path, tmp_path: Path, release: list[Release]
) -> None:
    """`make test` on a fresh clone with no ../shared and no SST_DATA: the real-data tests get
    the PTB trees through the preset's own fallback (the official release; here a mirror on
    127.0.0.1 named by SST_PTB_ZIP), once, into the user's sst cache; the Kaggle tests skip in
    one line saying how to provide the release. A second session downloads nothing."""
    server = Release([release_zip(shared_data / "sst_ptb")])
    release.append(server)
    clone = fresh_clone(tmp_path / "elsewhere" / "sst")
    assert not (clone.parent / "shared").exists()
    env = {k: v for k, v in agent.child_environment().items() if k != "SST_DATA"}
    env.update(PYTHONPATH=str(clone), SST_PTB_ZIP=server.url, SST_CACHE_DIR=str(tmp_path / "c"))
    tests = ["tests/test_golden.py::test_a_real_split_manifest_is_pinned"]  # ptb, then kaggle
    pytest_ = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *tests]
    first = subprocess.run(pytest_, cwd=clone, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout[-3000:]
    assert re.search(r"^1 passed, 1 skipped", first.stdout, re.M), first.stdout[-3000:]
    (skip,) = [line for line in first.stdout.splitlines() if line.startswith("SKIPPED")]
    assert "Kaggle release not in " in skip
    assert "it needs a Kaggle account" in skip and "kaggle_movie_reviews/" in skip
    assert server.hits == 1
    again = subprocess.run(pytest_, cwd=clone, env=env, capture_output=True, text=True)
    assert again.returncode == 0 and server.hits == 1, again.stdout[-3000:]  # from the cache


def test_a_split_from_an_earlier_sst_is_kept_when_its_files_are_the_same(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Splits written before sources stayed as written recorded each source by its absolute
    path. The same files are the same split: the folder is kept as it is (its manifest too, so
    the runs that recorded that manifest's sha256 still replay); other files are refused."""
    code, out = _split(tmp_path)
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    for s in manifest["sources"]:  # what an earlier sst wrote
        s["uri"] = s.pop("source").replace("${SST_DATA}", str(shared_data))
    old = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    (out / "manifest.json").write_text(old)
    capsys.readouterr()
    assert _split(tmp_path)[0] == 0
    assert "(unchanged" in capsys.readouterr().out
    assert (out / "manifest.json").read_text() == old
    (out / "val.tsv").write_text("edited\n")
    assert _split(tmp_path)[0] == 2  # a changed file is not an earlier description of the same


def test_a_run_replays_from_a_fresh_clone_with_its_data_elsewhere(
    tiny_model: Path, tmp_path: Path
) -> None:
    """Made with the data at X, replayed from a fresh clone in another folder with the data at
    Y: the split is remade there from ${SST_DATA}, its manifest is the recorded one, and the
    weights are bit for bit the same."""
    from tests.conftest import synthetic_rows, train_overrides, write_kaggle

    here, there = tmp_path / "x" / "data", tmp_path / "y" / "elsewhere"
    for folder in (here, there):
        folder.mkdir(parents=True)
        write_kaggle(folder / "train.tsv", synthetic_rows(200))
    work = tmp_path / "work"
    work.mkdir()
    cfg = [
        'data.sources=["${SST_DATA}/train.tsv"]',
        "split.n_seeds=50",
        "split.out=splits/tiny",  # relative: in the clone it is the clone's own folder
        *train_overrides(tiny_model, Path("splits/tiny"), tmp_path / "runs"),
        "tracking.enabled=false",
    ]
    env = {**agent.child_environment(), "SST_DATA": str(here)}
    done = subprocess.run(
        [sys.executable, "-m", "sst.cli", "train", *cfg],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = (tmp_path / "runs").iterdir()
    clone = fresh_clone(tmp_path / "other" / "sst")
    env = {**env, "SST_DATA": str(there), "PYTHONPATH": str(clone)}
    done = subprocess.run(
        [sys.executable, "-m", "sst.cli", "replay", str(run), "--out", str(tmp_path / "r")],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    weights = json.loads((run / "fingerprint.json").read_text())["weights_sha256"]
    assert done.stdout.strip().endswith(f"BIT-IDENTICAL (weights sha256 {weights})")
    made_there = (clone / "splits" / "tiny" / "manifest.json").read_bytes()
    assert made_there == (work / "splits" / "tiny" / "manifest.json").read_bytes()
