"""The admin API and the ops routes, served by uvicorn on loopback, driven with httpx."""

from __future__ import annotations

import importlib.util
import re

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.routing import Mount, Route

from ops_support import Served, start_plugins, write_plugin
from tether import PluginManager, PluginStatus, TetherConfig
from tether.admin import create_admin_app, openapi_document
from tether.admin._errors import status_of
from tether.errors import (
    ConfigError,
    DependentsRunningError,
    ManifestError,
    MissingDependencyError,
    PluginImportError,
    PluginLifecycleError,
    PluginNameConflictError,
    PluginNotFoundError,
    PluginUnavailableError,
    StorageError,
    TetherError,
)
from tether.observability import ErrorThreshold

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def serve(tmp_path):
    started: list[Served] = []

    def make(*paths, config=None, **options) -> Served:
        manager = PluginManager(
            config=TetherConfig.model_validate(config or {}), state_directory=tmp_path / "state"
        )
        options.setdefault("token", TOKEN)
        served = Served(create_admin_app(manager, **options), manager).start()
        started.append(served)
        if paths:
            served.call(lambda: start_plugins(manager, *paths))
        return served

    yield make
    for served in started:
        served.stop()


@pytest.fixture
def plugins(tmp_path):
    return {
        "auth": write_plugin(tmp_path / "plugins", "auth-plugin"),
        "user": write_plugin(tmp_path / "plugins", "user-plugin", depends_on=("auth-plugin",)),
    }


def client(served: Served, headers=AUTH) -> httpx.Client:
    return httpx.Client(base_url=served.url, headers=headers, timeout=30)


