"""The plugin context: the framework services a plugin reaches, each behind its permission,
through sealed views; its host-side scope, which undoes everything the version registered
on release. Also Runtime, FieldLogger, ConfigView."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest

from tether import TetherConfig, TetherError
from tether._context import ConfigView, Context, FieldLogger, PluginScope
from tether._runtime import Runtime
from tether.errors import PermissionDeniedError
from tether.testing import make_context, make_scope

GUARDED = ["database", "cache", "config", "router"]

FRAMEWORK_CONFIG = {
    "database": {
        "host": "db.internal",
        "port": 5432,
        "ssl": True,
        "ratio": 0.5,
        "timeout": "30s",
        "password": "hunter2",
        "url": "postgresql://app:s3cret@db.internal/app",
    },
    "server": {"api_key": "abc123", "listen": ":8080", "auth": {"token": "t0k", "realm": "x"}},
    "plugins": {
        "plugins": [
            {
                "name": "auth-plugin",
                "config": {"jwt_secret": "other-plugin-secret", "issuer": "me"},
                "permissions": {"database": True},
            },
            {"name": "logging-plugin", "config": {"log_level": "debug"}},
        ]
    },
}


def scope_of(
    tmp_path: Path,
    name: str = "logging-plugin",
    *,
    runtime: Runtime | None = None,
    permissions: tuple[str, ...] = (),
    config: dict[str, object] | None = None,
) -> PluginScope:
    """The host-side scope of ``name`` on ``runtime`` (a fresh one under tmp_path by default)."""
    return make_scope(
        name,
        version="1.2.3",
        runtime=runtime or Runtime(state_directory=tmp_path / "state"),
        permissions=permissions,
        config=config or {},
    )


def context(
    tmp_path: Path,
    name: str = "logging-plugin",
    *,
    runtime: Runtime | None = None,
    permissions: tuple[str, ...] = (),
    config: dict[str, object] | None = None,
) -> Context:
    """What the plugin ``name`` sees: the context of ``scope_of``'s scope."""
    return scope_of(tmp_path, name, runtime=runtime, permissions=permissions, config=config).context


# --------------------------------------------------------------------------- identity


def test_the_context_describes_its_plugin(tmp_path):
    scope = scope_of(tmp_path, permissions=("cache",))
    ctx = scope.context
    assert (ctx.name, ctx.version, ctx.manifest.name) == (
        "logging-plugin",
        "1.2.3",
        "logging-plugin",
    )
    assert ctx.permissions == frozenset({"cache"})
    assert ctx.has_permission("cache")
    assert not ctx.has_permission("database")
    assert repr(ctx) == "<PluginContext logging-plugin 1.2.3>"
    assert scope.door.gate.plugin == "logging-plugin"
    assert (scope.door.plugin, scope.door.version) == ("logging-plugin", "1.2.3")
    assert isinstance(scope.runtime, Runtime)


@pytest.mark.parametrize("host_side", ["runtime", "gate", "door", "replace_config", "release"])
def test_the_host_side_is_not_reachable_from_the_context(tmp_path, host_side):
    ctx = context(tmp_path)
    with pytest.raises(AttributeError, match=f"'Context' object has no attribute '{host_side}'"):
        getattr(ctx, host_side)
    assert not hasattr(ctx, "__dict__")


def test_the_context_is_read_only(tmp_path):
    ctx = context(tmp_path)
    with pytest.raises(AttributeError, match="Context is read-only"):
        ctx.name = "someone-else"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="Context is read-only"):
        ctx.runtime = object()  # type: ignore[attr-defined]
    assert ctx.name == "logging-plugin"


# --------------------------------------------------------------------------- permissions


@pytest.mark.parametrize("service", GUARDED)
def test_a_service_without_its_permission_is_denied_with_the_reference_message(tmp_path, service):
    ctx = context(tmp_path)
    with pytest.raises(PermissionDeniedError) as caught:
        getattr(ctx, service)
    assert str(caught.value) == (
        f"permission denied: plugin 'logging-plugin' attempted {service} access without permission"
    )
    assert caught.value.plugin == "logging-plugin"
    assert caught.value.permission == service
    assert isinstance(caught.value, PermissionError)
    assert f"permissions.{service}: true" in (caught.value.hint or "")


