"""Hot reload's control and record surface: the admin routes, the CLI and the metrics.

A real plugin directory the tests rewrite between reloads, a real manager behind the
admin app served by uvicorn on loopback, httpx and the CLI talking to it over HTTP,
and the state store on disk.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner, Result
from prometheus_client.parser import text_string_to_metric_families

from ops_support import Served
from tether import PluginManager, ReloadResult, load_config
from tether.admin import create_admin_app
from tether.cli import cli
from tether.observability._reloads import ReloadTally

TOKEN = "reload-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NAME = "greeter"

CODE = """\
from pathlib import Path

VERSION = {version!r}


class Plugin:
    def initialize(self, ctx):
        ctx.register_hook("pre_request", 100, self.answer)
        {initialize}

    def answer(self, _arg):
        return VERSION

    def start(self):
        if (Path(__file__).parent / "no-start").exists():
            raise RuntimeError("the start marker says no")

    def stop(self):
        pass

    def cleanup(self):
        pass
"""


def write_version(
    directory: Path, version: str, *, initialize: str = "pass", code: str | None = None
) -> Path:
    """Write (or overwrite) the plugin at ``directory`` as ``version``."""
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {
        "name": NAME,
        "version": version,
        "description": "answers its version",
        "author": "tests",
        "entry": "plugin:Plugin",
    }
    (directory / "plugin.json").write_text(json.dumps(manifest), encoding="utf-8")
    text = code if code is not None else CODE.format(version=version, initialize=initialize)
    (directory / "plugin.py").write_text(textwrap.dedent(text), encoding="utf-8")
    return directory


@pytest.fixture
def plugin_dir(tmp_path) -> Path:
    return write_version(tmp_path / "plugins" / NAME, "1.0.0")


def _config(tmp_path: Path, plugin_dir: Path) -> Path:
    path = tmp_path / "tether.yaml"
    config = {
        "plugins": {"plugins": [{"name": NAME, "path": str(plugin_dir)}]},
        "admin": {"token": TOKEN},
        "reload": {"grace_period": "0s"},
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture
def config_path(tmp_path, plugin_dir) -> Path:
    return _config(tmp_path, plugin_dir)


@pytest.fixture
def server(config_path):
    manager = PluginManager(config=load_config(config_path))
    served = Served(create_admin_app(manager), manager).start()

    async def up():
        await manager.load_plugins_from_config()
        await manager.initialize_all()
        await manager.start_all()

    served.call(up)
    yield served
    served.stop()


def http(served: Served) -> httpx.Client:
    return httpx.Client(base_url=served.url, headers=AUTH, timeout=60)


def answering(served: Served) -> list[object]:
    """What the plugin's hook answers now: the version that serves."""

    async def ask():
        return served.manager.runtime.hooks.call("pre_request", "who").results

    return served.call(ask)


def reload(client: httpx.Client, body: dict[str, object] | None = None) -> httpx.Response:
    return client.post(f"/admin/plugins/{NAME}/reload", json=body)


# --------------------------------------------------------------------------- the admin API


def test_reload_answers_reloaded_with_both_versions(server, plugin_dir):
    write_version(plugin_dir, "1.1.0")
    with http(server) as client:
        answer = reload(client)
        detail = client.get(f"/admin/plugins/{NAME}").json()
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["plugin"] == NAME
    assert result["outcome"] == "reloaded"
    assert (result["from_version"], result["to_version"]) == ("1.0.0", "1.1.0")
    assert result["step"] is None
    assert result["error"] is None
    assert result["duration"] > 0
    assert (result["held"], result["rejected"]) == (0, 0)
    assert detail["version"] == "1.1.0"
    assert detail["status"] == "running"
    assert answering(server) == ["1.1.0"]


