"""``tether bench`` and ``tether workloads list``: the workload host on the command line.

The bench config file (``workload``, ``database`` and ``bench`` sections) is read
and checked by :class:`tether.hosts.workload.BenchConfig`; this module maps the
options onto it (options override the file) and prints.

Exit codes: 0 done, 1 an error (``Error: ...`` + hint), 2 a usage error,
3 the error rate was above ``--max-error-rate`` (the report is still printed),
130 interrupted (Ctrl-C during the run still prints the report).
"""

from __future__ import annotations

import contextlib
import difflib
import json
from collections.abc import Mapping
from pathlib import Path

import click
import yaml
from rich.console import Console
from rich.table import Table

from tether import Manifest, TetherConfig, load_config, load_manifest
from tether.cli._app import EXIT_INTERRUPTED, State, cli, pass_state
from tether.cli._commands import _discover, config_group
from tether.cli._output import err, out, print_error
from tether.errors import ConfigError, PluginNotFoundError, TetherError
from tether.hosts.workload import (
    EXIT_ERROR_RATE,
    BenchConfig,
    BenchReport,
    BenchSection,
    BenchSettings,
    Progress,
    WorkloadConfigError,
    WorkloadSpec,
    resolve_weights,
    run_bench,
    run_with_best_loop,
)

__all__ = ["bench", "workloads"]


# --------------------------------------------------------------------------- finding workloads


def find_workload(state: State, name: str) -> WorkloadSpec:
    """The workload plugin called ``name``, found through the search paths."""
    result = _discover(state)
    found = result.get(name)
    workloads = sorted(p.name for p in result.plugins if "workload" in p.manifest.provides)
    if found is None:
        close = difflib.get_close_matches(name, workloads, n=1)
        hint = f"did you mean '{close[0]}'?" if close else "`tether workloads list` shows them"
        raise PluginNotFoundError(
            f"workload not found: '{name}' (workloads: {', '.join(workloads) or 'none'})",
            plugin=name,
            hint=hint,
        )
    if "workload" not in found.manifest.provides:
        raise TetherError(
            f"plugin '{name}' is not a workload plugin: its manifest does not say "
            "`provides: [workload]`",
            plugin=name,
            path=found.location,
            hint=f"workloads: {', '.join(workloads) or 'none'} (`tether workloads list`)",
        )
    directory = found.manifest.directory
    return WorkloadSpec(name=name, path=directory, origin=found.origin)


def _parse_settings(items: tuple[str, ...]) -> dict[str, object]:
    values: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--set")
        values[key.strip()] = yaml.safe_load(raw)
    return values


# --------------------------------------------------------------------------- tether bench


def _load_config(state: State, config_file: Path | None) -> TetherConfig:
    return load_config(config_file) if config_file is not None else state.config()


@cli.command("bench")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Bench config (workload, database and bench sections); overrides the global --config.",
)
@click.option(
    "--workload", "-w", "workload_name", metavar="NAME", help="The workload plugin to run."
)
@click.option(
    "--duration", "-T", metavar="DURATION", help="How long to measure, e.g. 30s (default 10s)."
)
@click.option(
    "--transactions", "-t", type=int, metavar="N", help="Run N transactions in total instead."
)
@click.option(
    "--clients", "-c", type=int, metavar="N", help="Concurrent clients, one connection each."
)
@click.option(
    "--rate", "-R", type=float, metavar="TPS", help="Pace transactions at TPS per second."
)
@click.option("--warmup", metavar="DURATION", help="Run unmeasured for this long first.")
@click.option(
    "--dsn",
    metavar="URL",
    help="PostgreSQL URL (default: $TETHER_DSN, database.dsn, else embedded).",
)
@click.option(
    "--pgdata",
    "data_directory",
    type=click.Path(path_type=Path, file_okay=False),
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
    "--processes", "-j", type=int, metavar="P", help="Spread the clients over P processes."
)
@click.option(
    "--max-error-rate",
    metavar="RATE",
    help="Exit with code 3 when errors exceed this fraction (0.01) or percentage (1%).",
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
    **options: object,  # the options named like the `bench:` section's keys
) -> None:
    """Run a workload plugin against PostgreSQL and report throughput and latency.

    \b
    tether bench --workload tpcb --clients 8 --duration 30s
    tether bench --config bench.yaml --format json | jq '.metrics'

    Without a DSN an embedded PostgreSQL (with pgvector) is started in
    ~/.tether/pgdata and reused by later runs. Exit codes: 0 done, 1 error,
    2 usage error, 3 error rate above --max-error-rate, 130 interrupted.
    """
    if options["duration"] is not None and options["transactions"] is not None:
        raise click.UsageError("give --duration or --transactions, not both")
    framework = _load_config(state, config_file)
    config = BenchConfig.from_config(framework)
    name = config.workload_name(workload_name)
    given = BenchSection.from_options(**options)
    settings = config.settings(given, dsn=dsn, data_directory=data_directory)
    if config.is_ignoring_plugin_config(name):
        err.print(
            f"note: ignoring workload.plugin_config of '{config.workload.plugin_name}' in "
            f"{config.where}: running '{name}'",
            highlight=False,
        )
    spec = config.spec_for(find_workload(state, name), _parse_settings(plugin_settings))
    report = _run(spec, settings, framework, quiet=quiet)
    _finish(ctx, report, fmt)


