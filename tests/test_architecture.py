"""The house's shape: no import cycles, and every module in one layer of .importlinter.

`lint-imports` (in CI) checks that imports point down the layers; these tests make
sure the contract cannot be dodged by a cycle inside a layer or by a new module that no
layer names. Imports inside functions count like any other (grimp reads them all).
"""

from __future__ import annotations

import configparser
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
CONFIG = configparser.ConfigParser()
CONFIG.read(ROOT / ".importlinter")
ROOT_PACKAGES = CONFIG["importlinter"]["root_packages"].split()
# The harness may use anything and is mounted by config.urls alone (its own contract).
OUTSIDE_THE_LAYERS = ("harness",)


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph(*ROOT_PACKAGES)


def _layer_modules() -> list[str]:
    layers = CONFIG["importlinter:contract:layers"]["layers"].strip().splitlines()
    return [name.strip() for line in layers for name in line.split(":")]


def _covered(module: str, by: list[str]) -> bool:
    return any(module == name or module.startswith(name + ".") for name in by)


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph.modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
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
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def test_no_import_cycles_between_modules():
    graph = _graph()
    # A package's __init__ handing names on would tie it to its children; ours define nothing.
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = _graph()
    graph.add_import(importer="proxy.models", imported="proxy.services")
    assert any({"proxy.models", "proxy.services"} <= set(cycle) for cycle in _cycles(graph))


def test_every_module_of_the_product_is_in_a_layer():
    named = _layer_modules()
    graph = _graph()
    packages = {m for m in graph.modules if any(other.startswith(m + ".") for other in graph.modules)}
    unplaced = sorted(
        module
        for module in graph.modules
        if module not in packages and not _covered(module, named) and not _covered(module, list(OUTSIDE_THE_LAYERS))
    )
    assert unplaced == [], f"add these to a layer in .importlinter: {unplaced}"
