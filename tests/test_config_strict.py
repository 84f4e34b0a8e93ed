"""Input that must not pass silently: every key of a framework config is checked.

Unknown keys anywhere (tether's sections, plugin entries, host sections) are errors
with the dotted key, the line and a did-you-mean; a plugin's config is checked
against its manifest's schema unless it says ``additional_properties: true``; host
sections are checked against the schemas their hosts register, and a section no
host claims is refused; ``plugins.paths`` and ``enable_discovery`` drive discovery.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from helpers import PluginWriter, line_of
from tether import (
    ConfigSection,
    IndexCache,
    PluginManager,
    SectionRegistry,
    TetherConfig,
    config_sections,
    discover,
    load_config,
    run_host,
    search_paths_for,
    validate_plugin_config,
)
from tether._config import parse_config
from tether._documents import read_document
from tether._manifest import ConfigField
from tether.errors import ConfigError, ConfigKeyProblem, ManifestError, PluginNotFoundError

TETHER = Path(sys.executable).parent / "tether"

GREETER = """\
import tether


class Greeter(tether.Plugin):
    async def initialize(self, ctx):
        self.config = ctx.plugin_config
"""
GREETER_SCHEMA = {"greeting": {"type": "string", "default": "hello"}, "times": {"type": "integer"}}


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _refused(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value


def _tether(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI, in ``cwd``: a relative ``PYTHONPATH`` (``src``) is made absolute first."""
    python_path = os.pathsep.join(
        str(Path(p).absolute()) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p
    )
    return subprocess.run(
        [str(TETHER), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200", "PYTHONPATH": python_path},
    )


# --------------------------------------------------------------------------- tether's sections

UNKNOWN_KEYS = [
    ("plugns:\n  directory: ./plugins\n", "plugns", "unknown section", "plugins"),
    ("plugins:\n  plugin: {name: x}\n", "plugins.plugin", "unknown key", "plugins"),
    (
        "plugins:\n  plugins:\n    - name: auth\n      prioirty: 3\n",
        "plugins.plugins[0].prioirty",
        "unknown key",
        "priority",
    ),
    ("plugins:\n  timeouts:\n    cal: 2s\n", "plugins.timeouts.cal", "unknown key", "call"),
    (
        "plugins:\n  plugins:\n    - name: auth\n      timeouts: {strat: 2s}\n",
        "plugins.plugins[0].timeouts.strat",
        "unknown key",
        "start",
    ),
    (
        "plugins:\n  error_threshold:\n    max_eror: 3\n",
        "plugins.error_threshold.max_eror",
        "unknown key",
        "max_errors",
    ),
    (
        "plugins:\n  plugins:\n    - name: auth\n      error_threshold: {acton: log}\n",
        "plugins.plugins[0].error_threshold.acton",
        "unknown key",
        "action",
    ),
    ("events:\n  queue_sise: 3\n", "events.queue_sise", "unknown key", "queue_size"),
    ("reload:\n  queue_timout: 1s\n", "reload.queue_timout", "unknown key", "queue_timeout"),
    ("state:\n  flush_intervl: 5s\n", "state.flush_intervl", "unknown key", "flush_interval"),
    ("cache:\n  urll: redis://127.0.0.1\n", "cache.urll", "unknown key", "url"),
    ("database:\n  dns: postgresql://127.0.0.1/x\n", "database.dns", "unknown key", "dsn"),
]


@pytest.mark.parametrize(
    ("text", "key", "what", "meant"), UNKNOWN_KEYS, ids=[case[1] for case in UNKNOWN_KEYS]
)
def test_an_unknown_key_names_its_path_its_line_and_the_key_meant(tmp_path, text, key, what, meant):
    path = _write(tmp_path / "tether.yaml", "# a config\n" + text)
    error = _refused(path)
    [problem] = error.problems
    assert isinstance(problem, ConfigKeyProblem)
    assert problem.key == key
    written = re.compile(rf"(^|[\s{{,]){re.escape(key.rpartition('.')[2])}:")
    assert problem.line == 2 + next(i for i, t in enumerate(text.splitlines()) if written.search(t))
    assert problem.message.startswith(what)
    assert problem.message.endswith(f"(did you mean '{meant}'?)")
    assert str(error).startswith(f"invalid config {path}: line {problem.line}: {key}: {what}")
    assert error.path == path


def test_the_hint_lists_the_keys_of_the_section_the_key_is_in(tmp_path):
    error = _refused(_write(tmp_path / "tether.yaml", "events:\n  size: 3\n"))
    assert error.hint == (
        "the keys of events are: queue_size, policy; `tether config validate` re-checks the file"
    )
    error = _refused(_write(tmp_path / "tether.yaml", "plugins:\n  plugins: [{nmae: a}]\n"))
    assert "did you mean 'name'?" in str(error)
    assert error.hint is not None
    assert error.hint.startswith("the keys of plugins.plugins[0] are: name, enabled, path,")


def test_every_problem_of_the_file_is_listed_at_once_in_line_order(tmp_path):
    path = _write(
        tmp_path / "tether.yaml",
        "plugins:\n  plugin: {}\nevents: {queue_sise: 3}\nplugns: {}\nbench: {clinets: 2}\n",
    )
    error = _refused(path)
    assert [(p.key, getattr(p, "line", None)) for p in error.problems] == [
        ("plugins.plugin", 2),
        ("events.queue_sise", 3),
        ("plugns", 4),
        ("bench.clinets", 5),
    ]
    assert error.hint == "fix the keys listed above; `tether config validate` re-checks the file"


def test_json_and_toml_keys_have_lines_too(tmp_path):
    error = _refused(_write(tmp_path / "tether.json", '{"plugins": {\n  "directroy": "x"}}'))
    [problem] = error.problems
    assert (problem.key, getattr(problem, "line", None)) == ("plugins.directroy", 2)
    assert problem.message == "unknown key (did you mean 'directory'?)"
    error = _refused(_write(tmp_path / "tether.toml", '[plugins]\ndirectroy = "x"\n'))
    [problem] = error.problems
    assert (problem.key, getattr(problem, "line", None)) == ("plugins.directroy", 2)
    assert str(error).startswith(
        f"invalid config {tmp_path / 'tether.toml'}: line 2: plugins.directroy:"
    )


def test_the_database_section_keeps_its_hosts_keys(tmp_path):
    config = load_config(
        _write(tmp_path / "tether.yaml", "database: {url: 'sqlite:///x.db', pool_size: 4}\n")
    )
    assert config.section("database") == {"url": "sqlite:///x.db", "pool_size": 4}


def test_state_settings_are_read_from_their_fields(tmp_path):
    config = load_config(
        _write(tmp_path / "tether.yaml", "state: {flush_interval: 2s, retention: 1d}\n")
    )
    assert (config.state.flush_interval, config.state.retention) == (2.0, 86400.0)
    error = _refused(_write(tmp_path / "tether.yaml", "state: {retention: soon}\n"))
    assert error.problems[0].key == "state.retention"


def test_a_top_level_path_key_is_not_taken_for_the_files_own(tmp_path):
    error = _refused(_write(tmp_path / "tether.yaml", "path: /elsewhere\n"))
    assert error.problems[0].key == "path"
    assert "unknown section" in error.problems[0].message


# --------------------------------------------------------------------------- host sections


class _Shop(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    workers: int = 4
    currency: str = "EUR"


SHOP = ConfigSection("shop", "the shop host", _Shop, "the shop's settings")


def _parse(text: str, path: Path, sections: SectionRegistry) -> TetherConfig:
    path.write_text(text, encoding="utf-8")
    document = read_document(path)
    return parse_config(document.data, path=path, lines=document.lines, sections=sections)


def test_a_section_a_host_registers_is_checked_against_its_schema(tmp_path):
    sections = SectionRegistry([SHOP], entry_points=False)
    config = _parse("shop:\n  workers: 8\n", tmp_path / "tether.yaml", sections)
    assert config.section("shop") == {"workers": 8}
    with pytest.raises(ConfigError) as caught:
        _parse("shop:\n  workers: 8\n  curency: USD\n", tmp_path / "tether.yaml", sections)
    [problem] = caught.value.problems
    assert (problem.key, getattr(problem, "line", None)) == ("shop.curency", 3)
    assert problem.message == "unknown key (did you mean 'currency'?)"
    assert caught.value.hint is not None
    assert caught.value.hint.startswith("the keys of shop are: workers, currency")
    with pytest.raises(ConfigError) as caught:
        _parse("shop:\n  workers: many\n", tmp_path / "tether.yaml", sections)
    assert caught.value.problems[0].key == "shop.workers"
    with pytest.raises(ConfigError, match=r"line 1: shop: must be a mapping of keys to values"):
        _parse("shop: 5\n", tmp_path / "tether.yaml", sections)


def test_a_section_no_installed_host_claims_is_refused_with_the_known_sections(tmp_path):
    sections = SectionRegistry([SHOP], entry_points=False)
    with pytest.raises(ConfigError) as caught:
        _parse("plugins: {}\nshpo:\n  workers: 2\n", tmp_path / "tether.yaml", sections)
    [problem] = caught.value.problems
    assert (problem.key, getattr(problem, "line", None)) == ("shpo", 2)
    assert problem.message == "unknown section: no installed host reads it (did you mean 'shop'?)"
    assert caught.value.hint == (
        "the sections are plugins, events, reload, state, database, cache (tether's) and shop "
        "(the installed hosts'); a host's section is known once the host that reads it is "
        "installed; `tether config validate` re-checks the file"
    )


def test_the_registry_refuses_two_hosts_claiming_one_section_and_non_sections():
    sections = SectionRegistry([SHOP], entry_points=False)
    sections.register(SHOP)  # the same again: nothing happens
    with pytest.raises(ConfigError, match="two hosts claim the config section 'shop'"):
        sections.register(ConfigSection("shop", "another host", _Shop))
    with pytest.raises(ConfigError, match="not a config section"):
        sections.register("shop")  # type: ignore[arg-type]
    assert sections.get("nothing") is None


@pytest.mark.parametrize(
    ("section", "host"),
    [("bench", "tether bench"), ("workload", "tether bench"), ("serve", "tether serve")],
)
def test_tethers_hosts_claim_their_sections_through_entry_points(section, host):
    found = SectionRegistry().get(section)
    assert found is not None
    assert (found.name, found.host) == (section, host)
    assert config_sections.get(section) == found


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ("bench:\n  clinets: 4\n", "bench.clinets", "unknown key (did you mean 'clients'?)"),
        ("bench:\n  clients: 0\n", "bench.clients", "must be an integer from 1 to 10,000, got 0"),
        ("workload:\n  plugin_nmae: tpcb\n", "workload.plugin_nmae", "unknown key (did you mean"),
        ("serve:\n  prot: 80\n", "serve.prot", "unknown key (did you mean 'port'?)"),
        ("serve:\n  port: 70000\n", "serve.port", "input should be less than or equal to 65535"),
        ("admin:\n  tokn: x\n", "admin.tokn", "unknown key (did you mean 'token'?)"),
        ("benchh:\n  clients: 4\n", "benchh", "unknown section: no installed host reads it"),
    ],
)
def test_the_bench_and_serve_sections_are_checked_when_the_file_is_read(
    tmp_path, text, key, message
):
    error = _refused(_write(tmp_path / "tether.yaml", text))
    [problem] = error.problems
    assert (problem.key, getattr(problem, "line", None)) == (key, 2 if "." in key else 1)
    assert problem.message.startswith(message)


