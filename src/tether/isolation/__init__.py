"""Process isolation: plugins in worker processes, with the same API.

A plugin with ``isolation: process`` runs in a worker process of its own. The host
keeps a stand-in for it (the remote plugin) that sits in the plugin's slot like any
in-process plugin: its hooks, event handlers, services, middleware and routes are
registered through a real host-side context, and each call into them becomes a
message to the worker over a Unix socket (docs/reference/protocol.md). The worker
runs the plugin's unchanged code with a context whose calls travel back to the host.

``manager.get_plugin(name)`` of a process plugin is its :class:`RemotePlugin`, whose
``tether_worker`` (:class:`RemoteState`) holds its worker process (``.worker``, with
``.pid``), its restarts and crashes, and ``describe()``: state, pid, memory and CPU.
Hosts use :func:`is_remote` to tell a handler that forwards to a worker (it takes and
returns only what the protocol carries) and the HTTP maps of ``body_fields``,
``body_of`` and :func:`is_response_map`.

What the kernel can enforce around a worker: :func:`probe` (what this host offers),
:func:`assess` (enforced, best-effort or refused), and the sandbox's :class:`Policy`,
:func:`prepare` (host side) and :func:`apply` (in the worker).

Names are imported on first use (this package is imported by workers and by the
launcher of workers in other languages, which must start fast).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tether.isolation._cgroups import Confinement, Usage
    from tether.isolation._http import body_fields, body_of, is_response_map
    from tether.isolation._probe import KernelFeatures
    from tether.isolation._remote import WORKER_EVENT, RemotePlugin, RemoteState, is_remote
    from tether.isolation._sandbox import (
        Applied,
        Limits,
        Policy,
        SandboxError,
        apply,
        assess,
        pick_uid,
        prepare,
        probe,
    )

__all__ = [
    "WORKER_EVENT",
    "Applied",
    "Confinement",
    "KernelFeatures",
    "Limits",
    "Policy",
    "RemotePlugin",
    "RemoteState",
    "SandboxError",
    "Usage",
    "apply",
    "assess",
    "body_fields",
    "body_of",
    "is_remote",
    "is_response_map",
    "pick_uid",
    "prepare",
    "probe",
]

_HOMES = {
    "Confinement": "_cgroups",
    "Usage": "_cgroups",
    "body_fields": "_http",
    "body_of": "_http",
    "is_response_map": "_http",
    "KernelFeatures": "_probe",
    "WORKER_EVENT": "_remote",
    "RemotePlugin": "_remote",
    "RemoteState": "_remote",
    "is_remote": "_remote",
    "Applied": "_sandbox",
    "Limits": "_sandbox",
    "Policy": "_sandbox",
    "SandboxError": "_sandbox",
    "apply": "_sandbox",
    "assess": "_sandbox",
    "pick_uid": "_sandbox",
    "prepare": "_sandbox",
    "probe": "_sandbox",
}


def __getattr__(name: str) -> object:
    """Import a public name from its module on first use, then keep it here."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'tether.isolation' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"tether.isolation.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
