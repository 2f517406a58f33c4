"""The rules of docs/architecture.md, read from the source: which parts may import which, and no
import circle among the modules' top-level imports."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ALLOWED = {
    # part of blast_core -> the parts it may import (besides itself)
    "agent": {"config", "errors"},
    "config": {"errors"},
    "envs": {"config", "errors", "files"},
    "store": {"errors", "files"},
    "run": {"agent", "config", "envs", "errors", "files", "store"},
    "report": {"agent", "config", "envs", "errors", "run", "store"},
    "scheduling": {"config", "envs", "errors", "files", "run", "store"},
    "bench": {"agent", "config", "errors", "store"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> tuple[set[str], set[str]]:
    """(blast modules imported at the top level, every blast module imported anywhere), leaving
    out what only type checkers read (`if TYPE_CHECKING:`)."""
    tree = ast.parse(path.read_text())
    top, anywhere = set(), set()

    def names(node: ast.AST) -> set[str]:
        if isinstance(node, ast.Import):
            return {a.name for a in node.names}
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            package = {node.module} if node.module != "blast_core" else set()
            return package | {f"{node.module}.{a.name}" for a in node.names}
        return set()

    def walk(node: ast.AST, at_top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            found = {n for n in names(child) if n.startswith("blast")}
            anywhere.update(found)
            if at_top:
                top.update(found)
            nested = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            walk(child, at_top and not nested)

    walk(tree, True)
    return top, anywhere


SOURCES = {module_name(p): p for p in sorted((REPO / "blast_core").rglob("*.py"))
           if "migrations" not in p.parts}


def part(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def test_each_part_imports_only_what_the_architecture_allows() -> None:
    wrong = []
    for module, path in SOURCES.items():
        own = part(module)
        if own not in ALLOWED:
            continue
        _, anywhere = imports(path)
        for name in anywhere:
            other = part(name)
            if name.startswith("blast_cli") or (other != own and other not in ALLOWED[own]):
                wrong.append(f"{module} imports {name}")
    assert not wrong, "\n".join(sorted(wrong))


def test_rich_rendering_lives_in_the_cli() -> None:
    for module, path in SOURCES.items():
        tree = ast.parse(path.read_text())
        names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not any(n == "rich" or n.startswith("rich.") for n in names), module


def test_config_and_specs_import_no_torch() -> None:
    for module, path in SOURCES.items():
        if part(module) == "config" or module == "blast_core.run.spec":
            tree = ast.parse(path.read_text())
            names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
            names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                      and n.module}
            assert not any(n == "torch" or n.startswith("torch.") for n in names), module


def test_no_import_circle_among_top_level_imports() -> None:
    graph = {}
    for module, path in SOURCES.items():
        top, _ = imports(path)
        # `from pkg import sub` names the submodule when there is one, else the package.
        graph[module] = {n if n in SOURCES else n.rsplit(".", 1)[0] for n in top} & set(SOURCES)
        graph[module].discard(module)

    # A package's __init__ importing its own submodules is how packages re-export, not a circle.
    cycles, state = [], {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = "open"
        for n in sorted(graph[m]):
            if SOURCES[n].name == "__init__.py" and m.startswith(n + "."):
                continue  # a submodule reading its own package's (re-exported) names
            if state.get(n) == "open":
                cycles.append(" -> ".join(stack[stack.index(n):] + [n]))
            elif n not in state:
                visit(n, [*stack, n])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(cycles)


LAZY_IMPORTS = 18
"""Function-level imports in blast_core and blast_cli today (docs/architecture.md): the count may
fall, never rise without the doc's reasons being revisited."""


def function_level_imports() -> list[tuple[str, int, str]]:
    """(file, line, source line) of every import inside a function, `if TYPE_CHECKING:` aside."""
    found = []
    for path in sorted([*(REPO / "blast_core").rglob("*.py"), *(REPO / "blast_cli").rglob("*.py")]):
        if "migrations" in path.parts:
            continue
        lines = path.read_text().splitlines()
        for fn in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                found += [(str(path.relative_to(REPO)), n.lineno, lines[n.lineno - 1].strip())
                          for n in ast.walk(fn) if isinstance(n, ast.Import | ast.ImportFrom)]
    return sorted(set(found))


def test_every_function_level_import_says_why_and_they_do_not_creep() -> None:
    found = function_level_imports()
    # The reason is on the import's line or in the comment block right above it; a second name
    # from the same package on the next line shares the first one's.
    unexplained = []
    for file, line, text in found:
        lines = (REPO / file).read_text().splitlines()
        above = [t.strip() for t in lines[max(0, line - 3):line - 1]]
        shares = any(f == file and n == line - 1 for f, n, _ in found)
        if "#" not in text and not shares and not (above and above[-1].startswith("#")):
            unexplained.append(f"{file}:{line}: {text}")
    assert not unexplained, "function-level imports without a reason:\n" + "\n".join(unexplained)
    assert len(found) <= LAZY_IMPORTS, (
        f"{len(found)} function-level imports (at most {LAZY_IMPORTS}): import at the top of the "
        "file unless a heavy optional dependency is needed by one command, and say why:\n"
        + "\n".join(f"{f}:{n}: {t}" for f, n, t in found))
