"""The work of ``tether bench``: read the settings, run the workload, print the report.

Imported only when the command runs, so that ``tether bench --help`` stays cheap (the
options live in :mod:`tether.cli._bench`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

import click

from tether import TetherConfig, error_text, load_config, load_manifest, plugin_frame
from tether.cli._app import EXIT_INTERRUPTED, State, log_without_tracebacks
from tether.cli._output import err, out, print_error
from tether.cli._shared import parse_settings
from tether.cli._workloads import check_workload_config, find_workload
from tether.errors import TetherError
from tether.hosts.workload import (
    EXIT_ERROR_RATE,
    RELOAD_FAILED,
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
    write_html_report,
)

__all__ = ["run_command"]


# --------------------------------------------------------------------------- tether bench


def run_command(
    ctx: click.Context,
    state: State,
    /,
    *,
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
    watch: bool = False,
    options: dict[str, object],
) -> None:
    """What ``tether bench`` does with its options (see its help)."""
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
            "watch": watch or None,
        }
        _compare(compare_files, report_file, given=_given(run_options))
        return
    given = _check_options(options, report_file)
    framework = _load_config(state, config_file)
    config = BenchConfig.from_config(framework)
    name = config.workload_name(workload_name)
    settings = config.settings(given, dsn=dsn, data_directory=data_directory)
    if watch:
        settings = _one_process(settings, given.processes or config.bench.processes)
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
            report = _run(
                spec, settings, framework, quiet=quiet, retry_attempts=retry_attempts, watch=watch
            )
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


def _load_config(state: State, config_file: Path | None) -> TetherConfig:
    return load_config(config_file) if config_file is not None else state.config()


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


def _one_process(settings: BenchSettings, asked: object) -> BenchSettings:
    """``--watch`` runs the clients in this process: ``auto`` means 1 then, and more is
    a usage error."""
    if settings.processes == 1:
        return dataclasses.replace(settings, auto_processes=False)
    if asked is None or asked == "auto":
        return dataclasses.replace(settings, processes=1, auto_processes=False)
    raise click.BadParameter(
        f"--watch reloads the workload in this process, and {settings.processes} worker "
        "processes each load their own copy: reloading across processes is not supported "
        "yet; give --processes 1 (or auto) with --watch",
        param_hint="'--processes'",
    )


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
    watch: bool,
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
                watch=watch,
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
    if report.stop_reason == RELOAD_FAILED:
        print_error(
            TetherError(
                f"workload '{report.workload}' stopped the run: a reload failed and its "
                "previous version could not start again",
                plugin=report.workload,
                hint="the reloads above say what failed; fix the plugin and run again",
            )
        )
        ctx.exit(1)
    if report.interrupted:
        err.print("Interrupted: the report covers the transactions run until then.")
        ctx.exit(EXIT_INTERRUPTED)
