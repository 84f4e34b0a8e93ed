"""Hostile requests to a real ``tether serve`` on 127.0.0.1, and plugins loaded through it."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from _hostile_base import (
    CLEAR,
    EXIT,
    GOOD_MANIFEST,
    HANG,
    MEMORY_LIMIT,
    OS_EXIT,
    PLUGIN_CODE,
    SOURCE,
    TRACEBACK,
    WRONG,
    Case,
    Result,
    dump,
    good_plugin,
    read_output,
)

# --------------------------------------------------------------------------- admin


TOKEN = "hostile-admin-token"


class Server:
    """A ``tether serve`` subprocess on 127.0.0.1 (a free port), ended by its pid. Its
    output goes to a file (a pipe nobody reads would block its logging)."""

    def __init__(self, directory: Path, config: Path) -> None:
        limit = 4 * MEMORY_LIMIT  # a request that reads /dev/zero must not take the machine's
        code = (
            f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit})); "
            "from tether.cli import main; main()"
        )
        command = [
            sys.executable,
            "-c",
            code,
            "serve",
            "--config",
            str(config),
            "--port",
            "0",
            "--admin-token",
            TOKEN,
        ]
        env = {
            **os.environ,
            "PYTHONPATH": str(SOURCE),
            "TETHER_CACHE_DIR": str(directory / "cache"),
        }
        self.log = directory / f"serve-{time.monotonic_ns()}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=directory, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self.port = self._wait_for_port()

    def _wait_for_port(self) -> int:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.process.poll() is None:
            found = re.search(rb"http://127\.0\.0\.1:(\d+)", self.log.read_bytes()[:100_000])
            if found:
                return int(found.group(1))
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"tether serve did not start: {read_output(self.log)[-2000:]}")

    def is_alive(self) -> bool:
        return self.process.poll() is None and self.healthz(timeout=5) is not None

    def healthz(self, *, timeout: float) -> int | None:
        try:
            return request(self.port, "GET", "/healthz", timeout=timeout)[0]
        except OSError:
            return None

    def stop(self, *, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds: to our own child, by its pid."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)


def request(
    port: int, method: str, path: str, *, body: bytes | None = None,
    headers: dict[str, str] | None = None, timeout: float = 5.0,
) -> tuple[int, bytes]:  # fmt: skip
    """One HTTP request; (status, body). Raises OSError when no answer comes."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        sent = {"Authorization": f"Bearer {TOKEN}", **(headers or {})}
        if body is not None:
            sent.setdefault("Content-Type", "application/json")
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        return response.status, response.read(1_000_000)
    except http.client.HTTPException as exc:
        raise OSError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        connection.close()


