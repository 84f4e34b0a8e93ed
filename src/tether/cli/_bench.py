"""``tether bench``: the workload host on the command line.

The bench config file (``workload``, ``database`` and ``bench`` sections) is read
and checked by :class:`tether.hosts.workload.BenchConfig`; this module maps the
options onto it (options override the file) and prints.

Exit codes: 0 done, 1 an error (``Error: ...`` + hint), 2 a usage error,
3 the error rate was above ``--max-error-rate`` (the report is still printed),
130 interrupted (Ctrl-C during the run still prints the report).

``--report FILE.html`` also writes the report as one self-contained HTML page;
``--compare A.json B.json`` runs nothing: it reads two JSON reports and prints them
side by side (and, with ``--report``, plots them together).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import click

from tether import TetherConfig, error_text, load_config, load_manifest, plugin_frame
from tether.cli._app import EXIT_INTERRUPTED, State, log_without_tracebacks, pass_state
from tether.cli._output import err, out, print_error
from tether.cli._shared import parse_settings, retries_option
from tether.cli._types import NonEmptyPath, Text
from tether.cli._workloads import check_workload_config, find_workload
from tether.errors import TetherError
from tether.hosts.workload import (
    CLIENTS_PER_PROCESS,
    EXIT_ERROR_RATE,
    BenchConfig,
    BenchReport,
    BenchSection,
    BenchSettings,
    Progress,
    ReportFileError,
    SavedRun,
    WorkloadConfigError,
    WorkloadSpec,
    check_report_path,
    read_run,
    render_comparison,
    run_bench,
    run_with_best_loop,
    usable_cores,
    write_html_report,
)

__all__ = ["bench"]


# --------------------------------------------------------------------------- tether bench


def _load_config(state: State, config_file: Path | None) -> TetherConfig:
    return load_config(config_file) if config_file is not None else state.config()


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
    f"(default auto: one per two cores, at least {CLIENTS_PER_PROCESS} clients each; "
    f"{usable_cores()} cores here).",
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
    **options: object,  # the options named like the `bench:` section's keys
) -> None:
    """Run a workload plugin against PostgreSQL and report throughput and latency.

    \b
    tether bench --workload tpcb --clients 8 --duration 30s
    tether bench --config bench.yaml --format json | jq '.metrics'
    tether bench -w tpcb --format json --report run.html > run.json
    tether bench --compare before.json after.json --report both.html

    Without a DSN an embedded PostgreSQL (with pgvector) is started in
    ~/.tether/pgdata and reused by later runs. Exit codes: 0 done, 1 error,
    2 usage error, 3 error rate above --max-error-rate, 130 interrupted.
    """
    if compare_files:
        run_options = {
            **options,
            "config": config_file,
            "workload": workload_name,
            "dsn": dsn,
            "pgdata": data_directory,
            "set": plugin_settings or None,
            "format": None if fmt == "text" else fmt,
            "retries": retry_attempts,
        }
        _compare(compare_files, report_file, given=_given(run_options))
        return
    given = _check_options(options, report_file)
    framework = _load_config(state, config_file)
    config = BenchConfig.from_config(framework)
    name = config.workload_name(workload_name)
    settings = config.settings(given, dsn=dsn, data_directory=data_directory)
    if config.is_ignoring_plugin_config(name):
        err.print(
            f"note: ignoring workload.plugin_config of '{config.workload.plugin_name}' in "
            f"{config.where}: running '{name}'",
            highlight=False,
        )
    overrides = parse_settings(plugin_settings)
    spec = config.spec_for(find_workload(state, name), overrides)
    if spec.path is not None:  # a typo fails here, before a database is started
        check_workload_config(load_manifest(spec.path), spec.config, config,
                              lines=framework.key_lines(), given=list(overrides))  # fmt: skip
    with log_without_tracebacks(state):  # a plugin's failure is the summary below
        try:
            report = _run(spec, settings, framework, quiet=quiet, retry_attempts=retry_attempts)
        except TetherError as exc:
            frame = plugin_frame(exc, spec.path) if spec.path is not None else None
            if frame is None:
                raise
            raise TetherError(
                f"{error_text(exc)}\n  at {frame.filename}:{frame.lineno}, in {frame.name}",
                plugin=exc.plugin,
                hint=exc.hint,
            ) from exc
    _finish(ctx, report, fmt, report_file, quiet=quiet)


def _check_options(options: dict[str, object], report_file: Path | None) -> BenchSection:
    """The options' settings; a value they refuse is a usage error (exit 2), before any work."""
    if options["duration"] is not None and options["transactions"] is not None:
        raise click.UsageError("give --duration or --transactions, not both")
    try:
        given = BenchSection.from_options(**options)
    except WorkloadConfigError as exc:
        raise click.UsageError(
            "; ".join(f"Invalid value for '{p.key}': {p.message}" for p in exc.problems)
        ) from None
    processes, clients = given.processes, given.clients  # validated: "4" is 4, auto stays
    if isinstance(processes, int) and isinstance(clients, int) and processes > clients:
        raise click.BadParameter(
            f"{processes} processes for {clients} clients: each process runs at least one "
            "client, so give at most --clients processes",
            param_hint="'--processes'",
        )
    if report_file is not None:
        try:
            check_report_path(report_file)
        except ReportFileError as exc:
            message = error_text(exc).removeprefix("--report ")
            raise click.BadParameter(message, param_hint="'--report'") from None
    return given


def _given(values: dict[str, object]) -> list[str]:
    return [f"--{name.replace('_', '-')}" for name, value in values.items() if value is not None]


def _compare(files: tuple[Path, Path], report_file: Path | None, *, given: list[str]) -> None:
    if given:
        raise click.UsageError(
            f"--compare reads two saved reports and runs nothing: drop {', '.join(given)}"
        )
    runs = [read_run(path, label=label) for path, label in zip(files, "AB", strict=True)]
    render_comparison(out, *runs)
    if report_file is not None:
        write_html_report(report_file, runs)
        err.print(f"report: {report_file}", highlight=False)


def _run(
    spec: WorkloadSpec,
    settings: BenchSettings,
    framework: TetherConfig,
    *,
    quiet: bool,
    retry_attempts: int | None,
) -> BenchReport:
    def notify(message: str) -> None:
        if not quiet:
            err.print(message, highlight=False, markup=False)

    progress = None if quiet else Progress(err)
    with progress or contextlib.nullcontext():
        return run_with_best_loop(
            run_bench(
                spec,
                settings,
                framework_config=framework,
                notify=notify,
                on_tick=progress,
                retry_attempts=retry_attempts,
            )
        )


def _finish(
    ctx: click.Context, report: BenchReport, fmt: str, report_file: Path | None, *, quiet: bool
) -> None:
    if fmt == "json":
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        report.render(out)
    if report_file is not None:
        write_html_report(report_file, [SavedRun.of(report)])
        if not quiet:
            err.print(f"report: {report_file}", highlight=False)
    if report.error_rate_exceeded:
        limit = report.settings.max_error_rate or 0.0
        print_error(
            TetherError(
                f"error rate {report.error_rate:.2%} ({report.errors} of "
                f"{report.errors + report.transactions}) is above --max-error-rate {limit:.2%}",
                hint="the report lists each distinct error (type, message, the operation it "
                "first happened in, its count); so does the log, once each",
            )
        )
        ctx.exit(EXIT_ERROR_RATE)
    if report.interrupted:
        err.print("Interrupted: the report covers the transactions run until then.")
        ctx.exit(EXIT_INTERRUPTED)
