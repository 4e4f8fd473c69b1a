"""``${VAR}`` and ``${VAR:-default}`` in config strings, expanded from the environment.

python -c "from sst.config.variables import expand; print(expand('${SST_DATA}/sst_ptb'))"
"""

from __future__ import annotations

import os
import re

from sst.errors import SstError

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def unset_variables(text: str) -> list[str]:
    """The ``${VAR}`` in ``text`` that are unset (or empty) and have no ``:-default``."""
    return [
        m.group(1)
        for m in _VAR.finditer(text)
        if not os.environ.get(m.group(1)) and m.group(2) is None
    ]


def expand(text: str, where: tuple[str | None, int | None] = (None, None)) -> str:
    """``${VAR}`` and ``${VAR:-default}`` from the environment; an unset one is an error."""

    def sub(m: re.Match[str]) -> str:
        value = os.environ.get(m.group(1))
        if value:
            return value
        if m.group(2) is not None:
            return m.group(2)
        raise SstError(
            f"${{{m.group(1)}}} is not set",
            path=where[0],
            line=where[1],
            fix=f"export {m.group(1)}=... (make sets SST_DATA=../shared/data when it exists)",
        )

    return _VAR.sub(sub, text)