def _run(
    spec: WorkloadSpec, settings: BenchSettings, framework: TetherConfig, *, quiet: bool
) -> BenchReport:
    def notify(message: str) -> None:
        if not quiet:
            err.print(message, highlight=False, markup=False)

    progress = None if quiet else Progress(err)
    with progress or contextlib.nullcontext():
        return run_with_best_loop(
            run_bench(spec, settings, framework_config=framework, notify=notify, on_tick=progress)
        )


def _finish(ctx: click.Context, report: BenchReport, fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        report.render(out)
    if report.error_rate_exceeded:
        limit = report.settings.max_error_rate or 0.0
        print_error(
            TetherError(
                f"error rate {report.error_rate:.2%} ({report.errors} of "
                f"{report.errors + report.transactions}) is above --max-error-rate {limit:.2%}",
                hint="see errors_by_type in the report; the plugin's log says more",
            )
        )
        ctx.exit(EXIT_ERROR_RATE)
    if report.interrupted:
        err.print("Interrupted: the report covers the transactions run until then.")
        ctx.exit(EXIT_INTERRUPTED)


# --------------------------------------------------------------------------- tether workloads


@cli.group("workloads")
def workloads() -> None:
    """The workload plugins tether bench can run."""


def declared_weights(defaults: object) -> dict[str, int] | None:
    """The operations and default weights a manifest declares (``config.operation_weights``)."""
    if not isinstance(defaults, Mapping):
        return None
    weights = {
        str(k): v for k, v in defaults.items() if isinstance(v, int) and not isinstance(v, bool)
    }
    return weights or None


@workloads.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_state
def workloads_list(state: State, as_json: bool) -> None:
    """Built-in and plugin workloads: name, version, origin, operations and description.

    Operations are shown when the manifest declares them (the default of its
    `operation_weights` config key); nothing is imported.
    """
    result = _discover(state)
    rows: list[dict[str, object]] = []
    table = Table(
        "name", "version", "origin", "operations (default weight)", "description", box=None
    )
    for plugin in result.plugins:
        if "workload" not in plugin.manifest.provides:
            continue
        declared = plugin.manifest.config.get("operation_weights")
        weights = declared_weights(declared.default if declared is not None else None)
        m = plugin.manifest
        rows.append(
            {
                "name": m.name,
                "version": m.version,
                "origin": plugin.origin,
                "operations": weights,
                "description": m.description,
                "location": plugin.location,
            }
        )
        operations = (
            ", ".join(f"{k} {v}" for k, v in weights.items()) if weights else "(not declared)"
        )
        table.add_row(m.name, m.version, plugin.origin, operations, m.description)
    if as_json:
        out.print_json(json.dumps({"workloads": rows}))
    elif rows:
        wide = out if out.is_terminal else Console(file=out.file, width=200, highlight=False)
        wide.print(table)
    else:
        out.print("No workload plugins found.")


# --------------------------------------------------------------------------- config validate


def validate_bench_config(state: State, config: TetherConfig) -> list[TetherError]:
    """Problems of a config's bench sections (none when it has no ``workload`` section)."""
    if not BenchConfig.present_in(config):
        return []
    problems: list[TetherError] = []
    try:
        bench_config = BenchConfig.from_config(config)
        bench_config.settings()
    except TetherError as exc:
        return [exc]
    if bench_config.workload.plugin_name is None:
        return problems
    try:
        spec = find_workload(state, bench_config.workload.plugin_name)
        manifest_weights = None
        if spec.path is not None:
            manifest = load_manifest(spec.path)
            field_ = manifest.config.get("operation_weights")
            manifest_weights = declared_weights(field_.default if field_ is not None else None)
            _check_plugin_config(manifest, bench_config)
        if manifest_weights:
            resolve_weights(
                spec.name,
                manifest_weights,
                bench_config.workload.plugin_config.get("operation_weights"),
                source=bench_config.where,
            )
    except TetherError as exc:
        problems.append(exc)
    else:
        out.print(f"[green]✓[/] {bench_config.where}: workload '{spec.name}' ({spec.origin})")
    return problems


def _check_plugin_config(manifest: Manifest, config: BenchConfig) -> None:
    from tether import validate_plugin_config

    try:
        validate_plugin_config(manifest.name, manifest.config, config.workload.plugin_config)
    except ConfigError as exc:
        raise WorkloadConfigError(
            f"{config.where}: workload.plugin_config: {exc}",
            plugin=manifest.name,
            hint=f"`tether plugins info {manifest.name}` lists each key, its type and default",
        ) from None


def _extend_config_validate() -> None:
    """Make ``tether config validate`` check a bench config's sections too."""
    command = config_group.commands.get("validate")
    if command is None or command.callback is None:
        return
    original = command.callback

    @click.pass_context
    def callback(ctx: click.Context, /, *args: object, **kwargs: object) -> object:
        state = ctx.find_object(State) or State()
        problems: list[TetherError] = []
        if state.config_path is not None:
            problems = validate_bench_config(state, state.config())
        for problem in problems:
            print_error(problem)
        result = ctx.invoke(original, *args, **kwargs)
        if problems:
            raise TetherError(
                f"{state.config_path}: {len(problems)} problem(s) in the bench sections",
                hint="fix the problems listed above",
            )
        return result

    command.callback = callback


_extend_config_validate()
