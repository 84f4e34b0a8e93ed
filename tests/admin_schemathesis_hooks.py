"""Schemathesis hooks for tests/test_admin_schemathesis.py (loaded by ``st run``).

``before_call`` sees every request of every phase before it is sent. It keeps the
run inside the test's temporary directory: a load request's ``path`` becomes one of
the test's plugin directories or a missing path under the directory, whatever was
generated; and some ``{name}`` parameters become real plugin names, so enable,
disable, reload and unload act on loaded plugins instead of only meeting 404.
``$ADMIN_SCHEMATHESIS_TARGET`` is the JSON ``{"root", "plugins", "names"}`` the test
writes.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any

import schemathesis

_TARGET = json.loads(os.environ["ADMIN_SCHEMATHESIS_TARGET"])
_ROOT = Path(_TARGET["root"])
_PLUGINS: list[str] = _TARGET["plugins"]
_NAMES: list[str] = _TARGET["names"]


def _pick(value: str, count: int) -> int:
    return zlib.crc32(value.encode("utf-8", "surrogatepass")) % count


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case, kwargs: Any) -> None:
    body = case.body
    if isinstance(body, dict) and "path" in body:
        given = str(body["path"])
        choice = _pick(given, len(_PLUGINS) + 1)
        inside = _ROOT / "missing" / f"p{_pick(given, 1 << 32):08x}"
        body["path"] = _PLUGINS[choice] if choice < len(_PLUGINS) else str(inside)
    params = case.path_parameters
    if params and isinstance(params.get("name"), str):
        choice = _pick(params["name"], 2 * len(_NAMES))
        if choice < len(_NAMES):
            params["name"] = _NAMES[choice]
