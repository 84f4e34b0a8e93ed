"""Manifests -> load order, or the first reason there is none (pure).

:func:`resolve` checks, in this order, and raises the first failure it finds:

1. every plugin's ``framework.version`` allows the running framework version
   (:class:`~tether.errors.FrameworkVersionMismatchError`);
2. every required dependency is present (:class:`~tether.errors.MissingDependencyError`);
   an absent optional one is only recorded in :attr:`Resolution.missing_optional`;
3. every present dependency, required or optional, has a version its constraint allows
   (:class:`~tether.errors.VersionMismatchError`);
4. the graph has no cycle (:class:`~tether.errors.CircularDependencyError`, listing one
   real cycle per strongly connected component that has one).

Each step walks the plugins in input order (the config's order) and each plugin's
dependencies in manifest order, so the same input always raises the same error.

The load order puts dependencies first. Among plugins ready at the same time the one
with the higher priority goes first, then the one earlier in the input.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from graphlib import TopologicalSorter

from tether._manifest import Manifest
from tether._versions import parse_constraint, parse_version
from tether.errors import (
    CircularDependencyError,
    FrameworkVersionMismatchError,
    MissingDependencyError,
    VersionMismatchError,
)

__all__ = ["Resolution", "dependency_graph", "find_cycles", "resolve"]

Graph = Mapping[str, Sequence[str]]


@dataclass(frozen=True, slots=True)
class Resolution:
    """A resolved set of plugins.

    ``graph`` maps every plugin to the plugins it depends on that are present (required
    and present optional ones, in manifest order). ``missing_optional`` maps a plugin
    to its optional dependencies that are absent; plugins missing none are left out.
    """

    order: tuple[str, ...]
    graph: dict[str, tuple[str, ...]]
    missing_optional: dict[str, tuple[str, ...]]

    def dependents(self, name: str) -> tuple[str, ...]:
        """Every plugin that depends on ``name``, directly or transitively, in load order.

        Raises ``KeyError`` when ``name`` is not one of the resolved plugins.
        """
        if name not in self.graph:
            raise KeyError(name)
        reverse: dict[str, list[str]] = {plugin: [] for plugin in self.graph}
        for plugin, deps in self.graph.items():
            for dep in deps:
                reverse[dep].append(plugin)
        found = _reachable(reverse, name)
        return tuple(plugin for plugin in self.order if plugin in found)


def resolve(
    manifests: Sequence[Manifest],
    *,
    framework_version: str,
    priorities: Mapping[str, int] | None = None,
    unavailable: Mapping[str, str] | None = None,
) -> Resolution:
    """Check ``manifests`` against each other and the framework; return the load order.

    ``priorities`` maps plugin names to load priorities (higher loads earlier when the
    dependencies allow; absent names count as 0). ``unavailable`` maps names of plugins
    that exist but were left out to the reason ("it is disabled in the config"), so a
    missing-dependency error can say why.
    """
    by_name = _index(manifests)
    _check_framework(manifests, framework_version)
    _check_missing(manifests, by_name, unavailable or {})
    _check_versions(manifests, by_name)
    graph = {m.name: tuple(d.name for d in m.dependencies if d.name in by_name) for m in manifests}
    cycles = find_cycles(graph)
    if cycles:
        raise CircularDependencyError(cycles)
    missing_optional = {
        m.name: absent
        for m in manifests
        if (absent := tuple(d.name for d in m.dependencies if d.name not in by_name))
    }
    order = _load_order(graph, priorities or {})
    return Resolution(order=order, graph=graph, missing_optional=missing_optional)


def dependency_graph(manifests: Sequence[Manifest]) -> dict[str, tuple[str, ...]]:
    """Every plugin -> every dependency it declares, present or not, in manifest order."""
    _index(manifests)
    return {m.name: tuple(d.name for d in m.dependencies) for m in manifests}


# --------------------------------------------------------------------------- checks


def _index(manifests: Sequence[Manifest]) -> dict[str, Manifest]:
    by_name: dict[str, Manifest] = {}
    for manifest in manifests:
        if manifest.name in by_name:
            # Discovery reports name conflicts to users; reaching here is a bug.
            raise ValueError(f"plugin '{manifest.name}' appears more than once")
        by_name[manifest.name] = manifest
    return by_name


def _check_framework(manifests: Sequence[Manifest], framework_version: str) -> None:
    found = parse_version(framework_version)
    for manifest in manifests:
        constraint = manifest.framework.version
        if not parse_constraint(constraint).allows(found):
            raise FrameworkVersionMismatchError(manifest.name, constraint, framework_version)


def _check_missing(
    manifests: Sequence[Manifest],
    by_name: Mapping[str, Manifest],
    unavailable: Mapping[str, str],
) -> None:
    for manifest in manifests:
        for dep in manifest.dependencies:
            if dep.optional or dep.name in by_name:
                continue
            reason = unavailable.get(dep.name)
            note = f" ({reason})" if reason else ""
            raise MissingDependencyError(manifest.name, dep.name, dep.version, note=note)


def _check_versions(manifests: Sequence[Manifest], by_name: Mapping[str, Manifest]) -> None:
    for manifest in manifests:
        for dep in manifest.dependencies:
            present = by_name.get(dep.name)
            if present is None:
                continue
            if not parse_constraint(dep.version).allows(present.version):
                raise VersionMismatchError(manifest.name, dep.name, dep.version, present.version)


# --------------------------------------------------------------------------- graphs


def find_cycles(graph: Graph) -> list[list[str]]:
    """One cycle per strongly connected component that has one, as a path back to its start.

    ``graph`` maps each node to the nodes it points at (edges to unknown nodes are
    ignored). Each cycle starts at the component's member that comes first in
    ``graph``'s order and is a shortest cycle through it; cycles are listed in that
    order too.
    """
    position = {node: index for index, node in enumerate(graph)}
    cycles: list[list[str]] = []
    for component in _components(graph):
        start = min(component, key=position.__getitem__)
        cycle = _shortest_cycle(graph, start, component)
        if cycle is not None:
            cycles.append(cycle)
    cycles.sort(key=lambda cycle: position[cycle[0]])
    return cycles


def _components(graph: Graph) -> list[set[str]]:
    """Strongly connected components (Tarjan's algorithm, iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            child = next((s for s in successors if s in graph), None)
            if child is None:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    components.append(_pop_component(stack, on_stack, node))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(graph[child])))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return components


