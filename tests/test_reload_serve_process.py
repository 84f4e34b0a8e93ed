"""`tether serve` as a real process, reloaded through its admin API under load.

The config's ``reload:`` section sets the grace period; ``POST
/admin/plugins/greeter/reload`` swaps in each version written to disk, half of them
broken (rolled back); client threads call ``GET /hello`` all along and none of their
requests may fail. Then SIGTERM stops the server cleanly.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import tether
from reload_serve_plugins import Greeter, Load, write_config

TETHER = Path(sys.executable).parent / "tether"
TOKEN = "reload-tests-token"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Greeter, subprocess.Popen[str], str]]:
    greeter = Greeter(tmp_path / "plugins" / "greeter", tmp_path / "files")
    greeter.write("1.0.0")
    config = write_config(tmp_path / "app.yaml", greeter, reload={"grace_period": "200ms"})
    log = (tmp_path / "stderr.log").open("w")  # a file: a full pipe would block the server
    process = subprocess.Popen(
        [str(TETHER), "--log-level", "info", "serve", "--config", str(config), "--port", "0"],
        stdout=subprocess.PIPE, stderr=log, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200",
             "TETHER_ADMIN_TOKEN": TOKEN},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        for line in process.stdout:
            found = re.search(r"tether serving \d+ plugin\(s\) on (http://\S+)", line)
            if found:
                yield greeter, process, found.group(1)
                break
        else:
            process.wait(30)
            raise AssertionError(f"tether serve did not start:\n{stderr_of(tmp_path)}")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # the process this fixture started
        process.communicate(timeout=60)
        log.close()


def stderr_of(tmp_path: Path) -> str:
    return (tmp_path / "stderr.log").read_text(encoding="utf-8")


@pytest.mark.slow
def test_tether_serve_reloads_through_the_admin_api_with_no_failed_request(served, tmp_path):
    greeter, process, url = served
    admin = httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {TOKEN}"})
    with admin, Load(url, threads=3) as load:
        for minor in range(1, 7):
            broken = minor % 2 == 0
            greeter.write(f"1.0.{minor}", fail="initialize" if broken else None)
            response = admin.post("/admin/plugins/greeter/reload", json={})
            assert response.status_code == 200, response.text
            assert response.json()["outcome"] == ("rolled_back" if broken else "reloaded")
            load.wait_for_answers(6)
        load.stop()
    assert load.failures() == []
    assert {a.version for a in load.all()} == {"1.0.0", "1.0.1", "1.0.3", "1.0.5"}
    assert httpx.get(url + "/hello").json()["version"] == "1.0.5"
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    assert process.returncode == 0, stderr_of(tmp_path)
    manager = tether.PluginManager(config=tether.load_config(tmp_path / "app.yaml"))
    history = manager.reload_history("greeter")  # the server's state store, read after it
    assert [(r.outcome, r.to_version, r.step) for r in reversed(history)] == [
        ("reloaded", "1.0.1", None),
        ("rolled_back", "1.0.2", "initialize"),
        ("reloaded", "1.0.3", None),
        ("rolled_back", "1.0.4", "initialize"),
        ("reloaded", "1.0.5", None),
        ("rolled_back", "1.0.6", "initialize"),
    ], history
    assert "Rolling back to previous version" in stderr_of(tmp_path)
