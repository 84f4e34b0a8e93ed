"""A process plugin in its own virtual environment: what it costs to start, against the
same plugin on the host's interpreter.

Two plugins that differ only in ``requirements`` (one needs ``tinyfoo``, a wheel this
script writes, installed offline from a temporary directory): each round loads and
initializes each in a fresh manager (worker start, handshake, import, ``initialize``)
and unloads it, in an order that alternates from round to round. The environment is
built once first (its build time is printed, for scale: it is pip's). Prints medians
(minimum-maximum) and the ``start ratio`` (own environment / host's; goal <= 1.5: the
environment only adds directories to ``sys.path``).

    .venv/bin/python benchmarks/plugin_venv.py [--rounds 9]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import tether
from tether.packaging import plugin_environment

CODE = """
import tether


class Plugin(tether.Plugin):
    def initialize(self, ctx):
        super().initialize(ctx)
        %s
"""


def _wheel(into: Path) -> None:
    info = "tinyfoo-1.0.dist-info"
    with zipfile.ZipFile(into / "tinyfoo-1.0-py3-none-any.whl", "w") as archive:
        archive.writestr("tinyfoo.py", "VERSION = '1.0'\n")
        archive.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: tinyfoo\nVersion: 1.0\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: bench\n"
                         "Root-Is-Purelib: true\nTag: py3-none-any\n")  # fmt: skip
        archive.writestr(f"{info}/RECORD", "")


def _plugin(root: Path, name: str, requirements: list[str], body: str) -> Path:
    directory = root / name
    directory.mkdir(parents=True)
    manifest = {
        "name": name, "version": "1.0.0", "description": "bench", "author": "bench",
        "entry": "plugin:Plugin", "isolation": "process", "requirements": requirements,
    }  # fmt: skip
    (directory / "plugin.json").write_text(json.dumps(manifest))
    (directory / "plugin.py").write_text(CODE % body)
    return directory


async def _start(path: Path, state: Path) -> float:
    manager = tether.PluginManager(state_directory=state, stop_timeout=5.0)
    try:
        started = time.perf_counter()
        await manager.load_plugin(path)
        await manager.initialize_all()
        return time.perf_counter() - started
    finally:
        await manager.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        (root / "wheels").mkdir()
        _wheel(root / "wheels")
        os.environ.update(
            TETHER_HOME=str(root / "home"), PIP_NO_INDEX="1",
            PIP_FIND_LINKS=str(root / "wheels"), PIP_CONFIG_FILE=os.devnull,
        )  # fmt: skip
        host = _plugin(root / "plugins", "onhost", [], "pass")
        own = _plugin(root / "plugins", "ownenv", ["tinyfoo"], "import tinyfoo")
        built = plugin_environment(tether.load_manifest(own))
        if built is None or not built.built:
            raise SystemExit("the environment was not built")
        print(f"python {sys.version.split()[0]}; first build of the environment "
              f"{built.seconds:.2f}s (pip)")  # fmt: skip
        times: dict[str, list[float]] = {"host's interpreter": [], "own environment": []}
        contenders = list(zip(times, (host, own), strict=True))
        for index in range(rounds + 1):
            order = contenders if index % 2 == 0 else contenders[::-1]
            for label, path in order:
                seconds = asyncio.run(_start(path, root / "state"))
                if index:  # the first round warms both up
                    times[label].append(seconds)
        for label, values in times.items():
            print(f"{label:>20}: load + initialize {statistics.median(values) * 1000:7.1f} ms "
                  f"({min(values) * 1000:.1f}-{max(values) * 1000:.1f})")  # fmt: skip
        ratio = statistics.median(times["own environment"]) / statistics.median(
            times["host's interpreter"]
        )
        print(f"start ratio: {ratio:.2f} (goal <= 1.5)")


if __name__ == "__main__":
    main()
