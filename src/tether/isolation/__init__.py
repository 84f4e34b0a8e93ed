"""Process isolation: plugins in worker processes, with the same API.

A plugin with ``isolation: process`` runs in a worker process of its own. The host
keeps a stand-in for it (the remote plugin) that sits in the plugin's slot like any
in-process plugin: its hooks, event handlers, services, middleware and routes are
registered through a real host-side context, and each call into them becomes a
message to the worker over a Unix socket (docs/reference/protocol.md). The worker
runs the plugin's unchanged code with a context whose calls travel back to the host.

``manager.get_plugin(name)`` of a process plugin is its :class:`RemotePlugin`, whose
``tether_worker`` (:class:`RemoteState`) holds its worker process (``.worker``, with
``.pid``), its restarts and crashes, and ``describe()``: state, pid, memory and CPU. Hosts
use :func:`is_remote` to tell a handler that forwards to a worker (it takes and
returns only what the protocol carries) and the HTTP maps of :mod:`._http`.
"""

from tether.isolation._http import body_fields, body_of, is_response_map
from tether.isolation._remote import WORKER_EVENT, RemotePlugin, RemoteState, is_remote

__all__ = [
    "WORKER_EVENT",
    "RemotePlugin",
    "RemoteState",
    "body_fields",
    "body_of",
    "is_remote",
    "is_response_map",
]
