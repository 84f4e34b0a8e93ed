"""Process isolation: what a call into a worker process costs, against bare baselines.

One run, one machine, the contenders alternating within each round (the order rotates
from round to round) so that noise hits them alike; figures are medians over rounds:

- ``process hook``: ``manager.runtime.hooks.call("app.ping", payload)`` on a sync
  handler of a plugin with ``isolation: process`` (its real worker process, the
  default call chain);
- ``bare socket``: the same payload, encoded once with msgpack and framed like a
  protocol message (4-byte length, body), written by this process to a second Python
  process over a Unix socket pair and echoed back: the floor a process plugin stands on.
  ``rtt ratio`` = process hook / bare socket (goal <= 2);
- ``in-process hook``: the same plugin code with ``isolation: inprocess`` (for scale);
- ``grpc unary``: a unary call carrying the same bytes to a grpcio server in a second
  Python process over a Unix socket (grpcio's generic handler, no protobuf code).

Each with a small dict and a ~4 KiB one. Then:

- ``pipelined``: batches of concurrent ``await hooks.run("app.aping", payload)`` on an
  ``async def`` handler in the worker: calls per second, against the sequential sync
  hook calls per second of the same round;
- ``worker start to first call``: from ``await manager.load_plugin(dir)`` (a new
  worker) through ``initialize_all``/``start_all`` to the first answered hook call, ms
  (goal <= 50), against a bare ``python -I -c pass`` spawned to exit in the same round.
  The host's first worker starts directly (an interpreter of its own) while the zygote
  boots; later ones are forked by the zygote: both are printed;
- ``CPU per call``: user + system CPU of this process and of the worker (``/proc``)
  over the small-payload rounds, against the bare socket's two processes;
- ``idle memory``: ``VmRSS`` (``/proc/<pid>/status``) and ``Pss`` (``smaps_rollup``:
  pages shared with the zygote counted in part) of an idle worker started directly, of
  one forked by the zygote, of the zygote, against the bare echo process (an idle
  interpreter that imported ``socket`` and ``msgspec``);
- the codec: encode + decode of representative protocol messages (a request and its
  result) with msgspec msgpack (the protocol's default), msgspec json, stdlib json and
  pickle; ns per message, ratio against msgspec msgpack.

    PYTHONPATH=src .venv/bin/python benchmarks/isolation.py [--rounds 15] [--calls 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

import tether
from tether.isolation import _zygote

SMALL: dict[str, object] = {"id": 7, "user": "ada", "path": "/orders/42", "ok": True}
LARGE: dict[str, object] = {
    "id": 7,
    "items": [{"sku": f"item-{n:04d}", "qty": n % 5, "note": "x" * 40} for n in range(64)],
}
PAYLOADS = {"small": SMALL, "4 KiB": LARGE}
GOAL_RTT, GOAL_START_MS = 2.0, 50.0

PLUGIN = """
class Plugin:
    def initialize(self, ctx):
        ctx.register_hook("HOOK", 100, self.ping)
        ctx.register_hook("app.aping", 100, self.aping)

    def start(self):
        pass

    def stop(self):
        pass

    def cleanup(self):
        pass

    def ping(self, payload):
        return payload

    async def aping(self, payload):
        return payload
"""

ECHO = """
import os, socket, sys
import msgspec
sock = socket.socket(fileno=int(sys.argv[1]))
fd = sock.fileno()
while True:
    head = os.read(fd, 65536)
    if not head:
        break
    size = int.from_bytes(head[:4], "big") + 4
    while len(head) < size:
        head += os.read(fd, 65536)
    os.write(fd, head)
"""

GRPC_SERVER = """
import sys
from concurrent import futures
import grpc
def echo(request, context):
    return request
