"""Hot reload under load: failed requests and p99 latency while a plugin reloads every second.

`tether serve` runs as a subprocess on loopback with one web plugin, ``bench``, whose
``GET /hello`` answers its version; the config's ``reload.grace_period`` is half the
reload interval, so each new version's grace period ends before the next reload. An
httpx client in this process keeps ``--connections`` keep-alive connections busy on
that route, in two phases of ``--seconds`` each, one after the other:

1. **steady**: the load alone, the baseline;
2. **reloading**: the same load while, every ``--interval`` seconds, the plugin's
   directory is rewritten as a new version and reloaded through the admin API
   (``POST /admin/plugins/bench/reload``). Every other version is broken, in turn by
   a syntax error, an import error, a bad manifest, an ``initialize`` that raises and
   a ``start`` that raises, so half the reloads roll back.

Each phase starts with the server warmed up (one second of load before phase 1). With
``taskset`` and two or more CPUs the server runs on CPU 0 and this process on CPU 1.

It prints the failed requests of each phase (must be 0), each phase's requests per
second and latency percentiles, ``p99 ratio`` (p99 while reloading / p99 steady, same
run; goal <= 2), and the median reload and rollback times the server recorded
(``ReloadResult.duration`` in the state store's reload history: from the reload's start
to the new version started, or the old one back).

    python benchmarks/reload.py [--seconds 30] [--interval 1] [--connections 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

import tether

BIN = Path(sys.executable).parent
TOKEN = "reload-benchmark"
BREAKAGES = ("syntax", "import", "manifest", "initialize", "start")

PLUGIN_CODE = """\
import tether

VERSION = {version!r}
FAIL = {fail!r}


class Plugin(tether.Plugin):
    def initialize(self, ctx):
        super().initialize(ctx)
        ctx.router.get("/hello", self.hello)
        if FAIL == "initialize":
            raise RuntimeError("this version cannot initialize")

    def start(self):
        if FAIL == "start":
            raise RuntimeError("this version cannot start")

    async def hello(self, request):
        return {{"version": VERSION}}