@pytest.mark.parametrize("service", GUARDED)
def test_another_permission_does_not_open_a_service(tmp_path, service):
    others = tuple(p for p in GUARDED if p != service)
    ctx = context(tmp_path, permissions=others)
    with pytest.raises(PermissionDeniedError, match=f"attempted {service} access"):
        getattr(ctx, service)


def test_logger_metrics_config_and_storage_need_no_permission(tmp_path):
    scope = scope_of(tmp_path, config={"level": "info"})
    ctx = scope.context
    assert isinstance(ctx.logger, FieldLogger)
    ctx.metrics.increment_counter("requests")
    assert [(m.plugin, m.name, m.value) for m in scope.runtime.metrics.samples()] == [
        ("logging-plugin", "requests", 1.0)
    ]
    assert ctx.plugin_config == {"level": "info"}
    ctx.plugin_storage.set("k", 1)
    assert ctx.plugin_storage.get("k") == 1
    assert ctx.plugin_storage.plugin == "logging-plugin"


@pytest.mark.parametrize(
    ("service", "hidden"),
    [
        pytest.param("metrics", ["_store", "_plugin", "samples"], id="metrics"),
        pytest.param("cache", ["_entries", "_codec", "close"], id="cache"),
        pytest.param("plugin_storage", ["_store", "_plugin"], id="plugin-storage"),
    ],
)
def test_services_are_sealed_views_that_lead_nowhere_else(tmp_path, service, hidden):
    ctx = context(tmp_path, permissions=("cache",))
    view = getattr(ctx, service)
    for name in hidden:
        assert not hasattr(view, name)
    assert not hasattr(view, "__dict__")
    with pytest.raises(AttributeError, match="read-only"):
        view.anything = 1


# --------------------------------------------------------------------------- database and cache


def test_the_database_is_a_sqlite_file_in_the_state_directory_by_default(tmp_path):
    scope = scope_of(tmp_path, permissions=("database",))
    ctx = scope.context
    db = ctx.database
    assert db.query_one("SELECT sqlite_version() AS v")["v"]
    assert Path(db.location) == tmp_path / "state" / "app.db"
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    db.execute("INSERT INTO users (name) VALUES (?)", "ada")
    assert db.query("SELECT name FROM users") == [{"name": "ada"}]
    assert ctx.database is db  # one view per plugin, of the runtime's database
    assert "close" not in dir(db)  # closing it is the runtime's, not one plugin's
    scope.runtime.close()


def test_the_database_follows_the_framework_config(tmp_path):
    target = tmp_path / "elsewhere" / "custom.db"
    config = TetherConfig.model_validate({"database": {"url": str(target)}})
    runtime = Runtime(config=config, state_directory=tmp_path / "state")
    ctx = context(tmp_path, runtime=runtime, permissions=("database",))
    assert Path(ctx.database.location) == target
    runtime.close()


def test_the_cache_is_in_memory_and_each_plugin_has_its_own_keys(tmp_path):
    runtime = Runtime(state_directory=tmp_path / "state")
    first = context(tmp_path, "first", runtime=runtime, permissions=("cache",))
    second = context(tmp_path, "second", runtime=runtime, permissions=("cache",))
    assert (first.cache.namespace, second.cache.namespace) == ("first", "second")
    first.cache.set("k", "first's")
    assert first.cache.get("k") == "first's"
    assert second.cache.get("k") is None
    assert not second.cache.has("k")
    one, other = first.cache, first.cache  # one cache behind every access
    one.set("shared", 1)
    assert other.get("shared") == 1
    runtime.close()
    assert first.cache.get("k") is None  # an in-memory cache: gone with the runtime's


def test_runtime_close_closes_what_it_opened_and_reopens_lazily(tmp_path):
    scope = scope_of(tmp_path, permissions=("database", "cache"))
    ctx = scope.context
    db = ctx.database
    ctx.cache.set("k", 1)
    ctx.plugin_storage.set("durable", 1)
    scope.runtime.close()
    assert ctx.database is not db
    assert ctx.cache.get("k") is None  # memory caches do not survive
    assert scope.runtime.state_store().get("logging-plugin", "durable") is not None
    scope.runtime.close()


