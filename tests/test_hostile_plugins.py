"""Plugins that misbehave in their lifecycle steps never take the host down.

Each case is one plugin that misbehaves in one step (its import, the creation of its
object, ``validate_config``, ``initialize``, ``start``, ``stop``, ``cleanup``,
``health_check``, its ``startup`` or ``shutdown`` hook handler) in one way: it raises
``SystemExit``, ``KeyboardInterrupt``, a ``KeyboardInterrupt`` subclass, a
``CancelledError`` nobody asked for or a ``BaseException`` of its own; or it never
returns (a plain method that sleeps, a coroutine that awaits forever, one that
swallows every cancellation, an import that loops). Every case runs through a
``PluginManager`` and through ``tether plugins test``: the step fails, naming the
plugin, the step and what happened, and the host carries on.

A step that never returns gets a time limit of 0.1 s in the plugin's manifest (a
health check, in the framework config); nothing here asserts how long anything took.
A plugin that never returns polls for a file named ``release`` in its directory (30 s
at most), which each test writes when it is done, so no thread or task outlives its
test by more than a few milliseconds.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from helpers import line_of
from ops_support import Served
from tether import PluginManager, PluginStatus, TetherConfig, is_interruption, run_host
from tether.admin import create_admin_app
from tether.cli import cli
from tether.errors import (
    ConfigError,
    HealthCheckError,
    PluginLifecycleError,
    PluginLoadError,
    PluginLoadTimeoutError,
    StepTimeoutError,
    StopAllError,
    TetherError,
)

S = PluginStatus
NAME = "hostile"
LIMIT = "0.1s"

# --------------------------------------------------------------------------- the plugin

MODULE = """\
import asyncio
import threading
import time
from pathlib import Path

import tether

STEP = {step!r}
RELEASE = Path(__file__).with_name("release")


class Interrupted(KeyboardInterrupt):
    pass


class Odd(BaseException):
    pass


def released():
    return RELEASE.exists()


def hang():
    deadline = time.monotonic() + 30
    while not released() and time.monotonic() < deadline:
        time.sleep(0.01)


async def ahang():
    deadline = time.monotonic() + 30
    while not released() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


async def swallow():
    deadline = time.monotonic() + 30
    while not released() and time.monotonic() < deadline:
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            pass


def misbehave():
    {sync}  # the sync misbehaviour


async def amisbehave():
    {async_}  # the async misbehaviour


if STEP == "import":
    misbehave()


class Plugin(tether.Plugin):
    def __init__(self):
        if STEP == "create":
            misbehave()

    {d} validate_config(self, config):
        if STEP == "validate_config":
            {call}

    {d} initialize(self, ctx):
        ctx.register_hook("startup", 0, self.on_startup)
        ctx.register_hook("shutdown", 0, self.on_shutdown)
        if STEP == "initialize":
            {call}

    {d} start(self):
        if STEP == "start":
            {call}

    {d} health_check(self):
        if STEP == "health_check":
            {call}
        return True

    {d} stop(self):
        if STEP == "stop":
            {call}

    {d} cleanup(self):
        if STEP == "cleanup":
            {call}

    {d} on_startup(self, names):
        if STEP == "startup hook":
            {call}

    {d} on_shutdown(self, names):
        if STEP == "shutdown hook":
            {call}
"""

GOOD = """\
import tether


class Plugin(tether.Plugin):
    def ping(self):
        return "pong"
