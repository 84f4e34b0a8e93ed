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
system, from /proc): on a shared machine that figure moves less than throughput. And
it drives both ASGI apps in this process, without a server (a GET /hello scope, a
no-op send): the CPU time of the application alone, best of several runs, which is
what the plugin pipeline adds and the least noisy figure of the three.

    python benchmarks/web.py [--duration 5] [--rounds 3] [--connections 50] [--app-only]

The last line, ``app ratio``, is bare/tether for the application alone (CPU per
request in-process). Goal: >= 0.8, for that figure and for the servers'.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
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


def load_httpx(url: str, duration: float, connections: int, _cpu: int | None) -> tuple[float, int]:
    """Requests per second and requests done (the client runs in this process, unpinned)."""

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


async def pipeline_costs(root: Path, requests: int = 20000, runs: int = 7) -> dict[str, float]:
    """CPU microseconds per request of each ASGI app alone (best of ``runs``)."""
    sys.path.insert(0, str(root))
    import tether
    from tether.hosts.web import WebApp

    bare_app = __import__("bare_app").app
    logging.getLogger("tether.admin").setLevel(logging.ERROR)  # "the admin API is locked"
    manager = tether.PluginManager(
        config=tether.load_config(root / "app.yaml"), state_directory=root / "state"
    )
    tether_app = WebApp(manager)
    await manager.load_plugins_from_config()
    await manager.initialize_all()
    await manager.start_all()
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/hello", "raw_path": b"/hello", "query_string": b"",
        "root_path": "", "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }  # fmt: skip

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_message: dict[str, object]) -> None:
        return None

    best: dict[str, float] = {}
    try:
        for _ in range(runs):
            for kind, app in (("bare", bare_app), ("tether", tether_app)):
                started = time.process_time()
                for _ in range(requests):
                    await app(dict(scope), receive, send)
                cost = (time.process_time() - started) / requests * 1e6
                best[kind] = min(best.get(kind, cost), cost)
    finally:
        await manager.aclose()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument(
        "--app-only", action="store_true", help="only the application-alone figure (no servers)"
    )
    args = parser.parse_args()
    if args.app_only:
        with tempfile.TemporaryDirectory() as tmp:
            write_app(Path(tmp))
            print_app(asyncio.run(pipeline_costs(Path(tmp))))
        return

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
        pipeline = asyncio.run(pipeline_costs(root))
    bare, tether = statistics.median(rates["bare"]), statistics.median(rates["tether"])
    bare_cost = statistics.median(costs["bare"])
    tether_cost = statistics.median(costs["tether"])
    print(
        textwrap.dedent(f"""
        bare starlette      {bare:8.0f} req/s  {bare_cost:6.1f} us CPU/req   (medians)
        tether, {PLUGINS} plugins  {tether:8.0f} req/s  {tether_cost:6.1f} us CPU/req   \
({PLUGINS} middleware + {PLUGINS} pre_request hooks)
        ratio tether/bare   {tether / bare:8.2f} req/s  {bare_cost / tether_cost:6.2f} by CPU \
cost   (goal >= 0.80)
""")
    )
    print_app(pipeline)


def print_app(pipeline: dict[str, float]) -> None:
    print(
        textwrap.dedent(f"""\
        the application alone, in this process (best of 7 x 20000 requests):
        bare starlette      {pipeline["bare"]:6.1f} us CPU/req
        tether, {PLUGINS} plugins  {pipeline["tether"]:6.1f} us CPU/req   \
(+{pipeline["tether"] - pipeline["bare"]:.1f} us)
        app ratio (bare/tether) {pipeline["bare"] / pipeline["tether"]:.2f}   (goal >= 0.80)""")
    )


if __name__ == "__main__":
    main()
