"""The house rules, checked on the code itself: no import circle, ``labeling`` without torch,
dependencies one way (``pipeline`` -> ``labeling``, ``training``), and the command line imported
by nobody outside ``pipeline.cli``.

Every import counts, also those inside functions (the lazy ones that keep ``--help`` fast): a
circle that only closes when a command runs is still a circle. Importing ``a.b.c`` runs
``a/__init__`` and ``a/b/__init__`` first, so a module also depends on its parent packages.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("labeling", "training", "pipeline")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules (and outside top-level packages) that ``name`` imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = {m for m in _imports(name, path, known) if m in known and m != name}
        parts = name.split(".")
        edges |= {".".join(parts[:i]) for i in range(1, len(parts))}  # parent packages
        graph[name] = edges
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _all_imports() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _importing(prefixes: tuple[str, ...], within: str) -> list[str]:
    """'module -> imported' for modules under ``within`` importing anything under ``prefixes``."""
    return sorted(f"{name} -> {imp}" for name, imps in _all_imports().items()
                  if name == within or name.startswith(within + ".")
                  for imp in imps if imp.split(".")[0] in prefixes or imp.startswith(prefixes))


def test_no_module_imports_itself_round_a_circle():
    graph = _graph()
    assert len(graph) > 50  # the walk found the packages
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_check_finds_a_circle_when_there_is_one():
    graph = _graph()
    graph["pipeline.project.config"] = graph["pipeline.project.config"] | {"pipeline.loop"}
    found = _cycle(graph)
    assert found is not None and found[0] == found[-1]


def test_labeling_never_imports_torch_training_or_pipeline():
    assert _importing(("torch", "torchvision", "training", "pipeline"), "labeling") == []


def test_training_never_imports_labeling_or_pipeline():
    assert _importing(("labeling", "pipeline"), "training") == []


def test_only_the_command_line_imports_the_command_line():
    outside = [line for line in _importing(("pipeline.cli",), "pipeline")
               if not line.startswith("pipeline.cli")]
    assert outside == []


def test_the_project_and_the_registry_import_no_round_step():
    for room in ("pipeline.project", "pipeline.registry"):
        assert _importing(("pipeline.round", "pipeline.cli"), room) == []


def test_every_module_imports_first_in_a_fresh_interpreter_and_labeling_loads_no_torch():
    """Each module imported first (the project's modules dropped from sys.modules in between),
    so an import that only works in some order fails here."""
    # __main__ modules run the command line when imported: that is what they are for.
    modules = sorted(m for m in _modules() if not m.endswith(".__main__"))
    script = """
import importlib, json, sys
mine = lambda m: m.split(".")[0] in ("labeling", "training", "pipeline")
failed, torch_in_labeling = {}, []
for name in json.loads(sys.argv[1]):
    for loaded in [m for m in sys.modules if mine(m)]:
        del sys.modules[loaded]
    had_torch = "torch" in sys.modules
    try:
        importlib.import_module(name)
    except Exception as err:  # reported with the module's name, below
        failed[name] = f"{type(err).__name__}: {err}"
    if name.startswith("labeling") and not had_torch and "torch" in sys.modules:
        torch_in_labeling.append(name)
print(json.dumps({"failed": failed, "torch": torch_in_labeling}))
"""
    labeling_first = sorted(modules, key=lambda m: not m.startswith("labeling"))
    done = subprocess.run([sys.executable, "-c", script, json.dumps(labeling_first)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["failed"] == {}
    assert result["torch"] == []


def test_the_command_line_starts_without_torch_or_scipy_stats():
    # Both were imported by every command, `labelloop --help` included (3.5 s of a 3.5 s start
    # on this machine); the commands that use them import them when they run.
    script = ("import sys, pipeline.cli.app; "
              "print(sorted(m for m in ('torch', 'scipy.stats', 'mlflow') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"