def assert_error(response: httpx.Response, status: int, error: str, plugin=None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error", "message", "plugin", "hint"}
    assert body["error"] == error
    assert body["plugin"] == plugin
    assert body["message"]
    return body


# --------------------------------------------------------------------------- auth


def test_admin_routes_need_the_right_bearer_token(serve, plugins):
    served = serve(plugins["auth"])
    with client(served, headers={}) as http:
        missing = http.get("/admin/plugins")
        wrong = http.get("/admin/plugins", headers={"Authorization": "Bearer nope"})
        basic = http.get("/admin/plugins", headers={"Authorization": f"Basic {TOKEN}"})
        right = http.get("/admin/plugins", headers=AUTH)
        spec = http.get("/admin/openapi.json")
        health = http.get("/healthz")
    body = assert_error(missing, 401, "Unauthorized")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in body["hint"]
    assert_error(wrong, 403, "Forbidden")
    assert_error(basic, 401, "Unauthorized")
    assert right.status_code == 200
    assert spec.status_code == 200  # the document needs no token
    assert health.status_code == 200


def test_without_a_token_the_admin_api_is_locked_unless_insecure(serve, plugins):
    locked = serve(plugins["auth"], token=None)
    open_ = serve(token=None, insecure=True)
    with client(locked) as http:
        body = assert_error(http.get("/admin/plugins"), 403, "Forbidden")
        assert "locked" in body["message"]
        assert "TETHER_ADMIN_TOKEN" in body["hint"]
        assert http.get("/readyz").status_code == 200  # ops routes still answer
    with client(open_, headers={}) as http:
        assert http.get("/admin/plugins").json() == {"plugins": []}


def test_the_token_comes_from_the_config_or_the_environment(serve, monkeypatch):
    from_config = serve(token=None, config={"admin": {"token": "from-config"}})
    monkeypatch.setenv("TETHER_ADMIN_TOKEN", "from-env")
    from_env = serve(token=None)
    with client(from_config, {"Authorization": "Bearer from-config"}) as http:
        assert http.get("/admin/plugins").status_code == 200
    with client(from_env, {"Authorization": "Bearer from-env"}) as http:
        assert http.get("/admin/plugins").status_code == 200


def test_metrics_can_be_put_behind_the_token(serve):
    served = serve(protect_metrics=True)
    with client(served, headers={}) as http:
        assert_error(http.get("/metrics"), 401, "Unauthorized")
        assert http.get("/metrics", headers=AUTH).status_code == 200


# --------------------------------------------------------------------------- plugins


def test_list_info_health_and_graph(serve, plugins):
    served = serve(plugins["auth"], plugins["user"])
    with client(served) as http:
        listed = http.get("/admin/plugins").json()["plugins"]
        info = http.get("/admin/plugins/auth-plugin").json()
        user = http.get("/admin/plugins/user-plugin").json()
        health = http.get("/admin/plugins/auth-plugin/health").json()
        every = http.get("/admin/health").json()["plugins"]
        graph = http.get("/admin/graph").json()
        unknown = http.get("/admin/plugins/auth-plugn")
    assert [p["name"] for p in listed] == ["auth-plugin", "user-plugin"]
    assert all(p["status"] == "running" and p["ready"] for p in listed)
    assert info["version"] == "1.0.0"
    assert info["dependents"] == ["user-plugin"]
    assert info["dependencies"] == []
    assert info["health"]["hook_metrics"]["pre_request"]["execution_count"] == 0
    assert user["dependencies"] == [
        {"name": "auth-plugin", "version": "^1.0.0", "optional": False, "loaded": True}
    ]
    assert health["status"] == "running"
    assert health["error_count"] == 0
    assert set(every) == {"auth-plugin", "user-plugin"}
    assert graph["graph"] == {"auth-plugin": [], "user-plugin": ["auth-plugin"]}
    assert graph["order"] == ["auth-plugin", "user-plugin"]
    assert graph["edges"] == [
        {"from": "user-plugin", "to": "auth-plugin", "version": "^1.0.0", "optional": False}
    ]
    body = assert_error(unknown, 404, "PluginNotFoundError", plugin="auth-plugn")
    assert body["hint"] == "did you mean 'auth-plugin'?"


def test_load_from_a_path_and_unload(serve, plugins, tmp_path):
    served = serve()
    with client(served) as http:
        loaded = http.post("/admin/plugins", json={"path": str(plugins["auth"])})
        again = http.post("/admin/plugins", json={"path": str(plugins["auth"])})
        missing = http.post("/admin/plugins", json={"path": str(tmp_path / "nowhere")})
        bad_body = http.post("/admin/plugins", json={"path": 3, "colour": "red"})
        not_json = http.post(
            "/admin/plugins", content=b"{", headers={"Content-Type": "application/json"}
        )
        bad_config = http.post(
            "/admin/plugins", json={"path": str(plugins["user"]), "permissions": {"exec": True}}
        )
        user = http.post("/admin/plugins", json={"path": str(plugins["user"]), "start": False})
        started = http.post("/admin/plugins/user-plugin/enable")
        bad_flag = http.delete("/admin/plugins/user-plugin", params={"force": "maybe"})
        unloaded = http.delete("/admin/plugins/user-plugin")
        gone = http.delete("/admin/plugins/user-plugin")
    assert loaded.status_code == 201, loaded.text
    assert loaded.json()["status"] == "running"
    assert_error(again, 409, "PluginNameConflictError", plugin="auth-plugin")
    body = assert_error(missing, 400, "BadRequest")
    assert "plugin file not found" in body["message"]
    body = assert_error(bad_body, 400, "BadRequest")
    assert "path" in body["message"]
    assert "colour" in body["message"]
    assert_error(not_json, 400, "BadRequest")
    assert bad_config.status_code == 400
    assert user.status_code == 201
    assert user.json()["status"] == "loading"
    assert started.json()["status"] == "running"
    assert_error(bad_flag, 400, "BadRequest")
    assert unloaded.json() == {"name": "user-plugin", "unloaded": True}
    assert_error(gone, 404, "PluginNotFoundError", plugin="user-plugin")


def test_plugin_info_and_health_show_call_metrics_by_source_and_version(serve, plugins):
    served = serve(plugins["auth"])
    manager = served.manager

    async def calls() -> None:
        manager.runtime.hooks.call("pre_request", "ok")
        manager.runtime.hooks.call("pre_request", "ok")
        manager.get_plugin("auth-plugin").fail_hooks = True
        manager.runtime.hooks.call("pre_request", "bad")

    served.call(calls)
    with client(served) as http:
        info = http.get("/admin/plugins/auth-plugin").json()
        health = http.get("/admin/plugins/auth-plugin/health").json()
    hook = info["health"]["calls"]["hook:pre_request"]
    assert hook["source"] == "hook:pre_request"
    assert (hook["calls"], hook["errors"]) == (3, 1)
    assert hook["by_version"] == {"1.0.0": 3}
    assert hook["total_duration_seconds"] >= 0
    assert health["calls"] == info["health"]["calls"]


def test_unload_is_refused_while_dependents_run_unless_forced(serve, plugins):
    served = serve(plugins["auth"], plugins["user"])
    with client(served) as http:
        refused = http.delete("/admin/plugins/auth-plugin")
        forced = http.delete("/admin/plugins/auth-plugin?force=true")
        left = http.get("/admin/plugins").json()["plugins"]
    body = assert_error(refused, 409, "DependentsRunningError", plugin="auth-plugin")
    assert "running plugins depend on it: 'user-plugin'" in body["message"]
    assert forced.json() == {"name": "auth-plugin", "unloaded": True}
    assert [p["name"] for p in left] == ["user-plugin"]


def test_disable_and_enable_drive_readiness(serve, plugins):
    served = serve(plugins["auth"], plugins["user"])
    with client(served) as http:
        ready = http.get("/readyz")
        refused = http.post("/admin/plugins/auth-plugin/disable")
        disabled = http.post("/admin/plugins/user-plugin/disable", json={"reason": "maintenance"})
        not_ready = http.get("/readyz")
        listed = {p["name"]: p for p in http.get("/admin/plugins").json()["plugins"]}
        enabled = http.post("/admin/plugins/user-plugin/enable")
        ready_again = http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "plugins": ["auth-plugin", "user-plugin"]}
    assert_error(refused, 409, "DependentsRunningError", plugin="auth-plugin")
    assert disabled.status_code == 200
    assert disabled.json()["enabled"] is False
    assert disabled.json()["status"] == "stopped"
    assert disabled.json()["health"]["unavailable_reason"] == "maintenance"
    body = assert_error(not_ready, 503, "NotReady")
    assert body["not_ready"] == {"user-plugin": "maintenance"}
    assert "user-plugin (maintenance)" in body["message"]
    assert listed["user-plugin"]["state"] == "disabled"
    assert enabled.json()["status"] == "running"
    assert ready_again.status_code == 200
    assert served.manager.persisted_flag("user-plugin").enabled


