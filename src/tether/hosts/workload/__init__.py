"""The workload host (``tether bench``): a PostgreSQL load generator whose workloads are plugins.

A workload plugin's manifest says ``provides: [workload]``; its entry object has
``initialize(config)``, ``setup(db)``, ``cleanup(db)``, ``execute_operation(db, op)``,
``get_operation_types()`` and, optionally, ``get_info()`` and ``get_metrics()``.
``docs/workloads.md`` is the guide; this package is the programmatic API, and what
workload plugins may share (:class:`Workload`, a base class writing the contract
methods they have in common; :func:`read_settings`, :class:`Operations`,
:class:`Counters`, :class:`Dataset`, :class:`Pool`...)::

    import asyncio
    from tether.hosts.workload import BenchSettings, WorkloadSpec, run_bench

    report = asyncio.run(
        run_bench(WorkloadSpec("tpcb", config={"scale": 1}), BenchSettings(clients=4, duration=5))
    )
    print(report.tps, report.to_json()["totals"])

Each name is imported from its module on first use (PEP 562): a contract or config
section looked up by its entry point, or a command's --help, does not import the
whole host.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing; type checkers know it
if TYPE_CHECKING:  # what type checkers and IDEs see; at run time, __getattr__ below
    from tether.hosts.workload._compare import render_comparison
    from tether.hosts.workload._cores import (
        CLIENTS_PER_PROCESS,
        auto_multiplexed_processes,
        auto_processes,
        usable_cores,
    )
    from tether.hosts.workload._database import Database, mask_dsn
    from tether.hosts.workload._embedded import DATA_DIRECTORY_ENV, default_data_directory
    from tether.hosts.workload._engine import DirectOperation, Executable, Plan, Tick
    from tether.hosts.workload._errors import (
        BenchError,
        DatabaseUnavailableError,
        EmbeddedServerError,
        ReportFileError,
        WorkerError,
        WorkloadConfigError,
    )
    from tether.hosts.workload._html import check_report_path, html_report, write_html_report
    from tether.hosts.workload._loop import EVENT_LOOP_ENV, run_with_best_loop
    from tether.hosts.workload._pacing import intended_start_ns, process_rates, split_evenly
    from tether.hosts.workload._phases import Phase, PhaseLog, ReloadAttempt
    from tether.hosts.workload._progress import Progress
    from tether.hosts.workload._reloads import RELOAD_FAILED, ReloadFollower
    from tether.hosts.workload._report import EXIT_ERROR_RATE, REPORT_FORMAT, BenchReport
    from tether.hosts.workload._runner import plans_for, run_bench
    from tether.hosts.workload._saved import SavedOperation, SavedRun, read_run
    from tether.hosts.workload._series import MAX_POINTS, OperationSeries, Series, SeriesData
    from tether.hosts.workload._settings import (
        BENCH_CONFIG_SECTION,
        DEFAULT_DURATION,
        DSN_ENV,
        WORKLOAD_CONFIG_SECTION,
        BenchConfig,
        BenchConfigProblem,
        BenchSection,
        BenchSettings,
        DatabaseSection,
        WorkloadSection,
    )
    from tether.hosts.workload._toolkit import (
        AsyncConnection,
        Counters,
        Dataset,
        Operations,
        Pool,
        Workload,
        copy_rows,
        read_settings,
        seeded_random,
        settings_keys,
        skewed,
    )
    from tether.hosts.workload._weights import resolve_weights
    from tether.hosts.workload._workload import (
        REFERENCE_NAMES,
        WORKLOAD_CONTRACT,
        WORKLOAD_METHODS,
        LoadedWorkload,
        WorkloadProtocol,
        WorkloadSpec,
        open_workload,
    )

__all__ = [
    "BENCH_CONFIG_SECTION",
    "CLIENTS_PER_PROCESS",
    "DATA_DIRECTORY_ENV",
    "DEFAULT_DURATION",
    "DSN_ENV",
    "EVENT_LOOP_ENV",
    "EXIT_ERROR_RATE",
    "MAX_POINTS",
    "REFERENCE_NAMES",
    "RELOAD_FAILED",
    "REPORT_FORMAT",
    "WORKLOAD_CONFIG_SECTION",
    "WORKLOAD_CONTRACT",
    "WORKLOAD_METHODS",
    "AsyncConnection",
    "BenchConfig",
    "BenchConfigProblem",
    "BenchError",
    "BenchReport",
    "BenchSection",
    "BenchSettings",
    "Counters",
    "Database",
    "DatabaseSection",
    "DatabaseUnavailableError",
    "Dataset",
    "DirectOperation",
    "EmbeddedServerError",
    "Executable",
    "LoadedWorkload",
    "OperationSeries",
    "Operations",
    "Phase",
    "PhaseLog",
    "Plan",
    "Pool",
    "Progress",
    "ReloadAttempt",
    "ReloadFollower",
    "ReportFileError",
    "SavedOperation",
    "SavedRun",
    "Series",
    "SeriesData",
    "Tick",
    "WorkerError",
    "Workload",
    "WorkloadConfigError",
    "WorkloadProtocol",
    "WorkloadSection",
    "WorkloadSpec",
    "auto_multiplexed_processes",
    "auto_processes",
    "check_report_path",
    "copy_rows",
    "default_data_directory",
    "html_report",
    "intended_start_ns",
    "mask_dsn",
    "open_workload",
    "plans_for",
    "process_rates",
    "read_run",
    "read_settings",
    "render_comparison",
    "resolve_weights",
    "run_bench",
    "run_with_best_loop",
    "seeded_random",
    "settings_keys",
    "skewed",
    "split_evenly",
    "usable_cores",
    "write_html_report",
]

# name -> (module, attribute in it)
_EXPORTS: dict[str, tuple[str, str]] = {
    "render_comparison": ("tether.hosts.workload._compare", "render_comparison"),
    "Database": ("tether.hosts.workload._database", "Database"),
    "mask_dsn": ("tether.hosts.workload._database", "mask_dsn"),
    "DATA_DIRECTORY_ENV": ("tether.hosts.workload._embedded", "DATA_DIRECTORY_ENV"),
    "default_data_directory": ("tether.hosts.workload._embedded", "default_data_directory"),
    "DirectOperation": ("tether.hosts.workload._engine", "DirectOperation"),
    "Executable": ("tether.hosts.workload._engine", "Executable"),
    "Plan": ("tether.hosts.workload._engine", "Plan"),
    "Tick": ("tether.hosts.workload._engine", "Tick"),
    "BenchError": ("tether.hosts.workload._errors", "BenchError"),
    "DatabaseUnavailableError": ("tether.hosts.workload._errors", "DatabaseUnavailableError"),
    "EmbeddedServerError": ("tether.hosts.workload._errors", "EmbeddedServerError"),
    "ReportFileError": ("tether.hosts.workload._errors", "ReportFileError"),
    "WorkerError": ("tether.hosts.workload._errors", "WorkerError"),
    "WorkloadConfigError": ("tether.hosts.workload._errors", "WorkloadConfigError"),
    "check_report_path": ("tether.hosts.workload._html", "check_report_path"),
    "html_report": ("tether.hosts.workload._html", "html_report"),
    "write_html_report": ("tether.hosts.workload._html", "write_html_report"),
    "EVENT_LOOP_ENV": ("tether.hosts.workload._loop", "EVENT_LOOP_ENV"),
    "run_with_best_loop": ("tether.hosts.workload._loop", "run_with_best_loop"),
    "intended_start_ns": ("tether.hosts.workload._pacing", "intended_start_ns"),
    "process_rates": ("tether.hosts.workload._pacing", "process_rates"),
    "split_evenly": ("tether.hosts.workload._pacing", "split_evenly"),
    "Progress": ("tether.hosts.workload._progress", "Progress"),
    "Phase": ("tether.hosts.workload._phases", "Phase"),
    "PhaseLog": ("tether.hosts.workload._phases", "PhaseLog"),
    "ReloadAttempt": ("tether.hosts.workload._phases", "ReloadAttempt"),
    "RELOAD_FAILED": ("tether.hosts.workload._reloads", "RELOAD_FAILED"),
    "ReloadFollower": ("tether.hosts.workload._reloads", "ReloadFollower"),
    "EXIT_ERROR_RATE": ("tether.hosts.workload._report", "EXIT_ERROR_RATE"),
    "REPORT_FORMAT": ("tether.hosts.workload._report", "REPORT_FORMAT"),
    "BenchReport": ("tether.hosts.workload._report", "BenchReport"),
    "plans_for": ("tether.hosts.workload._runner", "plans_for"),
    "run_bench": ("tether.hosts.workload._runner", "run_bench"),
    "SavedOperation": ("tether.hosts.workload._saved", "SavedOperation"),
    "SavedRun": ("tether.hosts.workload._saved", "SavedRun"),
    "read_run": ("tether.hosts.workload._saved", "read_run"),
    "MAX_POINTS": ("tether.hosts.workload._series", "MAX_POINTS"),
    "OperationSeries": ("tether.hosts.workload._series", "OperationSeries"),
    "Series": ("tether.hosts.workload._series", "Series"),
    "SeriesData": ("tether.hosts.workload._series", "SeriesData"),
    "BENCH_CONFIG_SECTION": ("tether.hosts.workload._settings", "BENCH_CONFIG_SECTION"),
    "DEFAULT_DURATION": ("tether.hosts.workload._settings", "DEFAULT_DURATION"),
    "DSN_ENV": ("tether.hosts.workload._settings", "DSN_ENV"),
    "WORKLOAD_CONFIG_SECTION": ("tether.hosts.workload._settings", "WORKLOAD_CONFIG_SECTION"),
    "BenchConfig": ("tether.hosts.workload._settings", "BenchConfig"),
    "BenchConfigProblem": ("tether.hosts.workload._settings", "BenchConfigProblem"),
    "BenchSection": ("tether.hosts.workload._settings", "BenchSection"),
    "BenchSettings": ("tether.hosts.workload._settings", "BenchSettings"),
    "DatabaseSection": ("tether.hosts.workload._settings", "DatabaseSection"),
    "WorkloadSection": ("tether.hosts.workload._settings", "WorkloadSection"),
    "CLIENTS_PER_PROCESS": ("tether.hosts.workload._cores", "CLIENTS_PER_PROCESS"),
    "auto_processes": ("tether.hosts.workload._cores", "auto_processes"),
    "auto_multiplexed_processes": ("tether.hosts.workload._cores", "auto_multiplexed_processes"),
    "usable_cores": ("tether.hosts.workload._cores", "usable_cores"),
    "AsyncConnection": ("tether.hosts.workload._toolkit", "AsyncConnection"),
    "Counters": ("tether.hosts.workload._toolkit", "Counters"),
    "Dataset": ("tether.hosts.workload._toolkit", "Dataset"),
    "Operations": ("tether.hosts.workload._toolkit", "Operations"),
    "Pool": ("tether.hosts.workload._toolkit", "Pool"),
    "Workload": ("tether.hosts.workload._toolkit", "Workload"),
    "copy_rows": ("tether.hosts.workload._toolkit", "copy_rows"),
    "read_settings": ("tether.hosts.workload._toolkit", "read_settings"),
    "seeded_random": ("tether.hosts.workload._toolkit", "seeded_random"),
    "settings_keys": ("tether.hosts.workload._toolkit", "settings_keys"),
    "skewed": ("tether.hosts.workload._toolkit", "skewed"),
    "resolve_weights": ("tether.hosts.workload._weights", "resolve_weights"),
    "REFERENCE_NAMES": ("tether.hosts.workload._workload", "REFERENCE_NAMES"),
    "WORKLOAD_CONTRACT": ("tether.hosts.workload._workload", "WORKLOAD_CONTRACT"),
    "WORKLOAD_METHODS": ("tether.hosts.workload._workload", "WORKLOAD_METHODS"),
    "LoadedWorkload": ("tether.hosts.workload._workload", "LoadedWorkload"),
    "WorkloadProtocol": ("tether.hosts.workload._workload", "WorkloadProtocol"),
    "WorkloadSpec": ("tether.hosts.workload._workload", "WorkloadSpec"),
    "open_workload": ("tether.hosts.workload._workload", "open_workload"),
}


def __getattr__(name: str) -> object:
    """Import a public name from its module on first use, then keep it here."""
    try:
        module_name, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'tether.hosts.workload' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module_name), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
