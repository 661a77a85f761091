"""The shape of the package: data flows one way, and nothing below the target imports it.

Read from the source with ``ast`` (imports under ``TYPE_CHECKING`` included: a cycle in
type hints is still a tangle a reader has to follow).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "target_miso"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            found |= {target for target in targets if target in modules and target != name}
        graph[name] = found
    return graph


def test_no_module_below_the_target_imports_it():
    importers = {name for name, deps in _imports().items() if "target_miso.target" in deps}
    assert importers <= {"target_miso.__main__"}


def test_there_is_no_import_cycle():
    graph = _imports()
    # A package's __init__ importing its own modules is not a cycle of concerns.
    for name in graph:
        graph[name] = {dep for dep in graph[name] if not name.startswith(f"{dep}.")}
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append([*path[path.index(dep) :], dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_each_concern_has_its_folder():
    folders = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").exists()}
    assert {"run", "miso", "catalog", "mappings", "taps"} <= folders
    assert (PACKAGE / "mappings" / "snowplow" / "__init__.py").exists()
    assert (PACKAGE / "mappings" / "declarative" / "__init__.py").exists()
