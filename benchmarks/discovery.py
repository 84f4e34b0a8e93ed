"""Discovery of 1,000 plugin directories: a cold scan (no index cache) against a warm one.

Each plugin has a YAML manifest with a realistic set of fields (dependencies,
permissions, config schema, hooks, events, exports) and a module that records its own
import in a marker directory, so the run also shows that discovery imported nothing.

    .venv/bin/python benchmarks/discovery.py [--plugins 1000] [--runs 7]

Every scan starts from a fresh ``IndexCache`` object, as a new process would: a cold
scan has no cache file (it parses every manifest and writes the file), a warm scan
reads the file and stats each plugin directory and manifest. A warm scan rebuilds a
manifest only when it is used (``plugin.manifest``); the third figure, "warm + every
manifest", is a warm scan followed by using all thousand (what ``tether plugins list``
does), so the deferral is not mistaken for free work.

The three alternate within each round, so that machine noise hits them alike; the
plugins' files are dated an hour back, as plugins installed a while ago are (younger
files are checked by content, see ``tether._index_cache``).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tether._discovery import DiscoveryResult, IndexCache, SearchPath, discover

MANIFEST = """\
name: plugin-{n:04d}
version: 1.{minor}.{patch}
description: Plugin number {n} of the discovery benchmark, with a realistic manifest.
author: Benchmark Author <bench@example.com>
entry: plugin_{n:04d}:Plugin
framework:
  version: ">=0.1.0,<2.0.0"
dependencies:
{dependencies}
permissions:
  database: true
  cache: {cache}
  network: false
config:
  timeout:
    type: duration
    default: 30s
    description: how long one request may take
  retries:
    type: integer
    default: 3
  endpoint:
    type: string
    required: true
    description: where results are sent
  tags:
    type: array
    default: [fast, "n{n}"]
hooks:
  - type: pre_request
    priority: {priority}
  - type: post_response
events:
  publishes: [plugin{n}.created, plugin{n}.deleted]
  subscribes: ["user.*", order.placed]
exports:
  - name: service_{n}
    description: what this plugin offers others
"""

MODULE = """\
from pathlib import Path
Path({marker!r}).joinpath("plugin_{n:04d}").touch()
raise RuntimeError("discovery must not import plugin code")
"""


def _dependencies(n: int) -> str:
    lines = []
    for d in (n - 1, n - 7):
        if d >= 0:
            lines += [f"  - name: plugin-{d:04d}", '    version: "^1.0.0"']
    lines += ["  - name: optional-extra", '    version: ">=0.2.0"', "    optional: true"]
    return "\n".join(lines)


def write_plugins(root: Path, count: int, markers: Path) -> None:
    for n in range(count):
        directory = root / f"plugin-{n:04d}"
        directory.mkdir(parents=True)
        text = MANIFEST.format(
            n=n,
            minor=n % 10,
            patch=n % 7,
            dependencies=_dependencies(n),
            cache="true" if n % 2 else "false",
            priority=n % 100,
        )
        (directory / "plugin.yaml").write_text(text, encoding="utf-8")
        (directory / f"plugin_{n:04d}.py").write_text(
            MODULE.format(marker=str(markers), n=n), encoding="utf-8"
        )


def backdate(root: Path) -> None:
    """Every file and directory under ``root`` (and itself) an hour older."""
    hour_ns = 3600 * 10**9
    for path in [root, *root.rglob("*")]:
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns - hour_ns, st.st_mtime_ns - hour_ns))


def timed_scan(
    search: list[SearchPath], cache_file: Path, *, use: bool = False
) -> tuple[float, DiscoveryResult]:
    gc.collect()  # start each run with the same heap; collection during the run still counts
    started = time.perf_counter()
    result = discover(search, cache=IndexCache(cache_file))
    if use:
        for plugin in result.plugins:
            _ = plugin.manifest
    return time.perf_counter() - started, result


def check(result: DiscoveryResult, count: int, *, warm: bool) -> None:
    found = sum(1 for p in result.plugins if p.name.startswith("plugin-"))
    if found != count or result.invalid or result.conflicts:
        sys.exit(f"expected {count} valid plugins, found {found}; invalid: {result.invalid}")
    expected_hits = count if warm else 0
    if result.cache_hits < expected_hits:
        sys.exit(f"expected {expected_hits} cache hits, got {result.cache_hits}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plugins", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    count = args.plugins
    print(f"python {platform.python_version()} on {platform.platform()}")
    with tempfile.TemporaryDirectory(prefix="tether-bench-") as tmp:
        root, markers, cache_file = Path(tmp, "plugins"), Path(tmp, "markers"), Path(tmp, "c.json")
        markers.mkdir()
        write_plugins(root, count, markers)
        backdate(root)
        search = [SearchPath(root, "cli")]

        times: dict[str, list[float]] = {"cold": [], "warm": [], "warm + every manifest": []}
        for _ in range(args.runs):
            cache_file.unlink(missing_ok=True)
            seconds, result = timed_scan(search, cache_file)
            check(result, count, warm=False)
            times["cold"].append(seconds)
            seconds, result = timed_scan(search, cache_file)
            check(result, count, warm=True)
            times["warm"].append(seconds)
            seconds, result = timed_scan(search, cache_file, use=True)
            check(result, count, warm=True)
            times["warm + every manifest"].append(seconds)

        imported = len(list(markers.iterdir()))
        in_modules = sum(1 for name in sys.modules if name.startswith("plugin_"))
        cache_kib = cache_file.stat().st_size / 1024

    median = {name: statistics.median(values) * 1000 for name, values in times.items()}
    print(f"{args.runs} alternating rounds of a cold, a warm and a warm + every manifest scan")
    for name, values in times.items():
        print(
            f"{name} scan ({count} plugins): median {median[name]:.1f} ms "
            f"({min(values) * 1000:.1f}-{max(values) * 1000:.1f}), "
            f"{median[name] * 1000 / count:.1f} us a plugin"
        )
    ratio = median["warm"] / median["cold"]
    print(f"warm/cold ratio: {ratio:.3f} (goal <= 0.05: {'met' if ratio <= 0.05 else 'NOT met'})")
    used = median["warm + every manifest"] / median["cold"]
    print(f"warm + every manifest/cold ratio: {used:.3f}")
    print(f"index cache file: {cache_kib:.0f} KiB")
    print(f"plugin modules imported: {imported} (in sys.modules: {in_modules})")
    if imported or in_modules:
        sys.exit("discovery imported plugin code")


if __name__ == "__main__":
    main()
