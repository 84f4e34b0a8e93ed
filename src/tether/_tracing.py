"""The tracing link: OpenTelemetry spans per call, and trace context carried with events.

Uses the OpenTelemetry API; a no-op unless an SDK (a real tracer provider) is installed
globally before the plugins load, in which case every call into a plugin is a span,
child of the caller's, and events carry the publisher's context to the subscriber.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol, cast

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context


class Traced(Protocol):
    """What a span is named and labelled after: a seam entry."""

    @property
    def plugin(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def source(self) -> str: ...


__all__ = ["Traced", "attach_trace", "detach_trace", "trace_context", "trace_enter", "trace_exit",
           "tracing_configured"]  # fmt: skip


def tracing_configured() -> bool:
    """True when an OpenTelemetry SDK (a real tracer provider) is installed globally."""
    try:
        from opentelemetry import trace
    except ImportError:  # pragma: no cover - opentelemetry-api is a dependency
        return False
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


@functools.cache
def _tracer() -> object:
    from opentelemetry import trace

    from tether._version import __version__

    return trace.get_tracer("tether", __version__)


def trace_enter(entry: Traced) -> tuple[object, object]:
    from opentelemetry import context, trace

    tracer = cast("trace.Tracer", _tracer())
    span = tracer.start_span(
        f"{entry.plugin} {entry.source}",
        attributes={
            "tether.plugin": entry.plugin,
            "tether.version": entry.version,
            "tether.source": entry.source,
        },
    )
    token = context.attach(trace.set_span_in_context(span))
    return span, token


def trace_exit(span: object, token: object, error: BaseException | None) -> None:
    from opentelemetry import context, trace

    real = cast("trace.Span", span)
    if error is not None:
        real.record_exception(error)
        real.set_status(trace.Status(trace.StatusCode.ERROR, type(error).__name__))
    real.end()
    context.detach(cast("Token[Context]", token))


def trace_context() -> dict[str, str]:
    """The current trace context as W3C headers (empty when tracing is off).

    Carried with events (and later with messages to worker processes and other
    hosts), so the receiving side continues the same trace.
    """
    if not tracing_configured():
        return {}
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def attach_trace(carrier: Mapping[str, str]) -> object:
    """Make the trace context of ``carrier`` current (a delivered event); returns a token."""
    from opentelemetry import context, propagate

    return context.attach(propagate.extract(carrier))


def detach_trace(token: object) -> None:
    from opentelemetry import context

    context.detach(cast("Token[Context]", token))
