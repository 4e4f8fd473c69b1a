"""Sources: local, http(s) and s3:// against real servers on 127.0.0.1, with the sha256 cache."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import os
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sst.data.sources import fetch
from sst.errors import SstError

PAYLOAD = b"PhraseId\tSentenceId\tPhrase\tSentiment\n1\t1\tgood\t3\n"
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """A real HTTP server on 127.0.0.1 serving tmp_path/www; yields (base URL, folder, log)."""
    root = tmp_path / "www"
    root.mkdir()
    hits: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):  # type: ignore[no-untyped-def]
            super().__init__(*a, directory=str(root), **k)

        def log_message(self, *args: object) -> None:
            hits.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root, hits
    server.shutdown()


def test_local_path_and_checksum(tmp_path: Path) -> None:
    path = tmp_path / "t.tsv"
    path.write_bytes(PAYLOAD)
    got = fetch(str(path), sha256=SHA)
    assert got.path == path and got.sha256 == SHA
    with pytest.raises(SstError, match="sha256 mismatch") as err:
        fetch(str(path), sha256="0" * 64)
    assert "(fix: " in str(err.value)
    with pytest.raises(SstError, match="data file not found"):
        fetch(str(tmp_path / "missing.tsv"))


def test_gzip_content_sha_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "t.tsv.gz"
    path.write_bytes(gzip.compress(PAYLOAD, mtime=0))
    got = fetch(str(path), sha256=SHA)  # the stable digest: of the decompressed content
    assert got.content_sha256 == SHA and got.sha256 != SHA


def test_http_download_cache_and_corruption(http_root, tmp_path: Path) -> None:
    base, root, hits = http_root
    (root / "train.tsv").write_bytes(PAYLOAD)
    first = fetch(f"{base}/train.tsv", sha256=SHA)
    assert first.path.read_bytes() == PAYLOAD and first.path.parent.name == SHA
    assert first.path.is_relative_to(Path(os.environ["SST_CACHE_DIR"]))
    assert fetch(f"{base}/train.tsv", sha256=SHA).path == first.path
    assert fetch(f"{base}/train.tsv").path == first.path  # found again through the URI index
    assert len(hits) == 1
    first.path.write_bytes(b"garbage")  # a corrupt cache entry is detected and fetched again
    again = fetch(f"{base}/train.tsv", sha256=SHA)
    assert again.path.read_bytes() == PAYLOAD and len(hits) == 2


def test_http_errors(http_root) -> None:
    base, root, _ = http_root
    with pytest.raises(SstError, match=r"cannot download .*/nope\.tsv: HTTP 404"):
        fetch(f"{base}/nope.tsv")
    (root / "x.tsv").write_bytes(PAYLOAD)
    with pytest.raises(SstError, match="sha256 mismatch"):
        fetch(f"{base}/x.tsv", sha256="f" * 64)
    cache = Path(os.environ["SST_CACHE_DIR"])
    assert not list((cache / "sha256").glob("*")) if (cache / "sha256").exists() else True
    with pytest.raises(SstError, match="cannot download"):
        fetch(f"http://127.0.0.1:{free_port()}/x.tsv")


def test_zip_member(http_root) -> None:
    base, root, _ = http_root
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("trees/dev.txt", PAYLOAD)
    (root / "trees.zip").write_bytes(buf.getvalue())
    got = fetch(f"{base}/trees.zip#trees/dev.txt", sha256=SHA)
    assert got.path.read_bytes() == PAYLOAD
    with pytest.raises(SstError, match="no member 'trees/test.txt'"):
        fetch(f"{base}/trees.zip#trees/test.txt")


def test_unsupported_scheme() -> None:
    with pytest.raises(SstError, match="unsupported data source scheme 'ftp'"):
        fetch("ftp://example.org/x")


@pytest.fixture
def s3_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's standalone S3 server as a real process on 127.0.0.1 (no in-process patching)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("moto server did not start")
    for key, value in {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_s3_download_through_endpoint(s3_server: str) -> None:
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="sst-data")
    s3.put_object(Bucket="sst-data", Key="kaggle/train.tsv", Body=PAYLOAD)
    got = fetch("s3://sst-data/kaggle/train.tsv", sha256=SHA)
    assert got.path.read_bytes() == PAYLOAD
    with pytest.raises(SstError, match="S3 error (404|NoSuchKey)"):
        fetch("s3://sst-data/kaggle/missing.tsv")
    with pytest.raises(SstError, match="bad S3 URI"):
        fetch("s3://sst-data")
