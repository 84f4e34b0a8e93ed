"""The example application over HTTP, and `tether serve` as a real process.

The examples are copied to tmp_path first (plugins keep state next to the config).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml

from helpers import PluginWriter
from tether.hosts.web.testing import LiveServer

TETHER = Path(sys.executable).parent / "tether"
LOGIN_HINT = 'log in first: POST /users/login with {"user": "<name>"}, then send the token'


def wait_for(condition: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def app(tmp_path: Path, examples_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example application in tmp_path, with a rate limit that never refills."""
    shutil.copytree(examples_dir / "plugins", tmp_path / "plugins")
    for name in ("app.yaml", "web.yaml"):
        shutil.copy(examples_dir / name, tmp_path / name)
    config = yaml.safe_load((tmp_path / "web.yaml").read_text())
    for entry in config["plugins"]["plugins"]:
        if entry["name"] == "rate-limit-plugin":
            entry["config"] = {"rate": 0.001, "burst": 30}
    (tmp_path / "web.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("TETHER_EXAMPLE_SECRET", "example-signing-key")
    return tmp_path


@pytest.fixture
def served(app: Path) -> Iterator[tuple[LiveServer, httpx.Client]]:
    with (
        LiveServer(app / "web.yaml") as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        yield server, client


def login(client: httpx.Client, user: str = "ada") -> str:
    response = client.post("/users/login", json={"user": user})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["token_type"], body["user"]) == ("Bearer", user)
    return str(body["token"])


# --------------------------------------------------------------------------- auth + users


def test_login_then_me(served):
    _, client = served
    token = login(client)
    me = client.get("/users/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["user"] == "ada"


def test_me_without_a_token_is_401_from_the_auth_plugin(served):
    _, client = served
    refused = client.get("/users/me")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert refused.json() == {
        "error": "Unauthorized",
        "message": "/users/me needs a valid token: no token was sent",
        "plugin": "auth-plugin",
        "hint": LOGIN_HINT,
    }


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("not-a-token", id="garbage"),
        pytest.param("e30.e30.", id="unsigned"),
    ],
)
def test_me_with_a_bad_token_is_401(served, token):
    _, client = served
    refused = client.get("/users/me", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401
    assert (
        refused.json()["message"]
        == "/users/me needs a valid token: the token is invalid or expired"
    )


def test_unknown_users_cannot_log_in(served):
    _, client = served
    refused = client.post("/users/login", json={"user": "mallory"})
    assert refused.status_code == 401
    assert refused.json()["plugin"] == "user-plugin"
    assert client.post("/users/login", content=b"{").status_code == 400


def test_public_user_routes(served):
    _, client = served
    assert client.get("/users/grace").json() == {"user": "grace"}
    missing = client.get("/users/nobody")
    assert (missing.status_code, missing.json()["message"]) == (404, "no user named 'nobody'")


# --------------------------------------------------------------------------- tokens


def tokens_module(server: LiveServer):
    auth = server.manager.get_plugin("auth-plugin")
    package = type(auth).__module__.rpartition(".")[0]
    return auth, importlib.import_module(f"{package}.tokens")


def test_tokens_are_hs256_jwts_and_tampering_is_caught(served):
    server, _ = served
    auth, tokens = tokens_module(server)
    token = auth.issue("ada")
    header, claims = tokens.decode(token, auth._key)
    assert header == {"alg": "HS256", "typ": "JWT", "sub": "ada"}
    assert claims["sub"] == "ada"
    assert claims["exp"] - claims["iat"] == 3600
    head, _, signature = token.split(".")
    forged_claims = tokens.encode({**claims, "sub": "mallory"}, b"guess").split(".")[1]
    assert auth.verify(f"{head}.{forged_claims}.{signature}") is None
    assert auth.verify(tokens.encode({**claims, "exp": 1}, auth._key)) is None  # expired
    unsigned = tokens.encode(claims, b"").rsplit(".", 1)[0]
    none_header = tokens._encode(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    assert auth.verify(f"{none_header}.{unsigned.split('.')[1]}.") is None
    assert auth.verify(token + "=") is None  # not canonical base64url


# --------------------------------------------------------------------------- logging, cache


def test_every_response_gets_an_access_log_line(served, caplog):
    caplog.set_level(logging.INFO, logger="tether.plugin")
    _, client = served
    token = login(client)
    client.get("/users/me", headers={"Authorization": f"Bearer {token}"})
    client.get("/nowhere")

    def lines() -> list[dict[str, object]]:
        return [
            r.fields
            for r in caplog.records
            if r.name == "tether.plugin.logging-plugin" and r.getMessage().startswith("access ")
        ]

    wait_for(lambda: len(lines()) == 3, "three access log lines")
    login_line, me, missing = lines()
    assert login_line["path"] == "/users/login"
    assert {k: me[k] for k in ("method", "path", "status", "client", "route", "user")} == {
        "method": "GET",
        "path": "/users/me",
        "status": 200,
        "client": "127.0.0.1",
        "route": "/users/me",
        "user": "ada",
    }
    assert isinstance(me["duration_ms"], float)
    assert (missing["status"], "route" in missing) == (404, False)


def test_get_responses_are_cached_for_the_configured_routes(served):
    _, client = served
    first, second = client.get("/users"), client.get("/users")
    assert first.json() == second.json() == {"users": ["ada", "grace"]}
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert "x-cache" not in client.get("/users/ada").headers  # not a cached route


# --------------------------------------------------------------------------- rate limit


def test_the_rate_limiter_answers_429_with_retry_after(served):
    _, client = served
    statuses = [client.get("/users/ada").status_code for _ in range(30)]
    assert statuses == [200] * 30  # the burst
    limited = client.get("/users/ada")
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    body = limited.json()
    assert (body["error"], body["plugin"]) == ("TooManyRequests", "rate-limit-plugin")
    assert body["hint"] == f"retry after {limited.headers['retry-after']}s"


# --------------------------------------------------------------------------- tether serve


def start_serve(config: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    """Run `tether serve` on a free port; return the process and its URL."""
    process = subprocess.Popen(
        [str(TETHER), "--log-level", "info", "serve", "--config", str(config), "--port", "0",
         *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
    )  # fmt: skip
    assert process.stdout is not None
    for line in process.stdout:
        found = re.search(r"tether serving \d+ plugin\(s\) on (http://\S+)", line)
        if found:
            return process, found.group(1)
    process.wait(30)
    raise AssertionError(f"tether serve did not start:\n{process.stderr.read()}")  # type: ignore[union-attr]


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=60)
    return process.returncode, stdout, stderr


@pytest.mark.slow
def test_serve_runs_the_example_app_and_stops_in_reverse_order_on_sigterm(app):
    process, url = start_serve(app / "app.yaml")
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            token = login(client)
            me = client.get("/users/me", headers={"Authorization": f"Bearer {token}"})
            assert me.json()["user"] == "ada"
            assert client.get("/users/me").status_code == 401
            assert client.get("/healthz").status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
    code, stdout, stderr = finish(process)
    assert code == 0, stderr
    assert (
        "stopped plugins in reverse order: "
        "user-plugin -> auth-plugin -> cache-plugin -> logging-plugin" in stdout
    )
    assert "access method=GET path=/users/me status=200" in " ".join(stderr.split())


SLOW = """
    import asyncio
    from pathlib import Path

    import tether

    class Plugin(tether.Plugin):
        def initialize(self, ctx):
            super().initialize(ctx)
            self.files = Path(ctx.plugin_config["files"])
            if ctx.has_permission("router"):
                ctx.router.get("/slow", self.slow)

        async def slow(self, request):
            (self.files / "entered").touch()
            while not (self.files / "release").exists():
                await asyncio.sleep(0.01)
            return {"slow": "done"}

        def stop(self):
            with (self.files / "stopped.txt").open("a") as log:
                log.write(self.ctx.name + "\\n")
"""


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_finishes_requests_in_flight_on_a_signal(tmp_path, sig):
    files = tmp_path / "files"
    files.mkdir()
    write = PluginWriter(tmp_path / "plugins")
    schema = {"files": {"type": "string", "required": True}}
    permissions = {"filesystem": True}
    base = write("base", SLOW, config=schema, permissions=permissions)
    web = write("web", SLOW, config=schema, permissions={**permissions, "router": True},
                dependencies=[{"name": "base"}])  # fmt: skip
    entries = [{"path": str(d), "config": {"files": str(files)}} for d in (web, base)]
    config = tmp_path / "app.yaml"
    config.write_text(yaml.safe_dump({"plugins": {"plugins": entries}}))

    process, url = start_serve(config)
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(httpx.get, url + "/slow", timeout=60)
        wait_for((files / "entered").exists, "the slow request to arrive")
        process.send_signal(sig)  # the process this test started, nothing else

        def refused() -> bool:
            try:
                httpx.get(url + "/nowhere", timeout=5)
            except httpx.TransportError:
                return True
            return False

        wait_for(refused, "the server to stop accepting connections")
        assert process.poll() is None
        assert not in_flight.done()
        (files / "release").touch()
        response = in_flight.result(60)
    assert (response.status_code, response.json()) == (200, {"slow": "done"})
    code, stdout, stderr = finish(process)
    assert code == 0, stderr
    assert (files / "stopped.txt").read_text().split() == ["web", "base"]
    assert "stopped plugins in reverse order: web -> base" in stdout
    assert not any(t.name == "tether-live-server" for t in threading.enumerate())


def test_importers_cannot_read_the_auth_plugins_signing_key(monkeypatch):
    from tether.testing import PluginHarness

    plugins = Path(__file__).resolve().parent.parent / "examples" / "plugins"
    monkeypatch.setenv("TETHER_EXAMPLE_SECRET", "k")
    with PluginHarness(
        plugins / "user-plugin",
        dependencies=[plugins / "cache-plugin", (plugins / "auth-plugin", {"secret": "k"})],
    ) as harness:
        auth = harness.context.import_service("auth-plugin", "AuthService")
        assert auth.verify(auth.issue("ada")) == "ada"
        for private in ("_key", "ctx", "initialize", "stop"):
            assert not hasattr(auth, private), private
