"""The call chain: the links one plugin's calls pass through, and the host's error policy.

003's "middleware chain" around plugin execution, configured per plugin as
``plugins[].call_chain`` (links outermost first; default ``[tracing, recovery, metrics,
timeout]``). The seam (``tether._seam``) generates each entry's code from the links;
``tether._seam`` says what each link does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from tether._tracing import tracing_configured
from tether.errors import ConfigError

__all__ = ["CALLS", "DEFAULT_CHAIN", "ERRORS", "LINKS", "NANOS", "NO_CHAIN", "TIMED", "CallChain",
           "ErrorPolicy", "check_call_chain", "links_problem"]  # fmt: skip

LINKS = ("tracing", "logging", "recovery", "metrics", "validation", "timeout")
DEFAULT_CHAIN = ("tracing", "recovery", "metrics", "timeout")

# The indices of a ``Door.stats`` list: calls, nanoseconds over the timed calls, errors,
# timed calls (the seam and the hook chains time one call in 16).
CALLS, NANOS, ERRORS, TIMED = 0, 1, 2, 3


_KNOWN = f"{', '.join(LINKS)} (default: {', '.join(DEFAULT_CHAIN)})"


def links_problem(links: Sequence[str]) -> str | None:
    """What is wrong with a ``call_chain`` list (unknown or repeated links), or None."""
    unknown = [link for link in links if link not in LINKS]
    if unknown:
        return f"unknown call_chain link(s): {_some(unknown)}; the links are {_KNOWN}"
    twice = sorted(link for link, n in Counter(links).items() if n > 1)
    if twice:
        return f"call_chain lists {_some(twice)} more than once"
    return None


def check_call_chain(links: Sequence[str], *, where: str, plugin: str | None = None) -> None:
    """Raise a ``ConfigError`` naming ``where`` (the config key) if ``links`` is not a
    valid call chain."""
    problem = links_problem(links)
    if problem is not None:
        who = f"plugin '{plugin}': " if plugin else ""
        raise ConfigError(
            f"{who}{where}: {problem}",
            plugin=plugin,
            hint=f"list each link once, outermost first; the links are {_KNOWN}",
        )


def _some(names: Sequence[str], most: int = 10) -> str:
    shown = ", ".join(repr(name) for name in names[:most])
    return shown if len(names) <= most else f"{shown} and {len(names) - most} more"


# --------------------------------------------------------------------------- the chain


class ErrorPolicy:
    """Which exceptions leaving a plugin are answers rather than failures.

    A host adds predicates (``tether serve``: an ``HTTPException`` below 500 is an
    answer); an exception any predicate accepts is not counted against the plugin.
    One per runtime, shared by the chains of its plugins.
    """

    __slots__ = ("answers",)

    def __init__(self) -> None:
        self.answers: tuple[Callable[[BaseException], bool], ...] = ()

    def add_answer(self, predicate: Callable[[BaseException], bool]) -> None:
        self.answers = (*self.answers, predicate)

    def is_failure(self, error: BaseException) -> bool:
        return not any(answer(error) for answer in self.answers)


@dataclass(frozen=True, slots=True)
class CallChain:
    """The links one plugin's calls pass through, and its call timeout (seconds)."""

    links: tuple[str, ...] = DEFAULT_CHAIN
    timeout: float | None = 30.0
    tracing: bool = False  # an OpenTelemetry SDK was configured when the chain was made
    policy: ErrorPolicy = field(default_factory=ErrorPolicy, compare=False)

    @classmethod
    def parse(
        cls,
        links: Sequence[str] | None,
        *,
        plugin: str,
        timeout: float | None,
        policy: ErrorPolicy | None = None,
        where: str = "call_chain",
    ) -> CallChain:
        """The chain a config lists (``None``: the default), checked; ``where`` names the
        config key it came from, for the error."""
        chosen = DEFAULT_CHAIN if links is None else tuple(links)
        check_call_chain(chosen, where=where, plugin=plugin)
        tracing = "tracing" in chosen and tracing_configured()
        return cls(chosen, timeout or None, tracing, policy or ErrorPolicy())

    @property
    def is_default(self) -> bool:
        return self.links == DEFAULT_CHAIN and not self.tracing

    def has(self, link: str) -> bool:
        if link == "tracing":
            return self.tracing
        if link == "timeout":
            return "timeout" in self.links and self.timeout is not None
        return link in self.links

    def with_timeout(self, timeout: float, *, without: tuple[str, ...] = ()) -> CallChain:
        """This chain with its own time limit (``timeout`` added innermost if the chain
        leaves it out: a limit asked for explicitly is kept), less the links ``without``."""
        links = tuple(link for link in self.links if link not in without)
        if "timeout" not in links:
            links = (*links, "timeout")
        return replace(self, links=links, timeout=timeout)

    def shape(self, *, is_async: bool) -> tuple[str, ...]:
        """The links that generate code for a sync or an async call (the cache key)."""
        live = tuple(link for link in self.links if self.has(link))
        if not is_async:
            live = tuple(link for link in live if link != "timeout")
        return live


NO_CHAIN = CallChain(links=(), timeout=None)
"""No links at all: the door and nothing else (host-side observers, tests of the gate)."""
