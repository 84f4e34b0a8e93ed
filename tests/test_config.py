"""Framework config files, ${VAR} expansion, plugin config, permissions, secrets, durations."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tether._config import (
    MASK,
    PluginConfig,
    TetherConfig,
    expand_env,
    grant_permissions,
    load_config,
    mask_secrets,
    parse_config,
    validate_plugin_config,
)
from tether._durations import format_duration, parse_duration
from tether._manifest import ConfigField, Manifest
from tether.errors import ConfigError, EnvVarError, PermissionMismatchError, TetherError

# --------------------------------------------------------------------------- env vars


def test_set_variable_is_substituted():
    assert expand_env("postgres://${HOST}:5432", environ={"HOST": "db"}) == "postgres://db:5432"


def test_several_variables_in_one_string():
    env = {"USER": "bob", "HOST": "db"}
    assert expand_env("${USER}@${HOST}", environ=env) == "bob@db"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [({}, "fallback"), ({"PORT": ""}, "fallback"), ({"PORT": "8080"}, "8080")],
    ids=["unset", "empty", "set"],
)
def test_default_is_used_when_unset_or_empty(environ, expected):
    # Expansion gives text, always: a field that wants a number converts it.
    assert expand_env("${PORT:-fallback}", environ=environ) == expected


def test_empty_default_is_allowed():
    assert expand_env("[${PORT:-}]", environ={}) == "[]"


def test_set_but_empty_without_default_is_kept_empty():
    assert expand_env("[${PORT}]", environ={"PORT": ""}) == "[]"


def test_unset_without_default_names_variable_and_key(tmp_path):
    data = {"plugins": {"plugins": [{"name": "auth", "config": {"secret": "${JWT_SECRET}"}}]}}
    path = tmp_path / "tether.yaml"
    with pytest.raises(EnvVarError) as caught:
        parse_config(data, path=path, environ={})
    error = caught.value
    assert isinstance(error, ConfigError)
    assert error.variable == "JWT_SECRET"
    assert error.key == "plugins.plugins[0].config.secret"
    assert str(error) == (
        "environment variable 'JWT_SECRET' is not set "
        f"(used at 'plugins.plugins[0].config.secret' in {path})"
    )
    assert error.hint == "set JWT_SECRET, or give a default: ${JWT_SECRET:-value}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("cost: $$5", "cost: $5"), ("$${HOME}", "${HOME}"), ("$$$${X}", "$${X}"), ("a$b", "a$b")],
)
def test_double_dollar_is_a_literal_dollar(text, expected):
    assert expand_env(text, environ={"HOME": "/home/x", "X": "x"}) == expected


def test_only_strings_are_expanded_everywhere_in_the_tree():
    data = {"a": ["${X}", 3, True, None, {"b": "${X:-d}"}], "n": 1.5}
    assert expand_env(data, environ={"X": "x"}) == {
        "a": ["x", 3, True, None, {"b": "x"}],
        "n": 1.5,
    }


def test_key_of_a_list_item_is_indexed():
    with pytest.raises(EnvVarError) as caught:
        expand_env({"hosts": ["a", "${MISSING}"]}, environ={})
    assert caught.value.key == "hosts[1]"


def test_process_environment_is_the_default(monkeypatch):
    monkeypatch.setenv("TETHER_TEST_VALUE", "from-env")
    monkeypatch.delenv("TETHER_TEST_UNSET", raising=False)
    assert expand_env("${TETHER_TEST_VALUE}") == "from-env"
    with pytest.raises(EnvVarError, match="TETHER_TEST_UNSET"):
        expand_env("${TETHER_TEST_UNSET}")


# --------------------------------------------------------------------------- files

CONFIG = {
    "plugins": {
        "enabled": True,
        "directory": "./plugins",
        "plugins": [
            {
                "name": "auth-plugin",
                "enabled": True,
                "path": "./plugins/auth-plugin",
                "priority": 200,
                "config": {"jwt_secret": "${JWT_SECRET}", "ttl": "1h"},
                "permissions": {"database": True},
            },
            {"name": "cache-plugin", "enabled": False},
        ],
    },
    "database": {"dsn": "postgresql://${DB_USER:-app}@localhost/app"},
}


def _write(path: Path, data: dict[str, object]) -> Path:
    if path.suffix == ".json":
        path.write_text(json.dumps(data), encoding="utf-8")
    elif path.suffix == ".toml":
        path.write_text(
            """\
[plugins]
enabled = true
directory = "./plugins"

