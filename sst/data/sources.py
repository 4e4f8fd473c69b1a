"""Raw data sources: a local path, an http(s):// URL or an s3://bucket/key URI, cached by sha256.

    python -c "from sst.data.sources import fetch; print(fetch('s3://bucket/train.tsv.gz'))"

A remote file is downloaded once (with a progress bar on a terminal, lines in a log) into
``<cache>/sha256/<digest>/<name>`` and found again through ``<cache>/uris/<sha256(uri)>``; every
cache hit is re-hashed, so a corrupt entry is detected and fetched again. ``uri#member`` reads one
member of a zip archive (the canonical SST release is
``trainDevTestTrees_PTB.zip#trees/train.txt``), extracted afresh from the re-hashed archive on
every read; when a downloaded archive does not hold the pinned member, it is downloaded once more
before the mismatch is reported, and a bad download never stays in the cache. An expected sha256
may be the digest of the file as fetched or, for a gzip file, of its decompressed content (the
stable one: gzip settings change the compressed bytes).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sst.errors import SstError
from sst.io import CHUNK, default_cache_dir, progress, sha256_file


@dataclass(frozen=True)
class Fetched:
    """A local file holding the source's bytes, with its digests."""

    uri: str
    path: Path
    sha256: str  # of the file as fetched
    content_sha256: str  # of the decompressed content (== sha256 unless gzip)


GZIP_MAGIC = b"\x1f\x8b"
GZIP_WBITS = 16 + zlib.MAX_WBITS  # zlib reads the gzip header and checks its CRC


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def truncated_gzip(path: Path, complete_lines: int, exc: BaseException) -> SstError:
    return SstError(
        f"truncated or corrupt gzip data after {complete_lines} complete lines ({exc})",
        path=path,
        line=complete_lines + 1,
        fix="download the file again (its sha256 will not match the release)",
    )


# what a truncated or corrupt gzip raises in read_chunks (not OSError: a file one may not read
# is not a corrupt one)
GZIP_ERRORS = (EOFError, zlib.error)


def read_chunks(path: Path) -> Iterator[bytes]:
    """The bytes of a file, decompressed as they are read when it is a gzip (of one or more
    members). A truncated gzip raises EOFError once every byte before the cut was yielded, so a
    caller can say how many complete lines it holds."""
    with open(path, "rb") as f:
        gz = f.read(2) == GZIP_MAGIC
        f.seek(0)
        inflate = zlib.decompressobj(GZIP_WBITS) if gz else None
        while chunk := f.read(CHUNK):
            if inflate is not None:
                data = inflate.decompress(chunk)
                while inflate.eof and inflate.unused_data:  # the next member
                    rest = inflate.unused_data
                    inflate = zlib.decompressobj(GZIP_WBITS)
                    data += inflate.decompress(rest)
                chunk = data
            yield chunk
        if inflate is not None and not inflate.eof:
            raise EOFError("compressed file ended before the end-of-stream marker was reached")


def content_sha256(path: Path) -> str:
    """sha256 of the decompressed bytes of a gzip file (of the file itself otherwise)."""
    if not is_gzip(path):
        return sha256_file(path)
    h = hashlib.sha256()
    lines = 0
    try:
        for chunk in read_chunks(path):
            h.update(chunk)
            lines += chunk.count(b"\n")
    except GZIP_ERRORS as e:
        raise truncated_gzip(path, lines, e) from None
    return h.hexdigest()


def _digests(path: Path) -> tuple[str, str]:
    raw = sha256_file(path)
    return raw, (content_sha256(path) if is_gzip(path) else raw)


def _matches(expected: str | None, digests: tuple[str, str]) -> bool:
    return expected is None or expected.lower() in digests


def fetch(uri: str, *, sha256: str | None = None, cache_dir: Path | None = None) -> Fetched:
    """Return a local file with the bytes of ``uri``, verified against ``sha256`` when given."""
    base, _, member = uri.partition("#")
    parsed = urllib.parse.urlparse(base)
    cache = cache_dir or default_cache_dir()
    remote = parsed.scheme in ("http", "https", "s3")
    if parsed.scheme in ("", "file"):
        path = Path(urllib.parse.unquote(parsed.path) if parsed.scheme else base).expanduser()
        if not path.is_file():
            raise SstError("data file not found", path=path, fix="check the path or set SST_DATA")
        fetched = Fetched(base, path, *_digests(path))
    elif remote:
        fetched = _fetch_remote(base, parsed, cache, None if member else sha256)
    else:
        raise SstError(
            f"unsupported data source scheme {parsed.scheme!r} in {uri!r}",
            fix="use a local path, an http(s):// URL or an s3://bucket/key URI",
        )
    if member:
        archive = fetched
        fetched = _extract_member(archive, member, cache)
        if remote and not _matches(sha256, _pair(fetched)):
            _forget(archive, cache)  # a bad download (or server): fetch the archive once more
            archive = _fetch_remote(base, parsed, cache, None)
            fetched = _extract_member(archive, member, cache)
            if not _matches(sha256, _pair(fetched)):
                _forget(archive, cache)
    if not _matches(sha256, _pair(fetched)):
        raise SstError(
            f"sha256 mismatch for {uri}: expected {sha256}, got {fetched.sha256}"
            + (
                f" (content {fetched.content_sha256})"
                if fetched.content_sha256 != fetched.sha256
                else ""
            ),
            path=None if remote else fetched.path,
            fix="downloaded twice, both differ from the pin (nothing kept): the file at the URL "
            "is not the pinned release; check the URL or the pin"
            if remote
            else "the file changed or is corrupt: restore it from the release or fix the pin",
        )
    return fetched


