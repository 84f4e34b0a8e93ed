"""Shared fixtures. Every test runs with its own HOME and cache directory, and without
the user's tether environment variables, so nothing outside tmp_path leaks in."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_environment(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TETHER_CACHE_DIR", str(home / ".cache" / "tether"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    for name in ("TETHER_PLUGIN_PATH", "TETHER_CONFIG", "TETHER_DSN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def examples_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "examples"
