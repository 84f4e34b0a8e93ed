"""``tether serve --watch``: a real server process on 127.0.0.1, a plugin directory in
tmp_path, saves made to it, and what an HTTP client and the log file see.

Every wait polls against a deadline (the route's answer, a line in the log file); the
server is started and ended by pid, by the test that started it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner

from helpers import PluginWriter, line_of
from tether.cli import cli

ANSWERING = """
    import tether

    ANSWER = "{answer}"

    class Plugin(tether.Plugin):
        def initialize(self, ctx):
            super().initialize(ctx)
            ctx.router.get("/answer", self.answer)

        async def answer(self, request):
            return {{"answer": ANSWER}}
"""

BROKEN = """
    import tether

    class Plugin(tether.Plugin):
        def initialize(self, ctx:  # BROKEN
            pass
"""

DEADLINE = 60.0


def save(path: Path, text: str) -> None:
    path.write_text(textwrap.dedent(text), encoding="utf-8")


def until(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Served:
    """A `tether serve --watch` process, its URL, and its log file."""

    def __init__(self, config: Path, log: Path, *options: str) -> None:
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tether", "--log-level", "info", "--log-file", str(log),
             "serve", "--config", str(config), "--port", "0", "--watch", *options],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
        )  # fmt: skip
        self.banner: list[str] = []
        self.url = self._read_url()
        self.http = httpx.Client(base_url=self.url, timeout=DEADLINE)

    def _read_url(self) -> str:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.banner.append(line)
            if line.startswith("Press Ctrl+C"):
                found = re.search(r"on (http://\S+)", "".join(self.banner))
                assert found, self.banner
                return found.group(1)
        self.process.wait(DEADLINE)
        raise AssertionError(f"tether serve did not start:\n{self.process.stderr.read()}")  # type: ignore[union-attr]

    def answer(self) -> object:
        return self.http.get("/answer").json().get("answer")

    def watch_lines(self, word: str) -> list[str]:
        lines = self.log.read_text(encoding="utf-8").splitlines()
        return [line for line in lines if line.startswith("tether.watch:") and word in line]

    def stop(self) -> tuple[int, str]:
        self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            _, stderr = self.process.communicate(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, stderr = self.process.communicate(timeout=DEADLINE)
        return self.process.returncode, stderr


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Served, Path]]:
    directory = PluginWriter(tmp_path / "plugins")(
        "greeter", textwrap.dedent(ANSWERING.format(answer="v1")), permissions={"router": True}
    )
    config = tmp_path / "app.yaml"
    entries = [{"path": str(directory)}]
    config.write_text(yaml.safe_dump({"plugins": {"plugins": entries}}), encoding="utf-8")
    server = Served(config, tmp_path / "serve.log", "--watch-debounce", "1")
    try:
        yield server, directory / "plugin.py"
    finally:
        code, stderr = server.stop()
        assert code == 0, stderr


@pytest.mark.slow
def test_serve_watch_reloads_on_save_and_survives_a_broken_save(served):
    server, source = served
    assert any("watching 1 plugin directory: a save reloads" in line for line in server.banner)
    assert server.answer() == "v1"

    save(source, ANSWERING.format(answer="v2"))
    until(lambda: server.answer() == "v2", "the saved version to answer")

    save(source, BROKEN)
    until(lambda: server.watch_lines("rolled back"), "the broken save's log line")
    assert server.answer() == "v2"  # the old version keeps answering
    broken = server.watch_lines("rolled back")
    assert len(broken) == 1, broken
    assert f"{source.resolve()}:{line_of(source, 'BROKEN')}" in broken[0]
    assert "version 1.0.0 keeps serving" in broken[0]

    save(source, ANSWERING.format(answer="v3"))
    until(lambda: server.answer() == "v3", "the fixed version to answer")
    assert len(server.watch_lines("after a change to")) == 2


@pytest.mark.slow
def test_serve_watch_makes_one_reload_of_a_burst_of_saves(served):
    server, source = served
    for number in range(5):  # within the 1 s debounce, beyond watchfiles' 50 ms grouping
        save(source, ANSWERING.format(answer=f"burst-{number}"))
        time.sleep(0.1)
    until(lambda: server.answer() == "burst-4", "the burst's last save to answer")
    save(source, ANSWERING.format(answer="after"))  # a split burst's reload would come first
    until(lambda: server.answer() == "after", "the next save to answer")
    assert len(server.watch_lines("after a change to")) == 2


# --------------------------------------------------------------------------- the options


def test_serve_help_explains_watch():
    result = CliRunner().invoke(cli, ["serve", "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "--watch Reload a plugin when a file in its directory changes" in text
    assert "a save that breaks the plugin rolls back, the running version keeps serving" in text
    assert "--watch-debounce SECONDS" in text


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--watch-debounce", "1"], "--watch-debounce needs --watch"),
        (["--watch", "--watch-debounce", "61"], "Invalid value for '--watch-debounce': 61"),
        (["--watch", "--watch-debounce", "0"], "Invalid value for '--watch-debounce'"),
    ],
)
def test_serve_refuses_a_debounce_it_cannot_use(tmp_path, options, message):
    config = tmp_path / "app.yaml"
    config.write_text("plugins: {plugins: []}\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["serve", "--config", str(config), *options])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
