"""No module of spill_guard (or of the integration packages) takes part in an import cycle.

`lint-imports` (pyproject.toml, [tool.importlinter]) checks the layers between packages and cycles between
siblings; this test checks the module graph itself, so a cycle through a package's ``__init__`` (a submodule
importing ``spill_guard`` while ``spill_guard/__init__.py`` imports that submodule's package) is caught too.
Every import counts: module-level, function-local and ``if TYPE_CHECKING:`` ones, as in the contracts.
"""

from __future__ import annotations

import importlib.util

import grimp
import pytest

ROOTS = ("spill_guard", "spill_guard_langchain", "spill_guard_llama_index")


def strongly_connected(graph: grimp.ImportGraph) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module, each sorted, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.find_modules_directly_imported_by(nxt)))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
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


def describe(graph: grimp.ImportGraph, component: list[str]) -> str:
    """One shortest cycle through the component, then every import inside it (file line and statement)."""
    members = set(component)
    first = component[0]
    back = min(
        (
            graph.find_shortest_chain(importer=nxt, imported=first) or ()
            for nxt in graph.find_modules_directly_imported_by(first) & members
        ),
        key=len,
    )
    cycle = " -> ".join((first, *back))
    lines = [f"cycle of {len(component)} modules, e.g. {cycle}", "  every import between its modules:"]
    for importer in component:
        for imported in sorted(graph.find_modules_directly_imported_by(importer) & members):
            for detail in graph.get_import_details(importer=importer, imported=imported):
                lines.append(f"    {importer}:{detail['line_number']}  {detail['line_contents']}")
    return "\n".join(lines)


def test_strongly_connected_finds_a_known_cycle_and_nothing_else() -> None:
    graph = grimp.ImportGraph()
    for module in ("pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.d"):
        graph.add_module(module)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.c")
    graph.add_import(importer="pkg.c", imported="pkg.a")
    graph.add_import(importer="pkg.c", imported="pkg.d")
    graph.add_import(importer="pkg", imported="pkg.a")
    assert strongly_connected(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert "pkg.a -> pkg.b -> pkg.c -> pkg.a" in describe(graph, ["pkg.a", "pkg.b", "pkg.c"])


def test_no_import_cycles() -> None:
    roots = [r for r in ROOTS if r == "spill_guard" or importlib.util.find_spec(r) is not None]
    graph = grimp.build_graph(*roots, cache_dir=None)
    components = strongly_connected(graph)
    if components:
        report = "\n\n".join(describe(graph, c) for c in components)
        pytest.fail(f"{len(components)} import cycle(s) among {', '.join(roots)}:\n\n{report}", pytrace=False)
