"""Process isolation: plugins in worker processes, with the same API.

A plugin with ``isolation: process`` runs in a worker process of its own. The host
keeps a stand-in for it (the remote plugin) that sits in the plugin's slot like any
in-process plugin: its hooks, event handlers, services, middleware and routes are
registered through a real host-side context, and each call into them becomes a
message to the worker over a Unix socket (docs/reference/protocol.md). The worker
runs the plugin's unchanged code with a context whose calls travel back to the host.
"""
