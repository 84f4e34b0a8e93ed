"""tether bench against pgbench, on one PostgreSQL server, in one sitting.

    .venv/bin/python benchmarks/bench_vs_pgbench.py [--rounds 3] [--seconds 10] [--clients 8]

Starts an embedded PostgreSQL (pgserver) in a temporary directory, loads pgbench's
tables (``pgbench -i``), then, each round, alternates:

- ``pgbench -M prepared -c C -j 2 -T S`` (TPC-B-like) and ``tether bench --workload
  tpcb`` (tpcb_like), then ``pgbench -S`` and tether's select_only; the order of
  the pair flips every round so drift hits both alike;

and prints, per workload, the TPS of each (median of the rounds), the ratio
tether/pgbench (goal: >= 0.9 TPC-B, >= 0.8 select-only), and the client CPU
seconds per 1,000 transactions: each client runs as a child process and its CPU is
the ``RUSAGE_CHILDREN`` delta around it (tether's worker processes included).
tether's own start-up (interpreter, imports, plugin load, connections) is measured
once with ``--transactions 1`` and shown separately; "net" subtracts it.

tether runs with its defaults: for TPC-B the ``tpcb`` workload's ``driver: auto``
sends each transaction through libpq's pipeline mode (one round trip), for
select-only it uses asyncpg. pgbench's built-in TPC-B waits for each statement
(seven round trips), so, to be fair, the next table also runs pgbench with the
same transaction in a ``\\startpipeline`` script, and tether with seven round
trips (asyncpg, psycopg), and both with ``--processes 2``, once each.

Last, the cost of the plugin layer, in this process: the same transactions run by
the runner's client loop through the plugin (gate, weighted choice,
``execute_operation``, asyncpg) and through a hand-written function bypassing all
of it (goal: within 3%), in alternating pairs, CPU per transaction from
``process_time``. Against a real server that difference drowns in the noise of a
shared machine, so it is measured once more against a fake connection that
answers at once: what remains is the runner's own work, and the difference is the
layer's cost, shown as a share of the real CPU per transaction.

The server runs with ``synchronous_commit=off`` unless ``--synchronous-commit on``:
with it on, TPC-B waits on the disk's flushes (a noisy few hundred per second here)
and the comparison says nothing about the clients. The machine has 2 cores, shared
by the server and the client: client CPU per transaction decides throughput.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tether.hosts.workload._loop import event_loop_name, run_with_best_loop

ROOT = Path(__file__).resolve().parent.parent
TETHER = str(Path(sys.executable).parent / "tether")
TPCB_DIRECTORY = ROOT / "src" / "tether" / "workloads" / "tpcb"


@dataclass
class Sample:
    tps: float
    transactions: int
    cpu: float  # client CPU seconds

    @property
    def cpu_per_1000(self) -> float:
        return self.cpu / self.transactions * 1000 if self.transactions else float("nan")


@dataclass
class Series:
    samples: list[Sample] = field(default_factory=list)

    def tps(self) -> float:
        return statistics.median(s.tps for s in self.samples)

    def cpu_per_1000(self, startup: float = 0.0) -> float:
        return statistics.median(
            (s.cpu - startup) / s.transactions * 1000 for s in self.samples if s.transactions
        )


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(command: list[str], env: dict[str, str]) -> tuple[str, float]:
    before = _children_cpu()
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    cpu = _children_cpu() - before
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {' '.join(command)}\n{result.stderr[-2000:]}")
    return result.stdout, cpu


# --------------------------------------------------------------------------- the server


@contextlib.contextmanager
def server(synchronous_commit: str) -> Iterator[tuple[str, Path]]:
    """An embedded PostgreSQL in a temporary directory: (URI, socket directory)."""
    base = Path(tempfile.mkdtemp(prefix="tether-bench-"))
    base.chmod(0o711)  # run as root, PostgreSQL runs as 'pgserver' and must reach its data
    if not os.environ.get("XDG_RUNTIME_DIR"):  # pgserver's lock file; platformdirs warns
        (base / "run").mkdir(mode=0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(base / "run")
    import pgserver

    handle = pgserver.get_server(base / "data", cleanup_mode="delete")
    try:
        handle.psql(f"ALTER SYSTEM SET synchronous_commit = {synchronous_commit};")
        handle.psql("SELECT pg_reload_conf();")
        yield handle.get_uri(), base / "data"
    finally:
        handle.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def pgbench_path() -> str:
    import pgserver

    return str(Path(pgserver.__file__).parent / "pginstall" / "bin" / "pgbench")


# --------------------------------------------------------------------------- the contenders


def run_pgbench(
    socket_dir: Path, args: argparse.Namespace, select_only: bool, script: Path | None = None
) -> Sample:
    command = [
        pgbench_path(), "-h", str(socket_dir), "-U", "postgres", "-M", "prepared",
        "-c", str(args.clients), "-j", "2", "-T", str(args.seconds), "-n",
        *(["-S"] if select_only else []), *(["-f", str(script)] if script else []), "postgres",
    ]  # fmt: skip
    stdout, cpu = _run(command, dict(os.environ))
    tps = float(re.search(r"tps = ([\d.]+)", stdout).group(1))  # type: ignore[union-attr]
    count = int(re.search(r"actually processed: (\d+)", stdout).group(1))  # type: ignore[union-attr]
    return Sample(tps, count, cpu)


def tether_command(dsn: str, args: argparse.Namespace, operation: str, *extra: str) -> list[str]:
    weights = {
        "tpcb_like": int(operation == "tpcb_like"),
        "select_only": int(operation != "tpcb_like"),
    }
    return [
        TETHER, "bench", "--workload", "tpcb", "--dsn", dsn, "--clients", str(args.clients),
        "--set", f"scale={args.scale}", "--set", f"operation_weights={json.dumps(weights)}",
        "--format", "json", "--quiet", "--seed", "1", *extra,
    ]  # fmt: skip


def run_tether(dsn: str, args: argparse.Namespace, operation: str, *extra: str) -> Sample:
    command = tether_command(dsn, args, operation, "--duration", f"{args.seconds}s", *extra)
    stdout, cpu = _run(command, dict(os.environ))
    totals = json.loads(stdout)["totals"]
    return Sample(totals["tps"], totals["transactions"], cpu)


def tether_startup(dsn: str, args: argparse.Namespace) -> float:
    """CPU seconds of a tether run doing one transaction: its fixed start-up cost."""
    costs = []
    for _ in range(3):
        _, cpu = _run(
            tether_command(dsn, args, "select_only", "--transactions", "1"), dict(os.environ)
        )
        costs.append(cpu)
    return min(costs)


# --------------------------------------------------------------------------- the plugin layer


UPDATE_ACCOUNT = "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2"
SELECT_ACCOUNT = "SELECT abalance FROM pgbench_accounts WHERE aid = $1"
UPDATE_TELLER = "UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2"
UPDATE_BRANCH = "UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2"
INSERT_HISTORY = (
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
    "VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)"
)


def direct_operations(scale: int) -> dict[str, Callable[[Any, str], Any]]:
    """The two transactions written by hand, as the runner would call them."""
    draw = random.Random(1).random
    accounts = 100_000 * scale

    async def select_only(db: Any, _: str) -> None:
        await db.fetchval(SELECT_ACCOUNT, int(draw() * accounts) + 1)

    async def tpcb_like(db: Any, _: str) -> None:
        aid = int(draw() * accounts) + 1
        tid = int(draw() * 10 * scale) + 1
        bid = int(draw() * scale) + 1
        delta = int(draw() * 10_001) - 5000
        await db.execute("BEGIN")
        await db.execute(UPDATE_ACCOUNT, delta, aid)
        await db.fetchval(SELECT_ACCOUNT, aid)
        await db.execute(UPDATE_TELLER, delta, tid)
        await db.execute(UPDATE_BRANCH, delta, bid)
        await db.execute(INSERT_HISTORY, tid, bid, aid, delta)
        await db.execute("END")

    return {"select_only": select_only, "tpcb_like": tpcb_like}


async def plugin_layer(dsn: str, args: argparse.Namespace) -> dict[str, tuple[Series, Series]]:
    from tether.hosts.workload import DirectOperation, Plan, WorkloadSpec, open_workload
    from tether.hosts.workload._database import close_connections, open_connections
    from tether.hosts.workload._engine import Engine

    results: dict[str, tuple[Series, Series]] = {}
    direct = direct_operations(args.scale)
    for operation in ("select_only", "tpcb_like"):
        weights = {
            "tpcb_like": int(operation == "tpcb_like"),
            "select_only": int(operation != "tpcb_like"),
        }
        config = {"scale": args.scale, "driver": "asyncpg", "operation_weights": weights}
        spec = WorkloadSpec("tpcb", path=TPCB_DIRECTORY, config=config)
        workload = await open_workload(spec)
        connections = await open_connections(dsn, args.clients, is_async=True)
        plugin_series, direct_series = Series(), Series()
        plan = Plan(clients=args.clients, duration=args.layer_seconds, seed=1)
        try:
            for round_ in range(args.layer_rounds):
                order = [("plugin", plugin_series), ("direct", direct_series)]
                for kind, series in order if round_ % 2 == 0 else order[::-1]:
                    engine = (
                        Engine(plan, operation=workload.operation, weights=workload.weights)
                        if kind == "plugin"
                        else Engine(plan, operation=DirectOperation(direct[operation],
                                    is_async=True), weights={operation: 1})
                    )  # fmt: skip
                    before = time.process_time()
                    result = await engine.run(connections)
                    cpu = time.process_time() - before
                    count = sum(s.count for s in result.stats.values())
                    series.samples.append(Sample(count / result.elapsed, count, cpu))
        finally:
            await close_connections(connections, is_async=True)
            await workload.aclose()
        results[operation] = (plugin_series, direct_series)
    return results


class FakeConnection:
    """A connection that answers at once: what is left to time is tether's own work."""

    async def fetchval(self, *_: object) -> int:
        return 0

    async def execute(self, *_: object) -> str:
        return "OK"

    def is_closed(self) -> bool:
        return False


async def isolated_layer(args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    """CPU us per transaction, plugin path and hand-written, against FakeConnection (min of 5)."""
    from tether.hosts.workload import DirectOperation, Plan, WorkloadSpec, open_workload
    from tether.hosts.workload._engine import Engine

    direct = direct_operations(args.scale)
    results: dict[str, tuple[float, float]] = {}
    connections = [FakeConnection() for _ in range(args.clients)]
    for operation, count in (("select_only", 200_000), ("tpcb_like", 50_000)):
        weights = {
            "tpcb_like": int(operation == "tpcb_like"),
            "select_only": int(operation != "tpcb_like"),
        }
        config = {"scale": args.scale, "driver": "asyncpg", "operation_weights": weights}
        workload = await open_workload(WorkloadSpec("tpcb", path=TPCB_DIRECTORY, config=config))
        best = {"plugin": float("inf"), "direct": float("inf")}
        plan = Plan(clients=args.clients, transactions=count, seed=1)
        try:
            for _ in range(5):
                for kind in ("plugin", "direct"):
                    engine = (
                        Engine(plan, operation=workload.operation, weights=workload.weights)
                        if kind == "plugin"
                        else Engine(plan, operation=DirectOperation(direct[operation],
                                    is_async=True), weights={operation: 1})
                    )  # fmt: skip
                    before = time.process_time()
                    await engine.run(connections)
                    best[kind] = min(best[kind], (time.process_time() - before) / count * 1e6)
        finally:
            await workload.aclose()
        results[operation] = (best["plugin"], best["direct"])
    return results


# --------------------------------------------------------------------------- main


def loop_name() -> str:
    async def name() -> str:
        return event_loop_name()

    return run_with_best_loop(name())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--layer-rounds", type=int, default=6)
    parser.add_argument("--layer-seconds", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--synchronous-commit", choices=["on", "off"], default="off")
    parser.add_argument(
        "--skip-variants", action="store_true", help="skip psycopg/--processes runs"
    )
    args = parser.parse_args()
    started = time.monotonic()
    print(
        f"python {platform.python_version()}, {os.cpu_count()} cores, event loop {loop_name()}; "
        f"{args.rounds} rounds x "
        f"{args.seconds}s, {args.clients} clients, scale {args.scale}, "
        f"synchronous_commit={args.synchronous_commit}"
    )
    with server(args.synchronous_commit) as (dsn, socket_dir):
        _run(
            [
                pgbench_path(),
                "-i",
                "-s",
                str(args.scale),
                "-q",
                "-h",
                str(socket_dir),
                "-U",
                "postgres",
                "postgres",
            ],
            dict(os.environ),
        )
        startup = tether_startup(dsn, args)
        print(f"tether start-up (one transaction, whole process): {startup:.2f} CPU s\n")
        medians = compare(dsn, socket_dir, args, startup)
        if not args.skip_variants:
            variants(dsn, socket_dir, args, startup, medians)
        layer = run_with_best_loop(plugin_layer(dsn, args))
    print_layer(layer, args)
    isolated = run_with_best_loop(isolated_layer(args))
    print("\nplugin layer isolated (a connection that answers at once; CPU us per tx, min of 5):")
    for operation, (plugin_us, direct_us) in isolated.items():
        real = layer[operation][1].cpu_per_1000() * 1000
        print(
            f"  {operation:<12} plugin {plugin_us:5.2f} us, hand-written {direct_us:5.2f} us: "
            f"the layer adds {plugin_us - direct_us:+.2f} us, "
            f"{(plugin_us - direct_us) / real * 100:+.1f}% of the {real:.1f} us measured above"
        )
    print(f"\ntotal time {time.monotonic() - started:.0f}s")


def compare(
    dsn: str, socket_dir: Path, args: argparse.Namespace, startup: float
) -> dict[str, float]:
    """The main table; returns pgbench's median TPS per operation."""
    names = {"tpcb_like": ("TPC-B", False, 0.9), "select_only": ("select-only", True, 0.8)}
    series = {op: (Series(), Series()) for op in names}
    for round_ in range(args.rounds):
        for operation, (_, select_only, _) in names.items():
            pg, te = series[operation]
            runs = [
                lambda pg=pg, s=select_only: pg.samples.append(run_pgbench(socket_dir, args, s)),
                lambda te=te, o=operation: te.samples.append(run_tether(dsn, args, o)),
            ]
            for run in runs if round_ % 2 == 0 else runs[::-1]:
                run()
        figures = ", ".join(
            f"{op} pgbench {series[op][0].samples[-1].tps:.0f} / tether "
            f"{series[op][1].samples[-1].tps:.0f} tps"
            for op in names
        )
        print(f"round {round_ + 1}: {figures}")
    print(
        f"\n{'workload':<12} {'pgbench tps':>12} {'tether tps':>11} {'ratio':>6} {'goal':>5}   "
        "client CPU s / 1000 tx: pgbench, tether (net of start-up)"
    )
    for operation, (label, _, goal) in names.items():
        pg, te = series[operation]
        # The median of each round's ratio: the two runs of a round ran back to back.
        ratio = statistics.median(
            t.tps / p.tps for p, t in zip(pg.samples, te.samples, strict=True)
        )
        print(
            f"{label:<12} {pg.tps():>12.0f} {te.tps():>11.0f} {ratio:>6.2f} {goal:>5.1f}   "
            f"{pg.cpu_per_1000():.3f}, {te.cpu_per_1000():.3f} ({te.cpu_per_1000(startup):.3f})"
            f"  {'ok' if ratio >= goal else 'BELOW GOAL'}"
        )
    return {op: series[op][0].tps() for op in names}


PIPELINED_TPCB = """\\set aid random(1, 100000 * :scale)
\\set bid random(1, 1 * :scale)
\\set tid random(1, 10 * :scale)
\\set delta random(-5000, 5000)
\\startpipeline
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime)
    VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
END;
\\endpipeline
"""


def variants(
    dsn: str, socket_dir: Path, args: argparse.Namespace, startup: float, medians: dict[str, float]
) -> None:
    print("\nother clients, one run each (ratio: to the pgbench built-in median above):")
    script = socket_dir.parent / "tpcb_pipelined.sql"
    script.write_text(PIPELINED_TPCB, encoding="utf-8")
    pipelined = run_pgbench(socket_dir, args, select_only=False, script=script)
    print(
        f"  {'tpcb_like':<12} {'pgbench, pipelined script':<30} {pipelined.tps:>8.0f} tps "
        f"{pipelined.tps / medians['tpcb_like']:>6.2f}   "
        f"{pipelined.cpu_per_1000:.3f} CPU s / 1000 tx"
    )
    cases = [
        ("tpcb_like", "tether asyncpg, 7 round trips", ("--set", "driver=asyncpg")),
        (
            "tpcb_like",
            "tether psycopg, 7 round trips",
            ("--set", "driver=psycopg", "--set", "pipeline=false"),
        ),
        ("tpcb_like", "tether default, --processes 2", ("--processes", "2")),
        ("select_only", "tether psycopg, libpq direct", ("--set", "driver=psycopg")),
        ("select_only", "tether asyncpg, --processes 2", ("--processes", "2")),
    ]
    for operation, label, extra in cases:
        sample = run_tether(dsn, args, operation, *extra)
        processes = 2 if "--processes" in extra else 1
        net = (sample.cpu - startup * processes) / sample.transactions * 1000
        print(
            f"  {operation:<12} {label:<30} {sample.tps:>8.0f} tps "
            f"{sample.tps / medians[operation]:>6.2f}   "
            f"{sample.cpu_per_1000:.3f} CPU s / 1000 tx ({net:.3f} net)"
        )


def print_layer(layer: dict[str, tuple[Series, Series]], args: argparse.Namespace) -> None:
    print(
        f"\nplugin layer ({args.layer_rounds} alternating pairs x {args.layer_seconds:g}s, "
        "in-process, asyncpg; medians of the pairs):"
    )
    for operation, (plugin, direct) in layer.items():
        pairs = list(zip(plugin.samples, direct.samples, strict=True))
        tps_ratio = statistics.median(p.tps / d.tps for p, d in pairs)
        cpu_ratio = statistics.median(p.cpu_per_1000 / d.cpu_per_1000 for p, d in pairs)
        plugin_us, direct_us = plugin.cpu_per_1000() * 1000, direct.cpu_per_1000() * 1000
        print(
            f"  {operation:<12} plugin {plugin.tps():>7.0f} tps {plugin_us:6.1f} "
            f"CPU us/tx | hand-written {direct.tps():>7.0f} tps "
            f"{direct_us:6.1f} CPU us/tx | plugin/hand-written: "
            f"tps {tps_ratio:.3f}, CPU per tx {cpu_ratio:.3f}"
        )


if __name__ == "__main__":
    main()
