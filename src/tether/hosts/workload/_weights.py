"""Operation weights: the plugin's defaults, the config's overrides, and a seeded chooser (pure)."""

from __future__ import annotations

import bisect
import difflib
import random
from collections.abc import Callable, Mapping

from tether.hosts.workload._errors import WorkloadConfigError

__all__ = ["check_default_weights", "make_chooser", "resolve_weights"]

_FIELD = "workload.plugin_config.operation_weights"


def check_default_weights(plugin: str, defaults: object) -> dict[str, int]:
    """What ``get_operation_types()`` returned, checked: a non-empty mapping of name -> weight."""
    if not isinstance(defaults, Mapping) or not defaults:
        raise WorkloadConfigError(
            f"workload '{plugin}': get_operation_types() must return a non-empty dict of "
            f"operation name -> weight, got {defaults!r}",
            plugin=plugin,
            hint="return e.g. {'insert': 30, 'select': 70} from get_operation_types()",
        )
    checked: dict[str, int] = {}
    for name, weight in defaults.items():
        if not isinstance(name, str) or not _is_weight(weight):
            raise WorkloadConfigError(
                f"workload '{plugin}': get_operation_types() gave {name!r}: {weight!r}; "
                "names must be strings and weights non-negative integers",
                plugin=plugin,
                hint="fix get_operation_types() in the plugin",
            )
        checked[name] = weight
    return checked


def _is_weight(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def resolve_weights(
    plugin: str, defaults: Mapping[str, int], overrides: object, *, source: str | None = None
) -> dict[str, int]:
    """The weights a run uses: ``defaults`` with the operations ``overrides`` names replaced.

    Operations the overrides leave out keep their default weight. Weights are
    non-negative integers; at least one must be above zero; an unknown operation
    name is an error naming the known ones.
    """
    where = f" in {source}" if source else ""
    weights = dict(defaults)
    if overrides is not None:
        if not isinstance(overrides, Mapping):
            raise _error(
                plugin,
                f"{_FIELD}{where} must be a mapping of operation name -> weight, "
                f"got {type(overrides).__name__}",
                defaults,
            )
        for name, weight in overrides.items():
            if name not in defaults:
                close = difflib.get_close_matches(str(name), list(defaults), n=1)
                suggestion = f" (did you mean '{close[0]}'?)" if close else ""
                raise _error(
                    plugin,
                    f"{_FIELD}{where}: unknown operation '{name}' for workload "
                    f"'{plugin}'{suggestion}",
                    defaults,
                )
            if not _is_weight(weight):
                raise _error(
                    plugin,
                    f"{_FIELD}.{name}{where} must be a non-negative integer, got {weight!r}",
                    defaults,
                )
            weights[name] = weight
    if not any(weights.values()):
        raise _error(
            plugin, f"{_FIELD}{where}: every weight is 0, so no operation would run", defaults
        )
    return weights


def _error(plugin: str, message: str, defaults: Mapping[str, int]) -> WorkloadConfigError:
    known = ", ".join(f"{name} (default {weight})" for name, weight in defaults.items())
    return WorkloadConfigError(
        message,
        plugin=plugin,
        hint=f"the operations of '{plugin}' are: {known}; give each a weight of 0 or more, "
        "at least one above 0",
    )


def make_chooser(weights: Mapping[str, int], rng: random.Random) -> Callable[[], str]:
    """A function returning an operation name at random, in proportion to ``weights``."""
    names = [name for name, weight in weights.items() if weight > 0]
    if len(names) == 1:
        only = names[0]
        return lambda: only
    cumulative: list[int] = []
    total = 0
    for name in names:
        total += weights[name]
        cumulative.append(total)
    draw = rng.random
    find = bisect.bisect_right

    def choose() -> str:
        return names[find(cumulative, draw() * total)]

    return choose
