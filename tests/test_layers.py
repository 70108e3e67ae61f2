"""Imports point down the layers, and no module imports itself back through another.

Layers, from the top: the application (``app``: config, runs, CLI, estimator, ...), then ``analysis`` and ``training``
(independent of each other), the model families (``models``), the guides, the inference algorithms, the building
blocks (``data``, ``nets``), and the contract (``contract``, ``options``, ``errors``, ``param_store``). A module may
import its own layer or a lower one; every import counts, also those inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "mixzoo"

LAYERS = [
    {"app", "__init__", "__main__"},
    {"analysis", "training"},
    {"models"},
    {"guides"},
    {"inference"},
    {"data", "nets"},
    {"contract", "options", "errors", "param_store"},
]
"""Top to bottom: the first part of a module's name under ``mixzoo`` decides its layer."""

INDEPENDENT = [("analysis", "training")]
"""Parts of one layer that must not import each other."""


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """The mixzoo modules ``path`` imports (absolute names; relative imports resolved; ``from X import name`` counts
    X.name when that is a module, else X)."""
    module = _module(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("mixzoo"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                is_module = (ROOT.parent / sub.replace(".", "/")).with_suffix(".py").exists() or (
                    ROOT.parent / sub.replace(".", "/") / "__init__.py"
                ).exists()
                found.add(sub if is_module else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("mixzoo"))
    return found


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(module: str) -> int:
    part = _part(module)
    return next(i for i, layer in enumerate(LAYERS) if part in layer)


FILES = sorted(ROOT.rglob("*.py"))
GRAPH = {_module(p): _imports(p) for p in FILES}


def test_every_module_has_a_layer():
    for module in GRAPH:
        assert any(_part(module) in layer for layer in LAYERS), f"{module} belongs to no layer of LAYERS"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_point_down(module):
    own = _layer(module)
    up = sorted(t for t in GRAPH[module] if _layer(t) < own)
    assert not up, f"{module} (layer {sorted(LAYERS[own])}) imports a higher layer: {up}"
    for a, b in INDEPENDENT:
        if _part(module) in (a, b):
            other = b if _part(module) == a else a
            assert not [t for t in GRAPH[module] if _part(t) == other], f"{module} imports {other}"


def test_no_import_cycles():
    """Package ``__init__`` files import their own submodules (that is how a package is assembled); apart from that,
    the module graph has no cycle."""

    def edges(module: str) -> set[str]:
        out = set()
        for target in GRAPH[module]:
            if target not in GRAPH or target == module:
                continue
            if module.startswith(target + ".") and f"{target}.__init__" not in GRAPH:
                continue  # a submodule importing its own package's __init__ for a name: the package is its parent
            out.add(target)
        return out

    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in edges(module):
            if target.startswith(module + "."):  # a package assembling its submodules
                continue
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if state.get(target) is None:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if state.get(module) is None:
            visit(module)


def test_a_violation_is_caught(tmp_path):
    """The checks see a lazy import inside a function, and a relative one."""
    bad = ROOT / "data" / "_probe_for_the_layer_test.py"
    bad.write_text("def f():\n    from ..app import runs\n    return runs\n")
    try:
        found = _imports(bad)
        assert "mixzoo.app.runs" in found and _layer("mixzoo.app.runs") < _layer(_module(bad))
    finally:
        bad.unlink()
