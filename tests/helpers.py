"""Helpers shared by test modules: small real plugins written into a directory."""

from __future__ import annotations

import json
import os
import textwrap
import time
from pathlib import Path


class PluginWriter:
    """Write a plugin directory (``plugin.json`` plus source files) under ``root``.

    ``code`` becomes the entry module (``None`` writes none); ``files`` maps further
    relative paths to source text. Source text is dedented. Extra keyword arguments
    become manifest fields (``dependencies=[...]``, ``config={...}``...).
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(
        self,
        name: str,
        code: str | None = "",
        *,
        version: str = "1.0.0",
        entry: str = "plugin:Plugin",
        files: dict[str, str] | None = None,
        directory: str | None = None,
        **fields: object,
    ) -> Path:
        target = self.root / (directory or f"{name}-{version}")
        target.mkdir(parents=True)
        manifest = {
            "name": name,
            "version": version,
            "description": f"the {name} test plugin",
            "author": "tests",
            "entry": entry,
            **fields,
        }
        (target / "plugin.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        sources = dict(files or {})
        if code is not None:
            sources[entry.partition(":")[0].replace(".", "/") + ".py"] = code
        for relative, text in sources.items():
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text), encoding="utf-8")
        return target


def line_of(path: Path, marker: str) -> int:
    """The 1-based number of the first line of ``path`` containing ``marker``."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if marker in line:
            return number
    message = f"{marker!r} not in {path}"
    raise AssertionError(message)


def is_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pid: int, limit: float = 10.0) -> bool:
    """Wait up to ``limit`` seconds for process ``pid`` to end; whether it did."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return True
        time.sleep(0.05)
    return False
