"""A Node.js process plugin against a Python one: call round trip, start, idle memory.

Three plugins in one manager, each registering one sync hook that returns its
argument: ``node`` (JavaScript, examples/node-plugin/tether-worker.js, codec json),
``python`` (the Python worker, codec msgpack) and ``inprocess`` (the baseline, no
worker). Measured in the same run:

- a sync hook call (``hooks.call``) with a small payload: the contenders alternate
  within each round (the order rotating), the table shows the median of the rounds'
  per-call means, and the ratio node / python;
- worker start to first answer (load, initialize, start, one call), alternating node
  and python, median of the repeats;
- resident memory of each idle worker.

    .venv/bin/python benchmarks/isolation_node.py [--rounds 15] [--calls 300] [--starts 5]

Needs ``node`` on PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import yaml

import tether

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "node-plugin"
PAYLOAD = {"user": "ada", "items": [1, 2, 3], "ok": True}

NODE_ECHO = """
    const { Plugin, run } = require('./tether-worker');
    class Echo extends Plugin {
      async initialize(ctx) {
        super.initialize(ctx);
        await ctx.registerHook('bench.node', 10, (data) => data);
      }
    }
    run(Echo);
"""

PY_ECHO = """
    import tether


    class Plugin(tether.Plugin):
        def initialize(self, ctx):
            ctx.register_hook("bench.{name}", 10, lambda data: data)
"""


def _manifest(root: Path, name: str, **fields: object) -> None:
    data = {"name": name, "version": "1.0.0", "description": "a benchmark echo",
            "author": "benchmarks", **fields}  # fmt: skip
    (root / "plugin.yaml").write_text(yaml.safe_dump(data))


def _write(root: Path, node: str) -> dict[str, Path]:
    paths: dict[str, Path] = {}
    js = root / "node"
    js.mkdir()
    shutil.copy(EXAMPLE / "tether-worker.js", js / "tether-worker.js")
    (js / "plugin.js").write_text(textwrap.dedent(NODE_ECHO))
    _manifest(js, "node", isolation="process", command=[node, "plugin.js"])
    paths["node"] = js
    for name, isolation in (("python", "process"), ("inprocess", "inprocess")):
        directory = root / name
        directory.mkdir()
        (directory / "plugin.py").write_text(textwrap.dedent(PY_ECHO).replace("{name}", name))
        _manifest(directory, name, entry="plugin:Plugin", isolation=isolation)
        paths[name] = directory
    return paths


def _manager(state: Path) -> tether.PluginManager:
    manager = tether.PluginManager(state_directory=state, stop_timeout=5.0)
    for name in ("node", "python", "inprocess"):
        manager.runtime.hooks.declare(f"bench.{name}")
    return manager


def _per_call(manager: tether.PluginManager, name: str, calls: int) -> float:
    hook = f"bench.{name}"
    call = manager.runtime.hooks.call
    began = time.perf_counter()
    for _ in range(calls):
        outcome = call(hook, PAYLOAD)
    elapsed = time.perf_counter() - began
    if outcome.failures or outcome.results != [PAYLOAD]:
        raise SystemExit(f"{name}: unexpected outcome {outcome!r}")
    return elapsed / calls


async def _round_trips(paths: dict[str, Path], state: Path, rounds: int, calls: int) -> None:
    manager = _manager(state)
    try:
        for path in paths.values():
            await manager.load_plugin(path)
        await manager.initialize_all()
        await manager.start_all()
        names = list(paths)
        samples: dict[str, list[float]] = {n: [] for n in names}
        for name in names:  # warm up
            _per_call(manager, name, calls // 10 or 1)
        for index in range(rounds):
            order = names[index % len(names) :] + names[: index % len(names)]
            for name in order:
                samples[name].append(_per_call(manager, name, calls))
        median = {n: statistics.median(s) for n, s in samples.items()}
        print(f"sync hook call, {rounds} rounds x {calls} calls (median of round means):")
        for name in names:
            print(f"  {name:10} {median[name] * 1e6:9.1f} us")
        print(f"  ratio node / python process: {median['node'] / median['python']:.2f}")
        print(f"  ratio node / in-process:     {median['node'] / median['inprocess']:.1f}")
        print("idle worker RSS:")
        for name in ("node", "python"):
            usage = manager.get_plugin(name).tether_worker.describe()  # type: ignore[attr-defined]
            print(f"  {name:10} {usage.get('rss_bytes', 0) / 2**20:9.1f} MiB")
    finally:
        await manager.aclose()


async def _start_once(path: Path, name: str, state: Path) -> float:
    manager = _manager(state)
    try:
        began = time.perf_counter()
        await manager.load_plugin(path)
        await manager.initialize_all()
        await manager.start_all()
        manager.runtime.hooks.call(f"bench.{name}", PAYLOAD)
        return time.perf_counter() - began
    finally:
        await manager.aclose()


async def _starts(paths: dict[str, Path], root: Path, repeats: int) -> None:
    times: dict[str, list[float]] = {"node": [], "python": []}
    for index in range(repeats):
        order = ["node", "python"] if index % 2 == 0 else ["python", "node"]
        for name in order:
            state = root / f"start-{name}-{index}"
            times[name].append(await _start_once(paths[name], name, state))
    print(f"worker start to first answer, {repeats} each (median):")
    for name, values in times.items():
        print(f"  {name:10} {statistics.median(values) * 1e3:9.1f} ms")
    ratio = statistics.median(times["node"]) / statistics.median(times["python"])
    print(f"  ratio node / python: {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--starts", type=int, default=5)
    options = parser.parse_args()
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        raise SystemExit("node is not on PATH: install Node.js (Debian: apt-get install nodejs)")
    print(f"python {sys.version.split()[0]}, node {node}")
    with tempfile.TemporaryDirectory(prefix="tether-bench-node-") as scratch:
        root = Path(scratch)
        paths = _write(root, node)
        asyncio.run(_round_trips(paths, root / "state", options.rounds, options.calls))
        asyncio.run(_starts(paths, root, options.starts))


if __name__ == "__main__":
    main()
