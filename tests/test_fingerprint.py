"""The one fingerprint schema: every field a run or an ensemble writes is declared once, with
what a difference in it means; an undeclared field is refused before anything is written; and
`sst replay`'s verdict reads each field's meaning from the declaration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sst.config import load_config
from sst.run import fingerprint as fp
from sst.run.folder import FINGERPRINT
from sst.verbs.replay import Recorded, compare, why_it_differs

# declared for runs that use an option the tiny run leaves off, or for ensembles, or legacy
OPTIONAL_PRODUCERS = {"pseudo", "distill", "ensemble", "legacy"}
OPTIONAL = {"init_weights_sha256", "model_commit"}  # model.init_from; a hub model


def test_names_are_declared_once_each_with_a_reason() -> None:
    names = [f.name for f in fp.FIELDS]
    assert len(names) == len(set(names))
    assert all(f.why and f.producer for f in fp.FIELDS)
    # each declaration is the one a name finds (no section wildcard hides a later field)
    assert all(fp.field_of(f.name.replace("/*", "/x")) is f for f in fp.FIELDS)


def test_what_the_environment_layer_reports_is_declared_before_any_run() -> None:
    """A new variable or library cap in sst.env fails here, not at the end of a long run."""
    from sst.env.cpu import LIBRARY_CAPS
    from sst.env.determinism import DETERMINISM_ENV

    for name in fp.names({"environment": fp.environment()}):
        assert fp.field_of(name) is not None, name
    for var in DETERMINISM_ENV:
        assert fp.field_of(f"environment/{var}") is not None, var
    for cap in LIBRARY_CAPS:
        assert fp.field_of(f"environment/cpu_isa/{cap}") is not None, cap


def test_a_real_run_writes_every_field_it_should_and_only_declared_ones(
    tracked_run: dict[str, Any],
) -> None:
    written = json.loads((tracked_run["run"] / FINGERPRINT).read_text())
    names = fp.names(written)
    assert all((f := fp.field_of(n)) is not None and f.meaning is not fp.LEGACY for n in names)
    expected = {
        f.name for f in fp.FIELDS if f.producer not in OPTIONAL_PRODUCERS and f.name not in OPTIONAL
    }
    covered = {f.name for f in fp.FIELDS for n in names if f.matches(n)}
    assert expected - covered == set()  # no declaration that no run fills


def test_an_undeclared_or_legacy_field_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\['environment/gpu_clock'\]"):
        fp.check({"seed": 0, "environment": {"gpu_clock": 1}})
    with pytest.raises(ValueError, match="determinism/seed"):
        fp.check({"determinism": {"seed": 0}})
    assert fp.check({fp.FILES: {"anything.tsv": "0" * 64}, fp.SEED: 1})  # a free section


def test_an_ensemble_names_its_members_hash_as_its_own() -> None:
    made = fp.for_ensemble(
        [("a", "minilm", "1" * 64), ("b", "minilm", "2" * 64)],
        chosen_by="given",
        split="3" * 64,
        files_sha256={},
    )
    assert made["ensemble_sha256"] == fp.ensemble_sha256(["1" * 64, "2" * 64])
    assert fp.CONFIG not in made  # it is not a config's hash


def _rec(weights: str, **fields: str) -> Recorded:
    return Recorded("x", load_config(None, []), {fp.WEIGHTS: weights, **fields})


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("seed", "input: another seed"),
        ("threads", "expected to break bit-identity: CPU thread count changes the order of"),
        ("environment/cpu_isa/MKL_CBWR", "expected to break bit-identity: MKL's reproducibility"),
        ("git/commit", "may break bit-identity: another version of the kit's code"),
        ("environment/PYTHONHASHSEED", "may break bit-identity: Python's hash order"),
        ("environment/TOKENIZERS_PARALLELISM", "not expected to change a bit: tokenizer threads"),
        ("chosen_by", "not expected to change a bit: members chosen by another rule"),
    ],
)
def test_the_verdict_gives_each_kind_of_field_its_reason(name: str, reason: str) -> None:
    verdict = compare(_rec("a" * 64, **{name: "1"}), _rec("b" * 64, **{name: "2"}))
    (difference,) = verdict.differences
    assert difference[3].startswith(reason)


@pytest.mark.parametrize("field", [f for f in fp.FIELDS if f.meaning in fp.COMPARED])
def test_every_compared_field_is_explained_by_its_declaration(field: fp.Field) -> None:
    name = field.name.replace("/*", "/x")
    verdict = compare(_rec("a" * 64, **{name: "1"}), _rec("b" * 64, **{name: "2"}))
    (difference,) = verdict.differences
    assert field.why in difference[3] and difference[3] != "recorded, not known to matter"


def test_outputs_places_and_legacy_fields_are_not_compared() -> None:
    for f in fp.FIELDS:
        if f.meaning not in fp.COMPARED:
            assert why_it_differs(f.name.replace("/*", "/x"), None) is None, f.name
    assert why_it_differs("environment/gpu_clock", None) == "recorded, not known to matter"


def test_a_fingerprint_is_read_by_its_field_names(tmp_path: Path) -> None:
    made = {"determinism": {"precision": "32-true"}, "git": {"commit": "c" * 40}}
    assert fp.value(made, fp.PRECISION) == "32-true" and fp.value(made, fp.GIT_COMMIT) == "c" * 40
    assert fp.value(made, "environment/cpu") is None
