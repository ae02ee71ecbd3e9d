"""The shape of the package: a vendor is one unit, layers import downwards only.

- No import cycle among `delivery_platform` modules, imports inside functions included (importing
  `a.b.c` also runs `a` and `a.b`, so those count as imported too).
- `delivery_platform.vendors.VENDORS` is the only vendor list: outside `vendors/` (and `simulators/`,
  the vendors played for the demo and tests) no collection names a vendor and no code compares a
  value with a vendor's name.
"""

from __future__ import annotations

import ast
from pathlib import Path

from delivery_platform.vendors import NAMES

PACKAGE = Path(__file__).resolve().parents[1] / "delivery_platform"
VENDOR_OWNED = ("vendors", "simulators")


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imported(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every package module `module` imports, anywhere in its code (functions included)."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        for target in targets:
            while target.startswith("delivery_platform"):  # the module and every package above it runs
                if target in modules and target != module and not module.startswith(target + "."):
                    found.add(target)
                target = target.rsplit(".", 1)[0] if "." in target else ""
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_even_through_imports_inside_functions():
    modules = _modules()
    graph = {m: _imported(m, p, modules) for m, p in modules.items()}
    assert sum(len(d) for d in graph.values()) > 200  # the walk sees the package's imports
    assert _cycles(graph) == []


def test_the_checker_finds_a_cycle_made_inside_a_function():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _vendor_names_in(node: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and n.value in NAMES]


def _shared_lists_of_vendors(path: Path) -> list[str]:
    problems = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and len(set(_vendor_names_in(node))) >= 2:
            problems.append(f"line {node.lineno}: a collection of vendor names")
        elif isinstance(node, ast.Dict) and any(k is not None and _vendor_names_in(k) for k in node.keys):
            problems.append(f"line {node.lineno}: a dict keyed by vendor")
        elif isinstance(node, ast.Compare) and any(
                isinstance(c, ast.Constant) and c.value in NAMES for c in [node.left, *node.comparators]):
            problems.append(f"line {node.lineno}: a comparison with a vendor's name")
    return problems


def test_vendors_is_the_only_vendor_list():
    assert set(NAMES) == {"lotame", "ispot", "optimove", "digital_audience", "idomoo"}
    shared = {p: _shared_lists_of_vendors(p) for p in PACKAGE.rglob("*.py")
              if p.relative_to(PACKAGE).parts[0] not in VENDOR_OWNED}
    assert len(shared) > 40
    assert {str(p.relative_to(PACKAGE)): found for p, found in shared.items() if found} == {}


def test_the_vendor_list_checker_finds_what_it_looks_for(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('DEADLINES = {("ispot", "conversions"): 14}\nVENDORS = ("lotame", "idomoo")\n'
                      'if vendor == "optimove":\n    pass\n')
    assert [p.split(":")[0] for p in _shared_lists_of_vendors(sample)] == ["line 1", "line 2", "line 3"]
