"""Serving the admin app for the hostile tests, and raw HTTP/1.1 for what httpx will not send.

``serve`` is ``ops_support.Served`` with ``TCP_NODELAY`` on its listening socket (Linux
passes it to the accepted ones): ``Served`` binds with protocol 0, so asyncio leaves
Nagle on and every keep-alive answer waits ~40 ms for a delayed ACK, which a run of
hundreds of requests feels. ``head_limit`` raises uvicorn's limit on a request head
(16 KiB by default) so that a 100 KB path reaches the app whichever way the kernel
splits it.

``exchange`` writes bytes as given (a body shorter than its ``Content-Length``, a
chunked body with no end) and reads one answer, bounded in size and time.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ops_support import Served
from tether import PluginManager

MAX_REPLY = 4 << 20


def serve(app: Any, manager: PluginManager, *, head_limit: int | None = None) -> Served:
    served = Served(app, manager)
    served._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if head_limit is not None:
        served._server.config.h11_max_incomplete_event_size = head_limit
    return served.start()


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _read_until(sock: socket.socket, data: bytearray, marker: bytes) -> int:
    while (end := data.find(marker)) < 0:
        chunk = sock.recv(65536)
        if not chunk or len(data) > MAX_REPLY:
            raise ConnectionError(f"no complete answer: {bytes(data[:200])!r}")
        data += chunk
    return end


def read_reply(sock: socket.socket) -> Reply:
    data = bytearray()
    end = _read_until(sock, data, b"\r\n\r\n")
    status_line, *lines = data[:end].decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    body = data[end + 4 :]
    length = int(headers.get("content-length", "-1"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return Reply(int(status_line.split()[1]), headers, bytes(body))


def exchange(
    port: int, head: bytes, parts: Iterable[bytes] = (), *, close: bool = False
) -> Reply | None:
    """Send ``head`` then each of ``parts``; ``close`` hangs up instead of reading."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        try:
            sock.sendall(head)
            for part in parts:
                sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered before taking it all: read what it said
        if close:
            return None
        return read_reply(sock)


def request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