def raw_request(port: int, data: bytes, *, timeout: float = 5.0) -> tuple[int, bytes]:
    """Bytes written as they are; the status line of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(data)
        answer = b""
        with contextlib.suppress(TimeoutError):
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n" in answer:
                    break
    if not answer:
        raise ConnectionResetError("closed without an answer")
    found = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    if not found:
        raise OSError(f"not an HTTP answer: {answer[:60]!r}")
    return int(found.group(1)), answer


@dataclass
class AdminCase:
    name: str
    send: Callable[[int], tuple[int, bytes]]
    expect: frozenset[int] | None = None  # the 4xx statuses the issue asks for, if one


def admin_requests() -> list[AdminCase]:
    routes = [
        ("/admin/plugins", {"GET", "POST"}),
        ("/admin/plugins/good-plugin", {"GET", "DELETE"}),
        ("/admin/plugins/good-plugin/health", {"GET"}),
        ("/admin/plugins/good-plugin/enable", {"POST"}),
        ("/admin/plugins/good-plugin/disable", {"POST"}),
        ("/admin/plugins/good-plugin/reload", {"POST"}),
        ("/admin/health", {"GET"}),
        ("/admin/graph", {"GET"}),
        ("/admin/openapi.json", {"GET"}),
        ("/healthz", {"GET"}),
        ("/readyz", {"GET"}),
        ("/metrics", {"GET"}),
    ]
    cases: list[AdminCase] = []
    for path, allowed in routes:
        for method in sorted({"GET", "POST", "PUT", "PATCH", "DELETE"} - allowed):
            body = b"{}" if method in {"POST", "PUT", "PATCH"} else None
            cases.append(
                AdminCase(
                    f"{method} {path} (wrong method)", _sender(method, path, body), frozenset({405})
                )
            )
    posts = [
        "/admin/plugins",
        "/admin/plugins/good-plugin/disable",
        "/admin/plugins/good-plugin/enable",
    ]
    bodies = {
        "non-UTF-8 body": b"\xff\xfe\xfd{",
        "non-UTF-8 inside a JSON string": b'{"path": "\xff\xfe"}',
        "lone surrogate escape": b'{"path": "\\ud800", "reason": "\\udfff"}',
        "JSON nested 100k deep": b"[" * 100_000 + b"]" * 100_000,
        "a value nested 10k deep": b'{"path": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
        "5000-digit integer": b'{"path": "x", "start": ' + b"9" * 5000 + b"}",
        "400-digit integer": b'{"path": "x", "priority": 1' + b"0" * 400 + b"}",
        "a float past double": b'{"path": "x", "priority": 1e999}',
        "invalid JSON": b"{",
        "JSON null": b"null",
        "a JSON list": b"[1, 2]",
        "a JSON string": b'"text"',
        "wrong types": b'{"path": 1, "start": "yes", "reason": []}',
        "extra keys": b'{"path": "x", "evil": true}',
        "NaN and Infinity": b'{"path": "x", "priority": NaN, "x": Infinity}',
        "duplicate keys": b'{"path": "a", "path": "b"}',
        "a path that is not there": b'{"path": "/nonexistent/plugin"}',
        "a path that is a device": b'{"path": "/dev/zero"}',
        "a traversal path": b'{"path": "../../../../etc"}',
        "a control character in a reason": b'{"reason": "a\\u0000b\\nc"}',
    }
    cases += [
        AdminCase(f"POST {path}: {label}", _sender("POST", path, body))
        for label, body in bodies.items()
        for path in posts
    ]
    big = b'{"path": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    cases += [
        AdminCase(f"POST {path}: a 2 MiB body", _sender("POST", path, big), frozenset({413}))
        for path in posts
    ]
    odd_names = ["%00", "%ff", "..%2f..%2fetc", "a%0ab", "x" * 10_000, "%F0%9F%92%A9", "nope"]
    for name in odd_names:
        for suffix in ("", "/health", "/enable", "/disable", "/reload"):
            method = "GET" if suffix in {"", "/health"} else "POST"
            body = b"{}" if method == "POST" else None
            shown = name if len(name) < 20 else f"{name[:10]}...({len(name)})"
            cases.append(
                AdminCase(
                    f"{method} /admin/plugins/{shown}{suffix}",
                    _sender(method, f"/admin/plugins/{name}{suffix}", body),
                )
            )
    queries = ("force=maybe", "force=true&force=false", "force=" + "1" * 5000, "%ff=%ff")
    cases += [
        AdminCase(f"DELETE ?{q[:30]}", _sender("DELETE", f"/admin/plugins/nope?{q}", None))
        for q in queries
    ]
    cases += [
        AdminCase("a 100,000-character path", _sender("GET", "/admin/" + "a" * 100_000, None)),
        AdminCase(
            "a 64 KiB header",
            lambda port: request(port, "GET", "/admin/health", headers={"X-Big": "a" * 65536}),
        ),
        AdminCase(
            "500 headers",
            lambda port: request(
                port, "GET", "/admin/health", headers={f"X-{n}": "v" for n in range(500)}
            ),
        ),
        AdminCase(
            "a 1 MiB token",
            lambda port: request(
                port, "GET", "/admin/health", headers={"Authorization": "Bearer " + "t" * 1_000_000}
            ),
        ),
        AdminCase(
            "a non-ASCII token",
            lambda port: raw_request(
                port,
                b"GET /admin/health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n\r\n",
            ),
        ),
        AdminCase(
            "Basic auth",
            lambda port: request(
                port, "GET", "/admin/health", headers={"Authorization": "Basic eDp5"}
            ),
        ),
        AdminCase(
            "Content-Length longer than the body",
            lambda port: raw_request(
                port,
                b"POST /admin/plugins HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                + TOKEN.encode()
                + b"\r\nContent-Length: 100\r\n\r\n{}",
                timeout=5,
            ),
        ),
        AdminCase(
            "Content-Length: -1",
            lambda port: raw_request(
                port, b"POST /admin/plugins HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{}"
            ),
        ),
        AdminCase(
            "Content-Length: abc",
            lambda port: raw_request(
                port, b"POST /admin/plugins HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}"
            ),
        ),
        AdminCase(
            "chunked garbage",
            lambda port: raw_request(
                port,
                b"POST /admin/plugins HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                b"\r\nzz\r\n{}\r\n0\r\n\r\n",
            ),
        ),
        AdminCase(
            "not HTTP at all",
            lambda port: raw_request(port, random.Random(7).randbytes(512) + b"\r\n\r\n"),
        ),
        AdminCase(
            "a request line of 1 MiB",
            lambda port: raw_request(
                port, b"GET /" + b"a" * 1_000_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
            ),
        ),
    ]
    return cases


def _sender(method: str, path: str, body: bytes | None) -> Callable[[int], tuple[int, bytes]]:
    def send(port: int) -> tuple[int, bytes]:
        return request(port, method, path, body=body)

    return send


def _judge_admin(case: AdminCase, status: int) -> str:
    if status >= 500:
        return TRACEBACK
    if case.expect is not None and status not in case.expect:
        return WRONG
    return CLEAR


def admin_results(root: Path) -> list[Result]:
    directory = root / "admin"
    plugin = good_plugin(directory / "plugins")
    config = directory / "app.yaml"
    config.write_text(
        dump({"plugins": {"plugins": [{"name": "good-plugin", "path": str(plugin)}]}}, "yaml")
    )
    results: list[Result] = []
    server = Server(directory, config)
    try:
        for case in admin_requests():
            outcome, detail = _send(server, case)
            results.append(Result(_admin_case(case.name), outcome, detail))
            if outcome == EXIT:
                server.stop()
                server = Server(directory, config)
    finally:
        server.stop()
    results += _admin_loading(directory)
    return results


def _send(server: Server, case: AdminCase) -> tuple[str, str]:
    try:
        status, body = case.send(server.port)
    except TimeoutError:
        return (
            (HANG, "no answer within the timeout")
            if server.is_alive()
            else (EXIT, "the server died")
        )
    except OSError as exc:
        if not server.is_alive():
            return EXIT, f"the server no longer answers ({exc})"
        return CLEAR, f"closed without an answer ({exc})"
    if not server.is_alive():
        return EXIT, f"answered {status}, then stopped answering"
    detail = body.split(b"\r\n\r\n")[-1][:150].decode(errors="replace")
    return _judge_admin(case, status), f"HTTP {status}: {detail}"


def _admin_case(name: str) -> Case:
    return Case("admin", name, lambda: 0, lambda _ran: CLEAR)


def _admin_loading(directory: Path) -> list[Result]:
    """Plugins loaded through ``POST /admin/plugins`` whose import loops or whose start
    blocks: ``/healthz`` must keep answering meanwhile, and the server must live on.
    One fresh server each, all started at once."""
    loaders = {
        "an import that loops forever": (
            "import time\nwhile True:\n    time.sleep(0.05)\n" + PLUGIN_CODE,
            False,
        ),
        "a sync start() that blocks": (
            PLUGIN_CODE.replace(
                "def start(self): pass", "def start(self):\n        import time; time.sleep(3600)"
            ),
            True,
        ),
        "an import that raises SystemExit": ("raise SystemExit(3)\n", False),
        "an import that raises KeyboardInterrupt": ("raise KeyboardInterrupt\n", False),
        "an import that calls os._exit": ("import os\nos._exit(7)\n", False),
    }
    config = directory / "empty.yaml"
    config.write_text("plugins:\n  plugins: []\n")
    targets = []
    for number, (code, _) in enumerate(loaders.values()):
        target = directory / f"loaded-{number}"
        target.mkdir()
        timeouts = {"initialize": "1s", "start": "1s"}
        (target / "plugin.json").write_text(
            json.dumps({**GOOD_MANIFEST, "name": f"loaded-{number}", "timeouts": timeouts})
        )
        (target / "plugin.py").write_text(code)
        targets.append(target)
    servers = [Server(directory, config) for _ in loaders]
    results = []
    try:
        for server, target, (label, (code, start)) in zip(
            servers, targets, loaders.items(), strict=True
        ):
            outcome, detail = _load_and_watch(server, target, start=start, exits="os._exit" in code)
            name = f"POST /admin/plugins: {label}, /healthz meanwhile"
            results.append(Result(_admin_case(name), outcome, detail))
    finally:
        for server in servers:
            server.stop(grace=2.0)  # a server whose loop is stuck does not stop by itself
    return results


def _load_and_watch(server: Server, target: Path, *, start: bool, exits: bool) -> tuple[str, str]:
    payload = json.dumps({"path": str(target), "start": start}).encode()
    head = (
        f"POST /admin/plugins HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as loading:
        loading.sendall(head + payload)
        time.sleep(0.3)
        status = server.healthz(timeout=3)
        if server.process.poll() is not None:
            code = server.process.returncode
            return (OS_EXIT if exits and code == 7 else EXIT), f"the server exited with {code}"
        if status is None:
            return HANG, "/healthz did not answer while the plugin loaded"
        loading.settimeout(5)
        try:
            answer = loading.recv(65536)
        except TimeoutError:
            return HANG, "/healthz answered, but the load request did not within 5 s"
    found = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    if not server.is_alive():
        return EXIT, "the server stopped answering after the load"
    code = int(found.group(1)) if found else 0
    if code >= 500:
        return TRACEBACK, f"HTTP {code}"
    return CLEAR, f"HTTP {code}; /healthz answered {status} meanwhile"
