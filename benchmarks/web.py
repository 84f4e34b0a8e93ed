"""Requests per second of `tether serve` against a bare Starlette app serving the same route.

tether: five plugins, each adding a no-op middleware and a no-op pre_request hook; the
first also serves ``GET /hello`` -> ``{"hello": "world"}``. Bare: a Starlette app with
that one route. Both run as subprocesses under uvicorn with the same settings (asyncio
loop, whichever HTTP implementation uvicorn picks: h11 unless httptools is installed,
no access log, no server header), one process each, on loopback. The load client is
``wrk`` when installed (keep-alive, ``--connections`` connections, one thread), else an
httpx client with the same number of keep-alive connections. Rounds alternate bare and
tether so drift in the machine hits both; the figure is the median round. With
``taskset`` and two or more CPUs, servers run on CPU 0 and the client on CPU 1.

Besides requests per second, it prints the server's CPU time per request (user +
system, from /proc): on a shared machine that figure moves less than throughput.

    python benchmarks/web.py [--duration 5] [--rounds 3] [--connections 50]

Goal: tether >= 0.8x the bare app.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

PLUGINS = 5
BIN = Path(sys.executable).parent

BARE_APP = """\
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def hello(request):
    return JSONResponse({"hello": "world"})


app = Starlette(routes=[Route("/hello", hello)])
"""

PLUGIN_CODE = """\
import tether


class Plugin(tether.Plugin):
    def initialize(self, ctx):
        super().initialize(ctx)
        ctx.register_middleware("noop", self.noop)
        ctx.register_hook("pre_request", 100, self.hook)
        if ctx.has_permission("router"):
            ctx.router.get("/hello", self.hello)

    async def noop(self, request, call_next):
        return await call_next(request)

    def hook(self, ctx):
        return None

    async def hello(self, request):
        return {"hello": "world"}
"""


def write_app(root: Path) -> Path:
    (root / "bare_app.py").write_text(BARE_APP)
    entries = []
    for index in range(PLUGINS):
        name = f"bench-{index}"
        directory = root / "plugins" / name
        directory.mkdir(parents=True)
        permissions = "permissions:\n  router: true\n" if index == 0 else ""
        (directory / "plugin.yaml").write_text(
            f"name: {name}\nversion: 1.0.0\ndescription: benchmark plugin\n"
            f"author: benchmarks\nentry: plugin:Plugin\n{permissions}"
        )
        (directory / "plugin.py").write_text(PLUGIN_CODE)
        entries.append(f"    - name: {name}\n      path: ./plugins/{name}\n")
    config = root / "app.yaml"
    config.write_text("plugins:\n  plugins:\n" + "".join(entries))
    return config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(command: list[str], cpu: int | None) -> list[str]:
    return ["taskset", "-c", str(cpu), *command] if cpu is not None else command


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(kind: str, root: Path, port: int, cpu: int | None) -> subprocess.Popen[bytes]:
    if kind == "bare":
        command = [
            str(BIN / "uvicorn"), "bare_app:app", "--port", str(port), "--no-access-log",
            "--log-level", "warning", "--lifespan", "on", "--no-server-header",
            "--loop", "asyncio",
        ]  # fmt: skip
    else:
        command = [
            str(BIN / "tether"), "serve", "--config", str(root / "app.yaml"),
            "--port", str(port),
        ]  # fmt: skip
    process = subprocess.Popen(
        pinned(command, cpu), cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
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
    raise RuntimeError(f"{kind} server did not start: {' '.join(command)}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(30)


def load_wrk(url: str, duration: float, connections: int, cpu: int | None) -> tuple[float, int]:
    """Requests per second and requests done."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", url]
    output = subprocess.run(pinned(command, cpu), capture_output=True, text=True, check=True).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    done = re.search(r"(\d+) requests in", output)
    if rate is None or done is None or "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"wrk reported problems:\n{output}")
    return float(rate.group(1)), int(done.group(1))


def load_httpx(url: str, duration: float, connections: int, cpu: int | None) -> tuple[float, int]:
    """Requests per second and requests done (``cpu`` is ignored: the client is in-process)."""

    async def worker(client: httpx.AsyncClient, deadline: float) -> int:
        done = 0
        while time.monotonic() < deadline:
            response = await client.get(url)
            if response.status_code != 200:
                raise RuntimeError(f"{url}: {response.status_code}")
            done += 1
        return done

    async def run() -> tuple[float, int]:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(limits=limits) as client:
            started = time.monotonic()
            deadline = started + duration
            counts = await asyncio.gather(*(worker(client, deadline) for _ in range(connections)))
            return sum(counts) / (time.monotonic() - started), sum(counts)

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server")
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()

    wrk = shutil.which("wrk")
    load = load_wrk if wrk else load_httpx
    pin = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    server_cpu, client_cpu = (0, 1) if pin else (None, None)
    client = f"wrk -t1 -c{args.connections}" if wrk else f"httpx, {args.connections} connections"
    print(f"load client: {client}; {args.duration:g}s per round, {args.rounds} rounds each")
    print(f"cpus: {os.cpu_count()}; pinned: {'server cpu 0, client cpu 1' if pin else 'no'}; "
          f"python {sys.version.split()[0]}; uvicorn h11, asyncio loop, no access log")  # fmt: skip
    rates: dict[str, list[float]] = {"bare": [], "tether": []}
    costs: dict[str, list[float]] = {"bare": [], "tether": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_app(root)
        for round_number in range(1, args.rounds + 1):
            for kind in ("bare", "tether"):
                port = free_port()
                process = start(kind, root, port, server_cpu)
                try:
                    url = f"http://127.0.0.1:{port}/hello"
                    load(url, 1.0, args.connections, client_cpu)  # warm up
                    before = cpu_seconds(process.pid)
                    rate, done = load(url, args.duration, args.connections, client_cpu)
                    cost = (cpu_seconds(process.pid) - before) / done * 1e6
                finally:
                    stop(process)
                rates[kind].append(rate)
                costs[kind].append(cost)
                print(f"round {round_number} {kind:<6} {rate:8.0f} req/s  {cost:6.1f} us CPU/req")
    bare, tether = statistics.median(rates["bare"]), statistics.median(rates["tether"])
    bare_cost = statistics.median(costs["bare"])
    tether_cost = statistics.median(costs["tether"])
    print(
        textwrap.dedent(f"""
        bare starlette      {bare:8.0f} req/s  {bare_cost:6.1f} us CPU/req   (medians)
        tether, {PLUGINS} plugins  {tether:8.0f} req/s  {tether_cost:6.1f} us CPU/req   \
({PLUGINS} middleware + {PLUGINS} pre_request hooks)
        ratio tether/bare   {tether / bare:8.2f} req/s  {bare_cost / tether_cost:6.2f} by CPU \
cost   (goal >= 0.80)""")
    )


if __name__ == "__main__":
    main()
