"""The CLI never prints a Python traceback for bad input (issue 9, point 8).

Each case feeds a command nonsense (an unwritable ``--log-file``, a ``--dir`` under
``/proc``, a timeout of ``nan``, a malformed ``--set``, an unknown plugin name, a URL
on port 70000, a server that is not tether...) and checks the documented exit code,
an ``Error:`` line naming the option or file, and no traceback.
"""

from __future__ import annotations

import asyncio
import errno
import http.server
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

import tether
from helpers import PluginWriter
from tether.cli import _exec, _ops, cli
from tether.observability import PluginStateStore

PLUGIN = """
class Plugin:
    def initialize(self, ctx): pass
    def start(self): pass
    def stop(self): pass
    def cleanup(self): pass
"""
EXECUTOR = PLUGIN + "    def execute(self, data): return data\n"
LONG = "x" * 5000


def run(*args: str, stdin: str | None = None) -> Result:
    result = CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)
    assert "Traceback" not in result.output, result.output
    return result


def usage_error(result: Result, option: str) -> None:
    """Exit 2 with click's ``Error: Invalid value for 'OPTION'`` line."""
    assert result.exit_code == 2, result.output
    assert f"Invalid value for {option}" in result.stderr, result.stderr


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TETHER_ADMIN_URL", raising=False)
    monkeypatch.delenv("TETHER_ADMIN_TOKEN", raising=False)


@pytest.fixture
def plugin(tmp_path: Path) -> Path:
    """A valid plugin, ``good-plugin``, in ./plugins."""
    return PluginWriter(tmp_path / "plugins")("good-plugin", PLUGIN, directory="good-plugin")


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


# --------------------------------------------------------------------------- --log-file


def test_log_file_in_a_missing_directory_is_a_usage_error(tmp_path: Path):
    missing = tmp_path / "no" / "such" / "dir"
    result = run("--log-file", str(missing / "tether.log"), "plugins", "list")
    usage_error(result, "'--log-file'")
    assert f"the directory {missing} does not exist" in result.stderr
    assert not missing.exists()


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        pytest.param("/proc/self/tether.log", "No such file or directory", id="proc"),
        pytest.param("FILE/tether.log", "Not a directory", id="under-a-file"),
        pytest.param(f"/tmp/{LONG}.log", "File name too long", id="overlong"),
        pytest.param("FIFO", "a FIFO no process is reading", id="fifo-without-reader"),
        pytest.param("", "must not be empty", id="empty"),
    ],
)
def test_log_file_that_cannot_be_written_is_a_usage_error(
    tmp_path: Path, fifo: Path, where: str, reason: str
):
    (tmp_path / "file").write_text("", encoding="utf-8")
    where = where.replace("FILE", str(tmp_path / "file")).replace("FIFO", str(fifo))
    result = run("--log-file", where, "plugins", "list")
    usage_error(result, "'--log-file'")
    assert reason in result.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_log_file_that_fills_up_is_reported_once_and_the_command_goes_on(plugin: Path):
    result = run("--log-file", "/dev/full", "--log-level", "debug", "plugins", "test", str(plugin))
    assert result.exit_code == 0, result.output
    line = "Error: cannot write to the log file /dev/full: No space left on device"
    assert result.stderr.count(line) == 1, result.stderr
    assert "cleanup" in result.stdout


# --------------------------------------------------------------------------- plugins new


@pytest.mark.parametrize(
    ("directory", "reason"),
    [
        pytest.param("/proc/self", "No such file or directory", id="proc"),
        pytest.param("/dev/null/plugins", "Not a directory", id="under-a-device"),
        pytest.param("FILE/plugins", "Not a directory", id="under-a-file"),
        pytest.param(f"/tmp/{LONG}", "File name too long", id="overlong"),
    ],
)
def test_plugins_new_in_a_directory_it_cannot_write(tmp_path: Path, directory: str, reason: str):
    (tmp_path / "file").write_text("", encoding="utf-8")
    directory = directory.replace("FILE", str(tmp_path / "file"))
    result = run("plugins", "new", "rate-limit", "--dir", directory)
    assert result.exit_code == 1, result.output
    assert "Error: cannot create the plugin directory " in result.stderr
    assert reason in result.stderr
    assert "Hint: pick a --dir you can write to" in result.stderr