@pytest.mark.parametrize(
    ("step", "broken"),
    [
        ("import", {"code": "class Plugin:\n    def initialize(self, ctx)\n        pass\n"}),
        ("initialize", {"initialize": "raise ValueError('no database')"}),
    ],
    ids=["syntax-error", "initialize-raises"],
)
def test_a_broken_version_answers_rolled_back_and_the_old_one_still_answers(
    server, plugin_dir, step, broken
):
    write_version(plugin_dir, "2.0.0", **broken)
    with http(server) as client:
        answer = reload(client)
        detail = client.get(f"/admin/plugins/{NAME}").json()
    assert answer.status_code == 200, answer.text  # a rollback is an outcome, not an error
    result = answer.json()
    assert result["outcome"] == "rolled_back"
    assert (result["from_version"], result["to_version"]) == ("1.0.0", "2.0.0")
    assert result["step"] == step
    if step == "import":
        assert "plugin.py" in result["error"]
    else:
        assert "no database" in result["error"]
    assert detail["version"] == "1.0.0"
    assert detail["status"] == "running"
    assert answering(server) == ["1.0.0"]


def test_a_version_whose_predecessor_cannot_start_again_answers_409_with_the_result(
    server, plugin_dir
):
    (plugin_dir / "no-start").write_text("", encoding="utf-8")  # 1.0.0 cannot start again...
    write_version(plugin_dir, "2.0.0", initialize="raise ValueError('broken too')")
    with http(server) as client:
        answer = reload(client)
    assert answer.status_code == 409, answer.text
    body = answer.json()
    assert body["error"] == "ReloadFailed"
    assert body["plugin"] == NAME
    assert "has no running version" in body["message"]
    assert body["hint"]
    assert body["result"]["outcome"] == "failed"
    assert body["result"]["step"] == "initialize"
    assert "broken too" in body["message"]
    assert "could not start again" in body["message"]

    (plugin_dir / "no-start").unlink()  # fixed: the hint's way back is a fresh load
    write_version(plugin_dir, "2.0.1")
    assert f"DELETE /admin/plugins/{NAME}" in body["hint"]
    with http(server) as client:
        assert client.delete(f"/admin/plugins/{NAME}").status_code == 200
        loaded = client.post("/admin/plugins", json={"path": str(plugin_dir)})
    assert loaded.status_code == 201, loaded.text
    assert answering(server) == ["2.0.1"]


def test_the_body_sets_the_reload_config_and_a_bad_one_is_a_400_naming_the_field(
    server, plugin_dir
):
    write_version(plugin_dir, "1.1.0")
    with http(server) as client:
        unknown = reload(client, {"queue_timout": "5s"})
        strategy = reload(client, {"strategy": "sometimes"})
        timeout = reload(client, {"queue_timeout": "soon"})
        given = reload(client, {"queue_timeout": "2s", "strategy": "reject", "grace_period": 0})
    for bad, field in ((unknown, "queue_timout"), (strategy, "strategy"),
                       (timeout, "queue_timeout")):  # fmt: skip
        assert bad.status_code == 400, bad.text
        assert bad.json()["error"] == "BadRequest"
        assert field in bad.json()["message"]
    assert given.status_code == 200, given.text
    assert given.json()["to_version"] == "1.1.0"


def test_rollback_brings_back_the_previous_version(server, plugin_dir):
    with http(server) as client:
        nothing = client.post(f"/admin/plugins/{NAME}/rollback")
        write_version(plugin_dir, "1.1.0")
        assert reload(client).json()["outcome"] == "reloaded"
        back = client.post(f"/admin/plugins/{NAME}/rollback")
        detail = client.get(f"/admin/plugins/{NAME}").json()
        unknown = client.post("/admin/plugins/nobody/rollback")
    assert nothing.status_code == 409, nothing.text  # no previous version kept yet
    assert nothing.json()["hint"]
    assert back.status_code == 200, back.text
    assert (back.json()["from_version"], back.json()["to_version"]) == ("1.1.0", "1.0.0")
    assert detail["version"] == "1.0.0"
    assert answering(server) == ["1.0.0"]
    assert unknown.status_code == 404


