"""The layout the contributors' page describes (docs/where-things-live.md) holds: no import cycle
between hpcfit's modules (imports inside functions included), options without JAX, and api.py with
the public functions only."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

import hpcfit.api
import hpcfit.data

ROOT = Path(hpcfit.api.__file__).parent


def _module_graph() -> dict:
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        package = path.name == "__init__.py"
        if package:
            parts = parts[:-1]
        modules[".".join(parts)] = (path, package)
    graph = {}
    for name, (path, package) in modules.items():
        base = name.split(".") if package else name.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                stem = base[:len(base) - node.level + 1] if node.level else []
                target = ".".join(stem + ([node.module] if node.module else []))
                for alias in node.names:
                    full = f"{target}.{alias.name}"
                    deps.add(full if full in modules else target)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def _cycles(graph: dict) -> list:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
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
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_between_modules():
    graph = _module_graph()
    assert "hpcfit.phases.pipeline" in graph and "hpcfit.result" in graph["hpcfit.output.result_file"]
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_importing_options_imports_no_jax():
    code = "import sys, hpcfit.options; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


def test_api_holds_the_public_functions_only():
    tree = ast.parse(Path(hpcfit.api.__file__).read_text())
    public = [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")]
    assert public == ["curve_fit", "fit"]
    assert len(Path(hpcfit.api.__file__).read_text().splitlines()) <= 200


def test_the_grids_are_public_at_the_top_and_data_does_not_import_the_kernels():
    top = ast.parse((ROOT / "data" / "__init__.py").read_text()).body     # module-level imports only
    imported = {n.module for n in top if isinstance(n, ast.ImportFrom)}
    assert imported == {"__future__", "arrays", "hdf5"}, imported
    from hpcfit.kernels import coords
    assert hpcfit.RegularGrid is coords.RegularGrid and hpcfit.PairGrid is coords.PairGrid
    assert {"RegularGrid", "PairGrid"} <= set(hpcfit.__all__)
    for name in ("RegularGrid", "PairGrid"):        # the old name still works, with a warning
        with pytest.warns(DeprecationWarning, match=f"hpcfit.data.{name} is now hpcfit.{name}"):
            assert getattr(hpcfit.data, name) is getattr(coords, name)
    with pytest.raises(AttributeError, match="no attribute 'Grid'"):
        hpcfit.data.Grid
