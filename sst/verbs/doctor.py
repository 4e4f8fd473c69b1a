"""`sst doctor`: this machine as a run's fingerprint records it, and its drift from the lock.

sst doctor            # exit 1 when what is installed differs from environment.lock
"""

from __future__ import annotations

import sys
from typing import Any

from sst.env.locks import drift, find_lock, installed, read_lock
from sst.run.fingerprint import environment


def doctor(out: Any = None) -> int:
    """Print the fingerprint's environment and the drift against the lock; 0 when clean, 1 on
    drift."""
    import torch

    out = out or sys.stdout
    info = environment()
    for key, value in info.items():
        print(f"{key:24} {value}", file=out)
    print(f"{'threads':24} {torch.get_num_threads()}", file=out)
    lock = find_lock()
    if lock is None:
        print("drift                    no environment.lock found (set SST_LOCK)", file=out)
        return 1
    d = drift(read_lock(lock), installed())
    for item in d.missing:
        print(f"MISSING                  {item}", file=out)
    for item in d.mismatched:
        print(f"DRIFT                    {item}", file=out)
    if d.extra:
        print(f"not in lock (info)       {', '.join(d.extra)}", file=out)
    verdict = "none" if d.clean else f"{len(d.missing)} missing, {len(d.mismatched)} mismatched"
    print(f"{'drift':24} {verdict}", file=out)
    return 0 if d.clean else 1