[[plugins.plugins]]
name = "auth-plugin"
enabled = true
path = "./plugins/auth-plugin"
priority = 200
config = { jwt_secret = "${JWT_SECRET}", ttl = "1h" }
permissions = { database = true }

[[plugins.plugins]]
name = "cache-plugin"
enabled = false

[database]
dsn = "postgresql://${DB_USER:-app}@localhost/app"
""",
            encoding="utf-8",
        )
    else:
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["tether.yaml", "tether.yml", "tether.json", "tether.toml"])
def test_each_format_gives_the_same_config(tmp_path, monkeypatch, name):
    monkeypatch.setenv("JWT_SECRET", "s3cret")
    monkeypatch.delenv("DB_USER", raising=False)
    path = _write(tmp_path / name, CONFIG)
    config = load_config(path)
    assert config.path == path
    assert config.base_directory == tmp_path
    assert config.plugins.enabled is True
    assert config.plugins.directory == "./plugins"
    auth, cache = config.plugins.plugins
    assert auth == PluginConfig(
        name="auth-plugin",
        path="./plugins/auth-plugin",
        priority=200,
        config={"jwt_secret": "s3cret", "ttl": "1h"},
        permissions={"database": True},
    )
    assert cache == PluginConfig(name="cache-plugin", enabled=False)
    assert cache.permissions is None
    assert config.entry("auth-plugin") is auth
    assert config.entry("nothing") is None
    assert config.section("database") == {"dsn": "postgresql://app@localhost/app"}
    assert config.section("workload") == {}


def test_explicit_environ_overrides_the_process_one(tmp_path, monkeypatch):
    monkeypatch.setenv("JWT_SECRET", "from-process")
    path = _write(tmp_path / "tether.yaml", CONFIG)
    config = load_config(path, environ={"JWT_SECRET": "given", "DB_USER": "bob"})
    assert config.plugins.plugins[0].config["jwt_secret"] == "given"
    assert config.section("database")["dsn"] == "postgresql://bob@localhost/app"


def test_unset_variable_in_a_file_names_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv("JWT_SECRET", raising=False)
    path = _write(tmp_path / "tether.json", CONFIG)
    with pytest.raises(EnvVarError) as caught:
        load_config(path)
    assert caught.value.path == path
    assert str(path) in str(caught.value)


def test_empty_file_gives_the_defaults(tmp_path):
    path = tmp_path / "tether.yaml"
    path.write_text("", encoding="utf-8")
    config = load_config(path)
    assert config.plugins.enabled is True
    assert config.plugins.plugins == ()
    assert TetherConfig().base_directory == Path.cwd()


def test_validation_errors_name_every_key(tmp_path):
    path = tmp_path / "tether.yaml"
    data = {
        "plugins": {
            "enabled": "maybe",
            "plugins": [{"name": "a"}, {"name": "b", "priority": "high", "colour": "red"}],
        }
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems = {p.key: p.message for p in caught.value.problems}
    assert problems == {
        "plugins.enabled": "input should be a valid boolean",
        "plugins.plugins[1].priority": "input should be a valid integer",
        "plugins.plugins[1].colour": "unknown key",
    }
    text = str(caught.value)
    assert text.startswith(f"invalid config {path}: ")
    assert "line 5: plugins.plugins[1].colour: unknown key" in text
    assert caught.value.path == path


def test_validation_error_without_a_path_reads_well():
    with pytest.raises(ConfigError) as caught:
        parse_config({"plugins": {"enabled": "maybe"}})
    assert str(caught.value).startswith("invalid config: plugins.enabled:")


@pytest.mark.parametrize("data", [["a"], "text", 3], ids=["list", "str", "int"])
def test_top_level_must_be_a_mapping(data):
    with pytest.raises(ConfigError, match="config must be a mapping at the top level"):
        parse_config(data)


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("tether.yaml", "plugins:\n  enabled: [true\n", ", line 2: "),  # where [ opened
        ("tether.json", '{"plugins":\n  {"enabled": }}', ", line 2: "),
        ("tether.toml", "[plugins\nenabled = true\n", "line 1"),
    ],
    ids=["yaml", "json", "toml"],
)
def test_syntax_errors_name_the_file_and_line(tmp_path, name, text, fragment):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"invalid {path.suffix[1:].upper()} in {path}")
    assert fragment in message


def test_unknown_format_and_missing_file(tmp_path):
    path = tmp_path / "tether.ini"
    path.write_text("[plugins]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown config format: tether\.ini"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.yaml")


# --------------------------------------------------------------------------- plugin config

SCHEMA = {
    "host": ConfigField(type="string", default="localhost"),
    "port": ConfigField(type="integer", default=8080),
    "ratio": ConfigField(type="float", default=1),
    "debug": ConfigField(type="boolean", default=False),
    "timeout": ConfigField(type="duration", default="30s"),
    "tags": ConfigField(type="array", default=["a"]),
    "limits": ConfigField(type="object"),
    "secret": ConfigField(type="string", required=True, secret=True),
}


def test_defaults_are_applied_and_durations_parsed():
    values = validate_plugin_config("web", SCHEMA, {"secret": "x"})
    assert values == {
        "host": "localhost",
        "port": 8080,
        "ratio": 1.0,
        "debug": False,
        "timeout": timedelta(seconds=30),
        "tags": ["a"],
        "secret": "x",
    }
    assert isinstance(values["ratio"], float)
    assert "limits" not in values  # no default, not given: left out


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("250ms", timedelta(milliseconds=250)),
        (90, timedelta(seconds=90)),
        (0.5, timedelta(milliseconds=500)),
    ],
    ids=str,
)
def test_given_durations_are_parsed(given, expected):
    values = validate_plugin_config("web", SCHEMA, {"secret": "x", "timeout": given})
    assert values["timeout"] == expected


def test_none_counts_as_not_given():
    values = validate_plugin_config("web", SCHEMA, {"secret": "x", "port": None})
    assert values["port"] == 8080


def test_required_key_missing():
    with pytest.raises(ConfigError) as caught:
        validate_plugin_config("web", SCHEMA, {})
    assert str(caught.value) == (
        "invalid configuration for plugin 'web': required configuration 'secret' is missing"
    )
    assert caught.value.plugin == "web"
    assert [p.key for p in caught.value.problems] == ["secret"]


def test_wrong_type_message_is_the_reference_one():
    with pytest.raises(ConfigError) as caught:
        validate_plugin_config("web", SCHEMA, {"secret": "x", "port": "80"})
    [problem] = caught.value.problems
    assert problem.key == "port"
    assert problem.message == "configuration 'port' must be an integer, got str"
    assert str(caught.value) == (
        "invalid configuration for plugin 'web': configuration 'port' must be an integer, got str"
    )


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("port", True, "configuration 'port' must be an integer, got bool"),
        ("port", 8.5, "configuration 'port' must be an integer, got float"),
        ("host", 1, "configuration 'host' must be a string, got int"),
        ("ratio", "1.5", "configuration 'ratio' must be a number, got str"),
        ("debug", "true", "configuration 'debug' must be a boolean, got str"),
        ("tags", "a,b", "configuration 'tags' must be an array, got str"),
        ("limits", [1], "configuration 'limits' must be an object, got list"),
    ],
    ids=lambda v: str(v)[:20],
)
def test_each_type_is_checked(key, value, message):
    with pytest.raises(ConfigError) as caught:
        validate_plugin_config("web", SCHEMA, {"secret": "x", key: value})
    assert [p.message for p in caught.value.problems] == [message]


def test_bad_duration_names_the_key():
    with pytest.raises(ConfigError) as caught:
        validate_plugin_config("web", SCHEMA, {"secret": "x", "timeout": "soon"})
    [problem] = caught.value.problems
    assert problem.message.startswith("configuration 'timeout' must be a duration: not a duration")


@pytest.mark.parametrize("value", ["99999999999999h", 1e20, float("inf")], ids=str)
def test_out_of_range_duration_is_a_config_error(value):
    with pytest.raises(ConfigError, match="configuration 'timeout' must be a duration"):
        validate_plugin_config("web", SCHEMA, {"secret": "x", "timeout": value})


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as caught:
        validate_plugin_config("web", SCHEMA, {"port": "80", "debug": 1})
    assert [p.key for p in caught.value.problems] == ["port", "debug", "secret"]
    assert str(caught.value).count("\n  - ") == 3


def test_unknown_keys_pass_through_an_open_schema_and_input_is_untouched():
    given = {"secret": "x", "extra": {"free": "form"}}
    values = validate_plugin_config("web", SCHEMA, given, additional_properties=True)
    assert values["extra"] == {"free": "form"}
    assert given == {"secret": "x", "extra": {"free": "form"}}


BOUNDED = {
    "workers": ConfigField(type="integer", minimum=1, maximum=64, default=4),
    "share": ConfigField(type="float", minimum=0, maximum=1),
    "retries": ConfigField(type="integer", minimum=0),
    "burst": ConfigField(type="float", maximum=10),
    "ttl": ConfigField(type="duration", minimum="1s", maximum="1h", default="30s"),
    "mode": ConfigField(type="string", choices=["fast", "safe"], default="safe"),
    "level": ConfigField(type="integer", choices=[1, 2, 3]),
}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("workers", 1),
        ("workers", 64),
        ("share", 0),
        ("share", 1.0),
        ("retries", 10**9),
        ("burst", -5),
        ("ttl", "1s"),
        ("ttl", 3600),
        ("mode", "fast"),
        ("level", 3),
    ],
    ids=str,
)
def test_values_within_the_constraints_are_accepted(key, value):
    values = validate_plugin_config("web", BOUNDED, {key: value})
    assert key in values


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("workers", 0, "configuration 'workers' must be from 1 to 64, got 0"),
        ("workers", 65, "configuration 'workers' must be from 1 to 64, got 65"),
        ("share", 1.5, "configuration 'share' must be from 0 to 1, got 1.5"),
        ("share", 2, "configuration 'share' must be from 0 to 1, got 2"),
        ("retries", -1, "configuration 'retries' must be at least 0, got -1"),
        ("burst", 10.5, "configuration 'burst' must be at most 10, got 10.5"),
        ("ttl", "500ms", "configuration 'ttl' must be from 1s to 1h, got 500ms"),
        ("ttl", "2h", "configuration 'ttl' must be from 1s to 1h, got 2h"),
        ("mode", "quick", "configuration 'mode' must be one of fast, safe, got 'quick'"),
        ("level", 4, "configuration 'level' must be one of 1, 2, 3, got 4"),
    ],
    ids=lambda v: str(v)[:20],
)
def test_a_value_outside_the_constraints_names_key_value_and_what_is_allowed(key, value, message):
    with pytest.raises(ConfigError) as caught:
        validate_plugin_config("web", BOUNDED, {key: value})
    assert [(p.key, p.message) for p in caught.value.problems] == [(key, message)]
    assert str(caught.value) == f"invalid configuration for plugin 'web': {message}"
    assert caught.value.plugin == "web"


def test_constraint_problems_come_with_the_type_problems_all_at_once():
    given = {"workers": 0, "share": "half", "mode": "quick", "ttl": "soon"}
    with pytest.raises(ConfigError) as caught:
        validate_plugin_config("web", BOUNDED, given)
    assert [p.key for p in caught.value.problems] == ["workers", "share", "ttl", "mode"]
    assert caught.value.problems[1].message == "configuration 'share' must be a number, got str"
    assert str(caught.value).count("\n  - ") == 4


# --------------------------------------------------------------------------- permissions


def _manifest(**permissions: bool) -> Manifest:
    return Manifest.model_validate(
        {
            "name": "auth",
            "version": "1.0.0",
            "description": "d",
            "author": "a",
            "entry": "m:P",
            "permissions": permissions,
        }
    )


def test_without_a_block_the_manifest_permissions_are_granted():
    assert grant_permissions(_manifest(cache=True, config=True), None) == {"cache", "config"}


def test_a_block_is_authoritative():
    manifest = _manifest(cache=True, config=True)
    assert grant_permissions(manifest, {"cache": True}) == {"cache"}
    assert grant_permissions(manifest, {"cache": True, "config": False}) == {"cache"}
    assert grant_permissions(manifest, {}) == frozenset()


def test_granting_an_undeclared_permission_is_a_mismatch(tmp_path):
    path = tmp_path / "plugin.yaml"
    with pytest.raises(PermissionMismatchError) as caught:
        grant_permissions(_manifest(cache=True), {"database": True}, path=path)
    error = caught.value
    assert str(error) == (
        "permission mismatch: plugin requests 'database' permission but manifest does not "
        "declare it"
    )
    assert isinstance(error, PermissionError)
    assert isinstance(error, ConfigError)
    assert isinstance(error, TetherError)
    assert (error.plugin, error.permission, error.path) == ("auth", "database", path)
    assert "declare 'database: true'" in error.hint


def test_denying_an_undeclared_permission_is_fine():
    assert grant_permissions(_manifest(cache=True), {"database": False}) == frozenset()


def test_unknown_permission_in_the_config():
    with pytest.raises(ConfigError, match="unknown permission: teleport"):
        grant_permissions(_manifest(), {"teleport": True})


# --------------------------------------------------------------------------- secrets


def test_secret_looking_keys_are_masked_at_any_depth():
    data = {
        "password": "hunter2",
        "db": {"passwd": "x", "port": 5432, "user": "bob"},
        "API_KEY": 12345,
        "api-key": "k",
        "private_key": "pem",
        "clients": [{"token": "t", "name": "web"}],
        "jwt_secret": "s",
        "credentials": "/etc/c",
        "token_ttl": "1h",
        "passenger": "ada",
    }
    assert mask_secrets(data) == {
        "password": MASK,
        "db": {"passwd": MASK, "port": 5432, "user": "bob"},
        "API_KEY": MASK,
        "api-key": MASK,
        "private_key": MASK,
        "clients": [{"token": MASK, "name": "web"}],
        "jwt_secret": MASK,
        "credentials": MASK,
        "token_ttl": "1h",
        "passenger": "ada",
    }
    assert data["password"] == "hunter2"  # a copy, not in place


def test_schema_secret_keys_are_masked():
    assert mask_secrets({"signing": "abc", "other": "x"}, secret_keys=frozenset({"signing"})) == {
        "signing": MASK,
        "other": "x",
    }


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://bob:hunter2@db:5432/app", "postgresql://bob:****@db:5432/app"),
        pytest.param(
            "redis://:pw@cache:6379/0",
            "redis://:****@cache:6379/0",
        ),
        ("postgresql://bob@db/app", "postgresql://bob@db/app"),
        (
            "see postgresql://a:b@h/x and mysql://c:d@h/y",
            "see postgresql://a:****@h/x and mysql://c:****@h/y",
        ),
    ],
    ids=["password", "no-user", "no-password", "two"],
)
def test_dsn_passwords_are_masked_keeping_the_rest(dsn, shown):
    assert mask_secrets({"database": {"dsn": dsn}}) == {"database": {"dsn": shown}}


def test_durations_are_shown_as_text():
    assert mask_secrets({"timeout": timedelta(seconds=90)}) == {"timeout": "0:01:30"}


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("250ms", timedelta(milliseconds=250)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1.5h", timedelta(hours=1, minutes=30)),
        (".5s", timedelta(milliseconds=500)),
        ("2d", timedelta(days=2)),
        ("100us", timedelta(microseconds=100)),
        ("100µs", timedelta(microseconds=100)),
        ("1500ns", timedelta(microseconds=2)),
        ("0", timedelta(0)),
        ("  2m ", timedelta(minutes=2)),
        (7, timedelta(seconds=7)),
        (2.5, timedelta(seconds=2.5)),
        (timedelta(minutes=1), timedelta(minutes=1)),
    ],
    ids=str,
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "not a duration"),
        ("   ", "not a duration"),
        ("1", "write a number and a unit"),
        ("-1s", "not a duration: '-1s'"),
        ("1h 30m", "not a duration"),
        ("1h30", "not a duration"),
        ("30S", "not a duration"),
        ("abc", "not a duration"),
        (True, "not a duration: True"),
        (None, "not a duration: None"),
        ([1], "not a duration: [1]"),
        (-1, "duration must not be negative, got -1"),
    ],
    ids=repr,
)
def test_parse_duration_rejects(value, fragment):
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(hours=25, milliseconds=5), "25h5ms"),
        (timedelta(microseconds=1500), "1500us"),
        (timedelta(days=2), "48h"),
    ],
    ids=str,
)
def test_format_duration(delta, text):
    assert format_duration(delta) == text


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3650)))
def test_format_then_parse_is_identity(delta):
    assert parse_duration(format_duration(delta)) == delta


@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [
        ("${PORT}", {"PORT": "8080"}, "8080"),
        ("${RATIO}", {"RATIO": "0.5"}, "0.5"),
        ("${DEBUG}", {"DEBUG": "true"}, "true"),
        ("${NAME}", {"NAME": "ada"}, "ada"),
        ("${EMPTY}", {"EMPTY": ""}, ""),
        ("port ${PORT}", {"PORT": "8080"}, "port 8080"),
        ("${A}${B}", {"A": "1", "B": "2"}, "12"),
        ("${LIST}", {"LIST": "[1, 2]"}, "[1, 2]"),
    ],
    ids=["int", "float", "bool", "text", "empty", "partial", "two-refs", "no-collections"],
)
def test_references_always_give_text(text, environ, expected):
    value = expand_env(text, environ=environ)
    assert value == expected
    assert isinstance(value, str)


def test_env_typed_values_satisfy_strict_fields(tmp_path):
    path = tmp_path / "app.yaml"
    path.write_text("plugins:\n  plugins:\n    - name: a\n      priority: ${PRIO}\n")
    config = load_config(path, environ={"PRIO": "7"})
    assert config.plugins.plugins[0].priority == 7
