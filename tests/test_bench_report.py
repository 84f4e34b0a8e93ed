"""``tether bench --report FILE.html`` and ``--compare`` end to end.

Real short runs against the session's embedded PostgreSQL write the page; a real
headless Chromium (Debian's, installed here when it is absent and we are root)
opens it with every network request failing, dumps the DOM after the page's script
ran and takes a screenshot, which a small PNG decoder (zlib, below) reads back: each
chart must have its series in the DOM and their colours on screen.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from click.testing import CliRunner, Result

from helpers import PluginWriter
from tether.cli import cli

pytest_plugins = ["pg"]

WIDTH, HEIGHT = 1100, 2400  # the window: the charts are in its top part, the tables below
JOURNAL = """
class Workload:
    async def initialize(self, config):
        self.config = config

    async def setup(self, db):
        await db.execute("CREATE TABLE IF NOT EXISTS journal (op text NOT NULL)")

    async def cleanup(self, db):
        await db.execute("DROP TABLE IF EXISTS journal")

    async def execute_operation(self, db, operation_type):
        if operation_type == "fail":
            raise LookupError("no such <journal> row")
        if operation_type == "write":
            await db.execute("INSERT INTO journal (op) VALUES ($1)", operation_type)
        else:
            await db.fetchval("SELECT count(*) FROM (SELECT 1 FROM journal LIMIT 50) AS s")

    def get_operation_types(self):
        return {"write": 3, "read": 2, "fail": 1}
"""
# The page's copy under test also records where each chart is (the report itself
# knows nothing of this).
PROBE = """<script>
for (const node of document.querySelectorAll("svg[data-chart]")) {
  const r = node.getBoundingClientRect();
  node.setAttribute("data-box",
    [r.left + scrollX, r.top + scrollY, r.width, r.height].map(Math.round).join(","));
}
</script>
"""


# --------------------------------------------------------------------------- Chromium


def _install_chromium() -> str | None:
    """Install Debian's Chromium; None when done, else why not."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    for commands in ([install], [["apt-get", "update"], install]):
        for command in commands:
            done = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=900, check=False
            )
            if done.returncode:
                break
        else:
            return None
    return f"`{' '.join(command)}` failed: {done.stderr.strip()[-300:]}"


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0:
        pytest.skip("Chromium is not installed (/usr/bin/chromium) and only root may apt-get it")
    if shutil.which("apt-get") is None:
        pytest.skip("Chromium is not installed and there is no apt-get to install it with")
    problem = _install_chromium()
    if problem is not None:
        pytest.skip(f"Chromium could not be installed: {problem}")
    found = shutil.which("chromium")
    if found is None:
        pytest.skip("apt-get installed chromium, but no chromium command is on PATH")
    return found


def _browse(chromium: str, page: Path, profile: Path, *args: str) -> bytes:
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", f"--user-data-dir={profile}", "--hide-scrollbars",
        "--force-device-scale-factor=1", "--proxy-server=http://127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND", *args, page.as_uri(),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return done.stdout


# --------------------------------------------------------------------------- the DOM


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)
    text: str = ""

    def all(self, tag: str | None = None, **attrs: str) -> list[Node]:
        found = []
        for child in self.children:
            if (tag is None or child.tag == tag) and all(
                child.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items()
            ):
                found.append(child)
            found.extend(child.all(tag, **attrs))
        return found

    def one(self, tag: str | None = None, **attrs: str) -> Node:
        (found,) = self.all(tag, **attrs)
        return found

    @property
    def content(self) -> str:
        return self.text + "".join(child.content for child in self.children)


class _Builder(HTMLParser):
    VOID = frozenset({"meta", "br", "img", "input", "link", "hr", "col", "source"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.current = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, self.current)
        self.current.children.append(node)
        if tag not in self.VOID:
            self.current = node

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.current.children.append(Node(tag, {k: v or "" for k, v in attrs}, self.current))

    def handle_endtag(self, tag: str) -> None:
        node: Node | None = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data: str) -> None:
        self.current.children.append(Node("#text", {}, self.current, text=data))


def parse_dom(text: str) -> Node:
    builder = _Builder()
    builder.feed(text)
    return builder.root


def vertices(d: str) -> int:
    return len(re.findall(r"[ML]-?\d", d))


# --------------------------------------------------------------------------- the screenshot