# --------------------------------------------------------------------------- router


class RecordingRouter:
    """A host's router for one plugin scope: records what the plugin adds."""

    def __init__(self, scope: PluginScope, prefix: str = "") -> None:
        self.scope = scope
        self.prefix = prefix
        self.added: list[tuple[str, str]] = []

    def _add(self, method: str, path: str) -> None:
        self.added.append((method, self.prefix + path))

    def get(self, path, handler):
        self._add("GET", path)

    def post(self, path, handler):
        self._add("POST", path)

    def put(self, path, handler):
        self._add("PUT", path)

    def patch(self, path, handler):
        self._add("PATCH", path)

    def delete(self, path, handler):
        self._add("DELETE", path)

    def group(self, prefix):
        group = RecordingRouter(self.scope, self.prefix + prefix)
        group.added = self.added
        return group


def test_the_router_needs_a_host_that_serves_http(tmp_path):
    scope = scope_of(tmp_path, permissions=("router",))
    ctx = scope.context
    with pytest.raises(TetherError, match="this host serves no HTTP routes") as caught:
        _ = ctx.router
    assert caught.value.hint == "run the plugin under `tether serve`"
    made: list[RecordingRouter] = []

    def factory(for_scope: PluginScope) -> RecordingRouter:
        made.append(RecordingRouter(for_scope))
        return made[-1]

    scope.runtime.provide_router(factory)
    ctx.router.get("/items", lambda request: None)
    ctx.router.group("/admin").post("/reset", lambda request: None)
    assert [router.scope for router in made] == [scope, scope]
    assert made[0].added == [("GET", "/items")]
    assert made[1].added == [("POST", "/admin/reset")]
    assert not hasattr(ctx.router, "scope")  # a sealed view: the router's methods only
    assert not hasattr(ctx.router.group("/x"), "scope")
    with pytest.raises(ValueError, match="this runtime has a router already"):
        scope.runtime.provide_router(factory)


# --------------------------------------------------------------------------- config


@pytest.fixture
def config_view(tmp_path):
    runtime = Runtime(
        config=TetherConfig.model_validate(FRAMEWORK_CONFIG), state_directory=tmp_path
    )
    return context(tmp_path, runtime=runtime, permissions=("config",)).config


def test_config_reads_dotted_keys_with_types(config_view):
    assert isinstance(config_view, ConfigView)
    assert config_view.get_string("database.host") == "db.internal"
    assert config_view.get_int("database.port") == 5432
    assert config_view.get_bool("database.ssl") is True
    assert config_view.get_float("database.ratio") == 0.5
    assert config_view.get_float("database.port") == 5432.0
    assert config_view.get_duration("database.timeout") == timedelta(seconds=30)
    assert config_view.get_string("server.listen") == ":8080"
    assert config_view.get("server.auth") == {"realm": "x"}


@pytest.mark.parametrize(
    ("getter", "default"),
    [
        pytest.param("get_string", "fallback", id="string"),
        pytest.param("get_int", 7, id="int"),
        pytest.param("get_bool", True, id="bool"),
        pytest.param("get_float", 1.5, id="float"),
        pytest.param("get_duration", timedelta(minutes=1), id="duration"),
    ],
)
def test_config_missing_keys_give_the_default(config_view, getter, default):
    assert getattr(config_view, getter)("nowhere.to.be.found", default) == default
    assert getattr(config_view, getter)("database.host.deeper", default) == default


@pytest.mark.parametrize(
    ("getter", "key", "message"),
    [
        ("get_int", "database.host", "config key 'database.host' is str, not an integer"),
        ("get_int", "database.ssl", "config key 'database.ssl' is bool, not an integer"),
        ("get_string", "database.port", "config key 'database.port' is int, not a string"),
        ("get_bool", "database.host", "config key 'database.host' is str, not a boolean"),
    ],
    ids=["str-as-int", "bool-as-int", "int-as-string", "str-as-bool"],
)
def test_config_of_the_wrong_type_is_an_error_naming_the_key(config_view, getter, key, message):
    with pytest.raises(TetherError) as caught:
        getattr(config_view, getter)(key)
    assert str(caught.value) == message
    assert (
        caught.value.hint
        == f"set '{key}' to {message.rpartition('not ')[2]} in the framework config"
    )


