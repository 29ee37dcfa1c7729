"""The layers of imports: plugins -> the public API -> internals.

- the core (``mmneurons``) imports no plugin module, also not inside a function; the registry may
  import the ``mmneurons.plugins`` package itself, for its list of built-ins (DEFAULT_PLUGINS);
- plugins import no private module (``mmneurons._kernels`` ...);
- a built-in plugin imports no other built-in plugin (each stands alone, as a third-party one
  would); the ``hooks`` modules, which register them, are the exception;
- the core's modules have no import cycle, counting imports inside functions (only imports under
  ``if TYPE_CHECKING:`` do not count: they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"core": "mmneurons", "plugins": "mmneurons.plugins"}


def module_files() -> dict[str, Path]:
    """Module name -> file, for every Python file of the two packages (app pages included)."""
    out = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(name: str, source: str, known: set[str]) -> set[str]:
    """The modules ``source`` (the module ``name``) imports at run time, as absolute names."""
    is_package = any(other.startswith(name + ".") for other in known)
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return {m for m in found if m == "mmneurons" or m.startswith("mmneurons.")}


def layer_problems(sources: dict[str, str]) -> list[str]:
    """Every import that breaks a rule of this module's docstring."""
    known = set(sources)
    graph = {name: imports_of(name, text, known) for name, text in sources.items()}
    problems = []
    for name, targets in graph.items():
        plugin = name.startswith("mmneurons.plugins")
        for target in sorted(targets):
            if not plugin and target.startswith("mmneurons.plugins"):
                if not (name == "mmneurons.registry" and target == "mmneurons.plugins"):
                    problems.append(f"core module {name} imports plugin module {target}")
            if plugin and any(part.startswith("_") for part in target.split(".")[1:]):
                problems.append(f"plugin module {name} imports private module {target}")
            if plugin and target.startswith("mmneurons.plugins.") and not name.startswith("mmneurons.plugins.hooks"):
                own = name.split(".")[2]
                if target.split(".")[2] != own:
                    problems.append(f"plugin module {name} imports another plugin's module {target}")
    core = {n: {t for t in ts if t in graph and not t.startswith("mmneurons.plugins")}
            for n, ts in graph.items() if not n.startswith("mmneurons.plugins")}
    problems += [f"import cycle: {' -> '.join(cycle)}" for cycle in _cycles(core)]
    return problems


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, state = [], {}

    def walk(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt, path + [nxt])
        state[node] = "done"

    for start in sorted(graph):
        if start not in state:
            walk(start, [start])
    return cycles


def test_the_code_keeps_its_layers():
    sources = {name: path.read_text(encoding="utf-8") for name, path in module_files().items()}
    assert layer_problems(sources) == []


def test_the_check_fails_on_each_kind_of_breach():
    sources = {name: path.read_text(encoding="utf-8") for name, path in module_files().items()}
    hidden = sources["mmneurons.units"] + "\n\ndef _f():\n    from mmneurons.plugins.probes import modality\n"
    assert layer_problems({**sources, "mmneurons.units": hidden}) == [
        "core module mmneurons.units imports plugin module mmneurons.plugins.probes.modality"]
    private = sources["mmneurons.plugins.image_sources"] + "\nfrom mmneurons._kernels import tower\n"
    assert layer_problems({**sources, "mmneurons.plugins.image_sources": private}) == [
        "plugin module mmneurons.plugins.image_sources imports private module mmneurons._kernels.tower"]
    across = sources["mmneurons.plugins.demo.evaluate"] + "\nfrom mmneurons.plugins.probes.modality import X\n"
    assert layer_problems({**sources, "mmneurons.plugins.demo.evaluate": across}) == [
        "plugin module mmneurons.plugins.demo.evaluate imports another plugin's module "
        "mmneurons.plugins.probes.modality"]
    cycle = sources["mmneurons.errors"] + "\ndef _g():\n    from .units import Unit\n"
    [problem] = layer_problems({**sources, "mmneurons.errors": cycle})
    assert problem.startswith("import cycle:") and "mmneurons.errors" in problem and "mmneurons.units" in problem
    typed = sources["mmneurons.errors"] + "\nif TYPE_CHECKING:\n    from .units import Unit\n"
    assert layer_problems({**sources, "mmneurons.errors": typed}) == []
