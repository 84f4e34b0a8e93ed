"""The executor host: Execute-style plugins (003's ``Execute(ctx, input)``), in Python.

A plugin whose manifest says ``provides: [executor]`` has ``execute(input) -> output``
(plain or ``async def``); it already holds its context from ``initialize(ctx)``, so the
method takes the input alone. Calls go through the plugin's handle: its gate, its call
chain (``timeouts.call`` bounds an async ``execute``) and its live version::

    executor = Executor(manager)         # registers the executor contract
    await manager.load_plugin("plugins/upper")
    await manager.initialize_all()
    await manager.start_all()
    print(await executor.execute("upper", "hello"))   # HELLO

``tether plugins exec NAME --input JSON`` runs one execution from the command line.
"""

from tether.hosts.executor._executor import (
    EXECUTOR_CONTRACT,
    Execution,
    Executor,
    ExecutorProtocol,
    execute_once,
)

__all__ = ["EXECUTOR_CONTRACT", "Execution", "Executor", "ExecutorProtocol", "execute_once"]
