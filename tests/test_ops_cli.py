"""``tether plugins health|enable|disable|reload``: on the state store, or via the admin API
(tests/test_reload_ops.py has reload, rollback and history in depth)."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
import yaml
from click.testing import CliRunner, Result

from ops_support import Served, write_plugin
from tether import PluginManager, PluginStatus, load_config
from tether.admin import create_admin_app
from tether.cli import cli
from tether.observability import observe

TOKEN = "cli-token"


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def app(tmp_path, monkeypatch):
    """A config with two plugins in tmp_path (the working directory)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TETHER_ADMIN_URL", raising=False)
    monkeypatch.delenv("TETHER_ADMIN_TOKEN", raising=False)
    write_plugin(tmp_path / "plugins", "auth-plugin")
    write_plugin(tmp_path / "plugins", "user-plugin", depends_on=("auth-plugin",))
    config = {
        "plugins": {
            "plugins": [
                {"name": "auth-plugin", "path": "plugins/auth-plugin-1.0.0"},
                {"name": "user-plugin", "path": "plugins/user-plugin-1.0.0"},
            ]
        },
        "admin": {"token": TOKEN},
    }
    path = tmp_path / "tether.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


async def serve_once(config_path, *, fail_auth: bool = False) -> dict[str, PluginStatus]:
    """What `tether serve` does with the state store: read it at load, write it at shutdown
    (the host closes the observability hub after the manager)."""
    manager = PluginManager(config=load_config(config_path))
    hub = observe(manager)
    try:
        async with manager:
            await manager.load_plugins_from_config()
            await manager.initialize_all()
            await manager.start_all()
            await hub.start()
            if fail_auth:
                manager.get_plugin("auth-plugin").fail_hooks = True
                manager.runtime.hooks.call("pre_request", "x")
            return {i.name: i.status for i in manager.list_plugins()}
    finally:
        await hub.aclose()


# --------------------------------------------------------------------------- offline


def test_disable_and_enable_are_saved_for_the_next_serve(app):
    result = run("--config", str(app), "plugins", "disable", "user-plugin")
    assert result.exit_code == 0, result.output
    assert "disabled user-plugin in the state store at" in result.output
    assert "no plugin named 'user-plugin' has run" in result.output
    assert "picks this up when it restarts" in result.output
    statuses = asyncio.run(serve_once(app))
    assert statuses == {"auth-plugin": PluginStatus.RUNNING, "user-plugin": PluginStatus.LOADING}

    result = run("--config", str(app), "plugins", "enable", "user-plugin")
    assert result.exit_code == 0, result.output
    assert "has run" not in result.output
    statuses = asyncio.run(serve_once(app))
    assert statuses == {"auth-plugin": PluginStatus.RUNNING, "user-plugin": PluginStatus.RUNNING}


def test_health_reads_the_state_store(app):
    missing = run("--config", str(app), "plugins", "health")
    assert missing.exit_code == 1
    assert "Error: no plugin state store at" in missing.output
    assert "a server writes it while it runs" in missing.output

    asyncio.run(serve_once(app, fail_auth=True))
    result = run("--config", str(app), "plugins", "health")
    assert result.exit_code == 1  # after shutdown every plugin is unloaded
    assert "auth-plugin" in result.output
    assert "ValueError" in result.output

    detail = run("--config", str(app), "plugins", "health", "auth-plugin", "--json")
    data = json.loads(detail.stdout)["plugins"][0]
    assert data["name"] == "auth-plugin"
    assert data["error_count"] == 1
    assert data["hook_metrics"]["pre_request"]["error_count"] == 1
    assert data["recent_errors"][0]["type"] == "ValueError"

    unknown = run("--config", str(app), "plugins", "health", "ghost")
    assert unknown.exit_code == 1
    assert "Error: plugin 'ghost' is not in the state store" in unknown.output


def test_reload_needs_a_server(app):
    result = run("--config", str(app), "plugins", "reload", "auth-plugin")
    assert result.exit_code == 1
    assert "Error: reloading a plugin needs a running server" in result.output
    assert "--url" in result.output


def test_an_unreachable_server_is_a_clear_error(app):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once it is closed
    result = run(
        "--config",
        str(app),
        "plugins",
        "reload",
        "auth-plugin",
        "--url",
        f"http://127.0.0.1:{port}",
    )
    assert result.exit_code == 1
    assert f"Error: cannot reach the tether server at http://127.0.0.1:{port}" in result.output
    assert "is `tether serve` running there?" in result.output


# --------------------------------------------------------------------------- live


@pytest.fixture
def server(app, tmp_path):
    manager = PluginManager(config=load_config(app))
    served = Served(create_admin_app(manager), manager).start()

    async def up():
        await manager.load_plugins_from_config()
        await manager.initialize_all()
        await manager.start_all()

    served.call(up)
    yield served
    served.stop()


def test_live_health_disable_enable_and_reload(app, server, monkeypatch):
    monkeypatch.setenv("TETHER_ADMIN_URL", server.url)
    base = ("--config", str(app), "plugins")

    healthy = run(*base, "health")
    assert healthy.exit_code == 0, healthy.output
    assert "auth-plugin" in healthy.output
    assert "user-plugin" in healthy.output

    refused = run(*base, "disable", "auth-plugin")
    assert refused.exit_code == 1
    assert "cannot disable plugin 'auth-plugin': running plugins depend on it" in refused.output
    assert "(HTTP 409)" in refused.output

    disabled = run(*base, "disable", "user-plugin", "--reason", "maintenance")
    assert disabled.exit_code == 0, disabled.output
    assert f"disabled user-plugin on {server.url}: it is stopped" in disabled.output
    assert server.manager.get_handle("user-plugin").closed_reason == "maintenance"
    unhealthy = run(*base, "health", "user-plugin")
    assert unhealthy.exit_code == 1
    assert "disabled" in unhealthy.output
    assert "unavailable: maintenance" in unhealthy.output

    enabled = run(*base, "enable", "user-plugin")
    assert enabled.exit_code == 0, enabled.output
    assert server.manager.get_status("user-plugin") is PluginStatus.RUNNING

    reloaded = run(*base, "reload", "user-plugin")
    assert reloaded.exit_code == 0, reloaded.output
    assert "reloaded user-plugin: 1.0.0 -> 1.0.0" in reloaded.output


def test_a_wrong_token_is_reported_with_the_servers_hint(app, server):
    result = run("--config", str(app), "plugins", "health", "--url", server.url, "--token", "wrong")
    assert result.exit_code == 1
    assert "Error: the admin token is wrong (HTTP 403)" in result.output