def test_readyz_lists_a_plugin_the_error_threshold_disabled(serve, plugins):
    served = serve(plugins["auth"])
    manager = served.manager

    async def trip() -> None:
        manager.set_error_threshold("auth-plugin", ErrorThreshold(max_errors=2))
        manager.get_plugin("auth-plugin").fail_hooks = True
        manager.runtime.hooks.call("pre_request", 1)
        manager.runtime.hooks.call("pre_request", 2)

    served.call(trip)
    with client(served) as http:
        body = assert_error(http.get("/readyz"), 503, "NotReady")
        info = http.get("/admin/plugins/auth-plugin").json()
    assert body["not_ready"] == {"auth-plugin": "it was disabled: error threshold exceeded"}
    assert info["state"] == "disabled"
    assert info["health"]["error_threshold"]["state"] == "open"
    assert info["health"]["errors_by_type"] == {"ValueError": 2}


def test_reload_swaps_in_place_while_dependents_keep_running(serve, plugins):
    served = serve(plugins["auth"], plugins["user"])
    manager = served.manager
    with client(served) as http:
        before = http.get("/admin/plugins/auth-plugin").json()
        reloaded = http.post("/admin/plugins/auth-plugin/reload")
        alone = http.post("/admin/plugins/user-plugin/reload")
        after = http.get("/admin/plugins/auth-plugin").json()
    assert reloaded.status_code == 200, reloaded.text
    assert reloaded.json()["outcome"] == "reloaded"
    assert reloaded.json()["from_version"] == reloaded.json()["to_version"] == "1.0.0"
    assert after["status"] == "running"
    assert after["load_time"] != before["load_time"]
    assert alone.json()["outcome"] == "reloaded"
    assert manager.get_status("user-plugin") is PluginStatus.RUNNING
    assert [r.outcome for r in manager.reload_history("auth-plugin")] == ["reloaded"]