def test_history_lists_the_reloads_newest_first(server, plugin_dir):
    with http(server) as client:
        write_version(plugin_dir, "1.1.0")
        reload(client)
        write_version(plugin_dir, "1.2.0", code="this is not python\n")
        reload(client)
        write_version(plugin_dir, "1.2.1")
        reload(client)
        history = client.get(f"/admin/plugins/{NAME}/history")
        two = client.get(f"/admin/plugins/{NAME}/history", params={"limit": "2"})
        bad = [client.get(f"/admin/plugins/{NAME}/history", params={"limit": v})
               for v in ("0", "-1", "x", "1001", "99999999999999999999", "²")]  # fmt: skip
        unknown = client.get("/admin/plugins/nobody/history")
    assert history.status_code == 200, history.text
    rows = history.json()["reloads"]
    assert history.json()["plugin"] == NAME
    assert [(r["from_version"], r["to_version"], r["outcome"]) for r in rows] == [
        ("1.1.0", "1.2.1", "reloaded"),
        ("1.1.0", "1.2.0", "rolled_back"),
        ("1.0.0", "1.1.0", "reloaded"),
    ]
    assert rows[1]["step"] == "import"
    assert rows[0]["at"] > rows[1]["at"] > rows[2]["at"]
    assert [r["to_version"] for r in two.json()["reloads"]] == ["1.2.1", "1.2.0"]
    for answer in bad:
        assert answer.status_code == 400, answer.text
        assert "'limit'" in answer.json()["message"]
    assert unknown.status_code == 404


def test_reload_metrics_count_each_outcome_and_time_every_reload(server, plugin_dir):
    with http(server) as client:
        write_version(plugin_dir, "1.1.0")
        reload(client)
        write_version(plugin_dir, "1.2.0", initialize="raise ValueError('no')")
        reload(client)
        write_version(plugin_dir, "1.3.0")
        reload(client)
        text = client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    counts = {
        s.labels["outcome"]: s.value
        for s in families["tether_plugin_reloads"].samples
        if s.labels.get("plugin") == NAME and s.name.endswith("_total")
    }
    assert counts == {"reloaded": 2, "rolled_back": 1, "failed": 0}
    samples = families["tether_plugin_reload_duration_seconds"].samples
    count = [s for s in samples if s.name.endswith("_count") and s.labels["plugin"] == NAME]
    total = [s for s in samples if s.name.endswith("_sum") and s.labels["plugin"] == NAME]
    infinite = [s for s in samples if s.labels.get("le") == "+Inf"]
    assert count[0].value == 3
    assert total[0].value > 0
    assert infinite[0].value == 3
    assert "tether_plugin_calls_waiting" in families


# --------------------------------------------------------------------------- the CLI


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_cli_reload_prints_the_outcome_and_exits_by_it(server, plugin_dir, config_path):
    base = ("--config", str(config_path), "plugins")
    write_version(plugin_dir, "1.1.0")
    done = run(*base, "reload", NAME, "--url", server.url, "--queue-timeout", "5s")
    assert done.exit_code == 0, done.output
    assert f"reloaded {NAME}: 1.0.0 -> 1.1.0" in done.stdout
    assert "held" in done.stdout
    assert "0 calls" in done.stdout

    write_version(plugin_dir, "1.2.0", initialize="raise ValueError('no database')")
    back = run(*base, "reload", NAME, "--url", server.url)
    assert back.exit_code == 1, back.output
    assert f"rolled back {NAME}: 1.2.0 failed at initialize; 1.1.0 runs again" in back.stdout
    assert "no database" in " ".join(back.stdout.split()), back.stdout
    assert f"Error: plugin '{NAME}' was rolled back" in back.stderr
    assert answering(server) == ["1.1.0"]

    as_json = run(*base, "reload", NAME, "--url", server.url, "--json", "--strategy", "reject")
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["outcome"] == "rolled_back"

    rollback = run(*base, "rollback", NAME, "--url", server.url)
    assert rollback.exit_code == 0, rollback.output
    assert answering(server) == ["1.0.0"]

    history = run(*base, "history", NAME, "--url", server.url, "--json")
    assert history.exit_code == 0, history.output
    rows = json.loads(history.stdout)["reloads"]
    assert [r["outcome"] for r in rows][-2:] == ["rolled_back", "reloaded"]
    lines = run(*base, "history", NAME, "--url", server.url).stdout.splitlines()
    assert "1.1.0 -> 1.0.0" in lines[0]
    assert "rollback" in lines[0]
    assert "1.1.0 -> 1.2.0" in lines[1]
    assert "rolled back" in lines[1]
    assert lines[2].strip().startswith("failed at initialize:")
    assert "no database" in lines[2]
    assert "1.0.0 -> 1.1.0" in lines[-1]
    assert "reloaded" in lines[-1]


