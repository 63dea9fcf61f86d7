"""The package's layers: every module imports only from its own layer or below, units never import
each other in a cycle, and the core never imports the ROS layer.

Imports are read with ``ast`` (nothing is imported), including imports inside functions; only
``if TYPE_CHECKING:`` blocks are exempt. Layers, lowest first:

    0  types, geometry, errors, atomic
    1  features, retrieval, dataset, synthetic, bag (reading, writing and converting rosbag2 messages)
    2  maps: SceneMap, CompressedMap, the map file, the quantizers that decode it, database adapters
    3  mapping (building a SceneMap), selection (QP/SMO, scores, clusters), learned, compression
    4  localization
    5  replay (offline replay of a bag and its report), evaluate
    6  scenesqueezer_ros: the ROS adapters
    7  command-line entry points

A new module must be placed in ``UNITS`` (an unplaced module fails the test), so this file is
where the layering is decided.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("scenesqueezer_core", "scenesqueezer_ros")

# unit -> (layer, module prefixes). A module belongs to the unit with the longest matching prefix
# (the module itself or a submodule); a prefix written "=name" matches that module alone.
UNITS: dict[str, tuple[int, tuple[str, ...]]] = {
    "core-package": (0, ("=scenesqueezer_core",)),
    "types": (0, ("scenesqueezer_core.types",)),
    "geometry": (0, ("scenesqueezer_core.geometry",)),
    "errors": (0, ("scenesqueezer_core.errors",)),
    "atomic": (0, ("scenesqueezer_core.atomic",)),
    "features": (1, ("scenesqueezer_core.features",)),
    "retrieval": (1, ("scenesqueezer_core.retrieval",)),
    "dataset": (1, ("scenesqueezer_core.dataset",)),
    "synthetic": (1, ("scenesqueezer_core.synthetic",)),
    "bag": (1, ("scenesqueezer_core.bag",)),
    "maps": (2, ("scenesqueezer_core.maps",)),
    "mapping": (3, ("scenesqueezer_core.mapping",)),
    "selection": (3, ("scenesqueezer_core.selection",)),
    "learned": (3, ("scenesqueezer_core.learned",)),
    "compression": (3, ("scenesqueezer_core.compression",)),
    "localization": (4, ("scenesqueezer_core.localization",)),
    "replay": (5, ("scenesqueezer_core.replay",)),
    "evaluate": (5, ("scenesqueezer_core.evaluate",)),
    "ros": (6, ("scenesqueezer_ros",)),
    "cli": (7, ("scenesqueezer_core.cli", "scenesqueezer_core.cli_options", "scenesqueezer_core.bag.cli",
                "scenesqueezer_core.demo", "scenesqueezer_ros.cli", "scenesqueezer_ros.__main__")),
}
CLI_LAYER = 7

# (module, imported module) pairs below the CLI layer still imported inside functions, with why.
FUNCTION_LEVEL_IMPORTS_ALLOWED: dict[tuple[str, str], str] = {
    ("scenesqueezer_ros.replay", "scenesqueezer_ros.conversions"):
        "conversions loads the ROS message packages; the replay module also serves runs without them",
    ("scenesqueezer_ros.replay", "scenesqueezer_ros.localizer_node"): "loads rclpy; likewise",
    ("scenesqueezer_ros.replay", "scenesqueezer_ros.testing"): "not hoisted yet (file of the DDS-commands work)",
}


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module (of our packages)
    line: int
    in_function: bool


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def find_modules(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """module name -> file, for every .py file of ``packages`` under ``root``."""
    return {module_name(path, root): path for package in packages for path in sorted((root / package).rglob("*.py"))}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` blocks (imports there never run)."""
    exempt: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
            if name == "TYPE_CHECKING":
                exempt.update(id(sub) for child in node.body for sub in ast.walk(child))
    return exempt


def imports_of(module: str, path: Path, modules: dict[str, Path], packages: tuple[str, ...] = PACKAGES) -> list[Import]:
    """Every import of one of ``packages`` in a module, resolved to the module it loads."""
    tree = ast.parse(path.read_text(), filename=str(path))
    exempt = _type_checking_nodes(tree)
    in_function = {id(sub) for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for sub in ast.walk(node)}
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if id(node) in exempt:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # "from pkg import sub" loads pkg.sub when sub is a module
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in dict.fromkeys(targets):
            if target.split(".")[0] in packages:
                found.append(Import(module, target, node.lineno, id(node) in in_function))
    return found


def unit_of(module: str, units: dict[str, tuple[int, tuple[str, ...]]] = UNITS) -> str | None:
    best, best_length = None, -1
    for unit, (_, prefixes) in units.items():
        for prefix in prefixes:
            matches = module == prefix[1:] if prefix.startswith("=") else (
                module == prefix or module.startswith(prefix + "."))
            if matches and len(prefix) > best_length:
                best, best_length = unit, len(prefix)
    return best


