"""``tether bench``: the workload host on the command line.

The bench config file (``workload``, ``database`` and ``bench`` sections) is read
and checked by :class:`tether.hosts.workload.BenchConfig`; this module maps the
options onto it (options override the file) and prints.

Exit codes: 0 done, 1 an error (``Error: ...`` + hint), 2 a usage error,
3 the error rate was above ``--max-error-rate`` (the report is still printed),
130 interrupted (Ctrl-C during the run still prints the report).

``--watch`` reloads the workload plugin mid-run when its files change; the report
then says which version ran each phase.

``--report FILE.html`` also writes the report as one self-contained HTML page;
``--compare A.json B.json`` runs nothing: it reads two JSON reports and prints them
side by side (and, with ``--report``, plots them together).
"""

from __future__ import annotations

from pathlib import Path

import click

from tether.cli._app import State, pass_state
from tether.cli._types import NonEmptyPath, Text, retries_option
from tether.hosts.workload import CLIENTS_PER_PROCESS, usable_cores

__all__ = ["bench"]


@click.command("bench")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Bench config (workload, database and bench sections); overrides the global --config.",
)
@click.option(
    "--workload",
    "-w",
    "workload_name",
    metavar="NAME",
    help="The workload plugin to run (default: the config's workload.plugin_name).",
)
@click.option(
    "--duration", "-T", metavar="DURATION", help="How long to measure, e.g. 30s (default 10s)."
)
@click.option(
    "--transactions",
    "-t",
    type=int,
    metavar="N",
    help="Run N transactions in total instead (default: run for --duration).",
)
@click.option(
    "--clients",
    "-c",
    type=int,
    metavar="N",
    help="Concurrent clients, one connection each, 1 to 10,000 (default 1).",
)
@click.option(
    "--rate",
    "-R",
    type=float,
    metavar="TPS",
    help="Pace transactions at TPS per second (default: as fast as they go).",
)
@click.option(
    "--warmup", metavar="DURATION", help="Run unmeasured for this long first (default 0s)."
)
@click.option(
    "--dsn",
    type=Text(),
    metavar="URL",
    help="PostgreSQL URL (default: $TETHER_DSN, database.dsn, else embedded).",
)
@click.option(
    "--pgdata",
    "data_directory",
    type=NonEmptyPath(path_type=Path, file_okay=False),
    help="Data directory of the embedded PostgreSQL (default: $TETHER_PGDATA, ~/.tether/pgdata).",
)
@click.option(
    "--setup/--no-setup", default=None, help="Run the workload's setup first (default: yes)."
)
@click.option(
    "--cleanup/--no-cleanup", default=None, help="Run the workload's cleanup after (default: no)."
)
@click.option("--seed", type=int, help="Seed of the clients' operation choices (default: random).")
@click.option(
    "--processes",
    "-j",
    metavar="P",
    help="Spread the clients over P processes, at most the clients, or auto "
    f"(default auto: one per core with the multiplexed engine, else one per two cores, "
    f"at least {CLIENTS_PER_PROCESS} clients each; {usable_cores()} cores here).",
)
@click.option(
    "--engine",
    type=click.Choice(["auto", "multiplexed", "per-client"]),
    help="How clients run: multiplexed (one thread per process drives every connection, "
    "sending the statements the workload declares), per-client (one thread or task per "
    "client calling execute_operation), or auto (default: multiplexed when the workload "
    "declares its statements and the connections are not TLS, else per-client).",
)
@click.option(
    "--max-error-rate",
    metavar="RATE",
    help="Exit with code 3 when errors exceed this fraction (0.01) or percentage (1%) "
    "(default: no limit).",
)
@click.option(
    "--set",
    "plugin_settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="A plugin_config value (repeatable; VALUE is parsed as YAML), e.g. --set scale=10.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="The report: a table, or JSON (only JSON on standard output).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress on standard error.")
@click.option(
    "--report",
    "report_file",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE.html",
    help="Also write the report as one HTML page: charts over time, latency histograms "
    "(self-contained, opens offline).",
)
@click.option(
    "--compare",
    "compare_files",
    nargs=2,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    metavar="A.json B.json",
    help="Run nothing: print two --format json reports side by side (with --report, "
    "plot them together).",
)
@click.option(
    "--watch",
    is_flag=True,
    help="Reload the workload plugin when a file in its directory changes, while the "
    "clients run (one process): the report shows each reload and which version ran "
    "when; a broken save is rolled back and the run goes on (default: off).",
)
@retries_option
@pass_state
@click.pass_context
def bench(  # noqa: PLR0917 - click passes one argument per option
    ctx: click.Context,
    state: State,
    /,
    config_file: Path | None,
    workload_name: str | None,
    dsn: str | None,
    data_directory: Path | None,
    plugin_settings: tuple[str, ...],
    fmt: str,
    quiet: bool,
    report_file: Path | None,
    compare_files: tuple[Path, Path] | None,
    retry_attempts: int | None,
    watch: bool,
    **options: object,  # the options named like the `bench:` section's keys
) -> None:
    """Run a workload plugin against PostgreSQL and report throughput and latency.

    \b
    tether bench --workload tpcb --clients 8 --duration 30s
    tether bench --config bench.yaml --format json | jq '.metrics'
    tether bench -w tpcb --format json --report run.html > run.json
    tether bench --compare before.json after.json --report both.html
    tether bench -w ./my-workload --watch -T 5m

    Without a DSN an embedded PostgreSQL (with pgvector) is started in
    ~/.tether/pgdata and reused by later runs. Exit codes: 0 done, 1 error,
    2 usage error, 3 error rate above --max-error-rate, 130 interrupted.
    """
    from tether.cli._bench_run import run_command

    run_command(
        ctx,
        state,
        config_file=config_file,
        workload_name=workload_name,
        dsn=dsn,
        data_directory=data_directory,
        plugin_settings=plugin_settings,
        fmt=fmt,
        quiet=quiet,
        report_file=report_file,
        compare_files=compare_files,
        retry_attempts=retry_attempts,
        watch=watch,
        options=options,
    )
