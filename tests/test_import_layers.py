"""The package's layers: which subpackage of vidprism_ds may import which, and no import cycle.

Read from the source with ``ast`` (nothing is imported), counting imports inside functions too: a lazy
import is still a dependency, and a cycle closed by one breaks as soon as the import moves to the top.
Imports under ``if TYPE_CHECKING:`` are left out: annotations name a type without running its module.
The rule is written here, once, and docs/layout.md explains it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "vidprism_ds"

# Each subpackage and the subpackages it may import, lowest layer first. A subpackage never imports one
# listed after it: config's validation may read the data presets, but data code never reads the config
# package (it is handed the config's values); model code never reaches parallel or train.
ALLOWED_IMPORTS: dict[str, set[str]] = {
    "utils": set(),
    "data": {"utils"},
    "recipes": {"data", "utils"},
    "config": {"data", "utils"},
    "model": {"config", "data", "utils"},
    "parallel": {"model", "config", "utils"},
    "compat": {"model", "config", "utils"},
    "analysis": {"model", "config", "data", "utils"},
    "train": {"analysis", "parallel", "model", "config", "data", "utils"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE_ROOT.rglob("*.py")}


def _is_type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _imports(tree: ast.AST):
    """Every Import/ImportFrom node, outside ``if TYPE_CHECKING:`` blocks."""
    for node in ast.iter_child_nodes(tree):
        if _is_type_checking_block(node):
            yield from (n for child in node.orelse for n in _imports(child))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _imports(node)


def _imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The vidprism_ds modules that module ``name`` imports. ``from pkg import sub`` is an edge to the
    submodule, not to the package; the module's own parent packages are not edges (Python initialises a
    package before any of its modules, whatever the code says)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
            base = ".".join(anchor + ([node.module] if node.module else []))
        for alias in node.names:
            if f"{base}.{alias.name}" in modules:
                found.add(f"{base}.{alias.name}")
            elif base in modules:
                found.add(base)
    return {m for m in found if m != name and not name.startswith(m + ".")}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imported_modules(name, path, modules) for name, path in modules.items()}


def _subpackage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of ``graph`` as [a, b, ..., a], or [] if it has none (depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return []

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return []


def test_every_subpackage_has_a_layer_and_is_a_regular_package():
    subpackages = {p.name for p in PACKAGE_ROOT.iterdir() if p.is_dir() and any(p.glob("*.py"))}
    assert subpackages == set(ALLOWED_IMPORTS)
    # without __init__.py a folder is a namespace package, which setuptools' find leaves out of a wheel
    folders = {p.parent for p in PACKAGE_ROOT.rglob("*.py")}
    assert not sorted(str(f) for f in folders if not (f / "__init__.py").is_file())


def test_subpackages_import_only_the_layers_below_them():
    upward = sorted(f"{a} imports {b}" for a, targets in import_graph().items() for b in targets
                    if _subpackage(a) and _subpackage(b) and _subpackage(a) != _subpackage(b)
                    and _subpackage(b) not in ALLOWED_IMPORTS[_subpackage(a)])
    assert not upward, "imports against the layers of ALLOWED_IMPORTS:\n" + "\n".join(upward)


def test_the_layers_themselves_have_no_cycle():
    assert find_cycle(ALLOWED_IMPORTS) == []


def test_no_import_cycle_between_modules():
    cycle = find_cycle(import_graph())
    assert not cycle, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("source, expected", [
    ("from vidprism_ds.train import trainer\n", {"vidprism_ds.train.trainer"}),
    ("from vidprism_ds.data.presets import CUSTOM\n", {"vidprism_ds.data.presets"}),
    ("def f():\n    import vidprism_ds.model.head\n", {"vidprism_ds.model.head"}),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from vidprism_ds.train import trainer\n", set()),
    ("from . import presets\n", {"vidprism_ds.data.presets"}),
])
def test_the_import_reader_sees_what_python_imports(tmp_path, source, expected):
    """The checks above are only as good as this reader: a missed import would hide an upward one."""
    path = tmp_path / "probe.py"
    path.write_text(source)
    modules = _modules()
    assert _imported_modules("vidprism_ds.data.probe", path, modules) == expected


def test_a_cycle_is_found():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