"""


def write_version(directory: Path, number: int, fail: str | None) -> str:
    """Write version 1.0.``number`` of the plugin (broken as ``fail`` says); its version."""
    version = f"1.0.{number}"
    code = PLUGIN_CODE.format(version=version, fail=fail)
    if fail == "syntax":
        code += "\n\ndef broken(:\n    pass\n"
    if fail == "import":
        code = "import tether_benchmark_no_such_module\n" + code
    manifest = (
        f"name: bench\nversion: {version}\ndescription: reload benchmark plugin\n"
        "author: benchmarks\nentry: plugin:Plugin\npermissions:\n  router: true\n"
    )
    if fail == "manifest":
        manifest = manifest.replace("version:", "versoin:")
    for name, text in (("plugin.yaml", manifest), ("plugin.py", code)):
        scratch = directory / f".{name}.new"
        scratch.write_text(text)
        scratch.replace(directory / name)  # as editors save: readers never see half a file
    return version


def write_app(root: Path, grace_period: float) -> Path:
    directory = root / "plugins" / "bench"
    directory.mkdir(parents=True)
    write_version(directory, 0, None)
    config = root / "app.yaml"
    config.write_text(
        "plugins:\n  plugins:\n    - path: ./plugins/bench\n"
        f"reload:\n  grace_period: {grace_period * 1000:.0f}ms\n"
    )
    return config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(root: Path, port: int, cpu: int | None) -> subprocess.Popen[bytes]:
    command = [
        str(BIN / "tether"), "serve", "--config", str(root / "app.yaml"), "--port", str(port),
    ]  # fmt: skip
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    env = {**os.environ, "TETHER_ADMIN_TOKEN": TOKEN}
    process = subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}/hello"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"the server did not start: {' '.join(command)}")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(60)


# --------------------------------------------------------------------------- the load


@dataclass
class Phase:
    """What the clients saw in one phase."""

    name: str
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def percentile(self, p: int) -> float:
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[p - 1]


@dataclass(frozen=True)
class Reload:
    version: str
    broken: str | None
    outcome: str
    duration: float  # seconds, as the server recorded it
    step: str | None


async def load(client: httpx.AsyncClient, phase: Phase, seconds: float, connections: int) -> None:
    async def worker(deadline: float) -> None:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                response = await client.get("/hello")
            except httpx.HTTPError as exc:
                phase.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            if response.status_code == 200:
                phase.latencies.append(time.perf_counter() - started)
            else:
                phase.failures.append(f"{response.status_code}: {response.text[:200]}")

    began = time.monotonic()
    await asyncio.gather(*(worker(began + seconds) for _ in range(connections)))
    phase.seconds = time.monotonic() - began


async def reload_every(
    admin: httpx.AsyncClient, directory: Path, interval: float, seconds: float
) -> list[tuple[str, str | None]]:
    """Rewrite and reload the plugin every ``interval`` seconds for ``seconds``; the
    versions written, and how each was broken."""
    done: list[tuple[str, str | None]] = []
    began = time.monotonic()
    number = 0
    while True:
        tick = began + (number + 1) * interval
        if tick >= began + seconds:
            return done
        await asyncio.sleep(max(0.0, tick - time.monotonic()))
        number += 1
        broken = None if number % 2 else BREAKAGES[(number // 2 - 1) % len(BREAKAGES)]
        version = write_version(directory, number, broken)
        response = await admin.post("/admin/plugins/bench/reload", json={})
        if response.status_code != 200:
            raise RuntimeError(f"reload of {version}: {response.status_code} {response.text}")
        done.append((version, broken))


def recorded(root: Path, written: list[tuple[str, str | None]]) -> list[Reload]:
    """The server's record of each reload (the state store's ``plugin_reloads`` rows, read
    once it has stopped), beside the version written for it."""
    manager = tether.PluginManager(config=tether.load_config(root / "app.yaml"))
    rows = list(reversed(manager.reload_history("bench", limit=len(written) + 10)))
    if len(rows) != len(written):
        raise RuntimeError(f"{len(written)} reloads asked for, {len(rows)} recorded")
    return [
        Reload(version, broken, row.outcome, row.duration, row.step)
        for (version, broken), row in zip(written, rows, strict=True)
    ]


async def run(
    root: Path, url: str, args: argparse.Namespace
) -> tuple[Phase, Phase, list[tuple[str, str | None]]]:
    limits = httpx.Limits(
        max_connections=args.connections, max_keepalive_connections=args.connections
    )
    steady, reloading = Phase("steady"), Phase("reloading")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client,
        httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as admin,
    ):
        await load(client, Phase("warm-up"), 1.0, args.connections)
        await load(client, steady, args.seconds, args.connections)
        written, _ = await asyncio.gather(
            reload_every(admin, root / "plugins" / "bench", args.interval, args.seconds),
            load(client, reloading, args.seconds, args.connections),
        )
    return steady, reloading, written


# --------------------------------------------------------------------------- report


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:7.1f} ms" if values else "      -   "


def report(steady: Phase, reloading: Phase, reloads: list[Reload]) -> None:
    for phase in (steady, reloading):
        rate = len(phase.latencies) / phase.seconds
        print(
            f"{phase.name:<10} {len(phase.latencies):7d} ok  {len(phase.failures):3d} failed  "
            f"{rate:7.0f} req/s  p50 {phase.percentile(50) * 1000:6.2f} ms  "
            f"p99 {phase.percentile(99) * 1000:6.2f} ms  max {max(phase.latencies) * 1000:7.1f} ms"
        )
    for failure in (steady.failures + reloading.failures)[:5]:
        print(f"  failed: {failure}")
    good = [r for r in reloads if r.broken is None]
    bad = [r for r in reloads if r.broken is not None]
    wrong = [r for r in good if r.outcome != "reloaded"] + [
        r for r in bad if r.outcome != "rolled_back"
    ]
    print(
        f"\n{len(reloads)} reloads: {sum(r.outcome == 'reloaded' for r in reloads)} reloaded, "
        f"{sum(r.outcome == 'rolled_back' for r in reloads)} rolled back "
        f"({', '.join(sorted({f'{r.broken} at {r.step}' for r in bad}))})"
    )
    for r in wrong:
        print(f"  unexpected: {r.version} ({r.broken or 'good'}) -> {r.outcome} at {r.step}")
    failed = len(steady.failures) + len(reloading.failures)
    ratio = reloading.percentile(99) / steady.percentile(99)
    print(f"\nfailed requests       {failed}   (must be 0)")
    print(f"p99 ratio             {ratio:.2f}   (p99 while reloading / p99 steady; goal <= 2)")
    print(f"median reload time    {median_ms([r.duration for r in good])}")
    print(f"median rollback time  {median_ms([r.duration for r in bad])}")
    if failed or wrong:
        raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds per phase")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between reloads")
    parser.add_argument("--connections", type=int, default=8, help="concurrent connections")
    args = parser.parse_args()
    pin = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    if pin:
        os.sched_setaffinity(0, {1})
    grace = args.interval / 2
    print(
        f"{args.connections} connections (httpx); {args.seconds:g}s steady, then {args.seconds:g}s "
        f"with a reload every {args.interval:g}s (half broken), reload.grace_period "
        f"{grace * 1000:.0f}ms"
    )
    print(
        f"cpus: {os.cpu_count()}; pinned: {'server cpu 0, client cpu 1' if pin else 'no'}; "
        f"python {sys.version.split()[0]}\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_app(root, grace)
        port = free_port()
        process = start_server(root, port, 0 if pin else None)
        try:
            steady, reloading, written = asyncio.run(run(root, f"http://127.0.0.1:{port}", args))
        finally:
            stop_server(process)
        reloads = recorded(root, written)
    report(steady, reloading, reloads)


if __name__ == "__main__":
    main()
