"""Schemathesis (``st run``) against ``/admin/openapi.json``, served by uvicorn on loopback.

The admin API and its document must agree: no 5xx, every status documented, every
body in its documented schema and content type, over schemathesis's coverage,
fuzzing and stateful phases, positive and negative data. The server has a real token
and real plugins from a temporary directory, so load, unload, enable, disable and
reload act on something. The hooks (tests/admin_schemathesis_hooks.py) rewrite every
load request's ``path`` into that directory before it is sent, and the manager is
the test's own: the run can load nothing from elsewhere and unload nothing else.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from admin_http import exchange, request_head, serve
from ops_support import start_plugins, write_plugin
from tether import PluginManager, TetherConfig
from tether.admin import create_admin_app

pytest.importorskip("schemathesis")

TOKEN = "schemathesis-token"
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
EXAMPLES = 20  # per operation and phase
TESTS = Path(__file__).resolve().parent

CONFIG = f"""\
headers = {{ Authorization = "Bearer {TOKEN}" }}
hooks = "admin_schemathesis_hooks"
request-timeout = 30
workers = 1

[generation]
mode = "all"
max-examples = {EXAMPLES}
database = "none"

# 503 is what /readyz is for, once the run has disabled a plugin: any other 5xx there
# is still a failure.
[[operations]]
include-path = "/readyz"
checks.not_a_server_error.expected-statuses = ["1XX", "2XX", "3XX", "4XX", "503"]
"""


def test_schemathesis_finds_nothing_against_the_admin_api(tmp_path):
    plugins = (
        write_plugin(tmp_path / "plugins", "auth-plugin"),
        write_plugin(tmp_path / "plugins", "user-plugin", depends_on=("auth-plugin",)),
        write_plugin(tmp_path / "plugins", "spare-plugin"),
    )
    names = ["auth-plugin", "user-plugin", "spare-plugin"]
    manager = PluginManager(
        config=TetherConfig.model_validate({}), state_directory=tmp_path / "state"
    )
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    target = {"root": str(tmp_path), "plugins": [str(p) for p in plugins], "names": names}
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        "ADMIN_SCHEMATHESIS_TARGET": json.dumps(target),
        "NO_COLOR": "1",
    }
    served = serve(create_admin_app(manager, token=TOKEN), manager)
    try:
        served.call(lambda: start_plugins(manager, *plugins[:2]))
        run = subprocess.run(
            [
                *(sys.executable, "-m", "schemathesis.cli", "--config-file", str(config)),
                *("run", f"{served.url}/admin/openapi.json", "--checks", ",".join(CHECKS)),
                "--no-color",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        alive = exchange(served.port, request_head("GET", "/healthz", {}))
    finally:
        served.stop()
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
    assert " passed" in run.stdout
    assert " failed" not in run.stdout
    assert alive is not None
    assert alive.status == 200
