"""The hosts that put tether to work: ``web`` (``tether serve``), ``workload``
(``tether bench``) and ``events`` (``tether events``).

A host is an edge: it builds a :class:`tether.PluginManager`, hands plugins the
capabilities it serves (the web host's router, for instance) and maps tether's
errors to its own protocol. Hosts import only tether's public API.
"""