def test_plugins_new_with_an_empty_dir_is_a_usage_error(tmp_path: Path):
    usage_error(run("plugins", "new", "rate-limit", "--dir", ""), "'--dir'")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["rate-limit\n", "rate\tlimit", "x", "Rate", "a" * 65])
def test_plugins_new_refuses_a_name_before_creating_anything(tmp_path: Path, name: str):
    result = run("plugins", "new", name)
    assert result.exit_code == 2, result.output  # a usage error
    assert f"Error: Invalid value for 'NAME': invalid plugin name {name!r}" in result.stderr
    assert not (tmp_path / "plugins").exists()


def test_plugins_new_that_fails_half_way_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    written: list[Path] = []
    real_write = Path.write_text

    def write_text(self: Path, *args: object, **kwargs: object) -> int:
        if written:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(self)
        return real_write(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", write_text)
    result = run("plugins", "new", "rate-limit", "--dir", "deep/plugins")
    assert result.exit_code == 1, result.output
    assert "No space left on device" in result.stderr
    assert written  # the manifest was written, then removed
    assert not (tmp_path / "deep").exists()


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "-inf", "0", "1e400", "5x", "", "86401"])
def test_plugins_test_timeout_refuses_nonsense(plugin: Path, value: str):
    result = run("plugins", "test", str(plugin), "--timeout", value)
    usage_error(result, "'--timeout'")


@pytest.mark.parametrize("value", ["2.5", "2s", "1m30s"])
def test_plugins_test_timeout_takes_seconds_or_a_duration(plugin: Path, value: str):
    result = run("plugins", "test", str(plugin), "--timeout", value)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "0", "5x", "1e300"])
def test_serve_graceful_timeout_refuses_nonsense(tmp_path: Path, value: str):
    config = tmp_path / "app.yaml"
    config.write_text("plugins: {}\n", encoding="utf-8")
    result = run("serve", "--config", str(config), "--graceful-timeout", value)
    usage_error(result, "'--graceful-timeout'")


@pytest.mark.parametrize(
    ("option", "value"),
    [("--host", ""), ("--host", "127.0.0.1\n"), ("--admin-token", ""), ("--port", "70000")],
)
def test_serve_refuses_empty_or_odd_text(tmp_path: Path, option: str, value: str):
    config = tmp_path / "app.yaml"
    config.write_text("plugins: {}\n", encoding="utf-8")
    usage_error(run("serve", "--config", str(config), option, value), f"'{option}'")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--duration", "5x"),
        ("--duration", "nan"),
        ("--warmup", "-1"),
        ("--clients", "0"),
        ("--clients", "-1"),
        ("--transactions", "0"),
        ("--processes", "0"),
        ("--rate", "nan"),
        ("--rate", "inf"),
        ("--max-error-rate", "2"),
        ("--max-error-rate", "x%"),
    ],
)
def test_bench_options_refuse_nonsense_before_any_database(option: str, value: str):
    result = run("bench", "-w", "tpcb", "--dsn", "postgresql://127.0.0.1:1/x", option, value)
    usage_error(result, f"'{option}': ")


@pytest.mark.parametrize("option", ["--dsn", "--pgdata"])
def test_bench_refuses_an_empty_dsn_or_data_directory(option: str):
    usage_error(run("bench", "-w", "tpcb", option, ""), f"'{option}'")