def is_cached(uri: str) -> bool:
    """Whether a remote ``uri`` (without a ``#member``) was downloaded into the cache before."""
    return _index(default_cache_dir(), uri).is_file()


def _index(cache: Path, uri: str) -> Path:
    """The cache's record of what ``uri`` last downloaded (the sha256 it is stored under)."""
    return cache / "uris" / hashlib.sha256(uri.encode()).hexdigest()


def _pair(f: Fetched) -> tuple[str, str]:
    return f.sha256, f.content_sha256


def _forget(archive: Fetched, cache: Path) -> None:
    """Drop a downloaded archive and its index entry (members are extracted afresh on every read,
    so what was extracted from it is never read again)."""
    if cache in archive.path.parents:
        shutil.rmtree(archive.path.parent, ignore_errors=True)
        _index(cache, archive.uri).unlink(missing_ok=True)


def _fetch_remote(
    uri: str, parsed: urllib.parse.ParseResult, cache: Path, expected: str | None
) -> Fetched:
    name = Path(parsed.path).name or "download"
    index = _index(cache, uri)
    candidates = [expected.lower()] if expected else []
    if index.is_file():
        candidates.append(index.read_text().strip())
    for digest in candidates:
        hit = _cached(cache / "sha256" / digest / name, digest)
        if hit is not None and _matches(expected, (hit.sha256, hit.content_sha256)):
            return Fetched(uri, hit.path, hit.sha256, hit.content_sha256)
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".download-", dir=cache)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            if parsed.scheme == "s3":
                _download_s3(uri, parsed, out)
            else:
                _download_http(uri, out)
        raw, content = _digests(tmp)
        if not _matches(expected, (raw, content)):
            raise SstError(
                f"sha256 mismatch for {uri}: expected {expected}, got {raw}",
                fix="the remote file changed or is corrupt: check the URL or the pinned sha256",
            )
        entry = cache / "sha256" / raw / name
        entry.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, entry)
        index.parent.mkdir(parents=True, exist_ok=True)
        index.write_text(raw + "\n")
        return Fetched(uri, entry, raw, content)
    finally:
        tmp.unlink(missing_ok=True)


def _cached(entry: Path, digest: str) -> Fetched | None:
    """The cache entry stored under ``digest`` if its bytes still hash to it; a corrupt one goes."""
    if not entry.is_file():
        return None
    if sha256_file(entry) != digest:
        shutil.rmtree(entry.parent, ignore_errors=True)  # bytes changed since stored: refetch
        return None
    try:
        return Fetched(str(entry), entry, *_digests(entry))
    except SstError:  # a gzip whose stored bytes were truncated before they were hashed
        shutil.rmtree(entry.parent, ignore_errors=True)
        return None


def _download_http(uri: str, out: Any) -> None:
    try:
        with (
            urllib.request.urlopen(uri, timeout=60) as resp,
            progress(  # a bar on a terminal, lines in a log
                total=int(resp.headers.get("Content-Length") or 0) or None,
                unit="B",
                unit_scale=True,
                desc=Path(urllib.parse.urlparse(uri).path).name,
            ) as bar,
        ):
            while chunk := resp.read(CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
    except urllib.error.HTTPError as e:
        raise SstError(
            f"cannot download {uri}: HTTP {e.code} {e.reason}", fix="check the URL"
        ) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise SstError(
            f"cannot download {uri}: {reason}", fix="check the URL and the network"
        ) from None


def _download_s3(uri: str, parsed: urllib.parse.ParseResult, out: object) -> None:
    import boto3  # the standard AWS credential chain; AWS_ENDPOINT_URL is honoured by boto3
    import botocore.exceptions

    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if not bucket or not key:
        raise SstError(f"bad S3 URI {uri!r}", fix="write it as s3://bucket/key")
    try:
        boto3.client("s3").download_fileobj(bucket, key, out)
    except botocore.exceptions.ClientError as e:
        code = e.response.get("Error", {}).get("Code", "?")
        raise SstError(
            f"cannot download {uri}: S3 error {code}",
            fix="check the bucket, the key and your AWS credentials",
        ) from None
    except botocore.exceptions.BotoCoreError as e:
        raise SstError(
            f"cannot download {uri}: {e}",
            fix="check AWS credentials, AWS_ENDPOINT_URL and the network",
        ) from None


def _extract_member(archive: Fetched, member: str, cache: Path) -> Fetched:
    """``member`` of the (verified) archive, extracted afresh into the cache: an edited copy of
    an earlier extraction is never read."""
    entry = cache / "members" / archive.sha256 / member
    try:
        with zipfile.ZipFile(archive.path) as zf, zf.open(member) as src:
            entry.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=".member-", dir=entry.parent)
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(src, out)
            os.replace(tmp_name, entry)
    except KeyError:
        raise SstError(
            f"no member {member!r} in the archive", path=archive.path, fix="check the #member part"
        ) from None
    except zipfile.BadZipFile as e:
        raise SstError(f"not a valid zip archive ({e})", path=archive.path) from None
    return Fetched(f"{archive.uri}#{member}", entry, *_digests(entry))
