"""``tether bench --report FILE.html``: the run (or two, compared) as one HTML page.

The page is self-contained: its style, its script and the run's figures are in the
file, it loads nothing (no network, no fonts, no chart library) and opens offline.
The figures are the JSON report's (:class:`SavedRun`), embedded as JSON in a
``<script type="application/json">``; the page's own script (``report_assets/``:
``charts.js``, a small chart kit, and ``report.js``, the page; written for tether)
draws the charts as SVG from them: throughput,
p50/p99 latency and errors over time (a run that reloaded its workload marks each
reload on them), a latency histogram per operation, and the tables (operations,
the phases and reloads of a run that reloaded, distinct errors, settings). Text
from the run (error messages, names) reaches the page only as JSON data, set as
text, never as markup.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from tether import __version__
from tether.hosts.workload._errors import ReportFileError
from tether.hosts.workload._saved import BINS_PER_DECADE, SavedRun
from tether.hosts.workload._series import SeriesData

__all__ = ["check_report_path", "html_report", "write_html_report"]

_ASSETS = "report_assets"
_PLACE = re.compile(r"\{\{(title|style|script|data)\}\}")


def html_report(runs: Sequence[SavedRun]) -> str:
    """The page for one run, or for two side by side (A first)."""
    title = " vs ".join(f"{run.workload}" for run in runs)
    payload = {
        "tether": __version__,
        "binsPerDecade": BINS_PER_DECADE,
        "runs": [_run(run) for run in runs],
    }
    parts = {
        "title": html.escape(f"{title} - tether bench"),
        "style": _asset("report.css"),
        "script": _asset("charts.js") + "\n" + _asset("report.js"),
        "data": _script_json(payload),
    }
    return _PLACE.sub(lambda found: parts[found[1]], _asset("report.html"))


def check_report_path(path: Path) -> None:
    """Refuse, before a run, a report path that cannot be written."""
    if path.is_dir():
        raise ReportFileError(
            f"--report {path} is a directory", path=path, hint="give a file name, e.g. report.html"
        )
    if not path.parent.is_dir():
        raise ReportFileError(
            f"--report {path}: directory {path.parent} does not exist",
            path=path,
            hint="create the directory first, or write the report elsewhere",
        )


def write_html_report(path: Path, runs: Sequence[SavedRun]) -> None:
    """Write the page to ``path`` (through a temporary file, so a reader never sees
    half a page)."""
    check_report_path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(html_report(runs), encoding="utf-8")
        partial.replace(path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ReportFileError(
            f"cannot write the report {path}: {exc.strerror or exc}",
            path=path,
            hint="check the directory's permissions and free space; the text or JSON "
            "report above has every figure",
        ) from None


def _asset(name: str) -> str:
    return (resources.files(__package__ or "tether.hosts.workload") / _ASSETS / name).read_text(
        encoding="utf-8"
    )


def _script_json(payload: object) -> str:
    """JSON that can sit inside ``<script>``: no ``<``, ``>`` or ``&`` in it."""
    text = json.dumps(_finite(payload), separators=(",", ":"), allow_nan=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _finite(value: object) -> object:
    """``value`` with NaN and infinities (a plugin's metrics may have them) as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _run(run: SavedRun) -> dict[str, object]:
    return {
        "label": run.label,
        "source": run.source,
        "workload": run.workload,
        "facts": [list(fact) for fact in run.facts],
        "totals": {
            "tps": run.tps,
            "transactions": run.transactions,
            "errors": run.errors,
            "errorRate": run.error_rate,
            "elapsed": run.elapsed,
            "latency": run.latency,
        },
        "operations": [
            {
                "name": op.name,
                "weight": op.weight,
                "count": op.count,
                "errors": op.errors,
                "tps": op.tps,
                "latency": op.latency,
                "bins": sorted(op.bins.items()),
            }
            for op in run.operations.values()
        ],
        "errors": list(run.distinct_errors),
        "series": None if run.series is None else _series(run.series),
        "info": run.info,
        "metrics": run.metrics,
        "phases": list(run.phases),
        "reloads": list(run.reloads),
    }


def _series(series: SeriesData) -> dict[str, object]:
    data = series.to_json()
    data["names"] = list(series.operations)
    return data