# --------------------------------------------------------------------------- --set


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        pytest.param("novalue", "expected KEY=VALUE", id="no-equals"),
        pytest.param("=1", "expected KEY=VALUE", id="no-key"),
        pytest.param("a=[", "not valid YAML", id="unclosed"),
        pytest.param("a=" + "[" * 5000 + "]" * 5000, "nested more than 32 deep", id="deep"),
        pytest.param("a=" + "9" * 5000, "an integer with more digits", id="huge-int"),
        pytest.param("a=[&x [1, 2], *x]", "aliases (*name) are not taken", id="alias"),
        pytest.param("a=2024-13-01", "month must be in 1..12", id="bad-date"),
    ],
)
@pytest.mark.parametrize("command", ["test", "exec"])
def test_a_malformed_set_is_a_usage_error(tmp_path: Path, command: str, item: str, reason: str):
    target = PluginWriter(tmp_path)("echo", EXECUTOR, directory="echo", provides=["executor"])
    extra = ["--input", "1"] if command == "exec" else []
    result = run("plugins", command, str(target), *extra, "--set", item)
    usage_error(result, "--set")
    assert reason in result.stderr


# --------------------------------------------------------------------------- enable, disable


@pytest.mark.parametrize("command", ["enable", "disable"])
def test_switching_an_unknown_plugin_refuses_and_writes_nothing(
    tmp_path: Path, plugin: Path, command: str
):
    store = tmp_path / "state.db"
    result = run("plugins", command, "good-plugn", "--state", str(store))
    assert result.exit_code == 1, result.output
    assert "Error: plugin not found: 'good-plugn'" in result.stderr
    assert "nothing was changed" in result.stderr
    assert "Hint: did you mean 'good-plugin'?" in result.stderr
    assert not store.exists()


def test_switching_an_unknown_plugin_keeps_an_existing_store_unchanged(tmp_path: Path):
    store_path = tmp_path / "state.db"
    with PluginStateStore(str(store_path)) as store:
        store.set_enabled("ran-before", False, "maintenance")
    result = run("plugins", "enable", "nope", "--state", str(store_path))
    assert result.exit_code == 1, result.output
    assert "Hint: `tether plugins list` shows the plugins found" in result.stderr
    with PluginStateStore(str(store_path)) as store:
        assert [row.name for row in store.plugins()] == ["ran-before"]


def test_a_plugin_known_only_to_the_state_store_can_be_switched(tmp_path: Path):
    store_path = tmp_path / "state.db"
    with PluginStateStore(str(store_path)) as store:
        store.set_enabled("ran-before", False, "maintenance")
    result = run("plugins", "enable", "ran-before", "--state", str(store_path))
    assert result.exit_code == 0, result.output
    with PluginStateStore(str(store_path)) as store:
        assert store.plugins("ran-before")[0].enabled


def test_a_plugin_named_by_the_config_can_be_switched(tmp_path: Path):
    config = tmp_path / "tether.yaml"
    config.write_text(yaml.safe_dump({"plugins": {"plugins": [{"name": "remote"}]}}), "utf-8")
    result = run("--config", str(config), "plugins", "disable", "remote")
    assert result.exit_code == 0, result.output
    assert "disabled remote in the state store at" in result.stdout


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("a b", id="space"),
        pytest.param("a/b", id="slash"),
        pytest.param("a\nb", id="newline"),
        pytest.param("caf\udce9", id="not-unicode"),
        pytest.param(LONG, id="overlong"),
    ],
)
@pytest.mark.parametrize(
    "command", ["enable", "disable", "health", "reload", "rollback", "history"]
)
def test_an_argument_that_is_no_plugin_name_is_a_usage_error(
    tmp_path: Path, command: str, name: str
):
    live = command in {"reload", "rollback"}
    extra = ["--url", "http://127.0.0.1:9"] if live else ["--state", str(tmp_path / "s.db")]
    result = run("plugins", command, name, *extra)
    assert result.exit_code == 2, result.output
    assert "Invalid value for" in result.stderr
    assert "NAME" in result.stderr
    assert not (tmp_path / "s.db").exists()


def test_info_of_an_overlong_name_is_not_found(plugin: Path):
    result = run("plugins", "info", LONG)
    assert result.exit_code == 1, result.output
    assert "Error: plugin not found: 'xxxx" in result.stderr
    assert len(result.stderr) < 1000  # the name is shortened, not printed 5,000 times


