"""The shape of the code, checked over whole packages: the decision core stays pure, no
import cycle, no module past 250 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("stream", "models", "schemas")
IO_LIBRARIES = {"confluent_kafka", "redis", "http", "urllib", "socket", "requests", "httpx"}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def _top_level_imports(path: Path) -> set[str]:
    """Modules imported when `path` is imported (not those imported inside functions)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _all_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.split(".")[0] == "models"))
def test_models_import_no_kafka_redis_network_or_stream(name: str) -> None:
    assert not _all_imports(MODULES[name]) & (IO_LIBRARIES | {"stream"})


@pytest.mark.parametrize("name", ["models.decision", "models.rules", "models.featureset", "models.units"])
def test_the_decision_core_imports_only_numpy_pydantic_and_itself(name: str) -> None:
    third_party = {n for n in _all_imports(MODULES[name]) if n not in {"models", "__future__"}}
    assert third_party <= {"numpy", "pydantic", "collections", "dataclasses", "enum", "typing", "hashlib", "math"}


def test_no_import_cycle() -> None:
    graph = {name: {imp for imp in _top_level_imports(path) if imp in MODULES and imp != name} for name, path in MODULES.items()}
    # A package's __init__ importing its own submodules is not a cycle through them.
    for name in graph:
        graph[name] = {m for m in graph[name] if not (m.startswith(name + ".") and MODULES[name].name == "__init__.py")}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, path: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle.extend([*path, node, nxt])
                return True
            if nxt not in state and visit(nxt, [*path, node]):
                return True
        state[node] = 2
        return False

    for name in sorted(graph):
        if name not in state and visit(name, []):
            break
    assert not cycle, " -> ".join(cycle)


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.split(".")[0] in {"stream", "models"}))
def test_no_module_is_over_250_lines(name: str) -> None:
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= 250, f"{MODULES[name].relative_to(REPO)} has {lines} lines"


def test_the_decision_contract_documents_every_feature_route_and_outcome_in_order() -> None:
    import re

    from models.decision import Outcome, Route
    from models.featureset import FEATURE_NAMES, FEATURE_SET_VERSION

    page = (REPO / "docs" / "decisions.md").read_text()
    assert f"## Feature dictionary (`{FEATURE_SET_VERSION}`)" in page
    documented = re.findall(r"^\| (\d+) \| `([a-z0-9_]+)` \|", page, flags=re.M)
    assert documented == [(str(i), name) for i, name in enumerate(FEATURE_NAMES)]
    from models.sequence import SEQ_FIELDS, SEQUENCE_VERSION

    assert f"## Card sequence (`{SEQUENCE_VERSION}`)" in page
    steps = re.findall(r"^\| s(\d+) \| `([a-z0-9_]+)` \|", page, flags=re.M)
    assert steps == [(str(i), name) for i, name in enumerate(SEQ_FIELDS)]
    routes = re.findall(r"^\| `([A-Z_]+)` \| ", page, flags=re.M)
    assert routes == [r.name for r in Route]
    for o in Outcome:
        assert f"`{o.name}`" in page