def decode_png(data: bytes, *, rows: int) -> tuple[int, list[bytes]]:
    """The first ``rows`` rows (RGB bytes) of an 8-bit RGB or RGBA PNG; its width."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, chunks, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", data[pos + 8 : pos + 8 + length])
        elif kind == b"IDAT":
            chunks.append(data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    assert header is not None
    width, height, depth, colour, _, _, interlace = header
    assert (depth, colour, interlace) in {(8, 2, 0), (8, 6, 0)}, header
    bpp = 3 if colour == 2 else 4
    stride = width * bpp
    raw = zlib.decompress(b"".join(chunks))
    previous, out = bytearray(stride), []
    for y in range(min(rows, height)):
        start = y * (stride + 1)
        line = _unfilter(raw[start], bytearray(raw[start + 1 : start + 1 + stride]), previous, bpp)
        out.append(bytes(line) if bpp == 3 else bytes(b for i, b in enumerate(line) if i % 4 != 3))
        previous = line
    return width, out


def _lanes(data: bytes | bytearray) -> int:
    """The bytes as one integer with a 16-bit lane per byte (room for a carry)."""
    spread = bytearray(2 * len(data))
    spread[1::2] = data
    return int.from_bytes(spread, "big")


def _low_bytes(lanes: int, count: int) -> bytearray:
    return bytearray(lanes.to_bytes(2 * count, "big")[1::2])


def _unfilter(kind: int, line: bytearray, up: bytearray, bpp: int) -> bytearray:
    """Undo one row's PNG filter. Sub and Up add whole rows at once, byte by byte in
    16-bit lanes of one integer (Sub as a running sum in log2(width) steps); Average
    and Paeth depend on the byte just decoded, so they go one byte at a time."""
    n = len(line)
    if kind == 1:
        mask, lanes, step = _lanes(b"\xff" * n), _lanes(line), bpp
        while step < n:
            lanes = (lanes + (lanes >> (16 * step))) & mask
            step *= 2
        return _low_bytes(lanes, n)
    if kind == 2:
        return _low_bytes(_lanes(line) + _lanes(up), n)
    if kind == 3:
        for i in range(n):
            left = line[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + ((left + up[i]) >> 1)) & 0xFF
    elif kind == 4:
        _paeth(line, up, bpp)
    return line


def _paeth(line: bytearray, up: bytearray, bpp: int) -> None:
    for i in range(bpp):
        line[i] = (line[i] + up[i]) & 0xFF
    for i in range(bpp, len(line)):
        a, b, c = line[i - bpp], up[i], up[i - bpp]
        pa = b - c if b > c else c - b  # |p - a| for p = a + b - c
        pb = a - c if a > c else c - a
        pc = a + b - c - c
        if pc < 0:
            pc = -pc
        if pa <= pb and pa <= pc:
            line[i] = (line[i] + a) & 0xFF
        elif pb <= pc:
            line[i] = (line[i] + b) & 0xFF
        else:
            line[i] = (line[i] + c) & 0xFF


@dataclass
class Page:
    dom: Node
    width: int
    pixels: list[bytes]
    _colours: dict[str, Counter[bytes]] = field(default_factory=dict)

    def chart(self, chart_id: str) -> Node:
        return self.dom.one("svg", data_chart=chart_id)

    def colour_count(self, chart: Node, colour: tuple[int, int, int], *, slack: int = 60) -> int:
        """Pixels of the chart's area within ``slack`` (summed over R, G, B) of ``colour``."""
        box = chart.attrs["data-box"]
        if box not in self._colours:
            x, y, w, h = (int(v) for v in box.split(","))
            counts: Counter[bytes] = Counter()
            for row in self.pixels[y : y + h]:
                part = row[3 * x : 3 * min(x + w, self.width)]
                counts.update(part[i : i + 3] for i in range(0, len(part), 3))
            self._colours[box] = counts
        return sum(
            n
            for found, n in self._colours[box].items()
            if sum(abs(a - b) for a, b in zip(found, colour, strict=True)) <= slack
        )


def open_page(chromium: str, page: Path, tmp_path: Path) -> Page:
    """Open ``page`` (a copy that also records where each chart is): its DOM after the
    page's script ran, and the screenshot's rows down to the lowest chart."""
    probe = tmp_path / f"probe-{page.name}"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"))
    shot = tmp_path / f"{page.stem}.png"
    dom = parse_dom(
        _browse(
            chromium, probe, tmp_path / "chromium-profile", f"--window-size={WIDTH},{HEIGHT}",
            f"--screenshot={shot}", "--dump-dom",
        ).decode()
    )  # fmt: skip
    charts = [n for n in dom.all("svg") if "data-chart" in n.attrs]
    assert charts, "no chart was drawn"
    lowest = max(sum(int(v) for v in n.attrs["data-box"].split(",")[1::2]) for n in charts)
    assert lowest <= HEIGHT, f"the charts reach {lowest}px, below the {HEIGHT}px window"
    width, pixels = decode_png(shot.read_bytes(), rows=lowest + 1)
    return Page(dom, width, pixels)


def rgb(colour: str, opacity: float = 1.0) -> tuple[int, int, int]:
    """``#rrggbb`` as drawn over white at ``opacity``."""
    channels = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    r, g, b = (round(c * opacity + 255 * (1 - opacity)) for c in channels)
    return r, g, b