# --------------------------------------------------------------------------- admin URLs


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("", id="empty"),
        pytest.param("http://[::1", id="broken-ipv6"),
        pytest.param("http://127.0.0.1:70000", id="port-70000"),
        pytest.param("http://127.0.0.1:0", id="port-0"),
        pytest.param("ftp://127.0.0.1", id="not-http"),
        pytest.param("http://", id="no-host"),
        pytest.param("http://127.0.0.1:8080\n", id="newline"),
    ],
)
@pytest.mark.parametrize(
    "command",
    [
        ["health"],
        ["reload", "good-plugin"],
        ["rollback", "good-plugin"],
        ["history", "good-plugin"],
    ],
)
def test_a_url_that_is_not_a_servers_is_a_usage_error(command: list[str], url: str):
    usage_error(run("plugins", *command, "--url", url), "'--url'")


def test_the_url_from_the_environment_is_checked_too(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TETHER_ADMIN_URL", "http://127.0.0.1:99999")
    usage_error(run("plugins", "health"), "'--url'")


@pytest.mark.parametrize("token", ["a\nb", "a\rb", ""])
def test_a_token_with_a_control_character_is_a_usage_error(token: str):
    result = run("plugins", "health", "--url", "http://127.0.0.1:9", "--token", token)
    usage_error(result, "'--token'")
    if token:
        assert token not in result.stderr  # a secret is not echoed


def test_a_config_token_with_a_newline_is_an_error_naming_admin_token(tmp_path: Path):
    config = tmp_path / "tether.yaml"
    config.write_text('admin:\n  token: "a\\nb"\n', encoding="utf-8")
    result = run("--config", str(config), "plugins", "health", "--url", "http://127.0.0.1:9")
    assert result.exit_code == 1, result.output
    assert "Error: admin.token in the config holds a control character" in result.stderr


class _Answer(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def not_tether() -> Iterator[type[_Answer]]:
    """An HTTP server on loopback that answers whatever its handler's ``body`` is."""

    class Handler(_Answer):
        pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    Handler.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    try:
        yield Handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<html>hello</html>", id="html"),
        pytest.param(b"[1, 2]", id="a-list"),
        pytest.param(b"\xff\xfe garbage", id="not-utf8"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="nested-100k"),
    ],
)
def test_a_server_that_is_not_tether_is_an_error_naming_the_url(
    not_tether: type[_Answer], body: bytes
):
    not_tether.body = body
    url = not_tether.url  # type: ignore[attr-defined]
    result = run("plugins", "health", "--url", url)
    assert result.exit_code == 1, result.output
    assert f"Error: the server at {url} did not answer with a JSON object" in result.stderr


