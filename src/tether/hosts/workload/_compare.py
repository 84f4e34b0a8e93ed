"""``tether bench --compare A.json B.json``: two runs side by side, as text.

First what differs between the runs' settings (workload, driver, server, clients,
duration...), then, for all operations together and for each operation, the
throughput, errors and latency percentiles of A and of B with the ratio B/A. On a
terminal a ratio is green when B is better (more throughput, less latency) and
red when it is worse, by more than :data:`NOISE`.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from tether.hosts.workload._saved import SavedOperation, SavedRun

__all__ = ["NOISE", "differing_settings", "ratio", "render_comparison"]

NOISE = 0.03  # ratios closer to 1 than this are shown without colour
_PERCENTILES = ("p50", "p95", "p99", "p99.9", "max")


def ratio(a: float, b: float) -> float | None:
    """B/A, or ``None`` when A is zero."""
    return b / a if a else None


def differing_settings(a: SavedRun, b: SavedRun) -> list[tuple[str, str, str]]:
    """The settings (not the results) whose values differ: (name, A's, B's)."""
    names = [name for name, _, is_setting in a.facts if is_setting]
    names += [name for name, _, is_setting in b.facts if is_setting and name not in names]
    found = []
    for name in names:
        shown_a, shown_b = a.setting(name) or "-", b.setting(name) or "-"
        if shown_a != shown_b:
            found.append((name, shown_a, shown_b))
    return found


def render_comparison(console: Console, a: SavedRun, b: SavedRun) -> None:
    """Print A and B side by side on ``console``."""
    for run in (a, b):
        console.print(
            f"[bold]{run.label}[/]: {run.source} ({run.setting('workload')}, "
            f"started {run.setting('started at')})",
            highlight=False,
        )
    differ = differing_settings(a, b)
    if differ:
        console.print("settings that differ:", highlight=False)
        table = Table(box=None)
        for column in ("setting", a.label, b.label):
            table.add_column(column, overflow="fold")
        for row in differ:
            table.add_row(*row)
        console.print(table)
    else:
        console.print("the same settings", highlight=False)
    console.print(_figures(a, b))
    console.print(_verdict(a, b), highlight=False)


def _figures(a: SavedRun, b: SavedRun) -> Table:
    table = Table(title="latency in ms", title_justify="right", box=None, pad_edge=False)
    table.add_column("operation", overflow="fold")
    table.add_column("")
    for column in (a.label, b.label, f"{b.label}/{a.label}"):
        table.add_column(column, justify="right", no_wrap=True)
    _rows(table, "total", _totals(a), _totals(b))
    names = list(a.operations) + [n for n in b.operations if n not in a.operations]
    for name in names:
        one, two = a.operations.get(name), b.operations.get(name)
        if _is_idle(one) and _is_idle(two):
            continue
        table.add_section()
        _rows(table, name, _figures_of(one), _figures_of(two))
    return table


_Figures = dict[str, float | None]


def _totals(run: SavedRun) -> _Figures:
    latency = dict.fromkeys(run.latency) if run.transactions == 0 else run.latency
    return {"tps": run.tps, "errors": run.errors, **latency}


def _figures_of(operation: SavedOperation | None) -> _Figures | None:
    """An operation's figures; no latency without successes."""
    if operation is None:
        return None
    latency = dict.fromkeys(operation.latency) if operation.count == 0 else operation.latency
    return {"tps": operation.tps, "errors": operation.errors, **latency}


def _is_idle(operation: SavedOperation | None) -> bool:
    return operation is None or (operation.count == 0 and operation.errors == 0)


def _rows(table: Table, name: str, a: _Figures | None, b: _Figures | None) -> None:
    for index, key in enumerate(("tps", "errors", *_PERCENTILES)):
        value_a = None if a is None else a[key]
        value_b = None if b is None else b[key]
        table.add_row(
            name if index == 0 else "",
            key,
            _shown(key, value_a),
            _shown(key, value_b),
            _ratio_cell(key, value_a, value_b),
        )


def _shown(key: str, value: float | None) -> str:
    if value is None:
        return "-"
    if key == "errors":
        return str(int(value))
    return f"{value:.1f}" if key == "tps" else f"{value:.3f}"


def _ratio_cell(key: str, a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "-"
    found = ratio(a, b)
    if found is None:
        return "-"
    text = f"{found:.2f}x"
    if abs(found - 1) <= NOISE or key == "errors":
        return text
    is_better = found > 1 if key == "tps" else found < 1
    return f"[green]{text}[/]" if is_better else f"[red]{text}[/]"


def _verdict(a: SavedRun, b: SavedRun) -> str:
    tps = ratio(a.tps, b.tps)
    p99 = ratio(a.latency["p99"], b.latency["p99"])
    parts = []
    if tps is not None:
        parts.append(f"{tps:.2f}x the throughput")
    if p99 is not None:
        parts.append(f"{p99:.2f}x the p99 latency")
    if not parts:
        return f"{b.label} and {a.label}: nothing to compare (no transactions)"
    return f"{b.label} ran at " + " and ".join(parts) + f" of {a.label}"
