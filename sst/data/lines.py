"""Text lines of a data file, plain or gzip, UTF-8: each with its 1-based number, so that every
error names the line it is on (the first undecodable byte; a gzip cut after N complete lines).

    python -c "from sst.data.lines import iter_lines; print(next(iter_lines('train.tsv.gz')))"
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from sst.data.sources import GZIP_ERRORS, read_chunks, truncated_gzip
from sst.errors import SstError

BOM = b"\xef\xbb\xbf"


def iter_lines(path: Path, meta: dict[str, Any] | None = None) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its newline) of a text file, gzip or plain, UTF-8.
    Accepted on purpose, and noted in ``meta`` when seen: a UTF-8 byte-order mark before the first
    line and Windows line ends (CRLF; a file saved by a Windows editor holds the same rows)."""
    lineno = 0
    try:
        for lineno, data in enumerate(_raw_lines(path), start=1):
            if lineno == 1 and data.startswith(BOM):
                data = data[len(BOM) :]
                if meta is not None:
                    meta["byte_order_mark"] = True
            data = data.removesuffix(b"\n")
            if data.endswith(b"\r"):
                data = data[:-1]
                if meta is not None:
                    meta["crlf_lines"] = meta.get("crlf_lines", 0) + 1
            yield lineno, data.decode("utf-8")
    except GZIP_ERRORS as e:
        raise truncated_gzip(path, lineno, e) from None
    except UnicodeDecodeError as e:
        raise SstError(
            f"not UTF-8 text: byte 0x{e.object[e.start]:02x} at column {e.start + 1}",
            path=path,
            line=lineno,
            fix="re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
        ) from None


def _raw_lines(path: Path) -> Iterator[bytes]:
    """The lines of a file (gzip: decompressed as it is read), each with its b"\\n" but the last.
    A truncated gzip fails after every complete line before the cut has been yielded."""
    pending = b""
    for chunk in read_chunks(path):
        *lines, pending = (pending + chunk).split(b"\n")
        yield from (line + b"\n" for line in lines)
    if pending:
        yield pending


def tab_fields(line: str, n: int, path: Path, lineno: int, fix: str) -> list[str]:
    """The tab-separated fields of one line of a TSV, refused unless there are ``n``."""
    fields = line.split("\t")
    if len(fields) != n:
        raise SstError(
            f"{len(fields)} tab-separated fields, expected {n}", path=path, line=lineno, fix=fix
        )
    return fields


def read_phrases(path: Path) -> pd.DataFrame:
    """The phrases of a TSV with a ``text`` (or ``Phrase``) column, or of a plain text file (one
    per non-blank line); UTF-8, gzip or not (errors name the line, as for the data sources)."""
    if not path.is_file():
        raise SstError("input file not found", path=path, fix="check the path")
    lines = list(iter_lines(path))
    header = lines[0][1].split("\t") if lines else []
    column = next((c for c in ("text", "Phrase") if c in header), None)
    if column is None:
        return pd.DataFrame({"text": [line for _, line in lines if line.strip()]})
    fix = "as many fields as the header, no tabs inside a phrase"
    rows = [tab_fields(line, len(header), path, n, fix) for n, line in lines[1:]]
    frame = pd.DataFrame(rows, columns=header, dtype=str)
    return frame.rename(columns={column: "text"})