def test_an_answer_over_the_limit_is_refused(
    not_tether: type[_Answer], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(_ops, "MAX_ANSWER", 1024)
    not_tether.body = b'{"plugins": {}, "pad": "' + b"x" * 4096 + b'"}'
    result = run("plugins", "health", "--url", not_tether.url)  # type: ignore[attr-defined]
    assert result.exit_code == 1, result.output
    assert "answered more than" in result.stderr


@pytest.fixture
def not_http() -> Iterator[str]:
    """A loopback TCP server that answers each connection with a line that is not HTTP."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def answer() -> None:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        with connection:
            connection.recv(65536)
            connection.sendall(b"SSH-2.0-not-http\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        thread.join(timeout=10)


def test_a_server_that_does_not_speak_http_is_unreachable(not_http: str):
    result = run("plugins", "health", "--url", not_http)
    assert result.exit_code == 1, result.output
    assert f"Error: cannot reach the tether server at {not_http}: " in result.stderr


# --------------------------------------------------------------------------- exec --input


def test_exec_input_from_a_fifo_or_device_is_refused_unread(tmp_path: Path, fifo: Path):
    target = PluginWriter(tmp_path)("echo", EXECUTOR, directory="echo", provides=["executor"])
    for source in (fifo, Path("/dev/zero"), tmp_path):
        result = run("plugins", "exec", str(target), "--input", f"@{source}")
        usage_error(result, "'--input'")
        assert f"cannot read {source}: not a regular file" in result.stderr


def test_exec_input_over_the_limit_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(_exec, "MAX_INPUT", 64)
    target = PluginWriter(tmp_path)("echo", EXECUTOR, directory="echo", provides=["executor"])
    big = tmp_path / "big.json"
    big.write_text(f'"{"x" * 100}"', encoding="utf-8")
    for source, stdin in ((f"@{big}", None), ("-", f'"{"x" * 100}"')):
        result = run("plugins", "exec", str(target), "--input", source, stdin=stdin)
        usage_error(result, "'--input'")
        assert "larger than" in result.stderr


# --------------------------------------------------------------------------- the safety net


def test_an_unexpected_exception_is_one_error_line(plugin: Path, monkeypatch: pytest.MonkeyPatch):
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("tether.cli._plugins.discover_plugins", broken)
    result = run("plugins", "list")
    assert result.exit_code == 1, result.output
    assert "Error: internal error: RuntimeError: boom" in result.stderr
    assert "Hint: this is a bug in tether" in result.stderr


@pytest.mark.parametrize(
    "raised",
    [asyncio.CancelledError(), GeneratorExit(), type("Boom", (BaseException,), {})("bang")],
    ids=["CancelledError", "GeneratorExit", "a-BaseException-subclass"],
)
def test_a_base_exception_that_escapes_is_one_error_line(
    plugin: Path, monkeypatch: pytest.MonkeyPatch, raised: BaseException
):
    def broken(*args: object, **kwargs: object) -> None:
        raise raised

    monkeypatch.setattr("tether.cli._plugins.discover_plugins", broken)
    result = run("plugins", "list")
    assert result.exit_code == 1, result.output
    assert f"Error: internal error: {type(raised).__name__}" in result.stderr


def test_verbose_shows_the_traceback_of_an_unexpected_exception(
    plugin: Path, monkeypatch: pytest.MonkeyPatch
):
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("tether.cli._plugins.discover_plugins", broken)
    result = CliRunner().invoke(cli, ["--verbose", "plugins", "list"], catch_exceptions=False)
    assert result.exit_code == 1
    assert "Traceback" in result.stderr
    assert "RuntimeError" in result.stderr


def test_an_os_error_names_its_file(plugin: Path, monkeypatch: pytest.MonkeyPatch):
    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/srv/cache/index.json")

    monkeypatch.setattr("tether.cli._plugins.discover_plugins", full)
    result = run("plugins", "list")
    assert result.exit_code == 1, result.output
    assert "Error: /srv/cache/index.json: No space left on device" in result.stderr


# --------------------------------------------------------------------------- a real process


def test_a_real_process_prints_one_error_line_for_a_missing_log_directory(tmp_path: Path):
    code = "from tether.cli import main; main()"
    args = ["--log-file", str(tmp_path / "missing" / "t.log"), "plugins", "list"]
    source = Path(tether.__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(source)},
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "Error: Invalid value for '--log-file': cannot write to" in done.stderr


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("Bad", "'B' is not allowed"),
        ("a_b", "'_' is not allowed"),
        ("x", "it is 1 characters long (2 to 64)"),
        ("a" * 65, "it is 65 characters long (2 to 64)"),
        ("9lives", "it must start with a lowercase letter"),
        ("-x", "it must start with a lowercase letter"),
        ("abc-", "it must end with a letter or digit"),
    ],
)
def test_plugins_new_names_the_rule_a_name_breaks(tmp_path, name, rule):
    result = CliRunner().invoke(cli, ["plugins", "new", "--dir", str(tmp_path), "--", name])
    assert result.exit_code == 2, result.output  # a usage error
    assert f"invalid plugin name {name!r}: {rule}" in " ".join(result.stderr.split())
    assert list(tmp_path.iterdir()) == []
