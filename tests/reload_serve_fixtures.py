"""The fixtures of tests/test_reload_serve*.py, which name this module in
``pytest_plugins`` (so it must not be imported by them directly): the greeter's
directory, a LiveServer serving it, a thread pool."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from reload_serve_plugins import Greeter, write_config, write_front
from tether.hosts.web.testing import LiveServer


@pytest.fixture
def greeter(tmp_path: Path) -> Greeter:
    """The greeter's directory, holding version 1.0.0."""
    made = Greeter(tmp_path / "plugins" / "greeter", tmp_path / "files")
    made.write("1.0.0")
    return made


@pytest.fixture
def serve(tmp_path: Path, greeter: Greeter) -> Iterator[Callable[..., LiveServer]]:
    """``serve(front=False, **write_config keywords)``: a LiveServer of the greeter (and
    ``front``), stopped at the end of the test."""
    started: list[LiveServer] = []

    def start(*, front: bool = False, **config: Any) -> LiveServer:
        front_directory = write_front(tmp_path / "plugins" / "front") if front else None
        path = write_config(tmp_path / "app.yaml", greeter, front=front_directory, **config)
        server = LiveServer(path, state_directory=tmp_path / "state").start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(8, thread_name_prefix="reload-test") as made:
        yield made