handler = grpc.method_handlers_generic_handler(
    "bench.Echo", {"Ping": grpc.unary_unary_rpc_method_handler(echo)}
)
server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
server.add_generic_rpc_handlers((handler,))
server.add_insecure_port("unix:" + sys.argv[1])
server.start()
print("ready", flush=True)
sys.stdin.read()
server.stop(0)
"""


def write_plugin(root: Path, name: str, isolation: str, hook: str = "app.ping") -> Path:
    directory = root / name
    directory.mkdir(parents=True)
    manifest = {
        "name": name,
        "version": "1.0.0",
        "description": f"the {name} benchmark plugin",
        "author": "benchmarks",
        "entry": "plugin:Plugin",
        "isolation": isolation,
    }
    (directory / "plugin.json").write_text(json.dumps(manifest), encoding="utf-8")
    (directory / "plugin.py").write_text(
        textwrap.dedent(PLUGIN).replace("HOOK", hook), encoding="utf-8"
    )
    return directory


def memory_kib(pid: int) -> tuple[int, int]:
    """``VmRSS`` (``/proc/<pid>/status``) and ``Pss`` (``smaps_rollup``) of ``pid``."""
    found: dict[str, int] = {}
    for path, key in ((f"/proc/{pid}/status", "VmRSS:"), (f"/proc/{pid}/smaps_rollup", "Pss:")):
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                found[key] = int(line.split()[1])
                break
    if len(found) != 2:
        raise SystemExit(f"no memory figures for pid {pid}")
    return found["VmRSS:"], found["Pss:"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- baselines


class Echo:
    """A second Python process echoing framed bytes over a Unix socket pair."""

    def __init__(self) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.process = subprocess.Popen(
            [sys.executable, "-c", ECHO, str(theirs.fileno())], pass_fds=(theirs.fileno(),)
        )
        theirs.close()
        self.sock = mine
        self.fd = mine.fileno()

    def roundtrip(self, frame: bytes) -> bytes:
        os.write(self.fd, frame)
        back = os.read(self.fd, 65536)
        while len(back) < len(frame):
            back += os.read(self.fd, 65536)
        return back

    def close(self) -> None:
        self.sock.close()
        self.process.wait(5)


class Grpc:
    """A grpcio server in a second Python process, on a Unix socket."""

    def __init__(self, path: str) -> None:
        import grpc

        self.process = subprocess.Popen(
            [sys.executable, "-c", GRPC_SERVER, path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != b"ready":
            raise SystemExit("the grpc server did not start")
        self.channel = grpc.insecure_channel("unix:" + path)
        self.ping = self.channel.unary_unary("/bench.Echo/Ping")

    def close(self) -> None:
        self.channel.close()
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(5)


# --------------------------------------------------------------------------- measuring


def per_call_us(fn: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - started) / calls * 1e6


async def pipelined(hooks: Any, payload: object, calls: int, batch: int) -> float:
    """Calls per second of batches of ``batch`` concurrent awaited hook calls."""
    run = hooks.run
    started = time.perf_counter()
    done = 0
    while done < calls:
        await asyncio.gather(*(run("app.aping", payload) for _ in range(batch)))
        done += batch
    return done / (time.perf_counter() - started)


async def start_to_first_call(manager: Any, directory: Path, name: str) -> tuple[float, int]:
    """Seconds from load_plugin to the first answered call, and the worker's pid."""
    started = time.perf_counter()
    await manager.load_plugin(directory)
    await manager.initialize_all()
    await manager.start_all()
    outcome = manager.runtime.hooks.call("app.first", SMALL)
    seconds = time.perf_counter() - started
    if outcome.results != [SMALL]:
        raise SystemExit(f"the first call answered {outcome.results!r}")
    pid = manager.get_plugin(name).tether_worker.worker.pid
    await manager.unload_plugin(name)
    return seconds, pid


def bare_spawn() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-I", "-c", "pass"], check=True)
    return time.perf_counter() - started


def codec_table(rounds: int) -> dict[str, dict[str, float]]:
    """ns per encode + decode of a request and its result, per codec and payload."""
    mp_enc, mp_dec = msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder()
    js_enc, js_dec = msgspec.json.Encoder(), msgspec.json.Decoder()
    codecs: dict[str, tuple[Callable[[object], bytes], Callable[[bytes], object]]] = {
        "msgspec msgpack": (mp_enc.encode, mp_dec.decode),
        "msgspec json": (js_enc.encode, js_dec.decode),
        "json (stdlib)": (
            lambda m: json.dumps(m, separators=(",", ":")).encode(),
            json.loads,
        ),
        "pickle": (lambda m: pickle.dumps(m, protocol=pickle.HIGHEST_PROTOCOL), pickle.loads),
    }
    table: dict[str, dict[str, float]] = {name: {} for name in codecs}
    for label, payload in PAYLOADS.items():
        messages = ([0, 41, "h.1", [payload], {}], [1, 41, payload])
        samples: dict[str, list[float]] = {name: [] for name in codecs}
        names = list(codecs)
        for round_ in range(rounds):
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                encode, decode = codecs[name]

                def both(
                    encode: Any = encode,
                    decode: Any = decode,
                    messages: tuple[object, ...] = messages,
                ) -> None:
                    for message in messages:
                        decode(encode(message))

                number = 2000
                samples[name].append(timeit.timeit(both, number=number) / number / 2 * 1e9)
        for name, (encode, decode) in codecs.items():
            if decode(encode(messages[1])) != messages[1]:
                raise SystemExit(f"{name} did not round-trip the message")
            table[name][label] = statistics.median(samples[name])
    return table