def test_the_serve_section_takes_a_port_from_a_variable(tmp_path, monkeypatch):
    from tether.hosts.web import ServeSection

    monkeypatch.setenv("PORT", "9000")
    config = load_config(
        _write(tmp_path / "tether.yaml", "serve: {port: '${PORT}', graceful_timeout: 5s}\n")
    )
    section = ServeSection.of(config)
    assert (section.host, section.port, section.graceful_timeout) == ("127.0.0.1", 9000, 5.0)


LAZY = """\
import json
import sys

import tether

tether.load_config(sys.argv[1])
print(json.dumps(sorted({m.split(".")[2] for m in sys.modules if m.startswith("tether.hosts.")})))
"""


def test_reading_a_config_imports_only_the_hosts_whose_sections_it_has(tmp_path):
    script = _write(tmp_path / "lazy.py", LAZY)
    plain = _write(tmp_path / "plain.yaml", "plugins: {enabled: true}\nevents: {}\n")
    served = _write(tmp_path / "served.yaml", "serve: {port: 0}\n")
    imported = {}
    for config in (plain, served):
        done = subprocess.run(
            [sys.executable, str(script), str(config)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        imported[config.stem] = json.loads(done.stdout)
    assert imported == {"plain": [], "served": ["web"]}


# --------------------------------------------------------------------------- plugin config


@pytest.fixture
def plugins(tmp_path: Path) -> PluginWriter:
    return PluginWriter(tmp_path / "plugins")


def _greeter_config(tmp_path: Path, config: str) -> Path:
    return _write(
        tmp_path / "tether.yaml",
        "plugins:\n  plugins:\n    - name: greeter\n"
        f"      path: ./plugins/greeter-1.0.0\n      config:\n{config}",
    )


def test_an_unknown_plugin_config_key_names_the_plugin_its_path_line_and_the_key_meant(
    tmp_path, plugins
):
    plugins("greeter", GREETER, entry="greeter:Greeter", config=GREETER_SCHEMA)
    path = _greeter_config(tmp_path, "        greting: hi\n        times: 2\n")

    async def load() -> None:
        async with PluginManager() as manager:
            await manager.load_plugins_from_config(path)

    with pytest.raises(ConfigError) as caught:
        run_host(load())
    assert str(caught.value) == (
        f"invalid configuration for plugin 'greeter' in {path}: line 6: "
        "plugins.plugins[0].config.greting: unknown configuration key (did you mean 'greeting'?)"
    )
    assert caught.value.plugin == "greeter"
    assert caught.value.hint == (
        "fix plugins.plugins[0].config: plugin 'greeter' takes the keys its manifest's `config` "
        "section declares (its keys are: greeting, times); a plugin taking any key says "
        "`additional_properties: true` there"
    )
    [problem] = caught.value.problems
    assert (problem.key, getattr(problem, "line", None)) == ("greting", 6)


def test_additional_properties_true_passes_undeclared_keys_through(tmp_path, plugins):
    schema = {"additional_properties": True, **GREETER_SCHEMA}
    plugins("greeter", GREETER, entry="greeter:Greeter", config=schema)
    path = _greeter_config(tmp_path, "        colour: red\n        times: 2\n")

    async def load() -> dict[str, object]:
        async with PluginManager() as manager:
            await manager.load_plugins_from_config(path)
            await manager.initialize_all()
            return dict(manager.get_plugin("greeter").config)  # type: ignore[attr-defined]

    assert run_host(load()) == {"colour": "red", "times": 2, "greeting": "hello"}


def test_without_a_schema_a_plugin_takes_no_keys():
    with pytest.raises(ConfigError) as caught:
        validate_plugin_config("bare", {}, {"anything": 1})
    assert str(caught.value) == (
        "invalid configuration for plugin 'bare': unknown configuration key 'anything'"
    )
    assert "it declares no keys" in (caught.value.hint or "")
    schema = {"port": ConfigField(type="integer")}
    assert validate_plugin_config("open", schema, {"x": 1}, additional_properties=True) == {"x": 1}


def test_additional_properties_is_a_flag_of_the_manifest_and_survives_the_index_cache(
    tmp_path, plugins
):
    plugins("open", "", config={"additional_properties": True, "a": {"type": "string"}})
    plugins("bad", "", config={"additional_properties": "yes"})
    cache = IndexCache(tmp_path / "index.json")
    config = TetherConfig.model_validate({"plugins": {"directory": str(tmp_path / "plugins")}})
    for _ in range(2):  # cold, then from the cache
        found = discover(search_paths_for(config), entry_points=False, cache=cache)
        open_plugin = found.get("open")
        assert open_plugin is not None
        assert open_plugin.manifest.open_config is True
        assert list(open_plugin.manifest.config) == ["a"]
    [bad] = [i for i in found.invalid if "bad" in i.location]
    assert isinstance(bad.error, ManifestError)
    assert "config.additional_properties: must be true or false" in str(bad.error)


# --------------------------------------------------------------------------- discovery


def _two_directories(tmp_path: Path) -> None:
    PluginWriter(tmp_path / "first")("alpha", GREETER, entry="greeter:Greeter")
    PluginWriter(tmp_path / "second")("beta", GREETER, entry="greeter:Greeter")


def test_plugins_paths_are_searched_for_entries_by_name(tmp_path):
    _two_directories(tmp_path)
    path = _write(
        tmp_path / "tether.yaml",
        "plugins:\n  paths: [./first, ./second]\n  plugins:\n    - name: alpha\n    - name: beta\n",
    )
    config = load_config(path)
    assert config.plugin_directories() == (tmp_path / "first", tmp_path / "second")

    async def load() -> list[str]:
        async with PluginManager() as manager:
            infos = await manager.load_plugins_from_config(path)
            return sorted(i.name for i in infos)

    assert run_host(load()) == ["alpha", "beta"]


def test_enable_discovery_false_searches_no_directory(tmp_path, monkeypatch):
    PluginWriter(tmp_path / "plugins")("local", GREETER, entry="greeter:Greeter")
    monkeypatch.chdir(tmp_path)  # ./plugins is a default search path
    on = _write(tmp_path / "on.yaml", "plugins:\n  plugins: [{name: local}]\n")
    off = _write(
        tmp_path / "off.yaml",
        "plugins:\n  enable_discovery: false\n  plugins: [{name: local}]\n",
    )
    by_path = _write(
        tmp_path / "path.yaml",
        "plugins:\n  enable_discovery: false\n"
        "  plugins: [{name: local, path: ./plugins/local-1.0.0}]\n",
    )

    async def load(path: Path) -> list[str]:
        async with PluginManager() as manager:
            return [i.name for i in await manager.load_plugins_from_config(path)]

    assert run_host(load(on)) == ["local"]
    assert run_host(load(by_path)) == ["local"]
    with pytest.raises(PluginNotFoundError) as caught:
        run_host(load(off))
    assert "plugins.enable_discovery is false (no directory is searched)" in str(caught.value)
    assert "give the entry of 'local' a `path`" in (caught.value.hint or "")
    origins = {p.origin for p in search_paths_for(load_config(off))}
    assert origins == {"builtin"}  # tether's own plugins, never a directory of the user's


def test_directories_to_search_with_discovery_off_are_refused(tmp_path):
    error = _refused(
        _write(
            tmp_path / "tether.yaml",
            "plugins:\n  enable_discovery: false\n  paths: [./plugins]\n",
        )
    )
    assert str(error.problems[0]) == (
        "line 1: plugins: plugins.paths would never be searched: plugins.enable_discovery is "
        "false (search no directory); remove one of them"
    )


# --------------------------------------------------------------------------- the CLI


def test_config_validate_refuses_an_unknown_key_without_a_traceback(tmp_path):
    path = _write(tmp_path / "tether.yaml", "plugns:\n  directory: ./plugins\n")
    done = _tether("config", "validate", str(path))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith(
        f"Error: invalid config {path}: line 1: plugns: unknown section: no installed host "
        "reads it (did you mean 'plugins'?)"
    )
    assert "Traceback" not in done.stderr
    assert "Hint: the sections are plugins, events," in done.stderr


def test_config_validate_refuses_a_plugin_config_typo(tmp_path, plugins):
    plugins("greeter", GREETER, entry="greeter:Greeter", config=GREETER_SCHEMA)
    path = _greeter_config(tmp_path, "        greting: hi\n")
    done = _tether("config", "validate", str(path))
    assert done.returncode == 1
    assert (
        f"Error: invalid configuration for plugin 'greeter' in {path}: line 6: "
        "plugins.plugins[0].config.greting: unknown configuration key (did you mean 'greeting'?)"
    ) in done.stderr
    assert "Traceback" not in done.stderr


def test_bench_refuses_an_unknown_set_key_before_any_database(tmp_path):
    # a DSN nothing listens on: were the key not refused first, the run would fail to connect
    done = _tether(
        "bench", "-w", "tpcb", "--set", "scael=5", "--dsn", "postgresql://127.0.0.1:1/none",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith(
        "Error: invalid configuration for plugin 'tpcb': --set scael: unknown configuration key "
        "(did you mean 'scale'?)"
    )
    assert "Hint: fix --set scael: plugin 'tpcb' takes the keys" in done.stderr
    assert "cannot connect" not in done.stderr
    assert "Traceback" not in done.stderr


def test_bench_refuses_a_typo_in_the_files_plugin_config(tmp_path):
    path = _write(
        tmp_path / "bench.yaml",
        "workload:\n  plugin_name: tpcb\n  plugin_config:\n    scael: 2\n",
    )
    done = _tether("bench", "--config", str(path), "--dsn", "postgresql://127.0.0.1:1/none")
    assert done.returncode == 1
    assert (
        f"Error: invalid configuration for plugin 'tpcb' in {path}: line 4: "
        "workload.plugin_config.scael: unknown configuration key (did you mean 'scale'?)"
    ) in done.stderr
    assert line_of(path, "scael") == 4


def test_plugins_list_searches_plugins_paths(tmp_path):
    _two_directories(tmp_path)
    path = _write(tmp_path / "tether.yaml", "plugins:\n  paths: [./first, ./second]\n")
    done = _tether("--config", str(path), "plugins", "list", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    found = {p["name"]: p["origin"] for p in json.loads(done.stdout)["plugins"]}
    assert (found["alpha"], found["beta"]) == ("config", "config")


def test_serve_listens_where_the_serve_section_says(tmp_path):
    """No --port: the port comes from `serve:` (0, any free one), not the default 8080."""
    path = _write(tmp_path / "serve.yaml", "serve:\n  host: 127.0.0.1\n  port: 0\n")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    process = subprocess.Popen(
        [str(TETHER), "serve", "--config", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        url = None
        for line in process.stdout:
            found = re.search(r"tether serving 0 plugin\(s\) on http://127\.0\.0\.1:(\d+)", line)
            if found:
                url = found.group(1)
                break
        assert url is not None, process.stderr.read() if process.stderr else ""
        assert url != "8080"
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    assert process.returncode == 0


def test_variables_in_host_sections_take_the_hosts_types(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIENTS", "3")
    monkeypatch.setenv("OPEN", "true")
    monkeypatch.delenv("SECONDS_UNSET", raising=False)
    path = tmp_path / "tether.yaml"
    path.write_text(
        "bench:\n  clients: ${CLIENTS}\n  duration: ${SECONDS_UNSET:-5s}\n"
        "admin:\n  insecure: ${OPEN}\n"
        "serve:\n  port: ${PORT_UNSET:-8123}\n",
        encoding="utf-8",
    )
    config = load_config(path)
    assert config.section("bench") == {"clients": 3, "duration": 5.0}
    assert config.section("admin") == {"insecure": True}
    assert config.section("serve") == {"port": 8123}
    monkeypatch.setenv("CLIENTS", "three")
    with pytest.raises(ConfigError) as bad:
        load_config(path)
    assert "line 2: bench.clients: ${CLIENTS} gives 'three', which is not an integer" in str(
        bad.value
    )
