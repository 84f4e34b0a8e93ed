"""Properties of the resolver over random graphs (hypothesis)."""

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether._manifest import Manifest
from tether._resolver import resolve
from tether.errors import CircularDependencyError

MAX_PLUGINS = 8
fast = settings(max_examples=60, deadline=None)


def manifests_for(graph):
    """One manifest per node, in ``graph``'s order; every edge is a dependency."""
    return [
        Manifest.model_validate(
            {
                "name": name,
                "version": "1.0.0",
                "description": "generated",
                "author": "hypothesis",
                "entry": "module:Plugin",
                "dependencies": [{"name": d} for d in deps],
            }
        )
        for name, deps in graph.items()
    ]


def edges(graph):
    return [(node, dep) for node, deps in graph.items() for dep in deps]


@st.composite
def dags(draw):
    """A random DAG: edges only go from a higher rank to a lower one, names shuffled."""
    size = draw(st.integers(min_value=0, max_value=MAX_PLUGINS))
    ranked = draw(st.permutations([f"p{i}" for i in range(size)]))
    graph = {}
    for rank, name in enumerate(ranked):
        below = ranked[:rank]
        graph[name] = draw(st.lists(st.sampled_from(below), unique=True)) if below else []
    # The input (config) order is independent of the ranking.
    input_order = draw(st.permutations(ranked))
    return {name: graph[name] for name in input_order}


@st.composite
def cyclic_graphs(draw):
    """A random graph (no self-loops) with at least one cycle planted in it."""
    size = draw(st.integers(min_value=2, max_value=MAX_PLUGINS))
    names = [f"p{i}" for i in range(size)]
    graph = {name: set() for name in names}
    for node in names:
        others = [n for n in names if n != node]
        graph[node].update(draw(st.lists(st.sampled_from(others), max_size=3)))
    planted = draw(st.lists(st.sampled_from(names), min_size=2, max_size=size, unique=True))
    for node, dep in pairwise([*planted, planted[0]]):
        graph[node].add(dep)
    input_order = draw(st.permutations(names))
    return {name: sorted(graph[name]) for name in input_order}


def reaches(graph, start):
    seen, todo = set(), list(graph[start])
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph[node])
    return seen


def cyclic_components(graph):
    """Strongly connected components with a cycle, the slow obvious way."""
    reach = {node: reaches(graph, node) for node in graph}
    components = []
    for node in graph:
        if node in reach[node] and not any(node in c for c in components):
            components.append({n for n in reach[node] if node in reach[n]})
    return components


def greedy_order(graph, priorities):
    """The specified order, computed naively: repeatedly take the best ready plugin."""
    position = {name: index for index, name in enumerate(graph)}
    done = []
    while len(done) < len(graph):
        ready = [n for n in graph if n not in done and all(d in done for d in graph[n])]
        done.append(min(ready, key=lambda n: (-priorities.get(n, 0), position[n])))
    return tuple(done)


@fast
@given(dags())
def test_any_dag_resolves_in_an_order_respecting_every_edge(graph):
    resolution = resolve(manifests_for(graph), framework_version="1.0.0")
    assert sorted(resolution.order) == sorted(graph)
    position = {name: index for index, name in enumerate(resolution.order)}
    for node, dep in edges(graph):
        assert position[dep] < position[node]
    assert resolution.graph == {name: tuple(deps) for name, deps in graph.items()}
    for name in graph:
        expected = {n for n in graph if name in reaches(graph, n)}
        assert set(resolution.dependents(name)) == expected


@fast
@given(cyclic_graphs())
def test_every_cyclic_component_is_reported_with_a_real_cycle(graph):
    with pytest.raises(CircularDependencyError) as info:
        resolve(manifests_for(graph), framework_version="1.0.0")
    cycles = info.value.cycles
    edge_set = set(edges(graph))
    for cycle in cycles:
        assert len(cycle) >= 3
        assert cycle[0] == cycle[-1]
        assert len(set(cycle)) == len(cycle) - 1, "a reported cycle repeats a plugin"
        for node, dep in pairwise(cycle):
            assert (node, dep) in edge_set
    position = {name: index for index, name in enumerate(graph)}
    components = cyclic_components(graph)
    assert len(cycles) == len(components)
    for component in components:
        (cycle,) = [c for c in cycles if c[0] in component]
        assert set(cycle) <= component
        assert cycle[0] == min(component, key=position.__getitem__)
    starts = [position[c[0]] for c in cycles]
    assert starts == sorted(starts)
    assert str(info.value) == "circular dependency detected: " + "; ".join(
        " -> ".join(c) for c in cycles
    )


@fast
@given(st.data())
def test_priorities_never_break_an_edge(data):
    graph = data.draw(dags())
    names = list(graph)
    priorities = data.draw(
        st.dictionaries(st.sampled_from(names), st.integers(-3, 3)) if names else st.just({})
    )
    resolution = resolve(manifests_for(graph), framework_version="1.0.0", priorities=priorities)
    position = {name: index for index, name in enumerate(resolution.order)}
    for node, dep in edges(graph):
        assert position[dep] < position[node]
    assert resolution.order == greedy_order(graph, priorities)