# --------------------------------------------------------------------------- ops routes


def test_healthz_and_metrics(serve, plugins):
    served = serve(plugins["auth"])
    with client(served, headers={}) as http:
        alive = http.get("/healthz")
        metrics = http.get("/metrics")
        unknown = http.get("/admin/nothing-here", headers=AUTH)
        wrong_method = http.put("/admin/plugins", headers=AUTH)
    assert alive.json()["status"] == "ok"
    assert alive.json()["plugins"] == 1
    assert metrics.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(metrics.text)}
    status = families["tether_plugin_status"].samples
    running = [s for s in status if s.labels == {"plugin": "auth-plugin", "status": "running"}]
    assert running[0].value == 1
    assert "tether_plugin_load_attempts" in families
    assert_error(unknown, 404, "NotFound")
    assert_error(wrong_method, 405, "MethodNotAllowed")


# --------------------------------------------------------------------------- the document


def _app_routes(app) -> set[tuple[str, str]]:
    found = set()
    for route in app.routes:
        if isinstance(route, Mount):
            for inner in route.routes:
                assert isinstance(inner, Route)
                found |= {(m, route.path + inner.path) for m in inner.methods if m != "HEAD"}
        elif isinstance(route, Route):
            found |= {(m, route.path) for m in route.methods if m != "HEAD"}
    return found


def test_the_openapi_document_is_valid_and_covers_every_route(tmp_path):
    document = openapi_document()
    if importlib.util.find_spec("openapi_spec_validator") is not None:
        from openapi_spec_validator import validate

        validate(document)
    else:  # a structural check
        assert document["openapi"].startswith("3.1")
        assert {"title", "version"} <= set(document["info"])
        for item in document["paths"].values():
            for operation in (v for k, v in item.items() if k in {"get", "post", "delete"}):
                assert operation["responses"]
    app = create_admin_app(PluginManager(state_directory=tmp_path), token=TOKEN)
    documented = set()
    for path, item in document["paths"].items():
        prefix = "" if "servers" in item else "/admin"
        documented |= {(m.upper(), prefix + path) for m in item if m in {"get", "post", "delete"}}
    assert documented == _app_routes(app)
    refs = set(re.findall(r"#/components/schemas/(\w+)", str(document)))
    assert refs <= set(document["components"]["schemas"])


@pytest.mark.parametrize(
    ("error", "status"),
    [
        pytest.param(PluginNotFoundError("x", plugin="p"), 404, id="not-found"),
        pytest.param(DependentsRunningError("p", ["q"]), 409, id="dependents"),
        pytest.param(PluginLifecycleError("p", "start", "boom"), 409, id="lifecycle"),
        pytest.param(PluginNameConflictError("p", "a", "b"), 409, id="conflict"),
        pytest.param(MissingDependencyError("p", "q", "^1"), 409, id="missing-dependency"),
        pytest.param(PluginUnavailableError("p", "it is stopped"), 503, id="unavailable"),
        pytest.param(ConfigError("bad"), 400, id="config"),
        pytest.param(ManifestError(__import__("pathlib").Path("m"), []), 400, id="manifest"),
        pytest.param(PluginImportError.__new__(PluginImportError), 400, id="import"),
        pytest.param(StorageError("down"), 503, id="storage"),
        pytest.param(TetherError("other"), 500, id="other"),
    ],
)
def test_each_error_has_a_fitting_status(error, status):
    assert status_of(error) == status
