"""``tether bench`` and ``tether workloads list``: the workload host on the command line.

A bench config has the reference's shape; every key is optional and command-line
options override it::

    workload:
      type: plugin                 # the only type: built-in workloads are plugins too
      plugin_name: tpcb
      plugin_config: {scale: 1, operation_weights: {tpcb_like: 1, select_only: 0}}
    database:
      dsn: postgresql://bench:secret@127.0.0.1:5432/bench   # else $TETHER_DSN / embedded
      data_directory: ~/.tether/pgdata                       # the embedded server's
    bench: {clients: 8, duration: 30s, warmup: 5s, max_error_rate: 1%}

Exit codes: 0 done, 1 an error (``Error: ...`` + hint), 2 a usage error,
3 the error rate was above ``--max-error-rate`` (the report is still printed),
130 interrupted (Ctrl-C during the run still prints the report).
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import click
import yaml
from rich.console import Console
from rich.table import Table

from tether import Manifest, TetherConfig, load_config, load_manifest
from tether._durations import parse_duration
from tether.cli._app import EXIT_INTERRUPTED, State, cli, pass_state
from tether.cli._commands import _discover, config_group
from tether.cli._output import err, out, print_error
from tether.errors import ConfigError, PluginNotFoundError, TetherError
from tether.hosts.workload import (
    EXIT_ERROR_RATE,
    BenchReport,
    BenchSettings,
    Progress,
    WorkloadConfigError,
    WorkloadSpec,
    resolve_weights,
    run_bench,
    run_with_best_loop,
)

__all__ = ["bench", "workloads"]

DSN_ENV = "TETHER_DSN"
_NUMBER = re.compile(r"\d+(\.\d*)?|\.\d+")
BENCH_KEYS = (
    "clients",
    "duration",
    "transactions",
    "rate",
    "warmup",
    "setup",
    "cleanup",
    "seed",
    "processes",
    "max_error_rate",
)
WORKLOAD_KEYS = ("type", "plugin_name", "plugin_config")


# --------------------------------------------------------------------------- the bench config


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """The sections of a bench config file that ``tether bench`` reads (checked)."""

    path: Path | None
    framework: TetherConfig
    workload: str | None = None
    plugin_config: dict[str, object] = field(default_factory=dict)
    bench: dict[str, object] = field(default_factory=dict)
    dsn: str | None = None
    data_directory: Path | None = None

    @property
    def where(self) -> str:
        return str(self.path) if self.path else "the command line"


def _problem(path: Path | None, key: str, message: str, hint: str) -> WorkloadConfigError:
    where = f"{path}: " if path else ""
    return WorkloadConfigError(f"{where}{key}: {message}", path=path, hint=hint)


def _unknown(
    path: Path | None, section: str, section_data: Mapping[str, object], known: tuple[str, ...]
) -> None:
    for key in section_data:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            suggestion = f" (did you mean '{close[0]}'?)" if close else ""
            raise _problem(
                path,
                f"{section}.{key}",
                f"unknown key{suggestion}",
                f"the keys of `{section}` are: {', '.join(known)}",
            )


def read_bench_config(config: TetherConfig) -> BenchConfig:
    """The ``workload``, ``database`` and ``bench`` sections of ``config``, checked."""
    path = config.path
    workload = config.section("workload")
    _unknown(path, "workload", workload, WORKLOAD_KEYS)
    kind = workload.get("type", "plugin")
    if kind != "plugin":
        raise _problem(
            path,
            "workload.type",
            f"must be 'plugin', got {kind!r}",
            "every workload is a plugin, the built-in ones included: type: plugin",
        )
    name = workload.get("plugin_name")
    if name is not None and not isinstance(name, str):
        raise _problem(
            path,
            "workload.plugin_name",
            f"must be a string, got {name!r}",
            "name a workload plugin",
        )
    plugin_config = workload.get("plugin_config") or {}
    if not isinstance(plugin_config, dict):
        raise _problem(
            path,
            "workload.plugin_config",
            "must be a mapping",
            "give the plugin's settings as key: value pairs",
        )
    bench_section = config.section("bench")
    _unknown(path, "bench", bench_section, BENCH_KEYS)
    database = config.section("database")
    directory = database.get("data_directory")
    return BenchConfig(
        path=path,
        framework=config,
        workload=name,
        plugin_config=dict(plugin_config),
        bench=bench_section,
        dsn=config.database.dsn,
        data_directory=Path(str(directory)).expanduser() if directory else None,
    )


def _seconds(path: Path | None, key: str, value: object) -> float:
    """A duration: ``30s``, ``1m30s``, ``500ms``, or a plain number of seconds."""
    try:
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            value = float(value)
        return parse_duration(value).total_seconds()
    except ValueError as exc:
        raise _problem(path, key, str(exc), "write a duration like 30s, 500ms or 1m30s") from None


def _fraction(path: Path | None, key: str, value: object) -> float:
    text = str(value).strip()
    try:
        if text.endswith("%"):
            return float(text[:-1]) / 100.0
        return float(text)
    except ValueError:
        raise _problem(
            path, key, f"not a rate: {value!r}", "write a fraction (0.01) or a percentage (1%)"
        ) from None


def _integer(path: Path | None, key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _problem(
            path, key, f"must be an integer, got {value!r}", f"set {key} to a whole number"
        )
    return value


def _boolean(path: Path | None, key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _problem(
            path, key, f"must be true or false, got {value!r}", f"set {key} to true or false"
        )
    return value


@dataclass(frozen=True, slots=True)
class Flags:
    """The options given on the command line (``None``: not given)."""

    clients: int | None = None
    duration: str | None = None
    transactions: int | None = None
    rate: float | None = None
    warmup: str | None = None
    setup: bool | None = None
    cleanup: bool | None = None
    seed: int | None = None
    processes: int | None = None
    max_error_rate: str | None = None
    dsn: str | None = None
    data_directory: Path | None = None


_CONVERTERS = {
    "clients": _integer,
    "transactions": _integer,
    "seed": _integer,
    "processes": _integer,
    "setup": _boolean,
    "cleanup": _boolean,
    "duration": _seconds,
    "warmup": _seconds,
    "max_error_rate": _fraction,
}


def _rate(path: Path | None, key: str, value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return _fraction(path, key, value)


def settings_from(config: BenchConfig, flags: Flags) -> BenchSettings:
    """Flags over the config's ``bench:`` section over the defaults."""
    section = dict(config.bench)
    if flags.duration is not None or flags.transactions is not None:
        section.pop("duration", None)  # a length on the command line replaces the config's
        section.pop("transactions", None)
    values: dict[str, object] = {}
    for key, convert in {**_CONVERTERS, "rate": _rate}.items():
        flag = getattr(flags, key)
        label, value = (
            (f"--{key.replace('_', '-')}", flag)
            if flag is not None
            else (f"bench.{key}", section.get(key))
        )
        if value is not None:
            values[key] = convert(config.path, label, value)
    if "seed" not in values:
        values["seed"] = random.SystemRandom().randrange(1 << 31)
    dsn = flags.dsn or os.environ.get(DSN_ENV) or config.dsn
    return BenchSettings(
        **values,  # type: ignore[arg-type]
        dsn=dsn or None,
        data_directory=flags.data_directory or config.data_directory,
        source=config.where,
    )


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


