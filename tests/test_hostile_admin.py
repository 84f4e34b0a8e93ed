"""Hostile requests against the admin API, served by uvicorn on loopback.

Each answers 4xx in the admin's error shape (never 500, never a wait without end),
nothing is logged as a server error, and afterwards the server still answers
``/healthz`` with its plugins as they were. Requests go over raw sockets, so every
byte is the test's: bodies that are not UTF-8, heads of 100 KB, bodies shorter than
they say, chunked bodies without end. Each case is at most a few MB and the server
waits at most one second for a body.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from admin_http import Reply, exchange, request_head, serve
from ops_support import Served, start_plugins, write_plugin
from tether import PluginManager, TetherConfig
from tether.admin import MAX_BODY_SIZE, create_admin_app

TOKEN = "hostile-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"Content-Type": "application/json"}
PLUGINS = ["auth-plugin", "user-plugin"]
SHAPE = {"error", "message", "plugin", "hint"}
BODY_TIMEOUT = 1.0  # seconds the server waits for a body here (30 by default)


@dataclass(frozen=True)
class Target:
    served: Served
    root: Path


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    root = tmp_path_factory.mktemp("hostile-admin")
    paths = [
        write_plugin(root / "plugins", "auth-plugin"),
        write_plugin(root / "plugins", "user-plugin", depends_on=("auth-plugin",)),
    ]
    os.mkfifo(root / "fifo")
    manager = PluginManager(config=TetherConfig.model_validate({}), state_directory=root / "state")
    app = create_admin_app(manager, token=TOKEN, body_timeout=BODY_TIMEOUT)
    served = serve(app, manager, head_limit=1 << 20)
    try:
        served.call(lambda: start_plugins(manager, *paths))
        yield Target(served, root)
    finally:
        served.stop()


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def server_errors() -> Iterator[list[logging.LogRecord]]:
    """What the admin API and uvicorn log at ERROR (a traceback would be one)."""
    handler = _Collect()
    loggers = [logging.getLogger(n) for n in ("tether.admin", "uvicorn.error", "uvicorn")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler.records
    for logger in loggers:
        logger.removeHandler(handler)


def send(
    target: Target,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    given = {**AUTH, **(headers or {})}
    if body is not None:
        given.setdefault("Content-Length", str(len(body)))
    reply = exchange(target.served.port, request_head(method, path, given), [body] if body else [])
    assert reply is not None
    return reply


def assert_still_serving(target: Target) -> None:
    health = send(target, "GET", "/healthz")
    assert health.status == 200
    listed = send(target, "GET", "/admin/plugins").json()["plugins"]
    assert [(p["name"], p["status"], p["enabled"]) for p in listed] == [
        (name, "running", True) for name in PLUGINS
    ]


def assert_error(reply: Reply, status: int, error: str, fragment: str) -> dict[str, object]:
    assert reply.status == status, reply.body[:500]
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert set(body) == SHAPE
    assert body["error"] == error
    assert isinstance(body["message"], str)
    assert fragment in body["message"], body["message"][:500]
    assert len(reply.body) < 2000  # nothing huge is repeated back
    return body


# --------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    body: bytes | None
    status: int
    error: str
    fragment: str
    headers: dict[str, str] = field(default_factory=dict)


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


def load(
    body: bytes,
    status: int,
    fragment: str,
    *,
    error: str = "BadRequest",
    content_type: str = "application/json",
) -> Case:
    headers = {"Content-Type": content_type}
    return Case("POST", "/admin/plugins", body, status, error, fragment, headers)


def disable(body: bytes, fragment: str) -> Case:
    return Case(
        "POST", "/admin/plugins/user-plugin/disable", body, 400, "BadRequest", fragment, JSON
    )


def bad_body(body: bytes, fragment: str) -> Case:
    return load(body, 400, fragment)


def media(content_type: str, body: bytes) -> Case:
    fragment = f"the request body is {content_type!r}: the admin API reads JSON (UTF-8) only"
    return load(body, 415, fragment, error="UnsupportedMediaType", content_type=content_type)


LONG = "a" * 100_000
DIGITS_400 = "9" * 400
OVER = MAX_BODY_SIZE + 1
AT_LIMIT = b'{"path": 1' + b" " * (MAX_BODY_SIZE - 11) + b"}"

CASES = {
    # not UTF-8, not JSON, not an object
    "not-utf8": bad_body(b'{"path": "\xff\xfe"}', "not UTF-8: byte 10 is 0xff"),
    "utf16": bad_body('{"path": "/x"}'.encode("utf-16"), "not UTF-8"),
    "utf8-bom": bad_body(b'\xef\xbb\xbf{"path": "/x"}', "not JSON"),
    "truncated-json": bad_body(b'{"path": "/x", "start":', "not JSON"),
    "trailing-data": bad_body(b'{"path": "/x"} {}', "not JSON: Extra data"),
    "array": bad_body(b'[{"path": "/x"}]', "must be a JSON object, not an array"),
    "string": bad_body(b'"/x"', "not a string"),
    "null": bad_body(b"null", "not null"),
    "number": bad_body(b"12", "not a number"),
    # deep, huge, odd
    "arrays-100k-deep": bad_body(b"[" * 100_000 + b"]" * 100_000, "deeper than 32 levels"),
    "objects-50k-deep": bad_body(b'{"a":' * 50_000 + b"0" + b"}" * 50_000, "deeper than 32"),
    "config-40-deep": bad_body(
        b'{"path": "/x", "config": {"k": ' + b"[" * 40 + b"]" * 40 + b"}}", "deeper than 32"
    ),
    "integer-400-digits": bad_body(
        f'{{"path": "/x", "priority": {DIGITS_400}}}'.encode(), "integer of 400 digits"
    ),
    "integer-5000-digits": bad_body(
        f'{{"path": "/x", "config": {{"n": -{"1" * 5000}}}}}'.encode(), "integer of 5000 digits"
    ),
    "integer-2-to-63": bad_body(
        b'{"path": "/x", "priority": 9223372036854775808}', "fit in 64 bits"
    ),
    "float-overflow": bad_body(b'{"path": "/x", "priority": 1e400}', "out of range: 1e400"),
    "nan": bad_body(b'{"path": "/x", "priority": NaN}', "NaN, which is not JSON"),
    "infinity": bad_body(b'{"path": "/x", "priority": -Infinity}', "-Infinity, which is not JSON"),
    "key-twice": bad_body(b'{"path": "/x", "path": "/y"}', "the key 'path' twice"),
    "lone-surrogate": bad_body(b'{"path": "/x\\ud800"}', "lone surrogate (\\ud800)"),
    "lone-surrogate-key": bad_body(b'{"path": "/x", "config": {"\\udfff": 1}}', "lone surrogate"),
    # wrong types, extra keys, missing keys
    "path-not-a-string": bad_body(_json({"path": 7}), "path: Input should be a valid string"),
    "start-not-a-boolean": bad_body(_json({"path": "/x", "start": "yes"}), "start"),
    "priority-a-string": bad_body(_json({"path": "/x", "priority": "1"}), "priority"),
    "priority-a-boolean": bad_body(_json({"path": "/x", "priority": True}), "priority"),
    "config-an-array": bad_body(_json({"path": "/x", "config": []}), "config"),
    "permission-not-boolean": bad_body(
        _json({"path": "/x", "permissions": {"exec": "y"}}), "permissions.exec"
    ),
    "extra-key": bad_body(
        _json({"path": "/x", "colour": "red"}), "colour: Extra inputs are not permitted"
    ),
    "extra-key-in-threshold": bad_body(
        _json({"path": "/x", "error_threshold": {"max_errors": 3, "colour": 1}}),
        "error_threshold.colour",
    ),
    "extra-keys-50k": bad_body(
        _json({"path": "/x", **{f"k{i}": i for i in range(50_000)}}), "; and 49995 more"
    ),
    "extra-key-100kb": bad_body(_json({"path": "/x", LONG: 1}), "aaa: Extra inputs"),
    "empty-body": bad_body(b"", "path: Field required"),
    "blank-body": bad_body(b" \r\n\t", "path: Field required"),
    # paths the file system cannot take, or that would block
    "path-empty": bad_body(_json({"path": ""}), "path"),
    "path-with-nul": bad_body(_json({"path": "/tmp/a\x00b"}), "NUL"),
    "path-100kb": bad_body(_json({"path": "/" + LONG}), "100001 bytes long, over 4096"),
    "path-part-300-bytes": bad_body(
        _json({"path": "/tmp/" + "p" * 300}), "300 bytes long, over 255"
    ),
    "path-dev-zero": bad_body(_json({"path": "/dev/zero"}), "not a plugin directory or manifest"),
    "path-fifo": bad_body(b'{"path": "{root}/fifo"}', "a FIFO, device or socket"),
    "name-100kb": bad_body(_json({"path": "/x", "name": LONG}), "name"),
    # media types
    "form-encoded": media("application/x-www-form-urlencoded", b"path=/x"),
    "text-plain": media("text/plain", b'{"path": "/x"}'),
    "json-in-latin1": media("application/json; charset=latin-1", b'{"path": "/x"}'),
    # sizes
    "body-over-1mib": load(b" " * OVER, 413, f"{OVER} bytes long", error="PayloadTooLarge"),
    "body-2mib": load(b" " * (2 << 20), 413, "at most 1048576 bytes", error="PayloadTooLarge"),
    "body-at-the-limit-is-read": bad_body(AT_LIMIT, "path: Input should be a valid string"),
    "body-2mib-on-a-get": Case(
        "GET", "/admin/graph", b" " * (2 << 20), 413, "PayloadTooLarge", "at most"
    ),
    "body-2mib-on-healthz": Case(
        "GET", "/healthz", b"x" * (2 << 20), 413, "PayloadTooLarge", "at most"
    ),
    "body-2mib-without-a-token": Case(
        "POST",
        "/admin/plugins",
        b" " * (2 << 20),
        413,
        "PayloadTooLarge",
        "at most",
        {"Authorization": ""},
    ),
    # the disable body
    "disable-not-utf8": disable(b'{"reason": "\xc3\x28"}', "not UTF-8"),
    "disable-extra-key": disable(_json({"reason": "x", "why": "y"}), "why: Extra inputs"),
    "disable-reason-a-number": disable(_json({"reason": 5}), "reason"),
    "disable-reason-too-long": disable(_json({"reason": "r" * 1001}), "reason"),
    "disable-array": disable(b"[]", "not an array"),
    "disable-deep": disable(b"[" * 100_000, "deeper than 32"),
    # names and paths
    "name-100kb-get": Case(
        "GET", f"/admin/plugins/{LONG}", None, 404, "PluginNotFoundError", "100000 characters long"
    ),
    "name-100kb-delete": Case(
        "DELETE", f"/admin/plugins/{LONG}", None, 404, "PluginNotFoundError", "at most 64"
    ),
    "name-100kb-enable": Case(
        "POST", f"/admin/plugins/{LONG}/enable", None, 404, "PluginNotFoundError", "at most 64"
    ),
    "name-100kb-health": Case(
        "GET", f"/admin/plugins/{LONG}/health", None, 404, "PluginNotFoundError", "at most 64"
    ),
    "name-control-characters": Case(
        "GET", "/admin/plugins/%00%1b%7f", None, 404, "PluginNotFoundError", "plugin not found"
    ),
    "name-with-a-newline": Case("GET", "/admin/plugins/a%0a", None, 404, "NotFound", "no route"),
    "name-not-utf8": Case(
        "GET", "/admin/plugins/%ff%fe", None, 404, "PluginNotFoundError", "plugin not found"
    ),
    "route-100kb": Case("GET", f"/admin/{LONG}", None, 404, "NotFound", "(100007 characters)"),
    "route-unknown": Case(
        "GET", "/admin/nothing-here", None, 404, "NotFound", "no route GET /admin/nothing-here"
    ),
    "route-outside-admin": Case("GET", "/wp-login.php", None, 404, "NotFound", "no route"),
    "route-too-deep": Case("GET", "/admin/plugins/a/b/c", None, 404, "NotFound", "no route"),
    "force-maybe": Case(
        "DELETE",
        "/admin/plugins/user-plugin?force=maybe",
        None,
        400,
        "BadRequest",
        "'force' must be true or false",
    ),
    # tokens
    "no-token": Case(
        "GET", "/admin/plugins", None, 401, "Unauthorized", "bearer token", {"Authorization": ""}
    ),
    "token-100kb": Case(
        "GET",
        "/admin/plugins",
        None,
        403,
        "Forbidden",
        "token is wrong",
        {"Authorization": f"Bearer {LONG}"},
    ),
    "token-latin1": Case(
        "GET",
        "/admin/plugins",
        None,
        403,
        "Forbidden",
        "token is wrong",
        {"Authorization": "Bearer \xff\xfe"},
    ),
}

ALLOW = {
    "put-plugins": ("PUT", "/admin/plugins", "GET, HEAD, POST"),
    "patch-a-plugin": ("PATCH", "/admin/plugins/user-plugin", "DELETE, GET, HEAD"),
    "get-enable": ("GET", "/admin/plugins/user-plugin/enable", "POST"),
    "delete-reload": ("DELETE", "/admin/plugins/user-plugin/reload", "POST"),
    "options-graph": ("OPTIONS", "/admin/graph", "GET, HEAD"),
    "post-healthz": ("POST", "/healthz", "GET, HEAD"),
    "delete-openapi": ("DELETE", "/admin/openapi.json", "GET, HEAD"),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_a_bad_request_answers_4xx_in_the_error_shape(target, server_errors, case):
    body = None if case.body is None else case.body.replace(b"{root}", str(target.root).encode())
    headers = {k: v for k, v in case.headers.items() if v}
    if case.headers.get("Authorization") == "":
        headers["Authorization"] = ""  # sent, but empty
    reply = send(target, case.method, case.path, body, headers)
    assert_error(reply, case.status, case.error, case.fragment)
    assert_still_serving(target)
    assert server_errors == []


@pytest.mark.parametrize(("method", "path", "allow"), list(ALLOW.values()), ids=list(ALLOW))
def test_a_method_a_route_does_not_take_answers_405_with_allow(
    target, server_errors, method, path, allow
):
    reply = send(target, method, path)
    body = assert_error(reply, 405, "MethodNotAllowed", f"it takes {allow}")
    assert reply.headers["allow"] == allow
    assert body["hint"]
    assert_still_serving(target)
    assert server_errors == []


# --------------------------------------------------------------------------- streams


def test_a_declared_size_over_the_limit_is_refused_before_any_body_is_sent(target):
    head = request_head("POST", "/admin/plugins", {**AUTH, **JSON, "Content-Length": str(10 << 30)})
    reply = exchange(target.served.port, head)  # 10 GiB announced, none sent
    assert reply is not None
    assert_error(reply, 413, "PayloadTooLarge", f"{10 << 30} bytes long")
    assert_still_serving(target)


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(target, server_errors):
    head = request_head("POST", "/admin/plugins", {**AUTH, **JSON, "Transfer-Encoding": "chunked"})
    parts = [_chunk(b" " * 65536)] * (MAX_BODY_SIZE // 65536 + 1)  # and never the last chunk
    reply = exchange(target.served.port, head, parts)
    assert reply is not None
    # The answer came without the end of the body: waiting for it would have been a 408.
    assert_error(reply, 413, "PayloadTooLarge", "over 1048576 bytes long")
    assert_still_serving(target)
    assert server_errors == []


def test_a_chunked_body_within_the_limit_is_read(target):
    head = request_head(
        "POST",
        "/admin/plugins/user-plugin/disable",
        {**AUTH, **JSON, "Transfer-Encoding": "chunked"},
    )
    parts = [_chunk(b'{"reason": '), _chunk(b'"chunked"}'), b"0\r\n\r\n"]
    disabled = exchange(target.served.port, head, parts)
    enabled = send(target, "POST", "/admin/plugins/user-plugin/enable")
    assert disabled is not None
    assert disabled.status == 200, disabled.body
    assert disabled.json()["health"]["unavailable_reason"] == "chunked"
    assert enabled.status == 200
    assert_still_serving(target)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_that_stops_short_answers_408(target, server_errors, chunked):
    framing = {"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": "100"}
    head = request_head("POST", "/admin/plugins", {**AUTH, **JSON, **framing})
    sent = _chunk(b'{"path": ') if chunked else b'{"path": '
    reply = exchange(target.served.port, head, [sent])  # then silence
    assert reply is not None
    assert_error(reply, 408, "RequestTimeout", f"within {BODY_TIMEOUT:g} seconds")
    assert reply.headers["connection"] == "close"
    assert_still_serving(target)
    assert server_errors == []


def test_a_client_that_hangs_up_mid_body_leaves_the_server_serving(target, server_errors):
    head = request_head("POST", "/admin/plugins", {**AUTH, **JSON, "Content-Length": "1000"})
    for _ in range(5):
        exchange(target.served.port, head, [b'{"path": "/x"'], close=True)
    assert_still_serving(target)
    assert server_errors == []


def test_a_100kb_header_is_served_and_the_right_token_still_counts(target):
    reply = send(target, "GET", "/admin/plugins", headers={"X-Filler": "f" * 100_000})
    assert reply.status == 200
    assert [p["name"] for p in reply.json()["plugins"]] == PLUGINS


def test_heads_over_uvicorns_default_limit_are_refused_by_the_server(tmp_path):
    """``tether serve`` keeps uvicorn's 16 KiB limit on an unfinished head: past it,
    uvicorn answers 400 itself (plain text) and the app never sees the request; a head
    the kernel hands over at once still reaches the app (404 in the error shape). A
    ``Content-Length`` that is not a number is h11's to refuse, too."""
    manager = PluginManager(state_directory=tmp_path / "state")
    served = serve(create_admin_app(manager, token=TOKEN), manager)
    try:
        heads = [
            request_head("GET", f"/admin/plugins/{'n' * 200_000}", AUTH),
            request_head("GET", "/admin/plugins", {**AUTH, "X-Filler": "f" * 200_000}),
        ]
        replies = [exchange(served.port, head) for head in heads]
        not_a_length = exchange(
            served.port, request_head("POST", "/admin/plugins", {**AUTH, "Content-Length": "1x"})
        )
        alive = exchange(served.port, request_head("GET", "/healthz", {}))
    finally:
        served.stop()
    for reply in replies:
        assert reply is not None
        assert reply.status in {200, 400, 404, 431}
        if reply.headers.get("content-type") == "application/json" and reply.status >= 400:
            assert set(reply.json()) == SHAPE
    assert not_a_length is not None
    assert not_a_length.status == 400  # h11 refuses it before the app
    assert alive is not None
    assert alive.status == 200
