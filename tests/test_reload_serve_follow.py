"""What follows a reloaded plugin's live version in `tether serve`, and what is left of
the versions before it: a real uvicorn server on loopback (``LiveServer``), the
greeter plugin rewritten on disk before each ``manager.reload_plugin`` (see
tests/reload_serve_plugins.py), and ``front``, a plugin that imports its service.

- the service proxy ``front`` holds, the greeter's routes, its middleware and its event
  subscription reach the new version after a reload and the previous one after a
  rollback, under load, with no answer missing any of them;
- ``export_state()`` / ``import_state()`` hand state over, and back on rollback;
- ``plugin_storage`` survives a reload; a rollback restores its snapshot;
- after many reloads nothing of an old version is left: modules, threads, tasks,
  routes, middleware, subscriptions, services, the objects themselves;
- when a version's grace period ends, the tasks it left running are cancelled and the
  threads it left running (which cannot be stopped) are reported;
- ``rollback_plugin`` brings the previous version back after its grace period;
- a save within the same second (same size, same mtime) is not served from stale
  bytecode;
- a C extension is shared by the versions that import it (it cannot be unloaded), and a
  reload whose extension was rebuilt is refused, naming it.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import weakref
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from reload_serve_plugins import Load, reload, task_names, thread_names, wait_for
from tether._loader import loaded_namespaces
from tether.hosts.web.testing import LiveServer

pytest_plugins = ["reload_serve_fixtures"]

GRACE = 0.2  # seconds


def seen_by(server, http: httpx.Client) -> dict[str, object]:
    """Which version each mechanism reaches now."""
    hello = http.get("/hello")
    front = http.get("/front")
    http.post("/front/ping")
    return {
        "route": hello.json()["version"],
        "middleware": hello.headers["x-greeter"],
        "proxy": front.json()["version"],
        "middleware on front": front.headers["x-greeter"],
        "routes": sorted(r.path for r in server.app.routes() if r.plugin == "greeter"),
    }


def everywhere(version: str) -> dict[str, object]:
    return {
        "route": version,
        "middleware": version,
        "proxy": version,
        "middleware on front": version,
        "routes": ["/hello", "/schema"],
    }


# --------------------------------------------------------------------------- following


@pytest.mark.slow
def test_proxies_routes_middleware_and_subscriptions_follow_the_live_version(greeter, serve):
    server = serve(front=True)
    http = httpx.Client(base_url=server.url, timeout=30)
    with http, Load(server.url, ("/hello", "/front"), threads=3) as load:
        assert seen_by(server, http) == everywhere("1.0.0")
        greeter.write("1.0.1")
        assert reload(server, grace_period=GRACE).outcome == "reloaded"
        assert seen_by(server, http) == everywhere("1.0.1")
        load.wait_for_answers(6)
        greeter.write("1.0.2", fail="start")  # committed at initialize, then rolled back
        assert reload(server, grace_period=GRACE).outcome == "rolled_back"
        assert seen_by(server, http) == everywhere("1.0.1")
        load.wait_for_answers(6)
        answers = load.stop()
    assert load.failures() == []
    assert all(a.stamp == a.version for a in answers), "a route and its middleware disagreed"
    assert "1.0.2" not in {a.version for a in answers} | {a.stamp for a in answers}
    wait_for(lambda: len(greeter.pings()) == 3, "the three pings to be handled")
    assert greeter.pings() == ["1.0.0", "1.0.1", "1.0.1"]
    assert server.manager.get_info("front").version == "1.0.0"  # dependents are not reloaded
    assert server.manager.get_status("front").value == "running"


# --------------------------------------------------------------------------- state


def test_export_state_hands_state_to_the_next_version_and_back_on_rollback(greeter, serve):
    server = serve()
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert [http.get("/hello").json()["hits"] for _ in range(3)] == [1, 2, 3]
        greeter.write("1.0.1")
        assert reload(server, grace_period=GRACE).outcome == "reloaded"
        assert http.get("/hello").json() == {"version": "1.0.1", "hits": 4}
        greeter.write("1.0.2", fail="start")
        assert reload(server, grace_period=GRACE).outcome == "rolled_back"
        assert http.get("/hello").json() == {"version": "1.0.1", "hits": 5}


def test_plugin_storage_survives_a_reload_and_a_rollback_restores_its_snapshot(greeter, serve):
    greeter.write("1.0.0", migrate="schema-1")
    server = serve()
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/schema").json()["schema"] == "schema-1"
        greeter.write("1.0.1")
        assert reload(server, grace_period=GRACE).outcome == "reloaded"
        assert http.get("/schema").json() == {"version": "1.0.1", "schema": "schema-1"}

        greeter.write("1.0.2", migrate="schema-2", fail="start")  # migrates, then fails
        failed = reload(server, grace_period=GRACE)
        assert (failed.outcome, failed.step, failed.discarded_writes) == ("rolled_back", "start", 1)
        assert http.get("/schema").json() == {"version": "1.0.1", "schema": "schema-1"}

        greeter.write("1.0.3", migrate="schema-3")
        kept = reload(server, grace_period=GRACE)
        assert (kept.outcome, kept.discarded_writes) == ("reloaded", 0)
        assert http.get("/schema").json() == {"version": "1.0.3", "schema": "schema-3"}
    [row] = [r for r in server.manager.reload_history("greeter") if r.to_version == "1.0.2"]
    assert row.discarded_writes == 1


# --------------------------------------------------------------------------- leftovers


def greeter_namespaces() -> list[str]:
    return [n for n in loaded_namespaces() if n.startswith("_tether_plugins.greeter_")]


def greeter_registrations(server) -> dict[str, int]:
    """How many registrations of any greeter version each mechanism still holds."""
    runtime = server.manager.runtime
    table = server.app.table
    return {
        "routes": sum(r.plugin == "greeter" for rs in table._claims.values() for r in rs),
        "middleware": sum(key[0].plugin == "greeter" for key in runtime.middleware._items),
        "subscriptions": len(runtime.events.subscriptions("greeter")),
    }


@pytest.mark.slow
def test_twenty_reloads_leave_no_module_thread_task_or_route_of_an_old_version(greeter, serve):
    server = serve(front=True)
    first = weakref.ref(type(server.manager.get_plugin("greeter")))
    outcomes = []
    with Load(server.url, ("/hello", "/front"), threads=3) as load:
        for minor in range(1, 21):
            broken = minor % 4 == 0  # every fourth version fails to start: rolled back
            greeter.write(f"1.0.{minor}", fail="start" if broken else None)
            outcomes.append(reload(server, grace_period=GRACE).outcome)
            load.wait_for_answers(3)
        load.stop()
    assert load.failures() == []
    assert outcomes.count("reloaded") == 15
    assert outcomes.count("rolled_back") == 5
    live = "1.0.19"
    assert server.manager.get_info("greeter").version == live

    wait_for(lambda: len(greeter_namespaces()) == 1, "the old versions' modules to go")
    [namespace] = greeter_namespaces()
    assert namespace.startswith("_tether_plugins.greeter_1_0_19_")
    modules = [n for n in list(sys.modules) if n.startswith("_tether_plugins.greeter")]
    assert all(n.startswith(namespace) for n in modules), modules
    assert thread_names("greeter-worker-") == [f"greeter-worker-{live}"]
    assert server.call(lambda: task_names("greeter-task-")) == [f"greeter-task-{live}"]
    assert greeter_registrations(server) == {"routes": 2, "middleware": 1, "subscriptions": 1}
    assert len(server.manager._slot("greeter").versions) == 1

    def first_version_collected() -> bool:
        gc.collect()
        return first() is None

    wait_for(first_version_collected, "version 1.0.0's plugin class to be collected")


def test_what_a_version_leaves_running_is_dealt_with_when_its_grace_period_ends(
    greeter, serve, caplog
):
    """Its tasks are cancelled; its threads, which cannot be stopped, are reported."""
    caplog.set_level(logging.INFO, logger="tether")
    greeter.write("1.0.0", leak=True)
    server = serve()
    assert server.call(lambda: task_names("greeter-leak-task-")) == ["greeter-leak-task-1.0.0"]
    greeter.write("1.0.1")
    assert reload(server, grace_period=GRACE).outcome == "reloaded"

    def warned() -> list[str]:
        return [r.getMessage() for r in caplog.records if "greeter-leak-1.0.0" in r.getMessage()]

    wait_for(warned, "the leftover thread warning")
    expected = (
        "plugin greeter 1.0.0 left 1 thread(s) running after it was retired: "
        "greeter-leak-1.0.0; they cannot be stopped in-process"
    )
    assert warned() == [expected]
    assert "plugin greeter 1.0.0: cancelled 1 task(s) it left running" in caplog.messages
    assert server.call(lambda: task_names("greeter-leak-task-")) == []
    assert httpx.get(server.url + "/hello").json()["version"] == "1.0.1"


def test_threads_left_by_a_retired_version_are_in_leftover_threads(greeter, serve, caplog):
    caplog.set_level(logging.WARNING, logger="tether")
    greeter.write("1.0.0", leak=True)
    server = serve()
    greeter.write("1.0.1")
    assert reload(server, grace_period=GRACE).outcome == "reloaded"
    wait_for(lambda: "retired: greeter-leak" in caplog.text, "the leftover thread warning")
    assert server.manager.leftover_threads.get("greeter") == ("greeter-leak-1.0.0",)


@pytest.mark.slow
def test_rollback_plugin_restores_the_previous_version_after_its_grace_period(greeter, serve):
    server = serve()
    greeter.write("1.0.1")
    assert reload(server, grace_period=GRACE).outcome == "reloaded"
    wait_for(lambda: len(greeter_namespaces()) == 1, "the grace period to end")
    with Load(server.url, threads=3) as load:
        result = server.call(lambda: server.manager.rollback_plugin("greeter"))
        load.wait_for_answers(6, "answers after the rollback")
        load.stop()
    assert load.failures() == []
    assert (result.from_version, result.to_version) == ("1.0.1", "1.0.0")
    assert result.outcome in {"reloaded", "rolled_back"}
    assert load.all()[-1].version == "1.0.0"
    assert httpx.get(server.url + "/hello").json()["version"] == "1.0.0"


def test_a_save_in_the_same_second_is_not_served_from_stale_bytecode(greeter, serve, monkeypatch):
    """Python checks a cached .pyc against its source's size and whole-second mtime.
    1.0.1 and 1.0.2 have sources of the same size; give them the same mtime too, as two
    saves within one second (or a checkout) do: the reload must still run 1.0.2."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # as most users run Python
    server = serve()
    source = greeter.directory / "plugin.py"
    greeter.write("1.0.1")
    stamp = source.stat()
    assert reload(server, grace_period=GRACE).outcome == "reloaded"  # a .pyc would be cached now
    assert httpx.get(server.url + "/hello").json()["version"] == "1.0.1"
    greeter.write("1.0.2")
    assert source.stat().st_size == stamp.st_size
    os.utime(source, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    result = reload(server, grace_period=GRACE)
    assert (result.outcome, result.to_version) == ("reloaded", "1.0.2")
    assert httpx.get(server.url + "/hello").json()["version"] == "1.0.2"


# --------------------------------------------------------------------------- C extensions

EXTENSION_C = """
#include <Python.h>
static long calls = 0;  /* static state: one copy per process, whatever imports it */
static PyObject *value(PyObject *self, PyObject *args) {
    calls++;
    return Py_BuildValue("(il)", BUILD, calls);
}
static PyMethodDef methods[] = {{"value", value, METH_NOARGS, ""}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "fast", NULL, -1, methods};
PyMODINIT_FUNC PyInit_fast(void) { return PyModule_Create(&module); }
"""

NATIVE_CODE = """
import tether

from . import fast

VERSION = {version!r}


class Plugin(tether.Plugin):
    def initialize(self, ctx):
        ctx.router.get("/native", self.native)

    async def native(self, request):
        build, calls = fast.value()
        return {{"version": VERSION, "build": build, "calls": calls}}
"""


def build_extension(directory: Path, build: int) -> Path:
    """Compile ``fast`` (its ``value()`` answers ``build``) into ``directory``."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    include = sysconfig.get_paths()["include"]
    if compiler is None or not (Path(include) / "Python.h").exists():
        pytest.skip("needs a C compiler and Python's headers")
    source = directory.parent / "fast.c"
    source.write_text(EXTENSION_C)
    target = directory / f"fast{sysconfig.get_config_var('EXT_SUFFIX')}"
    scratch = directory.parent / target.name
    subprocess.run(
        [compiler, "-shared", "-fPIC", f"-DBUILD={build}", f"-I{include}", str(source),
         "-o", str(scratch)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    scratch.replace(target)
    return target


def write_native(directory: Path, version: str, build: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {"name": "native", "version": version, "description": "a plugin with a C "
                "extension", "author": "tests", "entry": "plugin:Plugin",
                "permissions": {"router": True}}  # fmt: skip
    (directory / "plugin.json").write_text(json.dumps(manifest))
    (directory / "plugin.py").write_text(NATIVE_CODE.format(version=version))
    return build_extension(directory, build)


@pytest.fixture
def native(tmp_path: Path) -> Iterator[tuple[Path, LiveServer]]:
    directory = tmp_path / "plugins" / "native"
    write_native(directory, "1.0.0", build=1)
    config = tmp_path / "native.yaml"
    config.write_text(yaml.safe_dump({"plugins": {"plugins": [{"path": str(directory)}]}}))
    with LiveServer(config, state_directory=tmp_path / "state") as server:
        yield directory, server


def test_a_new_version_shares_the_c_extension_the_old_one_loaded(native):
    """A C extension cannot be unloaded: the new version's import of it gets the same
    library, its static state included."""
    directory, server = native
    assert httpx.get(server.url + "/native").json() == {"version": "1.0.0", "build": 1, "calls": 1}
    (directory / "plugin.py").write_text(NATIVE_CODE.format(version="1.0.1"))
    manifest = json.loads((directory / "plugin.json").read_text())
    (directory / "plugin.json").write_text(json.dumps({**manifest, "version": "1.0.1"}))
    assert reload(server, "native", grace_period=GRACE).outcome == "reloaded"
    assert httpx.get(server.url + "/native").json() == {"version": "1.0.1", "build": 1, "calls": 2}


def test_a_reload_whose_c_extension_changed_is_refused_naming_it(native):
    directory, server = native
    assert httpx.get(server.url + "/native").json()["build"] == 1
    library = write_native(directory, "1.0.1", build=2)
    result = reload(server, "native", grace_period=GRACE)
    assert (result.outcome, result.step) == ("rolled_back", "import"), result
    assert library.name in str(result.error)
    assert "restart" in str(result.error)
    assert httpx.get(server.url + "/native").json()["version"] == "1.0.0"