def _defined(values: list[float | None]) -> int:
    return sum(v is not None for v in values)


BACKGROUNDS = ((255, 255, 255), (245, 246, 248))  # the panels' and the page's


def _legend_colour(page: Page, chart_id: str, group: str) -> str | None:
    """The colour the chart's legend gives ``group`` (None: the chart has no legend)."""
    panels = page.dom.all(id=f"panel-{chart_id}")
    entries = [b for p in panels for b in p.all("button") if b.attrs.get("data-legend") == group]
    if not entries:
        return None
    (mark,) = [n for n in entries[0].all() if n.tag in {"line", "rect"}]
    return mark.attrs.get("stroke") or mark.attrs.get("fill")


def assert_drawn(page: Page, chart_id: str, series: dict[str, int | tuple[int, int]]) -> None:
    """The chart has a path per named series with that many points (and, given as
    (points, drawn), that many drawn: a point without successes has no latency), in
    its legend's colour, which is not the background's and is on screen in the chart."""
    chart = page.chart(chart_id)
    paths = {p.attrs["data-series"]: p for p in chart.all("path") if "data-series" in p.attrs}
    assert set(paths) == set(series), (chart_id, sorted(paths))
    for name, expected in series.items():
        points, drawn = expected if isinstance(expected, tuple) else (expected, expected)
        path = paths[name]
        assert int(path.attrs["data-points"]) == points, (chart_id, name)
        assert vertices(path.attrs["d"]) >= drawn, (chart_id, name)
        stroke, fill = path.attrs.get("stroke", "none"), path.attrs.get("fill", "none")
        hex_colour = stroke if stroke != "none" else fill
        legend = _legend_colour(page, chart_id, path.attrs["data-group"])
        assert legend in {None, hex_colour}, (chart_id, name, hex_colour, legend)
        opacity = 1.0 if stroke != "none" else float(path.attrs.get("fill-opacity", "1"))
        colour = rgb(hex_colour, opacity)
        distance = min(sum(abs(a - b) for a, b in zip(colour, bg, strict=True))
                       for bg in BACKGROUNDS)  # fmt: skip
        assert distance > 120, f"{chart_id}: {name} is drawn in the background's colour"
        assert page.colour_count(chart, colour) >= 25, (chart_id, name, colour)


# --------------------------------------------------------------------------- runs


@dataclass
class Run:
    data: dict
    json_file: Path
    html_file: Path


