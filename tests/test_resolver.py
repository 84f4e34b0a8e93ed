import dataclasses

import pytest

from tether._manifest import Manifest
from tether._resolver import Resolution, dependency_graph, find_cycles, resolve
from tether.errors import (
    CircularDependencyError,
    FrameworkVersionMismatchError,
    MissingDependencyError,
    ResolutionError,
    VersionMismatchError,
)

FRAMEWORK = "1.5.0"


def dep(name, version="*", *, optional=False):
    return {"name": name, "version": version, "optional": optional}


def plugin(name, *deps, version="1.0.0", framework="*"):
    return Manifest.model_validate(
        {
            "name": name,
            "version": version,
            "description": f"the {name} plugin",
            "author": "tests",
            "entry": "module:Plugin",
            "framework": {"version": framework},
            "dependencies": [d if isinstance(d, dict) else dep(d) for d in deps],
        }
    )


def run(*manifests, **kwargs):
    kwargs.setdefault("framework_version", FRAMEWORK)
    return resolve(list(manifests), **kwargs)


def reference_plugins():
    return [
        plugin("admin-plugin", "auth-plugin", "user-plugin"),
        plugin("user-plugin", "auth-plugin"),
        plugin("auth-plugin"),
    ]


# --------------------------------------------------------------------------- success


def test_reference_example_graph_and_order():
    resolution = resolve(reference_plugins(), framework_version=FRAMEWORK)
    assert resolution.order == ("auth-plugin", "user-plugin", "admin-plugin")
    assert resolution.graph == {
        "admin-plugin": ("auth-plugin", "user-plugin"),
        "user-plugin": ("auth-plugin",),
        "auth-plugin": (),
    }
    assert resolution.missing_optional == {}


def test_dependency_graph_matches_the_reference():
    assert dependency_graph(reference_plugins()) == {
        "admin-plugin": ("auth-plugin", "user-plugin"),
        "user-plugin": ("auth-plugin",),
        "auth-plugin": (),
    }


def test_dependency_graph_lists_absent_dependencies_too():
    manifests = [plugin("a", "b", dep("c", optional=True), dep("d", ">=1.0.0"))]
    assert dependency_graph(manifests) == {"a": ("b", "c", "d")}


def test_nothing_to_resolve():
    assert run() == Resolution(order=(), graph={}, missing_optional={})
    assert dependency_graph([]) == {}


def test_independent_plugins_keep_input_order():
    assert run(plugin("c"), plugin("a"), plugin("b")).order == ("c", "a", "b")


def test_dependencies_load_first_and_input_order_breaks_ties():
    resolution = run(plugin("web", "db", "cache"), plugin("cache"), plugin("db"), plugin("log"))
    # cache, db and log are ready at once: input order. Once db is loaded, web is ready
    # too, and comes before log in the input.
    assert resolution.order == ("cache", "db", "web", "log")


def test_graph_keeps_manifest_order_of_dependencies():
    resolution = run(plugin("a", "c", "b"), plugin("b"), plugin("c"))
    assert resolution.graph["a"] == ("c", "b")