def test_cli_history_reads_the_state_store_with_no_server(server, plugin_dir, config_path):
    write_version(plugin_dir, "1.1.0")
    with http(server) as client:
        reload(client)
    server.stop()
    result = run("--config", str(config_path), "plugins", "history", NAME)
    assert result.exit_code == 0, result.output
    assert "1.0.0" in result.stdout
    assert "1.1.0" in result.stdout
    assert "reloaded" in result.stdout
    data = run("--config", str(config_path), "plugins", "history", NAME, "--json")
    assert json.loads(data.stdout)["reloads"][0]["to_version"] == "1.1.0"
    none = run("--config", str(config_path), "plugins", "history", "nobody")
    assert none.exit_code == 0
    assert "No reloads of nobody recorded" in none.stdout


def test_cli_reload_needs_a_server(config_path, monkeypatch):
    monkeypatch.delenv("TETHER_ADMIN_URL", raising=False)
    for action, doing in (("reload", "reloading a plugin"), ("rollback", "rolling a plugin back")):
        result = run("--config", str(config_path), "plugins", action, NAME)
        assert result.exit_code == 1
        assert f"Error: {doing} needs a running server" in result.stderr
        assert "--url" in result.stderr


HEALTH = """\
VERSION = {version!r}


class Plugin:
    def initialize(self, ctx):
        ctx.register_hook("pre_request", 100, lambda _arg: VERSION)

    def start(self):
        pass

    def stop(self):
        pass

    def cleanup(self):
        pass

    def health_check(self):
        return VERSION == "1.0.0"  # the new version is never healthy
"""


def test_an_automatic_rollback_in_the_grace_period_is_counted_and_recorded(server, plugin_dir):
    write_version(plugin_dir, "1.0.0", code=HEALTH.format(version="1.0.0"))
    with http(server) as client:
        assert reload(client).json()["outcome"] == "reloaded"  # 1.0.0 again, now with a check
        write_version(plugin_dir, "1.1.0", code=HEALTH.format(version="1.1.0"))
        answer = reload(client, {"grace_period": "2s"})
        assert answer.json()["outcome"] == "reloaded", answer.text  # it started...
        for _ in range(200):  # ...and fails its health check within the grace period
            rows = client.get(f"/admin/plugins/{NAME}/history").json()["reloads"]
            if rows[0]["step"] == "grace":
                break
            server.call(lambda: asyncio.sleep(0.1))
        text = client.get("/metrics").text
    assert (rows[0]["outcome"], rows[0]["to_version"]) == ("rolled_back", "1.1.0")
    assert "health check" in rows[0]["error"]
    assert answering(server) == ["1.0.0"]
    reloads = next(f for f in text_string_to_metric_families(text)
                   if f.name == "tether_plugin_reloads")  # fmt: skip
    counts = {s.labels["outcome"]: s.value for s in reloads.samples if s.name.endswith("_total")}
    assert counts == {"reloaded": 2, "rolled_back": 1, "failed": 0}


def test_the_duration_buckets_count_a_bound_in_its_own_bucket():
    tally = ReloadTally()
    for seconds in (0.01, 0.0100001, 75.0):
        tally.record(ReloadResult(NAME, "reloaded", "1.0.0", "1.0.1", duration=seconds))
    buckets = dict(tally.durations()[NAME].cumulative())
    assert (buckets["0.01"], buckets["0.025"], buckets["60.0"], buckets["+Inf"]) == (1, 2, 2, 3)
    assert tally.outcomes() == {NAME: {"reloaded": 3, "rolled_back": 0, "failed": 0}}