def test_config_has_secrets_removed(config_view):
    data = config_view.as_dict()
    assert "password" not in data["database"]
    assert "api_key" not in data["server"]
    assert "token" not in data["server"]["auth"]
    assert config_view.get_string("database.url") == "postgresql://app@db.internal/app"
    text = repr(data)
    for secret in ("hunter2", "s3cret", "abc123", "t0k", "****"):
        assert secret not in text


def test_config_does_not_show_other_plugins_config_or_permissions(config_view):
    entries = config_view.get("plugins.plugins")
    assert [entry["name"] for entry in entries] == ["auth-plugin", "logging-plugin"]
    for entry in entries:
        assert "config" not in entry
        assert "permissions" not in entry
    assert "other-plugin-secret" not in repr(config_view.as_dict())
    assert "issuer" not in repr(config_view.as_dict())


def test_config_is_read_only(config_view):
    server = config_view.get("server")
    server["listen"] = "changed"
    config_view.as_dict()["database"]["host"] = "changed"
    assert config_view.get_string("server.listen") == ":8080"
    assert config_view.get_string("database.host") == "db.internal"
    assert not hasattr(config_view, "set")


# --------------------------------------------------------------------------- plugin_config


def test_plugin_config_is_the_plugins_own_and_a_copy(tmp_path):
    ctx = context(tmp_path, config={"level": "info", "tags": ["a"], "limits": {"n": 1}})
    copy = ctx.plugin_config
    copy["level"] = "debug"
    copy["tags"].append("b")
    copy["limits"]["n"] = 99
    assert ctx.plugin_config == {"level": "info", "tags": ["a"], "limits": {"n": 1}}


def test_replace_config_swaps_and_returns_the_old(tmp_path):
    scope = scope_of(tmp_path, config={"level": "info"})
    assert scope.replace_config({"level": "debug"}) == {"level": "info"}
    assert scope.context.plugin_config == {"level": "debug"}


# --------------------------------------------------------------------------- storage


def test_plugin_storage_is_isolated_per_plugin(tmp_path):
    runtime = Runtime(state_directory=tmp_path / "state")
    auth = context(tmp_path, "auth-plugin", runtime=runtime)
    user = context(tmp_path, "user-plugin", runtime=runtime)
    auth.plugin_storage.set("session", {"user": "ada"})
    user.plugin_storage.set("other", 1)
    assert user.plugin_storage.get("session", None) is None
    with pytest.raises(KeyError):
        user.plugin_storage.get("session")
    assert user.plugin_storage.list() == ["other"]
    assert auth.plugin_storage.list() == ["session"]
    assert user.plugin_storage.clear() == 1
    assert auth.plugin_storage.get("session") == {"user": "ada"}


def test_plugin_storage_survives_a_new_context_for_the_same_plugin(tmp_path):
    runtime = Runtime(state_directory=tmp_path / "state")
    context(tmp_path, "auth-plugin", runtime=runtime).plugin_storage.set("k", [1, 2])
    runtime.close()
    fresh = Runtime(state_directory=tmp_path / "state")
    assert context(tmp_path, "auth-plugin", runtime=fresh).plugin_storage.get("k") == [1, 2]
    fresh.close()


# --------------------------------------------------------------------------- logger


def test_the_logger_is_named_after_the_plugin_and_carries_fields(tmp_path, caplog):
    ctx = context(tmp_path)
    with caplog.at_level(logging.INFO, logger="tether.plugin.logging-plugin"):
        ctx.logger.info("plain %s", "message")
        ctx.logger.with_fields(user_id=123).with_fields(action="login").info("user %s", "ada")
    plain, structured = caplog.records
    assert plain.name == "tether.plugin.logging-plugin"
    assert plain.getMessage() == "plain message"
    assert plain.plugin == "logging-plugin"  # type: ignore[attr-defined]
    assert plain.fields == {}  # type: ignore[attr-defined]
    assert structured.getMessage() == "user ada user_id=123 action=login"
    assert structured.fields == {"user_id": 123, "action": "login"}  # type: ignore[attr-defined]


