"""The package's shape, read from its source: no import cycle, no verb module importing another,
the lower layers free of ClearML, one home for the run-folder file names, modules of a readable
size. Every import counts, also those inside functions (they are still dependencies)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from sst import runs

PACKAGE = Path(__file__).resolve().parent.parent / "sst"
# One module per CLI verb (or pair of verbs); the recipes `train` and `prepare` are what verbs
# share (replay re-trains, train and replay make a missing split), so they are not verbs here.
VERBS = {
    "sst.predict",
    "sst.replay",
    "sst.sweep",
    "sst.report",
    "sst.ensemble",
    "sst.bench",
    "sst.bench_prune",
    "sst.export",
}
MAX_LINES = 360
CONTRACT_NAMES = {
    runs.CONFIG,
    runs.FINGERPRINT,
    runs.METRICS,
    runs.WEIGHTS,
    runs.CONFUSION_PNG,
    runs.PREDICTIONS,
    runs.PARTIAL,
    runs.SWEEP_RECORD,
    f"{runs.LAST}.ckpt",
    f"{runs.BEST}.ckpt",
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def imports_of(name: str, path: Path) -> set[str]:
    """The sst modules ``name`` imports, anywhere in the file."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    [*package.split(".")[: len(package.split(".")) - node.level + 1], base]
                )
            # `from sst import runs` imports the module sst.runs; `from sst.x import f` imports sst.x
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name and target != "sst":
                found.add(target)
    return found


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}


def test_the_graph_is_read() -> None:
    """The walker sees the imports that exist (a broken walker would pass every check below)."""
    assert "sst.runs" in GRAPH["sst.train"] and "sst.tracking" in GRAPH["sst.train"]
    assert "sst.train" in GRAPH["sst.replay"]  # imported inside a function: still counted
    assert "sst.data" in GRAPH["sst.model.metrics"]  # a package counts as a module
    assert "sst.data.formats" in GRAPH["sst.data.pipeline"]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle() -> None:
    assert find_cycle(GRAPH) is None


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_no_verb_imports_another_verb(verb: str) -> None:
    assert GRAPH[verb] & VERBS == set()


@pytest.mark.parametrize("name", [m for m in MODULES if m.startswith(("sst.data", "sst.model"))])
def test_the_lower_layers_know_no_clearml_and_no_verb(name: str) -> None:
    above = {"sst.tracking", "sst.server", "sst.cli", "sst.train", "sst.prepare", *VERBS}
    assert GRAPH[name] & above == set()
    assert "clearml" not in MODULES[name].read_text()


def test_only_tracking_imports_clearml() -> None:
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                mods = (
                    [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                )
                assert name == "sst.tracking" or not any(
                    (m or "").startswith("clearml") for m in mods
                ), name


def _code_strings(tree: ast.AST) -> set[str]:
    """String constants that are not docstrings."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        if id(node) not in docstrings
    }


@pytest.mark.parametrize("name", [m for m in MODULES if m != "sst.runs"])
def test_only_runs_spells_the_run_folder_names(name: str) -> None:
    assert _code_strings(ast.parse(MODULES[name].read_text())) & CONTRACT_NAMES == set()


def test_the_names_check_would_see_a_spelled_name() -> None:
    assert _code_strings(ast.parse('x = run / "fingerprint.json"')) & CONTRACT_NAMES
    assert _code_strings(ast.parse('x = f"{run}.partial"')) & CONTRACT_NAMES
    assert not _code_strings(ast.parse('"""Reads fingerprint.json."""'))


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_readable_in_one_sitting(name: str) -> None:
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name]}: {lines} lines"
