"""Plugins with requirements: a process plugin's own virtual environment, an in-process
plugin's requirements checked against the host's.

Offline and real: tiny distributions (``tinyfoo`` 1.0 and 2.0, ``tinybar`` needing
``tinyfoo>=2``) are written as wheels into a temporary directory with the standard
library, and pip installs them from there only (``PIP_NO_INDEX``, ``PIP_FIND_LINKS``,
no pip config); the environments go under a temporary ``$TETHER_HOME``.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import re
import socket
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from packaging.requirements import Requirement

import tether
from helpers import PluginWriter
from tether.cli import cli
from tether.errors import PluginLoadError
from tether.isolation._venv import ensure_environment, environment_key, venvs_root

pytestmark = pytest.mark.skipif(os.name != "posix", reason="worker processes need POSIX")

# A hook answering where the plugin's imports came from, and the versions it sees.
REPORTER = """
    import sys

    import tether


    class Plugin(tether.Plugin):
        def initialize(self, ctx):
            super().initialize(ctx)
            ctx.register_hook("app.where", 10, self.where)

        def where(self, data):
            import msgspec
            import tinyfoo

            return {"plugin": self.name_, "tinyfoo": tinyfoo.VERSION,
                    "tinyfoo_file": tinyfoo.__file__, "tether_file": tether.__file__,
                    "msgspec_file": msgspec.__file__, "prefix": sys.prefix}

        name_ = "%(name)s"
"""


def _wheel(into: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> None:
    """A pure-Python wheel of one module ``name`` holding ``VERSION``."""
    info = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    wheel = "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    with zipfile.ZipFile(into / f"{name}-{version}-py3-none-any.whl", "w") as archive:
        archive.writestr(f"{name}.py", f"VERSION = {version!r}\n")
        archive.writestr(f"{info}/METADATA", metadata)
        archive.writestr(f"{info}/WHEEL", wheel)
        archive.writestr(f"{info}/RECORD", "")


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    into = tmp_path_factory.mktemp("wheels")
    _wheel(into, "tinyfoo", "1.0")
    _wheel(into, "tinyfoo", "2.0")
    _wheel(into, "tinybar", "1.0", ("tinyfoo>=2",))
    return into


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, wheels: Path) -> Iterator[Path]:
    """A ``$TETHER_HOME`` the module's tests share (their environments are reused by
    whichever test comes next); pip offline, reading only ``wheels``."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TETHER_HOME", str(home))
        patch.setenv("PIP_NO_INDEX", "1")
        patch.setenv("PIP_FIND_LINKS", str(wheels))
        patch.setenv("PIP_CONFIG_FILE", os.devnull)
        yield home