def _pop_component(stack: list[str], on_stack: set[str], root: str) -> set[str]:
    component: set[str] = set()
    while True:
        node = stack.pop()
        on_stack.discard(node)
        component.add(node)
        if node == root:
            return component


def _shortest_cycle(graph: Graph, start: str, component: set[str]) -> list[str] | None:
    """Breadth-first search from ``start`` back to itself, staying inside ``component``."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for succ in graph[node]:
            if succ == start:
                return [*_path_to(came_from, start, node), start]
            if succ in component and succ not in came_from:
                came_from[succ] = node
                queue.append(succ)
    return None


def _path_to(came_from: Mapping[str, str], start: str, node: str) -> list[str]:
    path = [node]
    while node != start:
        node = came_from[node]
        path.append(node)
    path.reverse()
    return path


def _reachable(graph: Mapping[str, Sequence[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph[node])
    return seen


def _load_order(
    graph: Mapping[str, tuple[str, ...]], priorities: Mapping[str, int]
) -> tuple[str, ...]:
    """Topological order: of the plugins ready, highest priority first, then input order."""
    position = {node: index for index, node in enumerate(graph)}
    sorter = TopologicalSorter(graph)
    sorter.prepare()
    ready: list[tuple[int, int, str]] = []
    order: list[str] = []
    while sorter.is_active():
        for node in sorter.get_ready():
            heapq.heappush(ready, (-priorities.get(node, 0), position[node], node))
        _, _, node = heapq.heappop(ready)
        order.append(node)
        sorter.done(node)
    return tuple(order)
