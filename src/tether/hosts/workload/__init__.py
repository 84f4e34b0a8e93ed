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
"""

from tether.hosts.workload._compare import render_comparison
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
from tether.hosts.workload._progress import Progress
from tether.hosts.workload._report import EXIT_ERROR_RATE, REPORT_FORMAT, BenchReport
from tether.hosts.workload._runner import plans_for, run_bench
from tether.hosts.workload._saved import SavedOperation, SavedRun, read_run
from tether.hosts.workload._series import MAX_POINTS, OperationSeries, Series, SeriesData
from tether.hosts.workload._settings import (
    BENCH_CONFIG_SECTION,
    CLIENTS_PER_PROCESS,
    DEFAULT_DURATION,
    DSN_ENV,
    WORKLOAD_CONFIG_SECTION,
    BenchConfig,
    BenchConfigProblem,
    BenchSection,
    BenchSettings,
    DatabaseSection,
    WorkloadSection,
    auto_processes,
    usable_cores,
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
    "Plan",
    "Pool",
    "Progress",
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