def bench(*args: str, plugin_path: Path | None = None) -> Result:
    prefix = ["--plugin-path", str(plugin_path)] if plugin_path else []
    return CliRunner().invoke(cli, [*prefix, "bench", *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, pg_server_url: str) -> dict[str, Run]:
    """Two short runs of the journal workload, each with its JSON and HTML reports:
    A with one client, B with two (``--processes``: tests/test_bench.py)."""
    directory = tmp_path_factory.mktemp("report-runs")
    PluginWriter(directory / "plugins")(
        "journal", JOURNAL, entry="journal:Workload", directory="journal", provides=["workload"]
    )
    schema = f"report_{os.getpid()}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in pg_server_url else "?"
    dsn = f"{pg_server_url}{separator}options={quote(f'-csearch_path={schema}')}"
    found = {}
    for label, clients in (("A", "1"), ("B", "2")):
        json_file, html_file = directory / f"{label}.json", directory / f"{label}.html"
        result = bench(
            "-w", "journal", "--dsn", dsn, "-T", "1.5s", "--seed", "1", "--format", "json",
            "-q", "--report", str(html_file), "-c", clients, plugin_path=directory / "plugins",
        )  # fmt: skip
        assert result.exit_code == 0, result.stderr
        assert "report:" not in result.stderr  # -q: no notices
        json_file.write_text(result.stdout, encoding="utf-8")
        found[label] = Run(json.loads(result.stdout), json_file, html_file)
    return found


def assert_self_contained(html: str) -> None:
    assert not re.search(r"""\b(src|href)\s*=""", html)
    assert "<link" not in html
    assert "@import" not in html
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", html)


# --------------------------------------------------------------------------- tests


@pytest.mark.slow
def test_a_run_writes_one_page_that_draws_every_chart(runs, tmp_path, chromium):
    run = runs["B"]
    data, series = run.data, run.data["series"]
    points = len(series["time"])
    assert points >= 3  # 1.5 seconds of half-second ticks
    assert sum(series["total"]["successes"]) == data["totals"]["transactions"]
    assert sum(series["total"]["errors"]) == data["totals"]["errors"] > 0
    assert sum(series["operations"]["fail"]["errors"]) == data["operations"]["fail"]["errors"]
    html = run.html_file.read_text(encoding="utf-8")
    assert_self_contained(html)
    assert "no such <journal> row" not in html  # text of the run is data, never markup

    page = open_page(chromium, run.html_file, tmp_path)
    assert_drawn(page, "throughput", {"all operations": points, "write": points, "read": points})
    assert_drawn(page, "latency", {
        f"{op} {p}": (points, _defined(series["operations"][op][f"{p}_ms"]))
        for op in ("write", "read") for p in ("p50", "p99")
    })  # fmt: skip
    assert_drawn(page, "errors", {"fail": points})
    for op in ("write", "read"):
        (bins,) = page.chart(f"histogram-{op}").all("path", data_series=op)
        assert int(bins.attrs["data-points"]) >= 3
        assert_drawn(page, f"histogram-{op}", {op: int(bins.attrs["data-points"])})
    legend = [b.content.strip() for b in page.dom.one(id="panel-throughput").all("button")]
    assert legend == ["all operations", "write", "read"]
    operations = page.dom.one("table", id="operations").content
    assert all(name in operations for name in ("write", "read", "fail", "total"))
    assert "no such <journal> row" in page.dom.one("table", id="distinct-errors").content
    clients = page.dom.one("tr", data_setting="clients").content
    assert clients.replace("clients", "").strip() == "2"
    tps = page.dom.one(data_card="Throughput").content
    assert f"{round(data['totals']['tps']):,}" in tps


@pytest.mark.slow
def test_two_saved_runs_compare_as_text_and_as_one_page(runs, tmp_path, chromium):
    one, two = runs["A"].data, runs["B"].data
    page_file = tmp_path / "both.html"
    result = bench("--compare", str(runs["A"].json_file), str(runs["B"].json_file),
                   "--report", str(page_file))  # fmt: skip
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert "settings that differ:" in text
    assert re.search(r"clients\s+1\s+2", text)
    ratio = two["totals"]["tps"] / one["totals"]["tps"]
    assert re.search(rf"total\s+tps\s+\S+\s+\S+\s+{ratio:.2f}x", text)
    assert f"report: {page_file}" in result.stderr
    assert_self_contained(page_file.read_text(encoding="utf-8"))

    page = open_page(chromium, page_file, tmp_path)
    a, b = len(one["series"]["time"]), len(two["series"]["time"])
    assert_drawn(page, "throughput", {"A": a, "B": b})
    assert_drawn(page, "latency", {
        f"{label} {p}": (len(run["series"]["time"]), _defined(run["series"]["total"][f"{p}_ms"]))
        for label, run in (("A", one), ("B", two)) for p in ("p50", "p99")
    })  # fmt: skip
    assert_drawn(page, "errors", {"A": a, "B": b})
    histogram = page.chart("histogram-write")
    assert_drawn(page, "histogram-write", {
        run: int(histogram.one("path", data_series=run).attrs["data-points"]) for run in "AB"
    })  # fmt: skip
    (badge,) = [n for n in page.dom.one(data_card="Throughput").all("span")
                if "data-ratio" in n.attrs]  # fmt: skip
    assert float(badge.attrs["data-ratio"]) == pytest.approx(ratio, rel=1e-3)
    assert badge.content == f"B/A {ratio:.2f}\N{MULTIPLICATION SIGN}"


def test_compare_runs_nothing_and_refuses_run_options(tmp_path):
    saved = tmp_path / "a.json"
    saved.write_text("{}", encoding="utf-8")
    result = bench("--compare", str(saved), str(saved), "-w", "tpcb", "-c", "4")
    assert result.exit_code == 2
    assert "--compare reads two saved reports and runs nothing" in result.stderr
    assert "--workload" in result.stderr
    assert "--clients" in result.stderr


def test_compare_names_a_file_that_is_no_bench_report(tmp_path):
    good = tmp_path / "run.json"
    good.write_text("[]", encoding="utf-8")
    bad = tmp_path / "notes.json"
    bad.write_text('{"format": 1,\n "workload": 3}', encoding="utf-8")
    result = bench("--compare", str(good), str(bad))
    assert result.exit_code == 1
    assert f"Error: {good} is not a bench report: the report: expected an object" in result.stderr
    assert "--format json" in result.stderr


def test_a_report_path_that_cannot_be_written_fails_before_the_run(tmp_path):
    missing = tmp_path / "no" / "such" / "dir" / "run.html"
    result = bench("-w", "tpcb", "--dsn", "postgresql://u:secret@127.0.0.1:1/x",
                   "--report", str(missing))  # fmt: skip
    assert result.exit_code == 2  # a usage error
    assert "Invalid value for '--report'" in result.stderr
    assert f"directory {missing.parent} does not exist" in " ".join(result.stderr.split())
    assert "cannot connect" not in result.stderr  # refused before touching a database
