"""The layering of both packages, as ARCHITECTURE describes it and the tree shows it.

``wire/`` is the ground floor: it imports nothing from Twisted. ``devices/`` sits
above ``wire/`` and the interfaces and never imports the glue (the responder, the
initiator, the server, the client). Nothing imports in a circle.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ptpip", "cccp")
GLUE = {"ptpip.responder", "ptpip.initiator", "ptpip.client", "ptpip.fuji", "ptpip.vendors", "cccp.server",
        "cccp.client"}


def modules() -> dict[str, Path]:
    """Every module of both packages by dotted name (a package by its ``__init__``)."""
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = modules()


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(name: str) -> set[str]:
    """The modules of ours that *name* imports, anywhere in it (functions included, not
    ``if TYPE_CHECKING``), with the packages that importing them runs."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking(child):
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.add(alias.name)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[:len(base) - child.level + 1]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                found.add(target)
                for alias in child.names:            # "from . import sendfile" names a module
                    if f"{target}.{alias.name}" in MODULES:
                        found.add(f"{target}.{alias.name}")
            visit(child)
    visit(ast.parse(path.read_text()))
    ours: set[str] = set()
    for target in found:
        parts = target.split(".")
        for i in range(1, len(parts) + 1):           # importing a.b.c runs a and a.b too
            prefix = ".".join(parts[:i])
            if prefix in MODULES and prefix != name:
                ours.add(prefix)
    return ours


GRAPH = {name: imports_of(name) for name in MODULES}


def test_the_layers_are_where_the_tree_says():
    """The test itself sees the tree it guards: wire and devices folders in both packages."""
    for pkg in PACKAGES:
        assert f"{pkg}.wire" in MODULES and f"{pkg}.devices" in MODULES
    assert len([m for m in MODULES if ".wire." in m]) >= 9


def test_wire_modules_load_no_twisted():
    """Every module under ptpip/wire/ and cccp/wire/, imported in a fresh interpreter,
    loads no twisted module (nor zope.interface)."""
    wire = sorted(m for m in MODULES if m.split(".")[1:2] == ["wire"])
    code = (
        "import importlib, json, sys\n"
        f"for m in {wire!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(n for n in sys.modules if n.split('.')[0] in ('twisted', 'zope'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert json.loads(out.stdout) == []


@pytest.mark.parametrize("name", sorted(m for m in MODULES if ".devices" in m))
def test_devices_never_import_the_glue(name):
    """Nothing under devices/ imports the responder, the initiator, the server or the client
    (directly or through a module that does)."""
    seen, stack = set(), [name]
    while stack:
        m = stack.pop()
        for dep in GRAPH[m]:
            assert dep not in GLUE, f"{name} reaches {dep} (through {m})"
            if dep not in seen and dep.split(".")[0] == name.split(".")[0]:
                seen.add(dep)
                stack.append(dep)


def test_no_import_cycles():
    """The import graph of both packages (every import, function-level ones included) has no cycle."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(GRAPH, WHITE)
    cycles: list[list[str]] = []

    def dfs(node: str, path: list[str]) -> None:
        colour[node] = GREY
        for dep in sorted(GRAPH[node]):
            if colour[dep] == GREY:
                cycles.append(path[path.index(dep):] + [dep] if dep in path else [node, dep])
            elif colour[dep] == WHITE:
                dfs(dep, path + [dep])
        colour[node] = BLACK

    for node in sorted(GRAPH):
        if colour[node] == WHITE:
            dfs(node, [node])
    assert cycles == []


def test_the_cycle_finder_finds_a_cycle(monkeypatch):
    """The graph walk above is not vacuous: an edge back from the codec to the glue is a cycle."""
    assert "ptpip.wire.packets" in GRAPH["ptpip.wire.framing"]
    monkeypatch.setitem(GRAPH, "ptpip.wire.packets", GRAPH["ptpip.wire.packets"] | {"ptpip.wire.framing"})
    with pytest.raises(AssertionError):
        test_no_import_cycles()
