"""The package's shape cannot erode: no import circle (imports made inside functions count), the layer
contract in pyproject.toml holds, smolforge modules are imported at the top of a module, and no module grows
past what one reader can hold."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "smolforge"
MAX_LINES = 450
# Function-level imports of smolforge modules allowed outside cli.py, each with a comment on its line saying why:
# attention.py and callbacks.py import torch and transformers at their top.
# cliflags.py reads the schema (pydantic) only when a command runs or its flag table is not cached yet, so that
# `smolforge --help` stays cheap.
LAZY_ALLOWED = {("modelio.py", "smolforge.attention"), ("plan/model.py", "smolforge.attention"),
                ("train.py", "smolforge.callbacks"), ("cliflags.py", "smolforge.config")}


def _graph():
    return grimp.build_graph("smolforge", exclude_type_checking_imports=True)


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle():
    graph = _graph()
    assert not _cycles(graph)
    graph.add_import(importer="smolforge.errors", imported="smolforge.pipeline")  # pipeline reaches errors
    cycle = next(c for c in _cycles(graph) if "smolforge.errors" in c)
    assert "smolforge.pipeline" in cycle


def test_no_import_circle_counting_imports_inside_functions():
    cycles = _cycles(_graph())
    assert not cycles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_layer_contract_holds():
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--no-cache"], cwd=PACKAGE.parents[1], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 kept, 0 broken" in proc.stdout


def _function_level_imports() -> list[tuple[str, int, str, str]]:
    """(file, line, module, source line) of every smolforge import made inside a function, outside cli.py."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel == "cli.py" or rel.startswith("resources/"):
            continue
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
        lines = text.splitlines()
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("smolforge"):
                    out.append((rel, node.lineno, node.module, lines[node.lineno - 1]))
                elif isinstance(node, ast.Import):
                    out += [(rel, node.lineno, a.name, lines[node.lineno - 1]) for a in node.names
                            if a.name.startswith("smolforge")]
    return out


def test_smolforge_modules_are_imported_at_the_top():
    found = _function_level_imports()
    unexpected = [f"{rel}:{line} {module}" for rel, line, module, _ in found if (rel, module) not in LAZY_ALLOWED]
    assert not unexpected, "import these at the top of the module (or justify a lazy one): " + ", ".join(unexpected)
    uncommented = [f"{rel}:{line}" for rel, line, _, source in found if "#" not in source]
    assert not uncommented, f"a lazy import says why on its line: {uncommented}"


@pytest.mark.parametrize("path", sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")))
def test_no_module_is_longer_than_one_reader_holds(path):
    lines = (PACKAGE / path).read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{path} has {lines} lines (at most {MAX_LINES}): split it by job"
