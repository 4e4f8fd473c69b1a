"""Determinism: the one function that makes a run repeatable, and seeding.

python -c "from sst.env.determinism import configure_determinism; configure_determinism(2)"
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from sst.env.cpu import check_pinned

DETERMINISM_ENV = {
    "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
    "PYTHONHASHSEED": "0",
    "TOKENIZERS_PARALLELISM": "false",
}


def configure_determinism(threads: int) -> None:
    """The one place that makes a run repeatable; call it first (the fingerprint records the
    flags it sets, the thread count and the seed).

    PYTHONHASHSEED only takes effect for a new interpreter (Make and the image set it); the
    others are honoured when set before CUDA or tokenizers start, which is why this runs first.
    Seeding is separate (:func:`seed_everything`): it must come after the ClearML task starts.
    """
    import torch

    for key, value in DETERMINISM_ENV.items():
        os.environ.setdefault(key, value)
    check_pinned()
    if threads > 0:
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=False)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy, torch and DataLoader workers: once, right before fitting, after the
    ClearML task started (``Task.init`` reseeds every RNG unless told not to)."""
    import lightning as L

    L.seed_everything(seed, workers=True, verbose=False)


@contextmanager
def seeded_torch(seed: int) -> Iterator[None]:
    """torch's global RNG seeded with ``seed`` inside, restored after: what is built inside (a
    model's fresh head) depends on the seed only, not on what ran before."""
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield
