"""tether bench against pgbench, on one PostgreSQL server, in one sitting, at the same protocol.

    .venv/bin/python benchmarks/bench_vs_pgbench.py [--rounds 3] [--seconds 10] [--clients 8]

Starts an embedded PostgreSQL (pgserver) in a temporary directory and loads pgbench's
tables with pgbench itself (``pgbench -i``; pgbench ships with pgserver's PostgreSQL
binaries, else it is taken from ``PATH``). Then three pairings, each a pgbench run
and the tether run sending the same statements in the same protocol (prepared
statements, the same clients and duration):

- **pipelined**: pgbench's TPC-B-like transaction as a ``\\startpipeline`` script
  against ``tether bench --workload tpcb`` as it runs by default (the multiplexed
  engine, one thread driving every connection: the seven statements and a Sync,
  one round trip);
- **7 round trips**: pgbench's built-in script against ``--set pipeline=false``
  (each statement waits for its result);
- **select-only**: ``pgbench -S`` against the ``select_only`` operation.

Each round runs every pairing's two contenders back to back, and the order flips
every round so drift hits both alike. It prints, per pairing, ``same-protocol
ratio``: the median over the rounds of tether's TPS / pgbench's (goal >= 0.8), with
the spread, and ``cpu ratio``: client CPU per transaction, tether's / pgbench's.
Each client runs as a child process and its CPU is the ``RUSAGE_CHILDREN`` delta
around it (tether's worker processes included); tether's fixed start-up
(interpreter, imports, plugin load, workers, connections), measured with
``--transactions 1``, is subtracted from its figure ("net"; gross is shown too).
tether runs with ``--processes auto`` (its default) unless ``--processes N``;
pgbench with ``-j 2``. ``--variants`` adds single runs of the other drivers
(asyncpg, psycopg threads: the per-client engine) and of each pairing with
``--processes 1``.

Last (unless ``--skip-layer``), the cost of the plugin layer, in this process: the
same transactions run by the runner's client loop through the plugin (gate, weighted
choice, ``execute_operation``, asyncpg) and through a hand-written function
bypassing all of it, in alternating pairs, CPU per transaction from
``process_time``; and once more against a fake connection that answers at once:
what remains is the runner's own work, and the difference is the layer's cost.

The tether measured is this tree's (``src/`` comes first on ``PYTHONPATH``). The
server runs with ``synchronous_commit=off`` unless ``--synchronous-commit on``: with
it on, TPC-B waits on the disk's flushes and the comparison says nothing about the
clients. On a 2-core machine the server and the clients share the cores: client CPU
per transaction decides throughput.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))  # measure this tree's tether, installed or not

from tether.hosts.workload._loop import event_loop_name, run_with_best_loop  # noqa: E402

TETHER = (sys.executable, "-c", "from tether.cli import main; main()")
TPCB_DIRECTORY = ROOT / "src" / "tether" / "builtin" / "tpcb"


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
    """pgbench from pgserver's PostgreSQL binaries, else from ``PATH``."""
    import pgserver

    bundled = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pgbench"
    found = str(bundled) if bundled.exists() else shutil.which("pgbench")
    if found is None:
        sys.exit("pgbench not found: pgserver's binaries lack it and it is not on PATH")
    return found


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
        *TETHER, "bench", "--workload", "tpcb", "--dsn", dsn, "--clients", str(args.clients),
        "--set", f"scale={args.scale}", "--set", f"operation_weights={json.dumps(weights)}",
        "--format", "json", "--quiet", "--seed", "1", *extra,
    ]  # fmt: skip


def tether_env() -> dict[str, str]:
    """The environment of tether's runs: this tree's ``src`` first on ``PYTHONPATH``."""
    paths = [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def run_tether(dsn: str, args: argparse.Namespace, operation: str, *extra: str) -> Sample:
    command = tether_command(dsn, args, operation, "--duration", f"{args.seconds}s", *extra)
    stdout, cpu = _run(command, tether_env())
    totals = json.loads(stdout)["totals"]
    return Sample(totals["tps"], totals["transactions"], cpu)


def tether_startup(dsn: str, args: argparse.Namespace, pairing: Pairing) -> float:
    """CPU seconds of the pairing's tether run doing one transaction: its fixed start-up
    cost (interpreter, imports, plugin load, worker processes, connections); min of 2."""
    costs = []
    for _ in range(2):
        command = tether_command(
            dsn, args, pairing.operation, "--transactions", "1", *_tether_args(pairing, args)
        )
        costs.append(_run(command, tether_env())[1])
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
        connections = await open_connections(dsn, args.clients, driver="asyncpg")
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
            await close_connections(connections, driver="asyncpg")
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


@dataclass(frozen=True)
class Pairing:
    """One same-protocol comparison: a pgbench run and the tether run doing the same."""

    label: str
    pgbench: str  # what pgbench runs
    tether: str  # what tether runs
    operation: str
    select_only: bool
    pipelined_script: bool
    tether_extra: tuple[str, ...] = ()


PAIRINGS = (
    Pairing(
        "pipelined", "pipelined script (\\startpipeline)", "default (multiplexed, one round trip)",
        "tpcb_like", select_only=False, pipelined_script=True,
    ),
    Pairing(
        "7 round trips", "built-in tpcb-like", "--set pipeline=false",
        "tpcb_like", select_only=False, pipelined_script=False,
        tether_extra=("--set", "pipeline=false"),
    ),
    Pairing(
        "select-only", "-S", "select_only", "select_only",
        select_only=True, pipelined_script=False,
    ),
)  # fmt: skip
GOAL = 0.8


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
    parser.add_argument("--processes", default="auto", help="tether's --processes (default auto)")
    parser.add_argument("--synchronous-commit", choices=["on", "off"], default="off")
    parser.add_argument(
        "--variants", action="store_true", help="also run the other drivers and process counts"
    )
    parser.add_argument("--skip-layer", action="store_true", help="skip the plugin-layer runs")
    parser.add_argument(
        "--pairing",
        action="append",
        choices=[p.label for p in PAIRINGS],
        help="run only this pairing (repeatable; default all)",
    )
    args = parser.parse_args()
    started = time.monotonic()
    from tether.hosts.workload import auto_multiplexed_processes

    processes = (
        auto_multiplexed_processes(args.clients)
        if args.processes == "auto"
        else int(args.processes)
    )
    print(
        f"python {platform.python_version()}, {os.cpu_count()} cores, event loop {loop_name()}; "
        f"{args.rounds} rounds x {args.seconds}s, {args.clients} clients, scale {args.scale}, "
        f"tether --processes {args.processes} ({processes}), pgbench -j 2 -M prepared, "
        f"synchronous_commit={args.synchronous_commit}"
    )
    with server(args.synchronous_commit) as (dsn, socket_dir):
        _run(
            [pgbench_path(), "-i", "-s", str(args.scale), "-q", "-h", str(socket_dir),
             "-U", "postgres", "postgres"],
            dict(os.environ),
        )  # fmt: skip
        script = socket_dir.parent / "tpcb_pipelined.sql"
        script.write_text(PIPELINED_TPCB, encoding="utf-8")
        compare(dsn, socket_dir, script, args)
        if args.variants:
            variants(dsn, args)
        layer = None if args.skip_layer else run_with_best_loop(plugin_layer(dsn, args))
    if layer is not None:
        print_layer(layer, args)
        isolated = run_with_best_loop(isolated_layer(args))
        print(
            "\nplugin layer isolated (a connection that answers at once; CPU us per tx, min of 5):"
        )
        for operation, (plugin_us, direct_us) in isolated.items():
            real = layer[operation][1].cpu_per_1000() * 1000
            print(
                f"  {operation:<12} plugin {plugin_us:5.2f} us, hand-written {direct_us:5.2f} us: "
                f"the layer adds {plugin_us - direct_us:+.2f} us, "
                f"{(plugin_us - direct_us) / real * 100:+.1f}% of the {real:.1f} us measured above"
            )
    print(f"\ntotal time {time.monotonic() - started:.0f}s")


def _tether_args(pairing: Pairing, args: argparse.Namespace) -> tuple[str, ...]:
    return (*pairing.tether_extra, "--processes", str(args.processes))


def compare(dsn: str, socket_dir: Path, script: Path, args: argparse.Namespace) -> None:
    """The same-protocol table: each pairing's runs alternate, rounds flip the order."""
    pairings = [p for p in PAIRINGS if not args.pairing or p.label in args.pairing]
    startup = {p.label: tether_startup(dsn, args, p) for p in pairings}
    print(
        "tether start-up (one transaction, whole process tree, CPU s): "
        + ", ".join(f"{label} {cpu:.2f}" for label, cpu in startup.items())
    )
    series = {p.label: (Series(), Series()) for p in pairings}
    for round_ in range(args.rounds):
        for pairing in pairings:
            pg, te = series[pairing.label]
            runs = [
                lambda pg=pg, p=pairing: pg.samples.append(
                    run_pgbench(
                        socket_dir, args, p.select_only, script if p.pipelined_script else None
                    )
                ),
                lambda te=te, p=pairing: te.samples.append(
                    run_tether(dsn, args, p.operation, *_tether_args(p, args))
                ),
            ]
            for run in runs if round_ % 2 == 0 else runs[::-1]:
                run()
        figures = ", ".join(
            f"{p.label} {series[p.label][1].samples[-1].tps:.0f}/"
            f"{series[p.label][0].samples[-1].tps:.0f}"
            for p in pairings
        )
        print(f"round {round_ + 1} (tether/pgbench tps): {figures}")
    print()
    for pairing in pairings:
        pg, te = series[pairing.label]
        ratios = [t.tps / p.tps for p, t in zip(pg.samples, te.samples, strict=True)]
        ratio = statistics.median(ratios)  # each round's two runs ran back to back
        verdict = "ok" if ratio >= GOAL else "BELOW GOAL"
        print(
            f"same-protocol ratio  {pairing.label:<14} {ratio:5.2f}  (tether {te.tps():,.0f} / "
            f"pgbench {pg.tps():,.0f} tps, medians; rounds {min(ratios):.2f}-{max(ratios):.2f})"
            f"  goal >= {GOAL}  {verdict}"
        )
    for pairing in pairings:
        pg, te = series[pairing.label]
        pg_us = pg.cpu_per_1000() * 1000
        gross_us = te.cpu_per_1000() * 1000
        net_us = te.cpu_per_1000(startup[pairing.label]) * 1000
        print(
            f"cpu ratio            {pairing.label:<14} {net_us / pg_us:5.2f}  (client CPU per "
            f"transaction: tether {net_us:.1f} us net of start-up, {gross_us:.1f} us gross / "
            f"pgbench {pg_us:.1f} us)"
        )
    if "7 round trips" not in series or "pipelined" not in series:
        return
    builtin = series["7 round trips"][0]
    default = series["pipelined"][1]
    print(
        f"\nnot the same protocol: tether's default (pipelined) / pgbench's built-in script "
        f"(7 round trips): {default.tps() / builtin.tps():.2f}"
    )


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

VARIANTS = (
    ("tpcb_like", "asyncpg, 7 round trips", ("--set", "driver=asyncpg")),
    ("tpcb_like", "psycopg threads, pipeline", ("--set", "driver=psycopg")),
    ("tpcb_like", "psycopg threads, 7 round trips", ("--set", "driver=psycopg",
                                                    "--set", "pipeline=false")),
    ("select_only", "asyncpg", ("--set", "driver=asyncpg")),
    ("select_only", "psycopg threads", ("--set", "driver=psycopg")),
)  # fmt: skip


def variants(dsn: str, args: argparse.Namespace) -> None:
    """Other drivers, and each pairing's tether run with --processes 1, one run each."""
    print("\nother tether runs, one each (CPU us per transaction, gross):")
    cases = [
        (operation, f"{label}, --processes {args.processes}", (*extra, "--processes",
         str(args.processes))) for operation, label, extra in VARIANTS
    ] + [
        (p.operation, f"{p.label}, --processes 1", (*p.tether_extra, "--processes", "1"))
        for p in PAIRINGS
    ]  # fmt: skip
    for operation, label, extra in cases:
        sample = run_tether(dsn, args, operation, *extra)
        print(
            f"  {operation:<12} {label:<44} {sample.tps:>8.0f} tps "
            f"{sample.cpu_per_1000 * 1000:7.1f} us"
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
