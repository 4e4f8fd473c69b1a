"""``train.sampling``: the class-balance alpha of every epoch, from text such as
``stratified:4,alternate:4`` (``random`` is alpha 1, ``stratified`` alpha 0; what an alpha does
to an epoch's draws is :mod:`sst.model.sampling`'s). Parsed when the config is built, so a bad
schedule is refused before anything trains.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sst.errors import SstError

MODES = {"random": 1.0, "stratified": 0.0}
_PART = re.compile(r"^(random|stratified|alternate|alpha=([0-9.]+)):([1-9][0-9]*)$")


@dataclass(frozen=True)
class Schedule:
    """The class-balance alpha of every epoch, from text such as ``stratified:4,alternate:4``."""

    alphas: tuple[float, ...]
    text: str

    @classmethod
    def parse(cls, text: str) -> Schedule:
        alphas: list[float] = []
        for part in (p.strip() for p in text.split(",")):
            m = _PART.match(part)
            if not m:
                raise SstError(
                    f"bad sampling schedule part {part!r} in {text!r}",
                    fix="write mode:epochs[,mode:epochs…] with mode random, stratified, "
                    "alternate or alpha=<0..1>, e.g. 'stratified:4,alternate:4'",
                )
            mode, alpha, epochs = m.group(1), m.group(2), int(m.group(3))
            if mode == "alternate":  # random, stratified, random, …
                alphas.extend(
                    MODES["random"] if i % 2 == 0 else MODES["stratified"] for i in range(epochs)
                )
            elif alpha is not None:
                a = float(alpha)
                if not 0.0 <= a <= 1.0:
                    raise SstError(f"alpha {a} in {text!r} is outside [0, 1]", fix="use 0..1")
                alphas.extend([a] * epochs)
            else:
                alphas.extend([MODES[mode]] * epochs)
        return cls(tuple(alphas), text)

    def __len__(self) -> int:
        return len(self.alphas)

    def alpha(self, epoch: int) -> float:
        return self.alphas[min(epoch, len(self.alphas) - 1)]