def test_with_fields_does_not_change_the_original_logger(tmp_path, caplog):
    ctx = context(tmp_path)
    ctx.logger.with_fields(request="r1")
    with caplog.at_level(logging.INFO, logger="tether.plugin.logging-plugin"):
        ctx.logger.info("clean")
    assert caplog.records[0].getMessage() == "clean"


def test_extra_passed_by_the_caller_is_kept(tmp_path, caplog):
    ctx = context(tmp_path)
    with caplog.at_level(logging.INFO, logger="tether.plugin.logging-plugin"):
        ctx.logger.info("with extra", extra={"request_id": "abc"})
    assert caplog.records[0].request_id == "abc"  # type: ignore[attr-defined]
    assert caplog.records[0].plugin == "logging-plugin"  # type: ignore[attr-defined]


def test_set_level_takes_names_and_numbers(tmp_path):
    ctx = context(tmp_path, "level-plugin")
    ctx.logger.set_level("debug")
    assert ctx.logger.logger.level == logging.DEBUG
    ctx.logger.set_level(logging.WARNING)
    assert ctx.logger.logger.level == logging.WARNING
    ctx.logger.logger.setLevel(logging.NOTSET)


def test_records_point_at_the_callers_line(tmp_path, caplog):
    ctx = context(tmp_path)
    with caplog.at_level(logging.INFO, logger="tether.plugin.logging-plugin"):
        ctx.logger.info("plain")
        ctx.logger.with_fields(k="v").info("with %s", "args")
    for record in caplog.records:
        assert record.funcName == "test_records_point_at_the_callers_line"
        assert record.pathname == __file__


@pytest.mark.parametrize(
    ("message", "args", "expected"),
    [
        pytest.param("step %d done", (3,), "step 3 done progress=100%", id="with-args"),
        pytest.param(
            "done",
            (),
            "done progress=100%",
            id="without-args",
        ),
    ],
)
def test_a_percent_sign_in_a_field_is_logged_as_is(tmp_path, caplog, message, args, expected):
    ctx = context(tmp_path)
    with caplog.at_level(logging.INFO, logger="tether.plugin.logging-plugin"):
        ctx.logger.with_fields(progress="100%").info(message, *args)
    assert caplog.records[0].getMessage() == expected


@pytest.mark.parametrize(
    "dsn",
    [
        pytest.param("host=db user=app password=hunter2 dbname=app", id="keyword-value"),
        pytest.param("host=db password='hunter2 x' dbname=app", id="keyword-value-quoted"),
        pytest.param("postgresql://app@db/app?password=hunter2", id="query-parameter"),
        pytest.param("postgresql://app@db/app?sslpassword=hunter2", id="sslpassword"),
        pytest.param("redis://db:6379/0?password=hunter2", id="redis-query"),
        pytest.param("redis://:hunter2@db:6379/0", id="redis-no-user"),
    ],
)
def test_config_removes_passwords_inside_connection_strings(tmp_path, dsn):
    config = TetherConfig.model_validate({"database": {"dsn": dsn}})
    ctx = context(
        tmp_path,
        runtime=Runtime(config=config, state_directory=tmp_path),
        permissions=("config",),
    )
    assert "hunter2" not in repr(ctx.config.as_dict())


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("https://hooks.example.com/in?access_token=hunter2", id="access_token"),
        pytest.param(
            "https://auth.example.com/token?client_id=a&client_secret=hunter2",
            id="client_secret",
        ),
        pytest.param("host=db db_password=hunter2", id="db_password"),
    ],
)
def test_config_removes_prefixed_secret_parameters(tmp_path, value):
    config = TetherConfig.model_validate({"server": {"url": value}})
    ctx = context(
        tmp_path,
        runtime=Runtime(config=config, state_directory=tmp_path),
        permissions=("config",),
    )
    assert "hunter2" not in ctx.config.get_string("server.url")


