"""The package's import graph: no cycle (function-level imports included), no borrowing of private names.

Read from the source with `ast`, not by importing: every `import` and `from ... import` anywhere in a
module (top level, inside functions, under `if TYPE_CHECKING`) is an edge to the `sftdata` module it
names; `from sftdata.a import b` is an edge to `sftdata.a.b` when that is a module. The implicit
import of a parent package (importing `sftdata.pipeline.job` runs `sftdata/pipeline/__init__.py`
first) is not an edge: it is Python's, not the module's choice. Dynamic imports by a computed name
(`sftdata/__init__.py`'s lazy exports, the CLI's command modules) are not seen; they go from the
package's front door down, never up.
"""

from __future__ import annotations

import ast
from pathlib import Path

import sftdata

PACKAGE = Path(sftdata.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, str, int]]:
    """(imported sftdata module, imported name or "", line) for every import statement in a module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(alias.name, "", node.lineno) for alias in node.names if alias.name.split(".")[0] == "sftdata"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.split(".")[0] != "sftdata":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.append((sub, "", node.lineno) if sub in MODULES else (target, alias.name, node.lineno))
    return out


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for name, path in MODULES.items():
        for target, _, _ in _imports(name, path):
            while target not in MODULES and "." in target:  # `import sftdata.x.y` of a name, not a module
                target = target.rpartition(".")[0]
            if target != name:
                graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_walk_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    """The checks below can fail: function-level, relative and private imports are seen; a planted cycle is found."""
    planted_module = tmp_path / "planted.py"
    planted_module.write_text("def f():\n    from sftdata.prepare import _remove_output\n    from . import journal\n")
    assert _imports("sftdata.pipeline.planted", planted_module) == [
        ("sftdata.prepare", "_remove_output", 2), ("sftdata.pipeline.journal", "", 3)]
    graph = _graph()
    assert "sftdata.pipeline.job" in graph["sftdata.prepare"]
    assert "sftdata.pipeline.ray_engine" in graph["sftdata.prepare"]  # imported inside `prepare()`
    planted = {k: set(v) for k, v in graph.items()}
    planted["sftdata.pipeline.journal"].add("sftdata.prepare")
    assert any("sftdata.prepare" in c and "sftdata.pipeline.journal" in c for c in _cycles(planted))


def test_sftdata_has_no_import_cycle() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "import cycles (each a set of modules that import each other): " + "; ".join(
        " <-> ".join(c) for c in cycles)


def test_no_module_imports_another_modules_private_name() -> None:
    borrowed = [f"{MODULES[name].relative_to(PACKAGE.parent)}:{line} imports {target}.{what}"
                for name, path in MODULES.items() for target, what, line in _imports(name, path)
                if what.startswith("_") and not what.startswith("__") and target != name]
    assert not borrowed, "\n".join(borrowed)


OUTER = ("sftdata.cli", "sftdata.train", "sftdata.hf", "sftdata.pipeline.ray_", "sftdata.__main__")
"""The layers above the core: the CLI (rich, typer), the trainer and the trainer integrations (torch), the
Ray engine (ray). Everything else is the core."""


def test_core_never_imports_torch_ray_rich_or_the_cli() -> None:
    """No core module imports torch, ray, rich or typer, or any outer module, at any level (the one door:
    `prepare()` imports the Ray engine inside its `--engine ray` branch)."""
    graph = _graph()
    bad = []
    for name, path in MODULES.items():
        if name.startswith(OUTER):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            bad += [f"{name}:{node.lineno} imports {n}" for n in names
                    if n.split(".")[0] in ("torch", "ray", "rich", "typer")]
        bad += [f"{name} imports {m}" for m in sorted(graph[name]) if m.startswith(OUTER)
                and (name, m) != ("sftdata.prepare", "sftdata.pipeline.ray_engine")]
    assert not bad, "\n".join(bad)
