"""One-way layers: no import cycle in ``citarion_host``, counting type-only and function-level imports.

Each module's imports are read from its source (``import`` and ``from ... import``, wherever they are:
``if TYPE_CHECKING`` blocks and lazy imports in functions included), resolved to modules of the package,
and the graph must be acyclic. A parent package's ``__init__`` that Python runs on the way to a module
is not an edge: it is where the package exposes its layers, not a layer below them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import citarion_host

ROOT = Path(citarion_host.__file__).parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in ROOT.rglob("*.py")}


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
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


def graph() -> dict[str, set[str]]:
    known = modules()
    edges = {name: imports(name, path, known) for name, path in known.items()}
    # ``from .bus import X`` names the package: the edge goes to the package's __init__, which only
    # re-exports; leave out edges from a module into its own ancestors' __init__ (run anyway by Python).
    return {n: {t for t in ts if not n.startswith(t + ".")} for n, ts in edges.items()}


def test_the_package_has_no_import_cycle() -> None:
    assert find_cycle(graph()) is None, f"import cycle: {' -> '.join(find_cycle(graph()) or [])}"


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    planted = graph()
    planted["citarion_host.topics"] = {*planted["citarion_host.topics"], "citarion_host.host"}
    assert find_cycle(planted) is not None


def test_only_the_client_module_reaches_into_nats_py_internals() -> None:
    """The NATS backend's bottom layer is the one place that touches nats-py's private attributes."""
    for path in (ROOT / "bus" / "nats").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        touches = any(marker in text for marker in ("nc._", "._pending_queue", "._process_msg", "sub._"))
        assert touches == (path.name == "_client.py"), path.name
