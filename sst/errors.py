"""Errors a user can act on: one line naming the file, the line and the fix.

`sst.cli.main` prints `SstError` as a single line and exits non-zero; everything below the CLI
raises it instead of printing.
"""

from __future__ import annotations

import os


class SstError(Exception):
    """A problem in the user's input or environment, with where it is and how to fix it."""

    def __init__(
        self,
        what: str,
        *,
        path: str | os.PathLike[str] | None = None,
        line: int | None = None,
        fix: str | None = None,
    ) -> None:
        self.what = what
        self.path = None if path is None else str(path)
        self.line = line
        self.fix = fix
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}:{self.line}: " if self.line is not None else f"{self.path}: "
        fix = f" (fix: {self.fix})" if self.fix else ""
        return f"{where}{self.what}{fix}"
