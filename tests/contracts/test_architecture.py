"""The house rules of the package, read from its own imports (ast, nothing imported): data flows one way.

- no import cycles between harness modules (lazy imports inside functions count too: a cycle is a cycle);
- the runner (``harness.run``) never imports the comparator or the reports (cells run it in old environments);
- the comparator (``harness.compare``) never imports torch or sentence-transformers (it must not drift itself);
- the results format (``harness.results``) imports nothing of the harness above it, and nobody imports its
  private names;
- what ``noxfile.py`` imports in nox's own Python (``harness.matrix`` specs) needs only stdlib and packaging;
- no module over 400 lines, the noxfile included.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "harness"
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> Dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _imports(path: Path, top_level_only: bool = False) -> List[Tuple[str, int]]:
    """Every module ``path`` imports (absolute names, relative ones resolved), with the line it does it on."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: List[Tuple[str, int]] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.append((base, node.lineno))
            # `from harness.compare import metrics` imports the submodule harness.compare.metrics
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names if f"{base}.{alias.name}" in MODULES]
    return found


def _harness_edges() -> Dict[str, Set[str]]:
    edges: Dict[str, Set[str]] = {}
    for name, path in MODULES.items():
        targets = set()
        for imported, _ in _imports(path):
            if imported in MODULES and imported != name and not name.startswith(imported + "."):
                targets.add(imported)  # a package's __init__ importing its own children is not a back edge
        edges[name] = {t for t in targets if not (t.startswith(name + ".") and path.name == "__init__.py")}
    return edges


def _find_cycle(edges: Dict[str, Set[str]]) -> List[str]:
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(node: str) -> List[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if not state.get(nxt):
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(edges):
        if not state.get(node):
            found = visit(node)
            if found:
                return found
    return []


def test_the_import_graph_has_no_cycles() -> None:
    cycle = _find_cycle(_harness_edges())
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def _offending(prefix: str, forbidden: Tuple[str, ...]) -> List[str]:
    bad = []
    for name, path in MODULES.items():
        if name == prefix or name.startswith(prefix + "."):
            for imported, line in _imports(path):
                if any(imported == f or imported.startswith(f + ".") for f in forbidden):
                    bad.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    return bad


def test_the_runner_never_imports_the_comparator_or_the_reports() -> None:
    assert not _offending("harness.run", ("harness.compare", "harness.report", "harness.assertions", "harness.matrix"))


def test_the_matrix_never_imports_the_runner() -> None:
    """Cells run the runner by subprocess, in their own environments; nox's Python never loads it."""
    assert not _offending("harness.matrix", ("harness.run",))


def test_the_comparator_never_imports_torch() -> None:
    assert not _offending("harness.compare", ("torch", "sentence_transformers", "transformers", "harness.run"))


def test_the_results_format_imports_nothing_above_it() -> None:
    allowed = ("harness.results", "harness.errors", "harness.fsio")
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {imported}"
        for name, path in MODULES.items() if name.startswith("harness.results")
        for imported, line in _imports(path)
        if imported.startswith("harness.") and not any(imported == a or imported.startswith(a + ".") for a in allowed)
    ]
    assert not bad


def test_nobody_imports_private_names_of_the_results_format() -> None:
    bad = []
    for name, path in MODULES.items():
        if name.startswith("harness.results"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("harness.results"):
                bad += [f"{path.relative_to(ROOT)}:{node.lineno} {alias.name}" for alias in node.names if alias.name.startswith("_")]
    assert not bad


def test_what_the_noxfile_imports_needs_only_stdlib_and_packaging() -> None:
    """nox's own Python has no numpy or pyarrow: the modules the noxfile imports at its top level must not need them."""
    stdlib = set(getattr(sys, "stdlib_module_names", ())) or None
    if stdlib is None:  # Python < 3.10
        pytest.skip("sys.stdlib_module_names needs Python 3.10+")
    allowed_third_party = {"packaging", "tomli", "nox", "pydantic"}  # the noxfile's PEP 723 script dependencies
    seen: Set[str] = set()
    todo = [imported for imported, _ in _imports(ROOT / "noxfile.py", top_level_only=True) if imported.startswith("harness")]
    todo += ["harness.matrix.spec"]
    bad = []
    while todo:
        name = todo.pop()
        if name in seen or name not in MODULES:
            continue
        seen.add(name)
        for imported, line in _imports(MODULES[name], top_level_only=True):
            top = imported.split(".")[0]
            if top == "harness":
                todo.append(imported)
                parent = imported.rpartition(".")[0]
                while parent:  # importing a.b.c runs a/__init__ and a/b/__init__ first
                    todo.append(parent)
                    parent = parent.rpartition(".")[0]
            elif top and top not in stdlib and top not in allowed_third_party and top != "__future__":
                bad.append(f"{MODULES[name].relative_to(ROOT)}:{line} imports {imported}")
    assert not bad


@pytest.mark.parametrize("path", sorted([*PACKAGE.rglob("*.py"), ROOT / "noxfile.py"]), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_is_over_400_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines (at most {MAX_LINES}: split it by job)"


def test_tests_mirror_the_package() -> None:
    """A test file lives in the folder of the package it tests (tests/compare/ for harness/compare/, ...), or in
    contracts/ (one judge, architecture, hostile input, fuzzing) or docs/ (the documentation and workflows)."""
    packages = {p.name for p in (ROOT / "harness").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in (ROOT / "harness").glob("*.py")}
    allowed = packages | modules | {"contracts", "docs"}
    tests = ROOT / "tests"
    assert not list(tests.glob("test_*.py")), "test files belong in a folder that mirrors the package"
    folders = {p.parent.name for p in tests.glob("*/test_*.py")}
    assert folders <= allowed, f"test folders that mirror nothing in harness/: {sorted(folders - allowed)}"
