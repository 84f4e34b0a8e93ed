"""The call chain: the links one plugin's calls pass through, and the host's error policy.

003's "middleware chain" around plugin execution, configured per plugin as
``plugins[].call_chain`` (links outermost first; default ``[tracing, recovery, metrics,
timeout]``). The seam (``tether._seam``) generates each entry's code from the links;
``tether._seam`` says what each link does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tether._tracing import tracing_configured
from tether.errors import ConfigError

__all__ = ["CALLS", "DEFAULT_CHAIN", "ERRORS", "LINKS", "NANOS", "NO_CHAIN", "CallChain",
           "ErrorPolicy"]  # fmt: skip

LINKS = ("tracing", "logging", "recovery", "metrics", "validation", "timeout")
DEFAULT_CHAIN = ("tracing", "recovery", "metrics", "timeout")

# The indices of a ``Door.stats`` list.
CALLS, NANOS, ERRORS = 0, 1, 2


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
    ) -> CallChain:
        """The chain a config lists (``None``: the default), checked."""
        chosen: tuple[str, ...]
        if links is None:
            chosen = DEFAULT_CHAIN
        else:
            chosen = tuple(links)
            unknown = [link for link in chosen if link not in LINKS]
            if unknown:
                raise ConfigError(
                    f"plugin '{plugin}': unknown call_chain link(s): {', '.join(unknown)}",
                    plugin=plugin,
                    hint=f"the links are {', '.join(LINKS)} (default: {', '.join(DEFAULT_CHAIN)})",
                )
            twice = sorted({link for link in chosen if chosen.count(link) > 1})
            if twice:
                raise ConfigError(
                    f"plugin '{plugin}': call_chain lists {', '.join(twice)} more than once",
                    plugin=plugin,
                    hint="list each link once, outermost first",
                )
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

    def shape(self, *, is_async: bool) -> tuple[str, ...]:
        """The links that generate code for a sync or an async call (the cache key)."""
        live = tuple(link for link in self.links if self.has(link))
        if not is_async:
            live = tuple(link for link in live if link != "timeout")
        return live


NO_CHAIN = CallChain(links=(), timeout=None)
"""No links at all: the door and nothing else (host-side observers, tests of the gate)."""