def _load_bench_config(state: State, config_file: Path | None) -> BenchConfig:
    if config_file is not None:
        return read_bench_config(load_config(config_file))
    return read_bench_config(state.config())


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
    config_file: Path | None,
    workload_name: str | None,
    duration: str | None,
    transactions: int | None,
    clients: int | None,
    rate: float | None,
    warmup: str | None,
    dsn: str | None,
    data_directory: Path | None,
    setup: bool | None,
    cleanup: bool | None,
    seed: int | None,
    processes: int | None,
    max_error_rate: str | None,
    plugin_settings: tuple[str, ...],
    fmt: str,
    quiet: bool,
) -> None:
    """Run a workload plugin against PostgreSQL and report throughput and latency.

    \b
    tether bench --workload tpcb --clients 8 --duration 30s
    tether bench --config bench.yaml --format json | jq '.metrics'

    Without a DSN an embedded PostgreSQL (with pgvector) is started in
    ~/.tether/pgdata and reused by later runs. Exit codes: 0 done, 1 error,
    2 usage error, 3 error rate above --max-error-rate, 130 interrupted.
    """
    if duration is not None and transactions is not None:
        raise click.UsageError("give --duration or --transactions, not both")
    config = _load_bench_config(state, config_file)
    name = workload_name or config.workload
    if name is None:
        raise WorkloadConfigError(
            "no workload given",
            path=config.path,
            hint="pass --workload NAME, or set workload.plugin_name in the config "
            "(`tether workloads list` shows them)",
        )
    flags = Flags(
        clients,
        duration,
        transactions,
        rate,
        warmup,
        setup,
        cleanup,
        seed,
        processes,
        max_error_rate,
        dsn,
        data_directory,
    )
    settings = settings_from(config, flags)
    plugin_config = (
        dict(config.plugin_config) if name == config.workload or config.workload is None else {}
    )
    if config.workload is not None and name != config.workload and config.plugin_config:
        err.print(
            f"note: ignoring workload.plugin_config of '{config.workload}' in {config.where}: "
            f"running '{name}'",
            highlight=False,
        )
    plugin_config.update(_parse_settings(plugin_settings))
    found = find_workload(state, name)
    spec = WorkloadSpec(
        name=name,
        path=found.path,
        config=plugin_config,
        origin=found.origin,
        config_source=config.where,
    )
    report = _run(spec, settings, config.framework, quiet=quiet)
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
    if not config.section("workload") and not config.section("bench"):
        return []
    problems: list[TetherError] = []
    try:
        bench_config = read_bench_config(config)
        settings_from(bench_config, Flags(seed=0))
    except TetherError as exc:
        return [exc]
    if bench_config.workload is None:
        return problems
    try:
        spec = find_workload(state, bench_config.workload)
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
                bench_config.plugin_config.get("operation_weights"),
                source=bench_config.where,
            )
    except TetherError as exc:
        problems.append(exc)
    else:
        out.print(f"[green]✓[/] {bench_config.where}: workload '{spec.name}' ({spec.origin})")
    return problems


def _check_plugin_config(manifest: Manifest, config: BenchConfig) -> None:
    from tether._config import validate_plugin_config

    try:
        validate_plugin_config(manifest.name, manifest.config, config.plugin_config)
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
