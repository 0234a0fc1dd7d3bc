"""The layers only point down: no module imports from a layer above its own, and no
modules import each other in a cycle.

Every module of the shared layer and every handler is parsed (not imported), and every
import counts, at the top of a module or inside a function, a TYPE_CHECKING block
included: a lazy import that climbs is still a climb.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "shared" / "datasources"
FUNCTIONS = ROOT / "functions"

# Low to high. A module belongs to the layer of the longest prefix that names it (a
# prefix covers a package and everything under it, so new packages such as
# connectors/api/ are placed by where they live). A module may import from its own
# layer or any layer below it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "core",
        (
            "datasources.errors",
            "datasources.config",
            "datasources.limits",
            "datasources.tokens",
            "datasources.netguard",
            "datasources.egress",
            "datasources.observability",
            "datasources.tracing",
            "datasources.types",
            "datasources.ids",
            "datasources.backoff",
            "datasources.lake",
        ),
    ),
    ("models", ("datasources.models",)),
    # DynamoDB (dal/) and the other AWS services (aws/), side by side; authentication
    # reads its signing key from Secrets Manager.
    ("data access", ("datasources.dal", "datasources.aws", "datasources.auth")),
    ("connectors", ("datasources.connectors",)),
    ("sync", ("datasources.sync",)),
    ("services", ("datasources.services",)),
    ("http", ("datasources.http", "datasources.runtime")),
    ("handlers", ("functions",)),
)

# Imports that point down but are still not made, by the importing module's prefix.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    # A connector is handed its resolved config, secrets and lake allowance: it never
    # reads the table or Secrets Manager itself.
    "datasources.connectors": ("datasources.dal", "datasources.aws.secrets"),
    # The AWS service modules sit beside the DAL, not on it.
    "datasources.aws": ("datasources.dal",),
    # Handlers call services; the engine, the DAL and the connectors sit behind them.
    "functions": (
        "datasources.sync",
        "datasources.dal",
        "datasources.connectors",
        "datasources.aws",
    ),
}

RANK = {name: rank for rank, (name, _) in enumerate(LAYERS)}


def _covers(prefix: str, module: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> str | None:
    best: tuple[int, str] | None = None
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            if _covers(prefix, module) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), name)
    return best[1] if best else None


def modules() -> dict[str, Path]:
    """Every module of the shared layer and every handler, by dotted name."""
    found: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if len(parts) > 1:  # the empty top-level package is nobody's layer
            found[".".join(parts)] = path
    for path in sorted(FUNCTIONS.glob("*/app.py")):
        found[f"functions.{path.parent.name}.app"] = path
    return found


def import_graph(found: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the modules of ours it imports (anywhere in its body)."""
    graph: dict[str, set[str]] = {}
    for name, path in found.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{name}: relative import"
                base = node.module or ""
                for alias in node.names:
                    # `from datasources.dal import jobs` imports the module dal.jobs.
                    candidate = f"{base}.{alias.name}"
                    targets.add(candidate if candidate in found else base)
        graph[name] = {t for t in targets if t in found and t != name}
    return graph


def climbs(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in sorted(graph.items()):
        layer = layer_of(module)
        assert layer is not None
        for target in sorted(targets):
            target_layer = layer_of(target)
            assert target_layer is not None
            if RANK[target_layer] > RANK[layer]:
                found.append(f"{module} ({layer}) -> {target} ({target_layer})")
            elif any(
                _covers(prefix, module) and any(_covers(t, target) for t in forbidden)
                for prefix, forbidden in FORBIDDEN.items()
            ):
                found.append(f"{module} ({layer}) -> {target} (not allowed from there)")
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(modules())


def test_every_module_has_a_layer(graph: dict[str, set[str]]) -> None:
    # Given a new module, when nobody placed it, then this names it.
    assert [m for m in graph if layer_of(m) is None] == []


def test_no_module_imports_from_a_layer_above_its_own(graph: dict[str, set[str]]) -> None:
    assert climbs(graph) == []


def test_no_modules_import_each_other_in_a_cycle(graph: dict[str, set[str]]) -> None:
    assert cycles(graph) == []


def test_the_checks_see_a_lazy_climb_and_a_cycle() -> None:
    # Given an import inside a function that climbs, and two modules importing each
    # other, then both are reported (the checks above can fail).
    assert climbs(
        {"datasources.sync.a": {"datasources.services.b"}, "datasources.services.b": set()}
    )
    assert cycles(
        {"datasources.dal.a": {"datasources.dal.b"}, "datasources.dal.b": {"datasources.dal.a"}}
    )
    tree = ast.parse("def f():\n    from datasources.services import common\n")
    assert any(isinstance(n, ast.ImportFrom) for n in ast.walk(tree))
