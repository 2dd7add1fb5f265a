"""The house (docs/architecture.md): imports run downhill only, lazy ones included; the ground floor
imports nothing of embkit; torch stays in embkit.diffusers; no module grows past ~400 lines; and
``import embkit`` stays cheap.

The import graph is built from the source with ``ast``, counting every import statement wherever it
stands (inside functions too), so a lazy import that runs back up to dodge a cycle is caught.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "embkit"
#: The ground floor: modules that import no other embkit module.
GROUND = ("embkit.schema", "embkit.errors", "embkit.version")
MAX_LINES = 420


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """module → the embkit modules it imports (every import statement, at any depth).

    ``from package import name`` counts as importing ``package.name`` when that is a module, else
    the package itself; importing ``a.b.c`` also runs ``a.b``'s ``__init__``, which counts too."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, is_package, node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                if not target.startswith("embkit"):
                    continue
                parts = target.split(".")
                # the module itself and every package __init__ on the way (they run on import)
                for i in range(1, len(parts) + 1):
                    name = ".".join(parts[:i])
                    if name in modules and name != mod and not mod.startswith(name + "."):
                        graph[mod].add(name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_lazy_imports_included():
    assert _cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    # the check above could not fail if the finder never found anything
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


def test_graph_counts_imports_inside_functions():
    graph = import_graph()
    # the scanner imports the reader inside a function (it runs the real reading path)
    assert "embkit.io" in graph["embkit.scan"]


@pytest.mark.parametrize("module", GROUND)
def test_ground_floor_imports_nothing_of_embkit(module):
    assert import_graph()[module] == set()


def test_atomic_writers_know_no_format():
    graph = import_graph()
    for module in ("embkit.atomic", "embkit.atomic_batch"):
        assert not any(m.startswith("embkit.formats") for m in graph[module]), module


def test_only_the_diffusers_package_imports_torch():
    heavy = ("torch", "diffusers", "transformers", "accelerate")
    for mod, path in _modules().items():
        if mod.startswith(("embkit.diffusers", "embkit.model.spec")):
            continue  # embkit.model.spec reads a live pipeline's encoders (torch is loaded then)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            assert not any(n.split(".")[0] in heavy for n in names), f"{mod} imports {names}"


def test_no_module_past_about_400_lines():
    long = {m: n for m, p in _modules().items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def test_import_embkit_stays_cheap():
    code = (
        "import json, sys; import embkit; "
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('torch', 'diffusers', 'transformers', 'PIL', 'rich', 'click', 'huggingface_hub')]; "
        "print(json.dumps([heavy, sorted(m for m in sys.modules if m.startswith('embkit'))]))"
    )
    heavy, loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert heavy == []
    # the readers and nothing above them: no validation, targets, library, hub or torch side
    assert not [m for m in loaded if m.startswith(("embkit.check", "embkit.model", "embkit.library", "embkit.hub", "embkit.diffusers", "embkit.edit", "embkit.cli"))]


def test_nothing_below_the_package_face_imports_it():
    """``embkit/__init__.py`` (the package's face) stands above every module it hands names on
    from; a module below it that imports the package itself (``from .. import __version__``) is an
    arrow back up, which the cycle finder does not see (the parent package of the importer runs
    first anyway). Only the command line and ``__main__`` stand above the face."""
    modules = _modules()
    up = []
    for mod, path in modules.items():
        if mod in ("embkit", "embkit.__main__") or mod.startswith("embkit.cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import) and any(a.name == "embkit" for a in node.names):
                up.append(f"{mod}: import embkit")
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, path.name == "__init__.py", node)
                up += [f"{mod}: from {base} import {a.name}" for a in node.names if base == "embkit" and f"embkit.{a.name}" not in modules]
    assert up == []