# --------------------------------------------------------------------------- the run


async def run(args: argparse.Namespace) -> None:  # noqa: C901, PLR0912, PLR0915 - one script, one story
    root = Path(tempfile.mkdtemp(prefix="tether-bench-isolation-"))
    process_dir = write_plugin(root / "plugins", "pinger", "process")
    local_dir = write_plugin(root / "plugins", "local", "inprocess")
    manager = tether.PluginManager(state_directory=root / "state")
    hooks = manager.runtime.hooks
    hooks.declare("app.ping")
    hooks.declare("app.aping")
    hooks.declare("app.first")
    started = time.perf_counter()
    await manager.load_plugin(process_dir)
    await manager.initialize_all()
    await manager.start_all()
    hooks.call("app.ping", SMALL)
    cold_ms = (time.perf_counter() - started) * 1000
    worker_pid = manager.get_plugin("pinger").tether_worker.worker.pid

    # the in-process copy answers a hook of its own: a second manager
    local = tether.PluginManager(state_directory=root / "state-local")
    local.runtime.hooks.declare("app.ping")
    local.runtime.hooks.declare("app.aping")
    await local.load_plugin(local_dir)
    await local.initialize_all()
    await local.start_all()

    echo = Echo()
    grpc = Grpc(str(root / "grpc.sock"))
    encoder = msgspec.msgpack.Encoder()
    contenders: dict[str, dict[str, Callable[[], object]]] = {}
    for label, payload in PAYLOADS.items():
        body = encoder.encode([1, 41, payload])
        frame = len(body).to_bytes(4, "big") + body
        if echo.roundtrip(frame) != frame or grpc.ping(body) != body:
            raise SystemExit("a baseline did not echo its bytes")
        if hooks.call("app.ping", payload).results != [payload]:
            raise SystemExit("the process hook answered something else")
        if local.runtime.hooks.call("app.ping", payload).results != [payload]:
            raise SystemExit("the in-process hook answered something else")

        def hook(payload: object = payload) -> object:
            return hooks.call("app.ping", payload)

        def inproc(payload: object = payload) -> object:
            return local.runtime.hooks.call("app.ping", payload)

        contenders[label] = {
            "process hook": hook,
            "bare socket": lambda frame=frame: echo.roundtrip(frame),
            "in-process hook": inproc,
            "grpc unary": lambda body=body: grpc.ping(body),
        }
        print(f"payload {label}: {len(body)} bytes of msgpack")

    rtt: dict[str, dict[str, list[float]]] = {
        label: {name: [] for name in group} for label, group in contenders.items()
    }
    peers = {"process hook": worker_pid, "bare socket": echo.process.pid}
    cpu = {name: [0.0, 0.0] for name in peers}  # seconds: this process, the other one
    piped: list[float] = []
    sequential: list[float] = []
    starts: list[float] = []
    spawns: list[float] = []
    calls = args.calls
    for round_ in range(args.rounds):
        for label, group in contenders.items():
            names = list(group)
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                peer = peers.get(name) if label == "small" else None
                host_cpu, peer_cpu = time.process_time(), cpu_seconds(peer) if peer else 0.0
                rtt[label][name].append(per_call_us(group[name], calls))
                if peer:
                    cpu[name][0] += time.process_time() - host_cpu
                    cpu[name][1] += cpu_seconds(peer) - peer_cpu
        piped.append(await pipelined(hooks, SMALL, calls, args.batch))
        sequential.append(1e6 / rtt["small"]["process hook"][-1])
    for round_ in range(args.start_rounds):
        name = f"fresh{round_}"
        fresh = write_plugin(root / "fresh", name, "process", hook="app.first")
        order = [0, 1] if round_ % 2 else [1, 0]
        for which in order:
            if which:
                seconds, _pid = await start_to_first_call(manager, fresh, name)
                starts.append(seconds * 1000)
            else:
                spawns.append(bare_spawn() * 1000)

    idle_dir = write_plugin(root / "fresh", "idle", "process", hook="app.first")
    await manager.load_plugin(idle_dir)
    await manager.initialize_all()
    await manager.start_all()
    forked_pid = manager.get_plugin("idle").tether_worker.worker.pid
    await asyncio.sleep(0.5)  # idle: the workers' heartbeat threads only
    memory = {
        "a worker started directly": memory_kib(worker_pid),
        "a worker forked by the zygote": memory_kib(forked_pid),
        "the bare echo process": memory_kib(echo.process.pid),
    }
    warm = _zygote._current  # noqa: SLF001 - the benchmark looks at the host's zygote
    if warm is not None and warm.dead is None:
        memory["the zygote (once per host)"] = memory_kib(warm.process.pid)
    await manager.stop_all()
    await local.stop_all()
    echo.close()
    grpc.close()
    codecs = codec_table(args.rounds)

    # ----------------------------------------------------------------- the report
    print(f"\npython {platform.python_version()} on {platform.platform()}, {os.cpu_count()} CPUs")
    print(f"{args.rounds} alternating rounds of {calls} calls; medians (min-max)\n")
    print(f"{'us per call':>16}  " + "  ".join(f"{label:>22}" for label in PAYLOADS))
    for name in next(iter(contenders.values())):
        cells = []
        for label in PAYLOADS:
            values = rtt[label][name]
            cells.append(
                f"{statistics.median(values):7.1f} ({min(values):5.1f}-{max(values):6.1f})"
            )
        print(f"{name:>16}  " + "  ".join(f"{cell:>22}" for cell in cells))
    print()
    ratios: dict[str, float] = {}
    for label in PAYLOADS:
        med = {name: statistics.median(values) for name, values in rtt[label].items()}
        ratios[label] = med["process hook"] / med["bare socket"]
        print(
            f"{label:>6}: rtt ratio (process hook / bare socket) {ratios[label]:5.2f}   "
            f"process / in-process {med['process hook'] / med['in-process hook']:6.1f}   "
            f"process / grpc {med['process hook'] / med['grpc unary']:5.2f}"
        )
    pipe, seq = statistics.median(piped), statistics.median(sequential)
    print(
        f"\npipelined (batches of {args.batch} awaited async hook calls): {pipe:,.0f} calls/s, "
        f"{pipe / seq:.2f} x the sequential sync hook ({seq:,.0f} calls/s)"
    )
    start, spawn = statistics.median(starts), statistics.median(spawns)
    print(
        f"worker start to first call: {start:.1f} ms ({min(starts):.1f}-{max(starts):.1f}), "
        f"{start / spawn:.2f} x a bare `python -I -c pass` spawn ({spawn:.1f} ms)"
    )
    print(
        f"first worker of the host (started directly; the zygote boots meanwhile): {cold_ms:.1f} ms"
    )
    total = calls * args.rounds
    for name, (mine, theirs) in cpu.items():
        print(
            f"CPU per call, {name} (small): this process {mine / total * 1e6:.1f} us, "
            f"the other {theirs / total * 1e6:.1f} us"
        )
    base_rss, base_pss = memory["the bare echo process"]
    print("\nidle memory, MiB: VmRSS (PSS: shared pages split among their sharers)")
    for name, (rss, pss) in memory.items():
        print(
            f"{name:>30}: {rss / 1024:6.1f} ({pss / 1024:6.1f}), "
            f"{rss / base_rss:.2f} x the bare echo's RSS ({pss / base_pss:.2f} x its PSS)"
        )
    print("\ncodec, ns per message (encode + decode; median), ratio to msgspec msgpack")
    for name, row in codecs.items():
        cells = [
            f"{label} {row[label]:7.0f} ({row[label] / codecs['msgspec msgpack'][label]:4.2f})"
            for label in PAYLOADS
        ]
        print(f"{name:>16}: " + "   ".join(cells))
    print()
    for label, ratio in ratios.items():
        verdict = "met" if ratio <= GOAL_RTT else "NOT met"
        print(f"goal rtt ratio <= {GOAL_RTT} ({label}): {verdict} ({ratio:.2f})")
    verdict = "met" if start <= GOAL_START_MS else "NOT met"
    print(f"goal worker start to first call <= {GOAL_START_MS:.0f} ms: {verdict} ({start:.1f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=64, help="concurrent calls per batch")
    parser.add_argument("--start-rounds", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