"""


@dataclass(frozen=True, slots=True)
class Misbehaviour:
    """One way to misbehave: its code (sync, async), the text its failure shows."""

    name: str
    sync: str | None
    async_: str | None
    shows: str
    raises: bool = True


RAISING = [
    Misbehaviour("SystemExit", "raise SystemExit(3)", "raise SystemExit(3)", "SystemExit: 3"),
    Misbehaviour(
        "KeyboardInterrupt",
        "raise KeyboardInterrupt",
        "raise KeyboardInterrupt",
        "KeyboardInterrupt",
    ),
    Misbehaviour(
        "KeyboardInterrupt subclass",
        "raise Interrupted('stop')",
        "raise Interrupted('stop')",
        "Interrupted: stop",
    ),
    Misbehaviour(
        "CancelledError",
        "raise asyncio.CancelledError('mine')",
        "raise asyncio.CancelledError('mine')",
        "CancelledError",
    ),
    Misbehaviour("BaseException subclass", "raise Odd('odd')", "raise Odd('odd')", "Odd: odd"),
]
SLEEPS = Misbehaviour("sleeps forever", "hang()", None, "within 0.1s", raises=False)
AWAITS = Misbehaviour("awaits forever", None, "await ahang()", "within 0.1s", raises=False)
SWALLOWS = Misbehaviour(
    "swallows CancelledError", None, "await swallow()", "within 0.1s", raises=False
)
LOOPS = Misbehaviour("import loops", "hang()", None, "did not finish within 0.1s", raises=False)


@dataclass(frozen=True, slots=True)
class Step:
    """Where the plugin misbehaves: the limit that bounds it, the step `plugins test`
    names, and the misbehaviours that make sense there."""

    name: str
    limit: str
    label: str
    ways: tuple[Misbehaviour, ...]
    styles: tuple[str, ...] = ("sync", "async")


STEPS = [
    Step("import", "initialize", "load", (*RAISING, LOOPS), ("sync",)),
    Step("create", "initialize", "load", (*RAISING, SLEEPS), ("sync",)),
    Step("validate_config", "initialize", "load", (*RAISING, SLEEPS, AWAITS, SWALLOWS)),
    Step("initialize", "initialize", "initialize", (*RAISING, SLEEPS, AWAITS, SWALLOWS)),
    Step("start", "start", "start", (*RAISING, SLEEPS, AWAITS, SWALLOWS)),
    Step("health_check", "health", "health check", (*RAISING, SLEEPS, AWAITS, SWALLOWS)),
    Step("stop", "stop", "stop", (*RAISING, SLEEPS, AWAITS, SWALLOWS)),
    Step("cleanup", "stop", "cleanup", (*RAISING, SLEEPS, AWAITS, SWALLOWS)),
    Step("startup hook", "start", "start", (*RAISING, AWAITS, SWALLOWS)),  # a plain handler
    Step("shutdown hook", "stop", "stop", (*RAISING, AWAITS, SWALLOWS)),  # cannot be bounded
]


@dataclass(frozen=True, slots=True)
class Case:
    step: Step
    way: Misbehaviour
    style: str

    @property
    def id(self) -> str:
        return f"{self.step.name}-{self.way.name}-{self.style}".replace(" ", "_")


def _cases() -> Iterator[Case]:
    for step in STEPS:
        for way in step.ways:
            for style in step.styles:
                if (way.sync if style == "sync" else way.async_) is not None:
                    yield Case(step, way, style)


CASES = list(_cases())


def write_hostile(root: Path, case: Case) -> Path:
    """The plugin of ``case`` in ``root/hostile``: every method plain or async by its style."""
    directory = root / NAME
    directory.mkdir(parents=True)
    is_async = case.style == "async"
    module = MODULE.format(
        step=case.step.name,
        sync=case.way.sync or "pass",
        async_=case.way.async_ or "pass",
        d="async def" if is_async else "def",
        call="await amisbehave()" if is_async else "misbehave()",
    )
    (directory / "plugin.py").write_text(module, encoding="utf-8")
    short = not case.way.raises and case.step.limit != "health"  # only what must time out
    timeouts = {case.step.limit: LIMIT} if short else {}
    manifest = {"name": NAME, "version": "1.0.0", "description": "misbehaves",
                "author": "tests", "entry": "plugin:Plugin", "timeouts": timeouts}  # fmt: skip
    (directory / "plugin.json").write_text(json.dumps(manifest), encoding="utf-8")
    return directory


def write_good(root: Path) -> Path:
    directory = root / "good"
    directory.mkdir(parents=True)
    (directory / "plugin.py").write_text(GOOD, encoding="utf-8")
    manifest = {"name": "good", "version": "1.0.0", "description": "behaves",
                "author": "tests", "entry": "plugin:Plugin"}  # fmt: skip
    (directory / "plugin.json").write_text(json.dumps(manifest), encoding="utf-8")
    return directory


def release(directory: Path) -> None:
    """Let whatever the plugin left hanging end."""
    (directory / "release").write_text("", encoding="utf-8")


def misbehaviour_line(directory: Path, case: Case) -> int:
    marker = "# the sync misbehaviour" if case.style == "sync" else "# the async misbehaviour"
    return line_of(directory / "plugin.py", marker)


FRAMEWORK = {"plugins": {"health_check_timeout": 0.1}}


def asynctest(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an ``async def`` test in a fresh loop, leftover tasks cancelled (bounded)."""

    @functools.wraps(fn)
    def run(*args: object, **kwargs: object) -> None:
        run_host(fn(*args, **kwargs))

    return run


