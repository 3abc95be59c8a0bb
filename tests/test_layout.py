"""The package layout's rules: the wiring (pipelines/) loads the stages (assets/), never the reverse, and no
module of the three packages imports another that imports it back, at the top or inside a function."""

import ast
import graphlib

from realrag_core.config.base import PROJECT_ROOT

PACKAGES = ("realrag_core", "assets", "pipelines")


def _modules() -> dict:
    mods = {}
    for pkg in PACKAGES:
        for path in (PROJECT_ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


def import_graph() -> dict[str, set[str]]:
    """module -> the modules of the three packages it imports (every import statement, wherever it stands)."""
    mods = _modules()

    def resolve(name):
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = {m: set() for m in mods}
    for mod, path in mods.items():
        base = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                prefix = base
                for _ in range(node.level - 1):
                    prefix = prefix.rpartition(".")[0]
                origin = (f"{prefix}.{node.module}" if node.module else prefix) if node.level else (node.module or "")
                targets = [origin] + [f"{origin}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                found = resolve(target)
                # a package's own __init__ is loaded on the way to its modules, not an import back
                if found and found != mod and not mod.startswith(found + "."):
                    graph[mod].add(found)
    return graph


def test_no_module_imports_one_that_imports_it_back():
    try:
        graphlib.TopologicalSorter(import_graph()).prepare()
    except graphlib.CycleError as e:
        raise AssertionError(f"import cycle: {' -> '.join(e.args[1])}") from None


def test_the_stages_never_import_the_wiring():
    graph = import_graph()
    for mod, deps in graph.items():
        if mod.split(".")[0] in ("assets", "realrag_core"):
            assert not any(d.split(".")[0] == "pipelines" for d in deps), (mod, sorted(deps))


def test_the_cycle_check_finds_a_cycle(tmp_path, monkeypatch):
    """The check itself: two modules importing each other inside functions are a cycle."""
    pkg = tmp_path / "realrag_core"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .b import g\n")
    (pkg / "b.py").write_text("def g():\n    from realrag_core import a\n")
    for other in ("assets", "pipelines"):
        (tmp_path / other).mkdir()
    monkeypatch.setitem(globals(), "PROJECT_ROOT", tmp_path)
    try:
        graphlib.TopologicalSorter(import_graph()).prepare()
    except graphlib.CycleError:
        return
    raise AssertionError("the cycle a -> b -> a was not found")
