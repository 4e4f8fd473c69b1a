"""Errors a user can act on: one line naming the file, the line and the fix.

`sst.cli.main` prints `SstError` (and an `OSError`, through :func:`user_error`) as a single
line and exits 2; everything below the CLI raises it instead of printing.
"""

from __future__ import annotations

import errno
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


class Problems(SstError):
    """Every problem one pass found (each bad line of a file), one line each, so a user fixes
    them all before anything runs rather than one per attempt."""

    def __init__(self, problems: list[SstError]) -> None:
        self.problems = problems
        first = problems[0]
        super().__init__(first.what, path=first.path, line=first.line, fix=first.fix)

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


# What to do about an operating-system error, by errno (the rest: "check the path")
_OS_FIXES = {
    errno.EROFS: "choose a folder on a writable file system",
    errno.EACCES: "choose a folder you may write to, or fix its permissions",
    errno.EPERM: "choose a folder you may write to, or fix its permissions",
    errno.ENOSPC: "free some space, or choose a folder on another disk",
    errno.EDQUOT: "free some space, or choose another folder",
    errno.ENOTDIR: "a file is where a folder is needed: move it or choose another path",
    errno.EEXIST: "move it or choose another path",
    errno.EISDIR: "a folder is where a file is needed: choose another path",
    errno.ENOENT: "check the path",
}


def user_error(e: SstError | OSError) -> SstError:
    """The one line a user reads: an SstError as it is; an error of the operating system as
    its path, what happened and the fix."""
    if isinstance(e, SstError):
        return e
    what = e.strerror or type(e).__name__
    fix = _OS_FIXES.get(e.errno or 0, "check the path and the disk")
    return SstError(what.lower() if what[:1].isupper() else what, path=e.filename, fix=fix)
