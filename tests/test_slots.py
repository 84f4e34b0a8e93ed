"""Plugin slots: a second version staged beside the live one, committed or discarded.

This is the mechanism hot reload will drive: the tests build the second version the
way ``PluginManager._slot_for`` builds the first (``stage`` below), then use the slot
API (``PluginSlot.add`` / ``commit`` / ``discard``) directly. Every way into a plugin is
exercised for real: a hook, an event subscription, a service used by another plugin,
and a middleware and a route served by the web host's ASGI app.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from helpers import PluginWriter
from tether import PluginConfig, PluginManager, PluginStatus
from tether._config import grant_permissions, validate_plugin_config
from tether._context import PluginScope
from tether._loader import load_code, loaded_namespaces
from tether._locate import call_chain, config_schema
from tether._manifest import load_manifest
from tether._slots import PluginSlot, PluginVersion
from tether._steps import call_step
from tether.errors import PluginUnavailableError, ServiceNotFoundError
from tether.hosts.web import WebApp


def asynctest(fn):
    """Run an ``async def`` test in a fresh event loop (there is no pytest-asyncio here)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return run


async def poll_until(predicate: Callable[[], bool], *, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached within {timeout}s")
        await asyncio.sleep(0.005)


# Each version records which of its registrations were reached, in ``seen``.
VERSIONED = """\
import asyncio

VERSION = "{version}"


class Who:
    def __init__(self, seen):
        self._seen = seen

    def who(self):
        self._seen.append("service")
        return VERSION


class Plugin:
    def initialize(self, ctx):
        self.seen = []
        self.release = asyncio.Event()
        ctx.register_hook("pre_request", 1, self.hook)
        ctx.subscribe_event("p.ping", self.on_ping)
        ctx.export_service("Who", Who(self.seen))
        if VERSION != "1.0.0":
            ctx.export_service("Extra", Who(self.seen))  # a service the first version lacks
        ctx.register_middleware("tag", self.tag)
        ctx.router.get("/who", self.route)

    def hook(self, arg):
        self.seen.append("hook")
        return VERSION

    def on_ping(self, event):
        self.seen.append("event")

    async def tag(self, request, call_next):
        self.seen.append("middleware")
        response = await call_next(request)
        response.headers["x-version"] = VERSION
        return response

    def route(self, request):
        self.seen.append("route")
        return {{"version": VERSION}}

    def who(self):
        return VERSION

    async def wait(self):
        await self.release.wait()
        return VERSION

    def start(self):
        pass

    def stop(self):
        pass

    def cleanup(self):
        pass
"""

USER = """\
class Plugin:
    def initialize(self, ctx):
        self.who = ctx.import_service("p", "Who")

    def start(self):
        pass

    def stop(self):
        pass

    def cleanup(self):
        pass
"""

MANIFEST = {
    "permissions": {"router": True},
    "exports": [{"name": "Who"}, {"name": "Extra"}],
    "events": {"subscribes": ["p.ping"]},
}


def stage(manager: PluginManager, directory: Path) -> PluginVersion:
    """Load ``directory`` as another version of a loaded plugin, beside the live one:
    what ``PluginManager._slot_for`` does for a first version, on the existing slot."""
    manifest = load_manifest(directory)
    slot = manager._slot(manifest.name)
    settings = PluginConfig()
    contract = manager.contracts.resolve(manifest.name, manifest.provides)
    permissions = grant_permissions(manifest, settings.permissions)
    code = load_code(manifest, contract=contract, private_namespace=True)
    values = validate_plugin_config(
        manifest.name, config_schema(manifest, code.instance), settings.config
    )
    chain = call_chain(manifest, settings, manager.config, manager.runtime.errors)
    door = slot.gate.add_door(manifest.version, chain=chain)
    scope = PluginScope(
        manifest=manifest,
        config=values,
        permissions=permissions,
        runtime=manager.runtime,
        door=door,
    )
    version = PluginVersion(manifest, settings, code, scope, contract, str(directory))
    version.set_status(PluginStatus.LOADING)
    slot.add(version)
    return version


async def initialize(version: PluginVersion) -> None:
    """Run the staged version's ``initialize``: its registrations are made, and staged."""
    await call_step(version.instance, "initialize", version.scope.context)
    version.initialized = True
    version.set_status(PluginStatus.INITIALIZED)


@dataclass
class Versions:
    manager: PluginManager
    app: WebApp
    http: httpx.AsyncClient
    slot: PluginSlot
    old: PluginVersion
    new: PluginVersion

    async def commit(self) -> None:
        """Swap the versions as a reload would: commit the new one, start it and open the
        gate on it, and stop the old one (whose calls in flight finish where they are)."""
        self.slot.commit(self.new)
        await call_step(self.new.instance, "start")
        self.new.set_status(PluginStatus.RUNNING)
        self.slot.gate.open(self.new.door)
        await call_step(self.old.instance, "stop")
        self.old.set_status(PluginStatus.STOPPED)

    def seen(self) -> tuple[list[str], list[str]]:
        return self.old.instance.seen, self.new.instance.seen

    async def exercise(self) -> dict[str, str]:
        """Reach the plugin every way there is; which version answered each."""
        response = await self.http.get("/who")
        response.raise_for_status()
        [hook] = self.manager.runtime.hooks.call("pre_request", None).results
        service = self.manager.get_plugin("user").who.who()
        await self.manager.runtime.events.publish("p.ping")
        subscriptions = self.manager.runtime.events.subscriptions("p")
        await poll_until(
            lambda: (
                any("event" in seen for seen in self.seen())
                and not any(s.pending for s in subscriptions)
            )
        )
        return {
            "route": response.json()["version"],
            "middleware": response.headers["x-version"],
            "hook": hook,
            "service": service,
        }


@contextlib.asynccontextmanager
async def two_versions(tmp_path: Path) -> AsyncIterator[Versions]:
    """Version 1.0.0 of ``p`` running (and ``user`` importing its service), 2.0.0 staged."""
    write = PluginWriter(tmp_path / "plugins")
    first = write("p", VERSIONED.format(version="1.0.0"), **MANIFEST)
    second = write("p", VERSIONED.format(version="2.0.0"), version="2.0.0", **MANIFEST)
    user = write("user", USER, dependencies=[{"name": "p"}])
    manager = PluginManager(state_directory=tmp_path / "state")
    app = WebApp(manager, admin_token="test-token")
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://tether") as http:
            await manager.load_plugin(first)
            await manager.load_plugin(user)
            await manager.initialize_all()
            await manager.start_all()
            slot = manager._slot("p")
            old = slot.live
            assert old is not None
            new = stage(manager, second)
            await initialize(new)
            yield Versions(manager, app, http, slot, old, new)
    finally:
        await manager.aclose()


EVERY_WAY = {"route", "middleware", "hook", "service", "event"}


# --------------------------------------------------------------------------- staged


@asynctest
async def test_a_staged_versions_registrations_are_not_live_until_commit(tmp_path):
    async with two_versions(tmp_path) as versions:
        answered = await versions.exercise()

        assert answered == dict.fromkeys(["route", "middleware", "hook", "service"], "1.0.0")
        old_seen, new_seen = versions.seen()
        assert set(old_seen) == EVERY_WAY
        assert new_seen == []  # initialized, registered everything, reached by nothing
        assert versions.manager.get_handle("p").version == "1.0.0"


@asynctest
async def test_a_service_only_the_staged_version_exports_refuses_by_name(tmp_path):
    async with two_versions(tmp_path) as versions:
        extra = versions.manager.get_context("user").import_service("p", "Extra")
        with pytest.raises(PluginUnavailableError, match="it has not finished initializing"):
            extra.who()

        await versions.commit()
        assert extra.who() == "2.0.0"


# --------------------------------------------------------------------------- committed


@asynctest
async def test_after_commit_every_registration_of_the_new_version_is_live_and_the_olds_are_not(
    tmp_path,
):
    async with two_versions(tmp_path) as versions:
        await versions.commit()

        answered = await versions.exercise()

        assert answered == dict.fromkeys(["route", "middleware", "hook", "service"], "2.0.0")
        old_seen, new_seen = versions.seen()
        assert old_seen == []
        assert set(new_seen) == EVERY_WAY
        assert versions.manager.get_handle("p").version == "2.0.0"


@asynctest
async def test_what_hosts_and_importers_kept_from_before_the_commit_follows_it(tmp_path):
    async with two_versions(tmp_path) as versions:
        handle = versions.manager.get_handle("p")
        operation = handle.operation("who")
        kept = versions.manager.get_plugin("user").who.who  # a proxy method, kept
        assert (operation.call(), kept()) == ("1.0.0", "1.0.0")

        await versions.commit()

        assert (operation.call(), kept(), handle.call("who")) == ("2.0.0", "2.0.0", "2.0.0")


@asynctest
async def test_call_metrics_tell_the_versions_apart(tmp_path):
    async with two_versions(tmp_path) as versions:
        handle = versions.manager.get_handle("p")
        handle.call("who")
        await versions.commit()
        handle.call("who")
        handle.call("who")

        assert handle.metrics()["call:who"].calls == 3
        assert handle.metrics()["call:who"].by_version == {"1.0.0": 1, "2.0.0": 2}


# --------------------------------------------------------------------------- discarded


@asynctest
async def test_discarding_the_staged_version_removes_what_it_registered(tmp_path):
    async with two_versions(tmp_path) as versions:
        runtime = versions.manager.runtime
        new_door = versions.new.door
        [route] = versions.app.routes()
        assert len(runtime.events.subscriptions("p")) == 2
        assert runtime.middleware.named(new_door, "tag") is not None
        assert versions.app.table.counterpart(route, versions.new.scope) is not None
        assert runtime.services.exports_of("p") == ["Extra", "Who"]

        versions.slot.discard(versions.new, reason="rolled back")

        assert len(runtime.events.subscriptions("p")) == 1
        assert runtime.middleware.named(new_door, "tag") is None
        assert versions.app.table.counterpart(route, versions.new.scope) is None
        assert runtime.services.exports_of("p") == ["Who"]
        with pytest.raises(ServiceNotFoundError):
            versions.manager.get_context("user").import_service("p", "Extra")
        assert not [n for n in loaded_namespaces() if "p_2_0_0" in n]  # its code is gone
        assert versions.manager.get_handle("p").in_flight_by_version() == {"1.0.0": 0}


@asynctest
async def test_after_discarding_the_staged_version_the_live_one_keeps_serving(tmp_path):
    async with two_versions(tmp_path) as versions:
        versions.slot.discard(versions.new, reason="rolled back")

        answered = await versions.exercise()

        assert answered == dict.fromkeys(["route", "middleware", "hook", "service"], "1.0.0")
        assert set(versions.old.instance.seen) == EVERY_WAY
        assert versions.new.instance.seen == []
        assert versions.slot.live is versions.old
        assert versions.manager.get_handle("p").call("who") == "1.0.0"


# --------------------------------------------------------------------------- in flight


@asynctest
async def test_calls_in_flight_are_counted_per_version(tmp_path):
    async with two_versions(tmp_path) as versions:
        handle = versions.manager.get_handle("p")
        assert handle.in_flight_by_version() == {"1.0.0": 0, "2.0.0": 0}
        first = asyncio.create_task(handle.acall("wait"))
        await poll_until(lambda: handle.in_flight_by_version()["1.0.0"] == 1)

        await versions.commit()
        second = asyncio.create_task(handle.acall("wait"))
        await poll_until(lambda: handle.in_flight_by_version()["2.0.0"] == 1)

        assert handle.in_flight_by_version() == {"1.0.0": 1, "2.0.0": 1}
        assert handle.in_flight == 2
        versions.old.instance.release.set()
        assert await first == "1.0.0"  # a call in the old version finishes there
        assert handle.in_flight_by_version() == {"1.0.0": 0, "2.0.0": 1}
        versions.new.instance.release.set()
        assert await second == "2.0.0"
        assert handle.in_flight_by_version() == {"1.0.0": 0, "2.0.0": 0}


# --------------------------------------------------------------------------- history


@asynctest
async def test_the_slot_history_records_loaded_committed_and_discarded(tmp_path):
    async with two_versions(tmp_path) as versions:
        await versions.commit()
        versions.slot.discard(versions.old, reason="replaced")

        history = versions.manager.get_history("p")

        assert [(e.what, e.version) for e in history] == [
            ("loaded", "1.0.0"),
            ("committed", "1.0.0"),
            ("loaded", "2.0.0"),
            ("committed", "2.0.0"),
            ("discarded", "1.0.0"),
        ]
        assert history[-1].detail == "replaced"
        assert history[2].detail.endswith("p-2.0.0")  # where the version was loaded from
        assert history[-1].to_dict()["what"] == "discarded"
        assert versions.manager.get_handle("p").in_flight_by_version() == {"2.0.0": 0}