# --------------------------------------------------------------------------- via the manager


async def _live_through(manager: PluginManager, path: Path) -> tuple[str, BaseException | None]:
    """Take the plugin through its life; the first step that failed and its error."""
    steps: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("load", lambda: manager.load_plugin(path)),
        ("initialize", manager.initialize_all),
        ("start", manager.start_all),
        ("health check", lambda: _checked(manager)),
        ("stop", manager.stop_all),
        ("cleanup", lambda: manager.unload_plugin(NAME)),
    ]
    for label, action in steps:
        try:
            await action()
        except TetherError as exc:
            return label, exc
    return "", None


async def _checked(manager: PluginManager) -> None:
    result = (await manager.check_health(NAME))[NAME]
    if not result.ok:
        raise HealthCheckError(NAME, result.error or "it failed")


async def _host_goes_on(manager: PluginManager, root: Path) -> None:
    """The same manager still loads, runs, calls and closes another plugin."""
    await manager.load_plugin(write_good(root))
    await manager.initialize_all()
    await manager.start_all()
    assert manager.get_status("good") is S.RUNNING
    assert manager.get_handle("good").call("ping") == "pong"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
@asynctest
async def test_a_misbehaving_step_fails_alone_through_the_manager(
    case: Case, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_hostile(tmp_path / "plugins", case)
    manager = PluginManager(config=TetherConfig.model_validate(FRAMEWORK),
                            state_directory=tmp_path / "state")  # fmt: skip
    recorded: list[tuple[str, str]] = []
    manager.on_error(lambda plugin, source, _error: recorded.append((plugin, source)))
    try:
        with caplog.at_level(logging.WARNING, logger="tether"):
            failed, error = await _live_through(manager, path)
        _check_outcome(case, manager, failed, error, caplog.text)
        if case.step.name.endswith("hook") and case.way.raises:
            assert (NAME, f"hook:{case.step.name.split()[0]}") in recorded
        await _host_goes_on(manager, tmp_path)
    finally:
        release(path)
        await manager.aclose()


def _check_outcome(
    case: Case, manager: PluginManager, failed: str, error: BaseException | None, logged: str
) -> None:
    step = case.step.name
    if step.endswith("hook"):  # a hook handler's failure is logged and recorded, not raised
        assert (failed, error) == ("", None)
        assert f"{step} " in logged
        assert case.way.shows in logged
        if case.way.raises:
            assert f"{step} of plugin {NAME} raised" in logged
        return
    assert error is not None
    assert failed == case.step.label
    assert case.way.shows in str(error)
    assert NAME in str(error)
    if failed == "load":
        kind = ConfigError if step == "validate_config" else PluginLoadError
        assert isinstance(error, kind)
        assert not manager.is_loaded(NAME)
    elif failed == "health check":
        assert manager.get_status(NAME) is S.RUNNING  # degraded, not failed
        assert manager.is_degraded(NAME)
    elif failed == "cleanup":
        assert isinstance(error, PluginLifecycleError)
        assert error.step == "cleanup"
        assert not manager.is_loaded(NAME)
    else:
        failure = error.failures[0] if isinstance(error, StopAllError) else error
        assert isinstance(failure, PluginLifecycleError)
        assert failure.step == {"initialize": "initialization"}.get(step, step)
        assert manager.get_status(NAME) is S.ERROR  # half-started: failed, never running
        assert manager.get_info(NAME).status is S.ERROR
        assert manager.last_error(NAME) is not None
    if not case.way.raises and failed in {"initialize", "start", "stop", "cleanup"}:
        assert isinstance(error.failures[0] if isinstance(error, StopAllError) else error,
                          StepTimeoutError)  # fmt: skip
    if case.way is LOOPS:
        assert isinstance(error, PluginLoadTimeoutError)


# --------------------------------------------------------------------------- via `plugins test`


def plugins_test(*args: str, config: Path | None = None) -> Result:
    options = ["--config", str(config)] if config is not None else []
    return CliRunner().invoke(cli, [*options, "plugins", "test", *args], catch_exceptions=False)


def _steps(result: Result) -> dict[str, str]:
    rows = [line.split() for line in result.stdout.splitlines()]
    return {
        " ".join(r[:-3]): r[-3] for r in rows if len(r) >= 4 and r[-1] == "ms" and r[-3] in
        {"ok", "failed"}
    }  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_plugins_test_reports_a_misbehaving_step(case: Case, tmp_path: Path) -> None:
    path = write_hostile(tmp_path / "plugins", case)
    config = tmp_path / "tether.yaml"
    config.write_text(json.dumps(FRAMEWORK), encoding="utf-8")
    try:
        limit = () if case.way.raises else ("--timeout", "0.1")  # stop()'s limit
        result = plugins_test(str(path), *limit, config=config)
    finally:
        release(path)
    assert "Traceback" not in result.output
    steps = _steps(result)
    if case.step.name.endswith("hook"):  # logged and recorded; the test itself passes
        assert result.exit_code == 0, result.output
        assert set(steps.values()) == {"ok"}
        assert case.way.shows in result.stderr
        return
    assert result.exit_code == 1, result.output
    assert steps[case.step.label] == "failed", result.output
    assert f"{case.step.label} failed:" in result.stdout
    assert case.way.shows in result.stdout
    if case.way.raises and case.step.name != "health_check":
        line = misbehaviour_line(path, case)
        assert f"at {path / 'plugin.py'}, line {line}" in result.stdout, result.stdout
    if case.step.label not in {"load", "cleanup"}:
        assert steps["cleanup"] == "ok"
    assert f"Error: plugin '{NAME}' failed its test" in result.stderr


# --------------------------------------------------------------------------- what is whose


def _raise_in(directory: Path, body: str) -> BaseException:
    """Run ``body`` as a function defined in a file of ``directory``; what it raised."""
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / "code.py"
    source.write_text(f"import signal\ndef go():\n    {body}\n", encoding="utf-8")
    namespace: dict[str, object] = {}
    exec(compile(source.read_text(encoding="utf-8"), str(source), "exec"), namespace)
    go = namespace["go"]
    assert callable(go)
    try:
        go()
    except BaseException as exc:  # that is the point
        return exc
    raise AssertionError("it did not raise")


def test_a_keyboard_interrupt_the_plugin_raises_is_the_plugins(tmp_path: Path) -> None:
    code = tmp_path / "plugin"
    raised = _raise_in(tmp_path / "plugin", "raise KeyboardInterrupt")
    assert not is_interruption(raised, code)


def test_a_keyboard_interrupt_raised_elsewhere_is_a_real_one(tmp_path: Path) -> None:
    code = tmp_path / "plugin"
    raised = _raise_in(tmp_path / "host", "raise KeyboardInterrupt")
    assert is_interruption(raised, code)


@pytest.mark.skipif(not hasattr(signal, "raise_signal"), reason="needs signal.raise_signal")
def test_a_real_ctrl_c_landing_in_plugin_code_is_a_real_one(tmp_path: Path) -> None:
    code = tmp_path / "plugin"
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        raised = _raise_in(tmp_path / "plugin", "signal.raise_signal(signal.SIGINT)")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert type(raised) is KeyboardInterrupt
    assert is_interruption(raised, code)


def test_a_subclass_and_other_base_exceptions_are_always_the_plugins(tmp_path: Path) -> None:
    code = tmp_path / "plugin"
    for error in (SystemExit(3), type("Stop", (KeyboardInterrupt,), {})(), BaseException()):
        assert not is_interruption(error, code)
    assert is_interruption(GeneratorExit(), code)


WAITS = """\
import asyncio
from pathlib import Path

import tether


class Plugin(tether.Plugin):
    async def initialize(self, ctx):
        Path(__file__).with_name("entered").write_text("")
        await asyncio.sleep(30)
"""


@asynctest
async def test_the_hosts_cancellation_of_a_step_passes_through(tmp_path: Path) -> None:
    path = tmp_path / "waits"
    path.mkdir()
    (path / "plugin.py").write_text(WAITS, encoding="utf-8")
    manifest = {"name": NAME, "version": "1.0.0", "description": "d", "author": "a",
                "entry": "plugin:Plugin"}  # fmt: skip
    (path / "plugin.json").write_text(json.dumps(manifest), encoding="utf-8")
    manager = PluginManager(state_directory=tmp_path / "state")
    try:
        await manager.load_plugin(path)
        task = asyncio.ensure_future(manager.initialize_all())
        deadline = time.monotonic() + 30
        while not (path / "entered").exists() and time.monotonic() < deadline:  # noqa: ASYNC110 - a file, not an event
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert manager.get_status(NAME) is S.LOADING  # not the plugin's failure
        assert manager.get_handle(NAME).error_count == 0
    finally:
        release(path)
        await manager.aclose()


# --------------------------------------------------------------------------- limits


@pytest.mark.parametrize(
    ("where", "override"),
    [
        ("entry", {"plugins": {"plugins": [{"name": NAME, "timeouts": {"start": LIMIT}}]}}),
        ("section", {"plugins": {"timeouts": {"start": LIMIT}}}),
    ],
    ids=["config-entry", "plugins-timeouts"],
)
@asynctest
async def test_the_config_sets_the_start_limit(
    where: str, override: dict[str, object], tmp_path: Path
) -> None:
    del where
    path = write_hostile(tmp_path / "plugins", Case(STEPS[4], SLEEPS, "sync"))
    manifest = json.loads((path / "plugin.json").read_text(encoding="utf-8"))
    manifest["timeouts"] = {}  # the manifest's default, 30s, is not what ends it
    (path / "plugin.json").write_text(json.dumps(manifest), encoding="utf-8")
    config = TetherConfig.model_validate(override)
    manager = PluginManager(config=config, state_directory=tmp_path / "state")
    try:
        entry = config.entry(NAME)
        await manager.load_plugin(path, entry)
        assert manager.get_timeouts(NAME)["start"] == 0.1
        assert manager.get_timeouts(NAME)["initialize"] == 30.0
        await manager.initialize_all()
        with pytest.raises(StepTimeoutError) as caught:
            await manager.start_all()
        assert str(caught.value).startswith(
            f"plugin start timeout: plugin '{NAME}': start() did not return within 0.1s ("
        )
        assert caught.value.abandoned
        assert caught.value.file == path / "plugin.py"
        assert manager.get_status(NAME) is S.ERROR
    finally:
        release(path)
        await manager.aclose()


def test_the_default_limits_are_the_references() -> None:
    from tether._manifest import Timeouts

    assert Timeouts().model_dump() == {"initialize": 30.0, "start": 30.0, "stop": 10.0,
                                       "call": 30.0}  # fmt: skip


@asynctest
async def test_a_coroutine_that_ignores_generator_exit_too_is_left_running(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "stubborn"
    directory.mkdir()
    (directory / "plugin.py").write_text(textwrap.dedent("""\
        import asyncio
        import time
        from pathlib import Path

        import tether

        RELEASE = Path(__file__).with_name("release")


        class Plugin(tether.Plugin):
            async def stop(self):
                deadline = time.monotonic() + 30
                while not RELEASE.exists() and time.monotonic() < deadline:
                    try:
                        await asyncio.sleep(0.01)
                    except BaseException:
                        pass
        """), encoding="utf-8")  # fmt: skip
    manifest = {"name": "stubborn", "version": "1.0.0", "description": "d", "author": "a",
                "entry": "plugin:Plugin", "timeouts": {"stop": LIMIT}}  # fmt: skip
    (directory / "plugin.json").write_text(json.dumps(manifest), encoding="utf-8")
    manager = PluginManager(state_directory=tmp_path / "state")
    try:
        await manager.load_plugin(directory)
        await manager.initialize_all()
        await manager.start_all()
        with (
            caplog.at_level(logging.WARNING, logger="tether"),
            pytest.raises(StopAllError) as caught,
        ):
            await manager.stop_all()
        [failure] = caught.value.failures
        assert isinstance(failure, StepTimeoutError)
        assert failure.abandoned
        assert "ignores cancellation and GeneratorExit; it runs on" in caplog.text
        assert manager.get_status("stubborn") is S.ERROR
    finally:
        release(directory)
        await manager.aclose()


# --------------------------------------------------------------------------- threads left behind

THREADS = """\
import threading
import time
from pathlib import Path

import tether

RELEASE = Path(__file__).with_name("release")


def wait():
    deadline = time.monotonic() + 30
    while not RELEASE.exists() and time.monotonic() < deadline:
        time.sleep(0.01)


class Plugin(tether.Plugin):
    async def start(self):
        threading.Thread(target=wait, name="left-worker", daemon={daemon}).start()
"""


def write_threads(root: Path, *, daemon: bool) -> Path:
    directory = root / "threads"
    directory.mkdir(parents=True)
    (directory / "plugin.py").write_text(THREADS.format(daemon=daemon), encoding="utf-8")
    manifest = {"name": "threads", "version": "1.0.0", "description": "d", "author": "a",
                "entry": "plugin:Plugin"}  # fmt: skip
    (directory / "plugin.json").write_text(json.dumps(manifest), encoding="utf-8")
    return directory


@asynctest
async def test_threads_a_plugin_leaves_are_reported_by_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_threads(tmp_path, daemon=True)
    manager = PluginManager(state_directory=tmp_path / "state")
    try:
        await manager.load_plugin(path)
        await manager.initialize_all()
        await manager.start_all()
        with caplog.at_level(logging.WARNING, logger="tether"):
            await manager.unload_plugin("threads")
        assert manager.leftover_threads == {"threads": ("left-worker",)}
        assert "plugin threads left 1 thread(s) running after it was unloaded: left-worker" in (
            caplog.text
        )
    finally:
        release(path)
        await manager.aclose()


@asynctest
async def test_a_well_behaved_plugin_leaves_no_threads(tmp_path: Path) -> None:
    manager = PluginManager(state_directory=tmp_path / "state")
    try:
        await manager.load_plugin(write_good(tmp_path))
        await manager.initialize_all()
        await manager.start_all()
        await manager.unload_plugin("good")
        assert manager.leftover_threads == {}
    finally:
        await manager.aclose()


def test_plugins_test_lists_the_threads_left(tmp_path: Path) -> None:
    path = write_threads(tmp_path, daemon=True)
    try:
        result = plugins_test(str(path))
    finally:
        release(path)
    assert result.exit_code == 0, result.output
    assert "Threads plugin 'threads' left running: left-worker" in result.stdout


def _tether(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    source = Path(__file__).resolve().parent.parent / "src"
    env = {**os.environ, "PYTHONPATH": str(source)}
    return subprocess.run(
        [sys.executable, "-c", "from tether.cli import main; main()", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_a_non_daemon_thread_left_behind_does_not_keep_plugins_test_running(
    tmp_path: Path,
) -> None:
    path = write_threads(tmp_path, daemon=False)
    try:
        done = _tether("plugins", "test", str(path), cwd=tmp_path)
    finally:
        release(path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Threads plugin 'threads' left running: left-worker" in done.stdout
    assert "Not waiting for non-daemon thread(s) left running: left-worker" in done.stderr


SPIN = """\
import tether

while True:  # spins, holding nothing but the CPU
    pass


class Plugin(tether.Plugin):
    pass
"""

EXITS = """\
import tether


class Plugin(tether.Plugin):
    def start(self):
        raise SystemExit(7)
"""


@pytest.mark.parametrize(
    ("module", "shows"),
    [
        (SPIN, "plugin load timeout: plugin 'spins': importing its code did not finish"),
        (EXITS, "plugin start failed: plugin 'spins': SystemExit: 7"),
    ],
    ids=["import-spins", "start-exits-7"],
)
def test_plugins_test_in_a_process_of_its_own_exits_1(
    module: str, shows: str, tmp_path: Path
) -> None:
    directory = tmp_path / "spins"
    directory.mkdir()
    (directory / "plugin.py").write_text(module, encoding="utf-8")
    manifest = {"name": "spins", "version": "1.0.0", "description": "d", "author": "a",
                "entry": "plugin:Plugin", "timeouts": {"initialize": LIMIT}}  # fmt: skip
    (directory / "plugin.json").write_text(json.dumps(manifest), encoding="utf-8")
    done = _tether("plugins", "test", str(directory), cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert shows in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


# --------------------------------------------------------------------------- the admin API

BLOCKING = """\
import time
from pathlib import Path

import tether

RELEASE = Path(__file__).with_name("release")
STEP = {step!r}


def wait():
    deadline = time.monotonic() + 30
    while not RELEASE.exists() and time.monotonic() < deadline:
        time.sleep(0.01)


if STEP == "import":
    Path(__file__).with_name("entered").write_text("")
    wait()


class Plugin(tether.Plugin):
    def start(self):
        if STEP == "start":
            Path(__file__).with_name("entered").write_text("")
            wait()
"""


@pytest.mark.parametrize("step", ["import", "start"])
def test_healthz_answers_while_a_plugin_blocks_its_load(step: str, tmp_path: Path) -> None:
    directory = tmp_path / "blocks"
    directory.mkdir()
    (directory / "plugin.py").write_text(BLOCKING.format(step=step), encoding="utf-8")
    manifest = {"name": "blocks", "version": "1.0.0", "description": "d", "author": "a",
                "entry": "plugin:Plugin"}  # fmt: skip
    (directory / "plugin.json").write_text(json.dumps(manifest), encoding="utf-8")
    manager = PluginManager(state_directory=tmp_path / "state")
    served = Served(create_admin_app(manager, token="t"), manager).start()
    headers = {"Authorization": "Bearer t"}
    outcome: list[httpx.Response] = []
    loading = threading.Thread(
        target=lambda: outcome.append(
            httpx.post(
                f"{served.url}/admin/plugins",
                json={"path": str(directory)},
                headers=headers,
                timeout=60,
            )
        ),
        daemon=True,
    )
    try:
        loading.start()
        deadline = time.monotonic() + 30
        while not (directory / "entered").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert (directory / "entered").exists()  # the plugin is blocking its step now
        health = httpx.get(f"{served.url}/healthz", timeout=10)
        assert health.status_code == 200
        assert not outcome  # the load is still waiting for the plugin
    finally:
        release(directory)
        loading.join(60)
        served.stop()
    assert outcome[0].status_code == 201, outcome[0].text
    assert outcome[0].json()["status"] == "running"