@pytest.fixture
def home(shared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``$TETHER_HOME`` of this test's own, where nothing is built yet."""
    monkeypatch.setenv("TETHER_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _leftovers(requirements: list[str]) -> list[Path]:
    """What is in the cache under the key of ``requirements`` (a build's staging too)."""
    key = environment_key([Requirement(r) for r in requirements])
    root = venvs_root()
    return [p for p in root.glob(f"*{key}*") if not p.name.endswith(".lock")]


@pytest.fixture
def plugin(tmp_path: Path) -> PluginWriter:
    return PluginWriter(tmp_path / "plugins")


def _manager(tmp_path: Path, label: str = "state") -> tether.PluginManager:
    made = tether.PluginManager(state_directory=tmp_path / label, stop_timeout=5.0)
    made.runtime.hooks.declare("app.where")
    return made


def _reporter(plugin: PluginWriter, name: str, *requirements: str, **fields: object) -> Path:
    fields.setdefault("isolation", "process")
    return plugin(name, REPORTER % {"name": name}, requirements=list(requirements), **fields)


def _answers(paths: list[Path], tmp_path: Path, label: str = "state") -> list[dict[str, str]]:
    """Load ``paths`` into a fresh manager, call ``app.where``, close it: the answers."""

    async def run() -> list[dict[str, str]]:
        manager = _manager(tmp_path, label)
        try:
            for path in paths:
                await manager.load_plugin(path)
            await manager.initialize_all()
            outcome = manager.runtime.hooks.call("app.where", None)
            assert outcome.failures == []
            return sorted(outcome.results, key=lambda a: str(a["plugin"]))
        finally:
            await manager.aclose()

    return asyncio.run(run())


def _builds(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "building its environment" in r.message]


# --------------------------------------------------------------------------- process plugins


def test_a_process_plugin_imports_a_distribution_the_host_lacks(home, plugin, tmp_path, caplog):
    with pytest.raises(ImportError):
        import tinyfoo  # noqa: F401  # the host has none
    caplog.set_level(logging.INFO, logger="tether.isolation")
    [answer] = _answers([_reporter(plugin, "needsfoo", "tinyfoo>=1")], tmp_path)
    assert answer["tinyfoo"] == "2.0"
    assert answer["prefix"].startswith(str(venvs_root()))
    assert answer["tinyfoo_file"].startswith(answer["prefix"])
    # tether and its dependencies still come from the host
    assert answer["tether_file"] == tether.__file__
    assert not answer["msgspec_file"].startswith(answer["prefix"])
    [built] = _builds(caplog)
    assert "needsfoo" in built
    assert "tinyfoo>=1" in built
    assert any("built its environment" in r.message for r in caplog.records)


def test_two_plugins_get_conflicting_versions_of_one_distribution(shared, plugin, tmp_path):
    old = _reporter(plugin, "oldfoo", "tinyfoo==1.0")
    new = _reporter(plugin, "newfoo", "tinybar")  # tinybar needs tinyfoo>=2
    answers = _answers([old, new], tmp_path)
    assert [(a["plugin"], a["tinyfoo"]) for a in answers] == [("newfoo", "2.0"),
                                                              ("oldfoo", "1.0")]  # fmt: skip
    assert answers[0]["prefix"] != answers[1]["prefix"]


def test_the_environment_is_reused_by_the_next_load(shared, plugin, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tether.isolation")
    first = _answers([_reporter(plugin, "one", "tinyfoo==1.0")], tmp_path, "first")
    marker = Path(first[0]["prefix"]) / "tether-environment.json"
    written = marker.stat().st_mtime_ns
    caplog.clear()
    # another load, of another plugin whose requirements are the same, written otherwise
    again = _answers([_reporter(plugin, "two", "TinyFoo == 1.0 ")], tmp_path, "second")
    assert again[0]["prefix"] == first[0]["prefix"]
    assert again[0]["tinyfoo"] == "1.0"
    assert _builds(caplog) == []
    assert marker.stat().st_mtime_ns == written


def test_an_unsatisfiable_requirement_fails_clearly(shared, plugin, tmp_path):
    path = _reporter(plugin, "wantsnine", "tinyfoo>=9")
    with pytest.raises(PluginLoadError) as caught:
        _answers([path], tmp_path)
    message = str(caught.value)
    assert caught.value.plugin == "wantsnine"
    assert "plugin 'wantsnine': pip could not install 'tinyfoo>=9'" in message
    assert "from versions: 1.0, 2.0" in message  # the end of pip's own output
    assert "Traceback" not in message
    assert caught.value.hint is not None
    assert "PIP_FIND_LINKS" in caught.value.hint
    # nothing half-built is left to be mistaken for an environment
    assert _leftovers(["tinyfoo>=9"]) == []


def test_a_requirement_on_a_conflicting_dependency_fails_clearly(shared, plugin, tmp_path):
    path = _reporter(plugin, "tangled", "tinybar", "tinyfoo<2")
    with pytest.raises(PluginLoadError) as caught:
        _answers([path], tmp_path)
    message = str(caught.value)
    assert "plugin 'tangled': pip could not install" in message
    assert "tinyfoo" in message
    assert "conflict" in message.lower()
    assert _leftovers(["tinybar", "tinyfoo<2"]) == []


def test_two_hosts_building_one_environment_build_it_once(home, wheels):
    """Two processes ask for the same environment at once: one builds it, the other
    waits on the lock and finds it built."""
    script = (
        "import json, sys; from packaging.requirements import Requirement; "
        "from tether.isolation._venv import ensure_environment; "
        "e = ensure_environment('racer', [Requirement('tinyfoo==1.0')], limit=120); "
        "print(json.dumps({'built': e.built, 'path': str(e.path)}))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(tether.__file__).parent.parent)}
    racers = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
        for _ in range(2)
    ]
    results = [json.loads(r.communicate(timeout=120)[0]) for r in racers]
    assert sorted(r["built"] for r in results) == [False, True]
    assert results[0]["path"] == results[1]["path"]
    again = ensure_environment("racer", [Requirement("tinyfoo==1.0")])
    assert not again.built
    assert str(again.path) == results[0]["path"]


def test_waiting_for_another_build_is_bounded(shared, tmp_path):
    """A lock held elsewhere (here, by this test) past the limit: a clear error."""
    requirements = [Requirement("tinyfoo==2.0")]
    root = tmp_path / "venvs"
    root.mkdir()
    with (root / f"{environment_key(requirements)}.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(PluginLoadError, match=r"another process has been building"):
            ensure_environment("waiter", requirements, root=root, limit=0.5)


def test_a_pip_that_hangs_is_killed_at_the_limit(shared, tmp_path, monkeypatch):
    """pip's index is a loopback server that accepts and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setenv("PIP_FIND_LINKS", f"http://127.0.0.1:{server.getsockname()[1]}/")
        root = tmp_path / "venvs"
        with pytest.raises(PluginLoadError, match=r"did not finish within 3s") as caught:
            ensure_environment("stuck", [Requirement("tinyfoo")], root=root, limit=3)
    assert caught.value.plugin == "stuck"
    assert [p.name for p in root.iterdir()] == [f"{environment_key([Requirement('tinyfoo')])}.lock"]


def test_a_plugin_without_requirements_runs_the_hosts_python(home, plugin, tmp_path):
    path = plugin("plain", REPORTER.replace("import tinyfoo", "tinyfoo = None")
                  .replace("tinyfoo.VERSION", "None").replace("tinyfoo.__file__", "None")
                  % {"name": "plain"}, isolation="process")  # fmt: skip
    [answer] = _answers([path], tmp_path)
    assert answer["prefix"] == sys.prefix
    assert not venvs_root().exists()


def test_requirements_whose_markers_fail_are_not_installed(home, plugin, tmp_path):
    code = REPORTER.replace("import tinyfoo", "tinyfoo = None").replace(
        "tinyfoo.VERSION", "None").replace("tinyfoo.__file__", "None")  # fmt: skip
    path = plugin("elsewhere", code % {"name": "elsewhere"}, isolation="process",
                  requirements=["tinyfoo>=9; sys_platform == 'nonesuch'"])  # fmt: skip
    [answer] = _answers([path], tmp_path)
    assert answer["prefix"] == sys.prefix  # nothing applies here: the host's interpreter
    assert not venvs_root().exists()


def test_the_key_ignores_spelling_and_order_and_markers_that_fail():
    def key(*texts: str) -> str:
        return environment_key([Requirement(t) for t in texts])

    assert key("Foo_Bar>=1,<2", "baz") == key("baz", "foo-bar <2, >=1")
    assert key("foo>=1") != key("foo>=2")
    assert key("foo[b,a]") == key("foo[a,b]")


# --------------------------------------------------------------------------- in-process plugins

IMPORT_MARK = """
    from pathlib import Path

    import tether

    Path(__file__).with_name("imported").write_text("yes")


    class Plugin(tether.Plugin):
        pass
"""


def _load_inprocess(path: Path, tmp_path: Path) -> None:
    async def run() -> None:
        manager = _manager(tmp_path)
        try:
            await manager.load_plugin(path)
        finally:
            await manager.aclose()

    asyncio.run(run())


def test_an_inprocess_plugin_conflicting_with_the_host_is_refused_naming_both_sides(
    plugin, tmp_path
):
    from importlib import metadata

    installed = metadata.version("packaging")
    path = plugin("oldpackaging", IMPORT_MARK, requirements=["packaging<20"])
    with pytest.raises(PluginLoadError) as caught:
        _load_inprocess(path, tmp_path)
    message = str(caught.value)
    assert "plugin 'oldpackaging' requires 'packaging<20'" in message
    assert f"has packaging {installed} installed" in message
    # and which installed distributions require the host's version
    assert re.search(r", which \S+ [\w.]+ \('packaging[^']*'\)", message)
    assert "isolation: process" in (caught.value.hint or "")
    assert not (path / "imported").exists()  # refused before its code was imported


def test_an_inprocess_plugin_needing_a_missing_distribution_is_refused(plugin, tmp_path):
    path = plugin("needsfoo", IMPORT_MARK, requirements=["tinyfoo>=1"])
    with pytest.raises(PluginLoadError, match=r"no distribution named 'tinyfoo'"):
        _load_inprocess(path, tmp_path)
    assert not (path / "imported").exists()


def test_an_inprocess_plugins_extra_is_checked_too(plugin, tmp_path):
    """``rich[jupyter]``: rich is installed, what its ``jupyter`` extra needs is not."""
    from importlib import metadata

    try:
        metadata.version("ipywidgets")
    except metadata.PackageNotFoundError:
        pass
    else:
        pytest.skip("ipywidgets is installed here")
    path = plugin("notebook", IMPORT_MARK, requirements=["rich[jupyter]"])
    with pytest.raises(PluginLoadError) as caught:
        _load_inprocess(path, tmp_path)
    assert "requires 'ipywidgets" in str(caught.value)
    assert "(for 'rich[jupyter]')" in str(caught.value)
    assert "no distribution named 'ipywidgets'" in str(caught.value)


def test_an_inprocess_plugin_whose_requirements_the_host_meets_loads(plugin, tmp_path):
    path = plugin("content", IMPORT_MARK,
                  requirements=["packaging>=20", "msgspec",
                                "packaging<20; python_version < '3'",
                                "tinyfoo; sys_platform == 'nonesuch'"])  # fmt: skip
    _load_inprocess(path, tmp_path)
    assert (path / "imported").read_text() == "yes"


# --------------------------------------------------------------------------- the CLI


def test_plugins_install_builds_a_process_plugins_environment(home, plugin, tmp_path):
    source = _reporter(plugin, "shipped", "tinyfoo==2.0")
    runner = CliRunner()
    target = tmp_path / "installed"
    first = runner.invoke(cli, ["plugins", "install", str(source), "--dir", str(target)])
    assert first.exit_code == 0, first.output
    assert "Built its environment at" in first.output
    [environment] = [p for p in venvs_root().iterdir() if not p.name.endswith(".lock")]
    again = runner.invoke(cli, ["plugins", "install", str(source), "--dir", str(target)])
    assert again.exit_code == 0, again.output
    assert "Its environment is ready at" in again.output
    assert environment.name in again.output.replace("\n", "")


def test_plugins_install_warns_about_an_inprocess_plugins_conflict(plugin, tmp_path):
    source = plugin("oldpackaging", IMPORT_MARK, requirements=["packaging<20"])
    result = CliRunner().invoke(
        cli, ["plugins", "install", str(source), "--dir", str(tmp_path / "installed")]
    )
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output
    assert "requires 'packaging<20'" in result.output