def unit_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one unit (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return cycles


def layer_problems(root: Path, units: dict[str, tuple[int, tuple[str, ...]]] = UNITS,
                   packages: tuple[str, ...] = PACKAGES) -> dict[str, list[str]]:
    """{'unplaced', 'upward', 'core_imports_ros', 'cycles'}: human-readable findings under ``root``."""
    modules = find_modules(root, packages)
    problems: dict[str, list[str]] = {"unplaced": [], "upward": [], "core_imports_ros": [], "cycles": []}
    edges: dict[str, set[str]] = {}
    witnesses: dict[tuple[str, str], Import] = {}
    for module, path in modules.items():
        source_unit = unit_of(module, units)
        if source_unit is None:
            problems["unplaced"].append(f"{module} ({path.relative_to(root)}) belongs to no unit of UNITS")
            continue
        for imp in imports_of(module, path, modules, packages):
            where = f"{path.relative_to(root)}:{imp.line}"
            if module.startswith("scenesqueezer_core") and imp.target.startswith("scenesqueezer_ros"):
                problems["core_imports_ros"].append(f"{where} {module} imports {imp.target}")
            target_unit = unit_of(imp.target, units)
            if target_unit is None or target_unit == source_unit:
                continue
            if units[target_unit][0] > units[source_unit][0]:
                problems["upward"].append(
                    f"{where} {module} (layer {units[source_unit][0]}, {source_unit}) imports {imp.target} "
                    f"(layer {units[target_unit][0]}, {target_unit})")
            edges.setdefault(source_unit, set()).add(target_unit)
            witnesses.setdefault((source_unit, target_unit), imp)
    for cycle in unit_cycles(edges):
        links = [f"{witnesses[(a, b)].source} -> {witnesses[(a, b)].target}"
                 for a in cycle for b in cycle if (a, b) in witnesses]
        problems["cycles"].append(f"units {' <-> '.join(cycle)}: {'; '.join(links)}")
    return problems


@pytest.fixture(scope="module")
def problems() -> dict[str, list[str]]:
    return layer_problems(REPO)


def test_every_module_belongs_to_a_unit(problems):
    assert not problems["unplaced"], "\n".join(problems["unplaced"])


def test_no_module_imports_a_higher_layer(problems):
    assert not problems["upward"], "\n".join(problems["upward"])


def test_the_core_never_imports_the_ros_layer(problems):
    assert not problems["core_imports_ros"], "\n".join(problems["core_imports_ros"])


def test_no_import_cycle_between_units(problems):
    assert not problems["cycles"], "\n".join(problems["cycles"])


def test_imports_of_our_modules_inside_functions_only_in_entry_points():
    """Function-level imports hide cycles; they stay only for optional heavy third-party packages,
    and in the command-line entry points, which load a command's modules when it runs."""
    modules = find_modules(REPO)
    hidden = [f"{path.relative_to(REPO)}:{imp.line} {module} imports {imp.target} inside a function"
              for module, path in modules.items() if UNITS.get(unit_of(module) or "", (CLI_LAYER,))[0] < CLI_LAYER
              for imp in imports_of(module, path, modules)
              if imp.in_function and (module, imp.target) not in FUNCTION_LEVEL_IMPORTS_ALLOWED]
    assert not hidden, "\n".join(hidden)


# ---- the checker itself catches what it should, on a throwaway package tree


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


TOY_UNITS = {"low": (0, ("toy.low",)), "high": (1, ("toy.high",)), "side": (1, ("toy.side",)),
             "toy-package": (0, ("=toy",))}


def test_checker_finds_an_upward_import_inside_a_function(tmp_path):
    _write(tmp_path, {"toy/__init__.py": "", "toy/low.py": "def f():\n    from . import high\n",
                      "toy/high.py": "from .low import f\n", "toy/side.py": ""})
    found = layer_problems(tmp_path, TOY_UNITS, ("toy",))
    assert len(found["upward"]) == 1 and "toy/low.py:2 toy.low (layer 0, low) imports toy.high" in found["upward"][0]
    assert found["cycles"] == ["units high <-> low: toy.high -> toy.low; toy.low -> toy.high"]


def test_checker_finds_a_cycle_within_a_layer_and_ignores_type_checking(tmp_path):
    _write(tmp_path, {"toy/__init__.py": "", "toy/low.py": "",
                      "toy/high.py": "import toy.side\n",
                      "toy/side.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import low\n"
                                     "def g():\n    from .high import x\n"})
    found = layer_problems(tmp_path, TOY_UNITS, ("toy",))
    assert found["upward"] == [] and found["unplaced"] == []
    assert found["cycles"] == ["units high <-> side: toy.high -> toy.side; toy.side -> toy.high"]


def test_checker_reports_unplaced_modules(tmp_path):
    _write(tmp_path, {"toy/__init__.py": "", "toy/low.py": "", "toy/high.py": "", "toy/side.py": "",
                      "toy/new.py": ""})
    assert layer_problems(tmp_path, TOY_UNITS, ("toy",))["unplaced"] == ["toy.new (toy/new.py) belongs to no unit of UNITS"]