def test_resolution_is_frozen():
    resolution = run(plugin("a"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        resolution.order = ()  # type: ignore[misc]


# --------------------------------------------------------------------------- priorities


def test_higher_priority_loads_first_among_ready_plugins():
    resolution = run(plugin("a"), plugin("b"), plugin("c"), priorities={"c": 10, "b": 5})
    assert resolution.order == ("c", "b", "a")


def test_equal_priorities_fall_back_to_input_order():
    resolution = run(plugin("a"), plugin("b"), plugin("c"), priorities={"a": 1, "b": 7, "c": 7})
    assert resolution.order == ("b", "c", "a")


def test_missing_priorities_count_as_zero():
    resolution = run(plugin("a"), plugin("b"), plugin("c"), priorities={"b": -1, "c": 1})
    assert resolution.order == ("c", "a", "b")


def test_priority_never_breaks_a_dependency():
    resolution = run(plugin("app", "db"), plugin("db"), priorities={"app": 100, "db": -100})
    assert resolution.order == ("db", "app")


def test_priority_applies_among_plugins_ready_at_the_same_time():
    # y and z are ready first; z outranks y. x outranks everything but needs y.
    resolution = run(plugin("x", "y"), plugin("y"), plugin("z"), priorities={"x": 5, "z": 1})
    assert resolution.order == ("z", "y", "x")


def test_priorities_for_unknown_plugins_are_ignored():
    assert run(plugin("a"), priorities={"ghost": 3}).order == ("a",)


# --------------------------------------------------------------------------- optional deps


def test_absent_optional_dependency_is_recorded_not_an_error():
    resolution = run(plugin("a", dep("metrics", ">=1.0.0", optional=True), "b"), plugin("b"))
    assert resolution.order == ("b", "a")
    assert resolution.graph == {"a": ("b",), "b": ()}
    assert resolution.missing_optional == {"a": ("metrics",)}


def test_present_optional_dependency_is_an_edge():
    resolution = run(plugin("a", dep("metrics", ">=1.0.0", optional=True)), plugin("metrics"))
    assert resolution.order == ("metrics", "a")
    assert resolution.graph == {"a": ("metrics",), "metrics": ()}
    assert resolution.missing_optional == {}


def test_present_optional_dependency_must_match_its_constraint():
    with pytest.raises(VersionMismatchError) as info:
        run(plugin("a", dep("m", ">=2.0.0", optional=True)), plugin("m", version="1.0.0"))
    assert str(info.value) == "version mismatch: plugin 'a' requires 'm' >=2.0.0, found 1.0.0"


def test_unavailable_optional_dependency_is_only_recorded():
    resolution = run(
        plugin("a", dep("m", optional=True)), unavailable={"m": "it is disabled in the config"}
    )
    assert resolution.missing_optional == {"a": ("m",)}


def test_optional_dependency_cycle_is_still_a_cycle():
    with pytest.raises(CircularDependencyError):
        run(plugin("a", dep("b", optional=True)), plugin("b", "a"))


# --------------------------------------------------------------------------- errors


def test_framework_version_mismatch():
    with pytest.raises(FrameworkVersionMismatchError) as info:
        run(plugin("auth-plugin", framework=">=2.0.0"))
    error = info.value
    assert str(error) == "framework version mismatch: plugin requires >=2.0.0, found 1.5.0"
    assert error.plugin == "auth-plugin"
    assert error.constraint == ">=2.0.0"
    assert error.found == "1.5.0"
    assert isinstance(error, ResolutionError)


def test_framework_version_within_range_passes():
    assert run(plugin("a", framework=">=1.0.0,<2.0.0")).order == ("a",)


def test_first_framework_mismatch_in_input_order_wins():
    with pytest.raises(FrameworkVersionMismatchError) as info:
        run(plugin("a"), plugin("b", framework="^2.0.0"), plugin("c", framework=">=3.0.0"))
    assert info.value.plugin == "b"
    assert info.value.constraint == "^2.0.0"


def test_invalid_framework_version_is_a_value_error():
    with pytest.raises(ValueError, match=r"^invalid version format"):
        run(plugin("a"), framework_version="1.5")


def test_missing_dependency():
    with pytest.raises(MissingDependencyError) as info:
        run(plugin("auth-plugin", dep("cache-plugin", ">=2.0.0")))
    error = info.value
    assert str(error) == (
        "missing dependency: plugin 'auth-plugin' requires 'cache-plugin' version '>=2.0.0'"
    )
    assert error.plugin == "auth-plugin"
    assert error.dependency == "cache-plugin"
    assert error.constraint == ">=2.0.0"


def test_missing_dependency_without_constraint_shows_star():
    with pytest.raises(MissingDependencyError) as info:
        run(plugin("a", "b"))
    assert str(info.value) == "missing dependency: plugin 'a' requires 'b' version '*'"


def test_missing_dependency_explains_why_it_is_unavailable():
    with pytest.raises(MissingDependencyError) as info:
        run(
            plugin("auth-plugin", dep("cache-plugin", ">=2.0.0")),
            unavailable={"cache-plugin": "it is disabled in the config"},
        )
    assert str(info.value) == (
        "missing dependency: plugin 'auth-plugin' requires 'cache-plugin' version '>=2.0.0'"
        " (it is disabled in the config)"
    )


def test_first_missing_dependency_in_input_and_manifest_order_wins():
    with pytest.raises(MissingDependencyError) as info:
        run(plugin("a"), plugin("b", "a", "y", "x"), plugin("c", "z"))
    assert (info.value.plugin, info.value.dependency) == ("b", "y")


def test_version_mismatch():
    with pytest.raises(VersionMismatchError) as info:
        run(
            plugin("auth-plugin", dep("cache-plugin", ">=2.0.0")),
            plugin("cache-plugin", version="1.5.0"),
        )
    error = info.value
    assert str(error) == (
        "version mismatch: plugin 'auth-plugin' requires 'cache-plugin' >=2.0.0, found 1.5.0"
    )
    assert (error.plugin, error.dependency, error.constraint, error.found) == (
        "auth-plugin",
        "cache-plugin",
        ">=2.0.0",
        "1.5.0",
    )


def test_version_within_constraint_passes():
    resolution = run(plugin("a", dep("b", ">=1.5.0,<3.0.0")), plugin("b", version="2.9.9"))
    assert resolution.order == ("b", "a")


def test_prerelease_dependency_needs_a_prerelease_constraint():
    with pytest.raises(VersionMismatchError, match=r"found 2\.0\.0-rc\.1$"):
        run(plugin("a", dep("b", ">=1.0.0")), plugin("b", version="2.0.0-rc.1"))
    assert run(plugin("a", dep("b", ">=2.0.0-rc.0")), plugin("b", version="2.0.0-rc.1")).order


def test_circular_dependency():
    with pytest.raises(CircularDependencyError) as info:
        run(
            plugin("plugin-a", "plugin-b"),
            plugin("plugin-b", "plugin-c"),
            plugin("plugin-c", "plugin-a"),
        )
    error = info.value
    assert str(error) == (
        "circular dependency detected: plugin-a -> plugin-b -> plugin-c -> plugin-a"
    )
    assert error.cycles == (("plugin-a", "plugin-b", "plugin-c", "plugin-a"),)


def test_cycle_starts_at_the_member_first_in_input_order():
    with pytest.raises(CircularDependencyError) as info:
        run(plugin("B", "C"), plugin("C", "A"), plugin("A", "B"))
    assert str(info.value) == "circular dependency detected: B -> C -> A -> B"


def test_two_plugin_cycle():
    with pytest.raises(CircularDependencyError) as info:
        run(plugin("a", "b"), plugin("b", "a"))
    assert info.value.cycles == (("a", "b", "a"),)


def test_independent_cycles_are_all_reported():
    with pytest.raises(CircularDependencyError) as info:
        run(
            plugin("ok"),
            plugin("c", "d"),
            plugin("a", "b", "ok"),
            plugin("d", "c"),
            plugin("b", "a"),
        )
    assert str(info.value) == "circular dependency detected: c -> d -> c; a -> b -> a"


def test_plugins_depending_on_a_cycle_are_not_part_of_it():
    with pytest.raises(CircularDependencyError) as info:
        run(plugin("top", "a"), plugin("a", "b"), plugin("b", "a"))
    assert info.value.cycles == (("a", "b", "a"),)


def test_one_cycle_per_component_the_shortest_through_its_first_member():
    # a -> b -> c -> a and a -> c -> d -> a also run through a; a -> c -> a is shortest.
    with pytest.raises(CircularDependencyError) as info:
        run(plugin("a", "b", "c"), plugin("b", "c"), plugin("c", "d", "a"), plugin("d", "a"))
    assert info.value.cycles == (("a", "c", "a"),)


def test_framework_checks_come_before_missing_dependencies():
    with pytest.raises(FrameworkVersionMismatchError):
        run(plugin("a", "ghost"), plugin("b", framework=">=9.0.0"))


def test_missing_dependencies_come_before_version_mismatches():
    with pytest.raises(MissingDependencyError):
        run(plugin("a", dep("b", ">=2.0.0")), plugin("b"), plugin("c", "ghost"))


def test_version_mismatches_come_before_cycles():
    with pytest.raises(VersionMismatchError):
        run(plugin("a", "b"), plugin("b", "a"), plugin("c", dep("a", ">=2.0.0")))


def test_duplicate_names_are_a_programming_error():
    manifests = [plugin("a"), plugin("b"), plugin("a", version="2.0.0")]
    with pytest.raises(ValueError, match=r"^plugin 'a' appears more than once$"):
        resolve(manifests, framework_version=FRAMEWORK)
    with pytest.raises(ValueError, match=r"^plugin 'a' appears more than once$"):
        dependency_graph(manifests)


# --------------------------------------------------------------------------- dependents


def test_dependents_of_the_reference_example():
    resolution = resolve(reference_plugins(), framework_version=FRAMEWORK)
    assert resolution.dependents("auth-plugin") == ("user-plugin", "admin-plugin")
    assert resolution.dependents("user-plugin") == ("admin-plugin",)
    assert resolution.dependents("admin-plugin") == ()


def test_dependents_are_transitive_and_in_load_order():
    resolution = run(
        plugin("d", "c"),
        plugin("c", "b"),
        plugin("x"),
        plugin("b", "a"),
        plugin("e", "a"),
        plugin("a"),
        priorities={"e": 10},
    )
    expected = tuple(p for p in resolution.order if p in {"b", "c", "d", "e"})
    assert resolution.dependents("a") == expected
    assert resolution.dependents("a")[0] == "e"
    assert resolution.dependents("b") == ("c", "d")
    assert resolution.dependents("x") == ()


def test_dependents_include_optional_edges():
    resolution = run(plugin("a", dep("b", optional=True)), plugin("b"))
    assert resolution.dependents("b") == ("a",)


def test_dependents_of_an_unknown_plugin():
    resolution = run(plugin("a", dep("m", optional=True)))
    with pytest.raises(KeyError):
        resolution.dependents("m")


# --------------------------------------------------------------------------- find_cycles


def test_find_cycles_on_plain_graphs():
    assert find_cycles({}) == []
    assert find_cycles({"a": ["b"], "b": []}) == []
    assert find_cycles({"a": ["a"]}) == [["a", "a"]]
    assert find_cycles({"a": ["ghost", "b"], "b": ["a"]}) == [["a", "b", "a"]]
