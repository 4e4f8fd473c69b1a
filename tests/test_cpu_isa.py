"""Portable bits across CPU families: SST_CPU_ISA=avx2 / portable hold torch, MKL and oneDNN to
fixed kernels (portable: MKL's vendor-free COMPATIBLE branch). What one machine can show: the pin
is applied whatever the CPU's own top ISA (the fingerprint reads back what torch runs, with the
vendor), two pinned runs are bit-identical, a replay started without the variable takes the
recorded level, verify compares the level, not the CPU model, and a vendor change is expected
to change bits except under the vendor-free level. The weights across vendors:
test_golden_bits.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sst.cli import main
from sst.config import load_config
from sst.env.cpu import CPU_ISA_ENV, cpu_vendor
from sst.env.cpu import PINNING_VARS as PINS
from sst.tracking.agent import child_environment
from sst.verbs.replay import Recorded, compare
from tests.conftest import train_overrides


def _sst(*args: str, level: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in child_environment().items() if k not in PINS | {CPU_ISA_ENV}}
    if level:
        env[CPU_ISA_ENV] = level
    return subprocess.run(
        [sys.executable, "-m", "sst.cli", *args], env=env, capture_output=True, text=True
    )


def _run_folder(stdout: str) -> Path:
    return Path(stdout.split("run      ", 1)[1].split("  (", 1)[0])


@pytest.fixture(scope="module")
def pinned(tiny_model: Path, tiny_split: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("isa")
    extra = ("tracking.enabled=false",)
    runs = [
        _sst("train", *train_overrides(tiny_model, tiny_split, tmp / name, *extra), level="avx2")
        for name in ("a", "b")
    ]
    for done in runs:
        assert done.returncode == 0, done.stderr[-2000:]
    return [_run_folder(done.stdout) for done in runs]


def test_the_pin_holds_whatever_the_cpu_offers(pinned) -> None:
    a, b = (json.loads((run / "fingerprint.json").read_text()) for run in pinned)
    for fp in (a, b):
        assert fp["environment"]["cpu_isa"] == {
            "level": "avx2",
            "vendor": cpu_vendor(),
            "aten": "AVX2",
            "MKL_CBWR": "AVX2,STRICT",
            "ONEDNN_MAX_CPU_ISA": "AVX2",
        }
    assert a["weights_sha256"] == b["weights_sha256"]


def test_a_replay_takes_the_recorded_level(pinned, tmp_path: Path) -> None:
    """Started without SST_CPU_ISA (the CPU's own kernels), the replay runs the recorded AVX2."""
    weights = json.loads((pinned[0] / "fingerprint.json").read_text())["weights_sha256"]
    done = _sst("replay", str(pinned[0]), "--out", str(tmp_path), level=None)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith(f"BIT-IDENTICAL (weights sha256 {weights})")
    (replayed,) = tmp_path.iterdir()
    pins = json.loads((replayed / "fingerprint.json").read_text())["environment"]["cpu_isa"]
    assert pins["level"] == "avx2" and pins["aten"] == "AVX2"  # not the CPU's own level


def _rec(weights: str, level: str, cpu: str) -> Recorded:
    fields = {
        "weights_sha256": weights,
        "environment/cpu": cpu,
        "environment/cpu_isa/level": level,
        "environment/cpu_isa/vendor": "GenuineIntel" if "Intel" in cpu else "AuthenticAMD",
        "environment/cpu_isa/aten": "AVX512" if level == "native" else "AVX2",
    }
    return Recorded("x", load_config(None, []), fields)


def test_verify_compares_the_level_not_the_cpu_model() -> None:
    a, b = _rec("a" * 64, "avx2", "Intel Xeon 8480"), _rec("a" * 64, "avx2", "Intel Xeon 6338")
    same = compare(a, b)
    assert same.identical
    assert (
        "environment/cpu: Intel Xeon 8480 → Intel Xeon 6338  (both pinned to SST_CPU_ISA=avx2 "
        "kernels" in same.render()
    )
    native = compare(_rec("a" * 64, "native", "Intel Xeon"), _rec("b" * 64, "native", "AMD EPYC"))
    assert "(expected to break bit-identity: another CPU model" in native.render()
    mixed = compare(_rec("a" * 64, "avx2", "Intel Xeon"), _rec("b" * 64, "native", "Intel Xeon"))
    assert "environment/cpu_isa/level: avx2 → native  (expected to break" in mixed.render()


def test_a_vendor_change_is_expected_to_change_bits_except_under_the_vendor_free_level() -> None:
    """SST_CPU_ISA=avx2 holds among one vendor's CPUs (MKL's AVX2 branch is Intel's); portable
    (MKL's COMPATIBLE branch) does not depend on the vendor, so a difference there is news."""
    avx2 = compare(_rec("a" * 64, "avx2", "Intel Xeon"), _rec("b" * 64, "avx2", "AMD EPYC"))
    assert (
        "environment/cpu_isa/vendor: GenuineIntel → AuthenticAMD  (expected to break "
        "bit-identity: another CPU vendor" in avx2.render()
    )
    assert (
        "environment/cpu: Intel Xeon → AMD EPYC  (expected to break" in avx2.render()
    )  # not pinned
    free = compare(_rec("a" * 64, "portable", "Intel Xeon"), _rec("a" * 64, "portable", "AMD EPYC"))
    assert free.identical
    assert (
        "environment/cpu_isa/vendor: GenuineIntel → AuthenticAMD  (both pinned to "
        "SST_CPU_ISA=portable kernels: not expected to change a bit)" in free.render()
    )
    old = _rec("a" * 64, "native", "AMD EPYC")  # recorded before the vendor was
    del old.fingerprint["environment/cpu_isa/vendor"]
    assert "vendor" not in compare(old, _rec("a" * 64, "native", "AMD EPYC")).render()


def test_a_level_asked_too_late_or_unknown_is_refused(monkeypatch, capsys) -> None:
    import torch

    from sst.env.determinism import configure_determinism
    from sst.errors import SstError

    monkeypatch.setenv(CPU_ISA_ENV, "avx9")
    assert main(["config"]) == 2
    assert "SST_CPU_ISA='avx9' is not one of native, avx2, portable" in capsys.readouterr().err
    if torch.backends.cpu.get_cpu_capability() == "AVX2":
        pytest.skip("this CPU's own kernels are AVX2: asking for them late changes nothing")
    for key in PINS:  # setenv first: the variables the code sets are removed again afterwards
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    monkeypatch.setenv(CPU_ISA_ENV, "avx2")
    with pytest.raises(SstError, match="torch was imported before the variables were set"):
        configure_determinism(1)