# --------------------------------------------------------------------------- release


def test_release_undoes_every_registration_and_runs_callbacks_last_first(tmp_path):
    scope = scope_of(tmp_path)
    ctx = scope.context
    runtime = scope.runtime
    order: list[str] = []
    ctx.register_hook("pre_request", 100, lambda request: "hooked")
    subscription = ctx.subscribe_event("user.created", lambda event: None)
    ctx.register_middleware("mw", lambda request, call_next: call_next(request))
    ctx.export_service("Thing", object.__new__(type("Thing", (), {"ping": lambda self: 1})))
    ctx.on_release(lambda: order.append("first registered"))
    ctx.on_release(lambda: order.append("last registered"))
    assert runtime.hooks.handlers("pre_request") == [("logging-plugin", 100)]
    assert subscription.is_active

    assert scope.release() == []

    assert runtime.hooks.handlers("pre_request") == []
    assert not subscription.is_active
    assert runtime.middleware.all() == ()
    assert runtime.services.exports_of("logging-plugin") == []
    assert order == ["last registered", "first registered"]
    assert scope.release() == []  # twice is harmless


def test_registration_handles_are_views_that_remove_what_they_registered(tmp_path):
    scope = scope_of(tmp_path)
    ctx = scope.context
    hooks = scope.runtime.hooks
    hook = ctx.register_hook("pre_request", 100, lambda request: "hooked")
    subscription = ctx.subscribe_event("user.*", lambda event: None)
    assert (hook.plugin, hook.hook_type, hook.priority, hook.is_active) == (
        "logging-plugin",
        "pre_request",
        100,
        True,
    )
    assert (subscription.plugin, subscription.pattern, subscription.is_active) == (
        "logging-plugin",
        "user.*",
        True,
    )
    assert (subscription.delivered, subscription.failed, subscription.pending) == (0, 0, 0)
    for handle in (hook, subscription):
        assert not hasattr(handle, "__dict__")
        for host_side in ("_registry", "_entry", "door", "handler", "bus"):
            assert not hasattr(handle, host_side)
    assert hooks.call("pre_request", {}).results == ["hooked"]
    hook.remove()
    subscription.remove()
    assert not hook.is_active
    assert not subscription.is_active
    assert hooks.handlers("pre_request") == []
    hook.remove()  # again: nothing happens


def test_release_reports_failures_and_still_runs_every_callback(tmp_path):
    scope = scope_of(tmp_path)
    ctx = scope.context
    ran: list[str] = []

    def explode() -> None:
        raise RuntimeError("cleanup exploded")

    ctx.on_release(lambda: ran.append("before"))
    ctx.on_release(explode)
    ctx.on_release(lambda: ran.append("after"))
    failures = scope.release()
    assert [str(f) for f in failures] == ["cleanup exploded"]
    assert ran == ["after", "before"]


# --------------------------------------------------------------------------- make_context


def test_make_context_gives_a_real_context_with_the_permissions_asked_for(tmp_path):
    ctx = make_context(
        "cache-user",
        config={"size": 3},
        permissions=["cache", "database"],
        state_directory=tmp_path,
    )
    assert isinstance(ctx, Context)
    assert ctx.name == "cache-user"
    assert ctx.plugin_config == {"size": 3}
    ctx.export_service("Echo", lambda text: text)  # its door is committed and open:
    assert ctx.import_service("cache-user", "Echo")("called") == "called"  # calls get in
    ctx.cache.set("k", 1)
    assert Path(ctx.database.location).parent == tmp_path
    with pytest.raises(PermissionDeniedError, match="plugin 'cache-user' attempted config access"):
        _ = ctx.config


def test_make_context_uses_the_framework_config_given(tmp_path):
    framework = TetherConfig.model_validate({"database": {"host": "h"}})
    ctx = make_context(
        "reader", permissions=["config"], framework_config=framework, state_directory=tmp_path
    )
    assert ctx.config.get_string("database.host") == "h"
