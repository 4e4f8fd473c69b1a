"""`sst doctor`: am I set up? One table: this interpreter and machine as a run's fingerprint records
them, the lock and the drift from it, where ClearML tasks would go (the credentials named by where
they come from, never shown) and where a config's data would come from.

    sst doctor                          # the data of configs/demo.yaml (what `make demo` reads)
    sst doctor -c configs/kaggle.yaml   # another preset's

    sst doctor --bits                   # and the bits probe: are portable runs reproduced here?

Exit 1 when what is installed differs from the lock (or no lock is found), or when the bits probe
(:mod:`sst.env.bits`) gives another digest than the published one, else 0: a server that does not
answer or data still to download are states to read, not failures.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from sst.config import Config
from sst.data.pipeline import whereabouts
from sst.env import bits as probe_bits
from sst.env.determinism import DETERMINISM_ENV
from sst.env.locks import KIT_ROOT, LOCKS, drift, installed, read_lock
from sst.errors import SstError
from sst.run import fingerprint as fp
from sst.run.fingerprint import environment
from sst.tracking.tracker import check_server, connection

DEMO = KIT_ROOT / "configs" / "demo.yaml"
HEADER = ("what", "state", "detail")
Row = tuple[str, str, str]


def doctor(
    cfg: Config | SstError, out: Any = None, *, ping: bool = True, bits: bool = False
) -> int:
    """Print the table; 0 when the installed packages match the lock, 1 when they do not (or the
    bits probe, run with ``bits``, gives another digest), 2 when the config whose data it shows
    is bad (``cfg``: the error). ``ping``: ask a configured server whether it answers and takes
    the credentials."""
    out = out or sys.stdout
    env = environment()  # a fingerprint's environment section: read through fp.value
    lock_rows, clean = _lock(env)
    rows = _machine(env) + lock_rows + _clearml(ping) + [_data(cfg)]
    if bits:
        row, reproduced = _bits()
        rows.append(row)
        clean = clean and reproduced
    print(table(rows), file=out)
    return 2 if isinstance(cfg, SstError) else 0 if clean else 1


def table(rows: list[Row]) -> str:
    """Plain-text columns (a log keeps them; no terminal needed)."""
    w = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(2)]
    rule = ("-" * w[0], "-" * w[1], "-" * len(HEADER[2]))
    return "\n".join(f"{a:{w[0]}}  {b:{w[1]}}  {c}".rstrip() for a, b, c in [HEADER, rule, *rows])


def _machine(env: dict[str, Any]) -> list[Row]:
    import torch

    isa = env["cpu_isa"]
    cuda = f"CUDA {_field(env, fp.TORCH_CUDA)}, {', '.join(env['devices'])}"
    cuda = cuda if env["devices"] else "no GPU"
    unset = [v for v in DETERMINISM_ENV if env.get(v) is None]
    return [
        ("python", "ok", f"{env['python']} {env['implementation']}, {env['executable']}"),
        ("platform", "ok", env["platform"]),
        ("cpu", "ok", f"{env['cpu']}; kernels {isa['aten']} (SST_CPU_ISA {isa['level']})"),
        ("torch", "ok", f"{env['torch']}, {cuda}, {torch.get_num_threads()} threads"),
        ("image", "ok" if env["image"] else "none", env["image"] or "a host venv, not an image"),
        (
            "determinism",
            "ok" if not unset else "unset",
            "all set"
            if not unset
            else f"{', '.join(unset)} (make, the images and agents set them)",
        ),
    ]


def _lock(env: dict[str, Any]) -> tuple[list[Row], bool]:
    if env["lock"] is None:
        return [("lock", "MISSING", "no environment.lock found (set SST_LOCK)")], False
    d = drift(read_lock(Path(env["lock"])), installed())
    detail = f"{env['lock']}, sha256 {_field(env, fp.LOCK_SHA256)[:12]}…"
    rows: list[Row] = [("lock", "ok" if d.clean else "DRIFT", detail)]
    rows += [("  missing", "DRIFT", item) for item in d.missing]
    rows += [("  mismatched", "DRIFT", item) for item in d.mismatched]
    dev_lock = Path(env["lock"]).with_name(LOCKS["dev"])  # tests and lint, installed on top
    tools = read_lock(dev_lock) if dev_lock.is_file() else {}
    if dev := [n for n in d.extra if n in tools]:
        rows.append(("  dev tools", "info", f"{len(dev)} packages of {dev_lock.name}"))
    if other := [n for n in d.extra if n not in tools]:
        rows.append(("  not in lock", "info", ", ".join(other)))
    return rows, d.clean


def _field(env: dict[str, Any], name: str) -> Any:
    return fp.value({"environment": env}, name)


def _clearml(ping: bool) -> list[Row]:
    c = connection()
    if not c.online:
        return [
            ("clearml", "offline", f"{c.why}: tasks are offline sessions, `sst upload` shares one"),
            ("  credentials", "found" if c.credentials != "none" else "none", c.credentials),
        ]
    answer = ("answers", "its ping and the login succeeded")
    if ping:
        try:
            check_server()
        except SstError as e:  # does not answer, or refuses the credentials
            answer = ("FAILED", e.what)
    else:
        answer = ("not asked", "sst doctor --no-ping")
    return [
        ("clearml", "online", f"{c.server} ({c.why}); task links on {c.web}"),
        ("  credentials", "found" if c.credentials != "none" else "NONE", c.credentials),
        ("  server", *answer),
    ]


def _bits() -> tuple[Row, bool]:
    try:
        result = probe_bits.probe()
    except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:  # ValueError: not JSON
        return ("bits (portable)", "FAILED", str(e)), False
    same, line = probe_bits.verdict(result)
    return ("bits (portable)", "match" if same else "DIFFERENT", line), same


def _data(cfg: Config | SstError) -> Row:
    if isinstance(cfg, SstError):
        return ("data", "ERROR", str(cfg))
    where = whereabouts(cfg)
    return (f"data ({cfg.name})", where.state, where.detail)
