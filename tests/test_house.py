"""The package's structure, read from its source: imports follow the layers of docs/design.md §3 (no
import from a lower layer to a higher one beyond the listed debts, no import cycle), every folder is
placed in a layer, and the paths and modules that comments and docstrings name exist."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ascl_jax"
DESIGN = ROOT / "docs" / "design.md"

# (importing file, imported module) pairs allowed to run back up the layers. Empty: a new one fails the
# test until it is either removed or listed here and in docs/design.md §3 as a debt.
UPWARD_DEBTS: set[tuple[str, str]] = set()
MAX_UPWARD = 2


@cache
def layers() -> dict[str, int]:
    """Top-level entry of the package ("chat/", "pipeline.py") -> its layer number in docs/design.md §3."""
    text = DESIGN.read_text(encoding="utf-8")
    section = text[text.index("## 3.") :]
    section = section[: section.index("\n## ", 1)]
    out: dict[str, int] = {}
    for number, line in re.findall(r"^(\d+)\. (.*)$", section, flags=re.M):
        for entry in re.findall(r"`([\w/.]+)`", line.split("(")[0]):
            if entry.endswith("/") or entry.endswith(".py"):
                out[entry] = int(number)
    return out


def _entry(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "ascl_jax" or len(parts) < 2:
        return None
    return parts[1] + "/" if (PACKAGE / parts[1]).is_dir() else parts[1] + ".py"


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, current: str) -> list[str]:
    """Modules of this package imported at run time (function-level imports included; `if TYPE_CHECKING:`
    blocks left out, as they never run)."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend(a.name for a in node.names if a.name.startswith("ascl_jax"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(current.split(".")[: -node.level] + ([base] if base else []))
            if base.startswith("ascl_jax"):
                for alias in node.names:  # `from ascl_jax.data import demo` imports a module
                    sub = f"{base}.{alias.name}"
                    found.append(sub if _module_path(sub) else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _module_path(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        graph[name] = {m for m in _imports(ast.parse(path.read_text(encoding="utf-8")), name) if _module_path(m)}
    return graph


def test_every_top_level_entry_has_a_layer():
    entries = {p.name + "/" for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    entries |= {p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    missing = sorted(entries - set(layers()))
    assert not missing, f"place these in a layer of docs/design.md §3: {missing}"


def test_imports_do_not_run_back_up_the_layers():
    table = layers()
    upward = set()
    for module, targets in import_graph().items():
        source = _entry(module)
        for target in targets:
            dest = _entry(target)
            if source and dest and source != dest and table[dest] > table[source]:
                upward.add((module, target))
    new = sorted(upward - UPWARD_DEBTS)
    assert not new, f"imports from a lower layer to a higher one (docs/design.md §3): {new}"
    assert len(upward) <= MAX_UPWARD


def test_no_import_cycle():
    graph = import_graph()
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt == node or nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue  # a package and its own modules (its face re-exporting them) are one room
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            raise AssertionError("import cycle: " + " -> ".join(cycle))


_PATH = re.compile(r"(?<![\w/.])((?:ascl_jax|tests|docs|configs|launch)/[\w/.-]*\w)")
_DOTTED = re.compile(r"(?<![\w.])(ascl_jax(?:\.\w+)+)")


def _names_defined(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def _dotted_exists(dotted: str) -> bool:
    parts = dotted.split(".")
    for k in range(len(parts), 0, -1):
        path = _module_path(".".join(parts[:k]))
        if path is None:
            continue
        rest = parts[k:]
        return not rest or rest[0] in _names_defined(path) or (path.parent / rest[0]).exists()
    return False


def test_paths_and_modules_named_in_the_package_exist():
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(ROOT)
        assert "DESIGN §" not in text and "DESIGN.md" not in text, f"{where} cites a design outside the repo"
        for named in _PATH.findall(text):
            named = named.rstrip(".")
            if "{" not in named and "*" not in named and not (ROOT / named).exists():
                missing.append(f"{where}: {named}")
        for dotted in _DOTTED.findall(text):
            if not _dotted_exists(dotted):
                missing.append(f"{where}: {dotted}")
    assert not missing, "named in the package but not there:\n" + "\n".join(missing)


def test_design_sections_cited_exist():
    sections = set(re.findall(r"^## (\d+)\.", DESIGN.read_text(encoding="utf-8"), flags=re.M))
    cited = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for number in re.findall(r"docs/design\.md §(\d+)", path.read_text(encoding="utf-8")):
            cited.append((str(path.relative_to(ROOT)), number))
    assert cited and all(n in sections for _, n in cited), [c for c in cited if c[1] not in sections]
