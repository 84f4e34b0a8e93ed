"""Manifests: three formats, one model, and every problem reported at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import line_of
from tether._manifest import (
    CONFIG_TYPES,
    HOOK_TYPES,
    PERMISSIONS,
    Manifest,
    find_manifest,
    load_manifest,
    parse_manifest,
    validate_manifest_data,
)
from tether.errors import ManifestError, ManifestProblem, TetherError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "plugins"
BAD_VERSION = "invalid version format: must be semantic version (X.Y.Z)"
CONFIG_TYPE_MESSAGE = (
    "invalid config schema: type must be one of "
    "[string, integer, float, boolean, duration, array, object]"
)


def valid_data(**changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "demo",
        "version": "1.2.3",
        "description": "a demo plugin",
        "author": "tests",
        "entry": "demo:Plugin",
    }
    data.update(changes)
    return data


def write_yaml(directory: Path, data: object) -> Path:
    path = directory / "plugin.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def problems_of(error: ManifestError) -> dict[str, str]:
    return {p.field: p.message for p in error.problems}


# --------------------------------------------------------------------------- TOML writer
# The standard library reads TOML but does not write it; this writes the subset a
# manifest needs, every table inline.


def to_toml(data: dict[str, object]) -> str:
    return "".join(f"{json.dumps(key)} = {_toml_value(value)}\n" for key, value in data.items())


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + items + "}"
    message = f"cannot write {value!r} as TOML"
    raise TypeError(message)


def dump(data: dict[str, object], fmt: str) -> str:
    if fmt == "yaml":
        return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    if fmt == "json":
        return json.dumps(data, ensure_ascii=False)
    return to_toml(data)


def comparable(manifest: Manifest) -> str:
    """The manifest without ``source``, with types kept apart (True is not 1, 1 is not 1.0)."""
    return json.dumps(manifest.model_dump(mode="json"), sort_keys=True)


# --------------------------------------------------------------------------- formats

FULL = {
    "name": "auth",
    "version": "2.1.0-rc.1+build.7",
    "description": "Signs tokens: 'quoted' and \"double\" and unicode é.",
    "author": "tests <tests@example.org>",
    "entry": "auth_plugin:AuthPlugin",
    "framework": {"version": ">=0.1.0,<1.0.0"},
    "dependencies": [
        {"name": "cache", "version": "^1.0.0"},
        {"name": "logging", "version": ">=1.0.0", "optional": True},
    ],
    "permissions": {"cache": True, "database": False},
    "config": {
        "secret": {"type": "string", "required": True, "secret": True},
        "ttl": {"type": "duration", "default": "24h", "description": "token lifetime"},
        "ratio": {"type": "float", "default": 0.5},
        "retries": {"type": "integer", "default": 3},
        "verbose": {"type": "boolean", "default": False},
        "users": {"type": "array", "default": ["ada", "grace"]},
        "limits": {"type": "object", "default": {"rps": 10}},
    },
    "hooks": [{"type": "pre_request", "priority": 300}],
    "events": {"publishes": ["user.login"], "subscribes": ["user.*"]},
    "exports": [{"name": "AuthService", "description": "issue and verify"}],
    "isolation": "process",
    "provides": ["tokens"],
}


@pytest.mark.parametrize("fmt", ["yaml", "json", "toml"])
def test_each_format_parses_to_the_same_manifest(tmp_path, fmt):
    path = tmp_path / f"plugin.{fmt}"
    path.write_text(dump(FULL, fmt), encoding="utf-8")
    manifest = load_manifest(path)
    assert manifest.source == path
    assert comparable(manifest) == comparable(validate_manifest_data(FULL, path=Path("x")))
    assert manifest.permissions.granted == {"cache"}
    assert manifest.dependencies[1].optional is True
    assert manifest.entry_module == "auth_plugin"
    assert manifest.entry_attribute == "AuthPlugin"
    assert manifest.directory == tmp_path


def test_yml_suffix_is_yaml(tmp_path):
    path = tmp_path / "plugin.yml"
    path.write_text(dump(FULL, "yaml"), encoding="utf-8")
    assert load_manifest(tmp_path).name == "auth"


@pytest.mark.parametrize(
    ("directory", "name"),
    [
        ("auth-plugin", "plugin.toml"),
        ("cache-plugin", "plugin.yaml"),
        ("logging-plugin", "plugin.yaml"),
        ("user-plugin", "plugin.json"),
    ],
)
def test_example_manifests_load_from_their_directories(directory, name):
    manifest = load_manifest(EXAMPLES / directory)
    assert manifest.name == directory
    assert manifest.source == EXAMPLES / directory / name


def test_defaults_of_optional_sections():
    manifest = validate_manifest_data(valid_data(), path=Path("plugin.yaml"))
    assert manifest.framework.version == "*"
    assert manifest.dependencies == ()
    assert manifest.permissions.granted == frozenset()
    assert manifest.config == {}
    assert manifest.isolation == "inprocess"
    assert manifest.dependency("nothing") is None


# --------------------------------------------------------------------------- messages

REQUIRED = ["name", "version", "description", "author"]  # `entry` may be left to convention


@pytest.mark.parametrize("field", REQUIRED)
def test_missing_required_field(tmp_path, field):
    data = valid_data()
    del data[field]
    with pytest.raises(ManifestError) as caught:
        load_manifest(write_yaml(tmp_path, data))
    assert problems_of(caught.value) == {field: f"missing required field: {field}"}
    assert str(caught.value).startswith(
        f"invalid manifest {tmp_path / 'plugin.yaml'}: missing required field: {field}"
    )


CASES = [
    pytest.param(
        {"version": "1.0"},
        "version",
        f"{BAD_VERSION}, got '1.0': did you mean '1.0.0'?",
        id="version-two-parts",
    ),
    pytest.param(
        {"version": "v1.0.0"},
        "version",
        f"{BAD_VERSION}, got 'v1.0.0': did you mean '1.0.0'?",
        id="version-v-prefix",
    ),
    pytest.param(
        {"version": 1},
        "version",
        f"{BAD_VERSION}, got the number 1: did you mean '1.0.0'?",
        id="version-number",
    ),
    pytest.param(
        {"dependencies": [{"name": "cache", "version": ">>1.0.0"}]},
        "dependencies[0].version",
        "invalid dependency version constraint: >>1.0.0",
        id="dependency-constraint",
    ),
    pytest.param(
        {"permissions": {"database": True, "teleport": True}},
        "permissions.teleport",
        "unknown permission: teleport",
        id="unknown-permission",
    ),
    pytest.param(
        {"config": {"port": {"type": "int"}}},
        "config.port.type",
        CONFIG_TYPE_MESSAGE,
        id="config-type",
    ),
    pytest.param(
        {"config": {"port": {"default": 80}}},
        "config.port.type",
        "missing required field: config.port.type",
        id="config-type-missing",
    ),
    pytest.param(
        {"framework": {"version": "newest"}},
        "framework.version",
        "invalid framework version constraint: newest",
        id="framework-constraint",
    ),
    pytest.param(
        {"isolation": "thread"},
        "isolation",
        "invalid isolation: must be one of [inprocess, process]",
        id="isolation",
    ),
    pytest.param(
        {"dependencies": [{"name": "demo"}]},
        "",
        "plugin 'demo' cannot depend on itself",
        id="self-dependency",
    ),
    pytest.param(
        {"dependencies": [{"name": "cache"}, {"name": "cache", "version": "^2.0.0"}]},
        "dependencies",
        "dependency 'cache' is listed twice",
        id="duplicate-dependency",
    ),
]


@pytest.mark.parametrize(("changes", "field", "message"), CASES)
def test_reference_messages(tmp_path, changes, field, message):
    with pytest.raises(ManifestError) as caught:
        load_manifest(write_yaml(tmp_path, valid_data(**changes)))
    error = caught.value
    assert isinstance(error, TetherError)
    assert isinstance(error, ValueError)
    assert problems_of(error) == {field: message}
    assert error.path == tmp_path / "plugin.yaml"
    assert error.hint


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        pytest.param({"name": "has space"}, "name", "invalid plugin name", id="name"),
        pytest.param({"entry": "demo.Plugin"}, "entry", "write 'module:attribute'", id="entry"),
        pytest.param(
            {"entry": "pkg.demo.Plugin"},
            "entry",
            "(did you mean 'pkg.demo:Plugin'?)",
            id="entry-dot-for-colon",
        ),
        pytest.param(
            {"hooks": [{"type": "pre_request", "priority": "high"}]},
            "hooks[0].priority",
            "invalid value for hooks[0].priority",
            id="hook-priority",
        ),
        pytest.param(
            {"events": {"publishes": ["user created"]}},
            "events.publishes",
            "invalid event name 'user created'",
            id="event-name",
        ),
        pytest.param(
            {"permissions": {"database": "yes"}},
            "permissions.database",
            "invalid value for permissions.database",
            id="permission-not-bool",
        ),
        pytest.param(
            {"dependencies": [{"name": "cache", "optinal": True}]},
            "dependencies[0].optinal",
            "unknown field: dependencies[0].optinal",
            id="nested-unknown-field",
        ),
    ],
)
def test_other_field_problems_name_the_field(tmp_path, changes, field, fragment):
    with pytest.raises(ManifestError) as caught:
        load_manifest(write_yaml(tmp_path, valid_data(**changes)))
    [problem] = caught.value.problems
    assert problem.field == field
    assert fragment in problem.message


@pytest.mark.parametrize(
    ("typo", "meant"),
    [("nmae", "name"), ("dependecies", "dependencies"), ("permisions", "permissions")],
)
def test_unknown_top_level_field_suggests_the_close_one(typo, meant):
    data = valid_data(**{typo: "x"})
    with pytest.raises(ManifestError) as caught:
        validate_manifest_data(data, path=Path("plugin.json"))
    message = problems_of(caught.value)[typo]
    assert message == f"unknown field: {typo} (did you mean '{meant}'?)"


def test_unknown_field_far_from_any_has_no_suggestion():
    with pytest.raises(ManifestError) as caught:
        validate_manifest_data(valid_data(zzzzzz=1), path=Path("plugin.json"))
    assert problems_of(caught.value) == {"zzzzzz": "unknown field: zzzzzz"}


def test_every_problem_is_reported_at_once(tmp_path):
    data = valid_data(
        version="1.0",
        nmae="x",
        dependencies=[{"name": "cache", "version": ">>1"}],
        permissions={"teleport": True},
        config={"port": {"type": "str"}, "host": {"type": "string", "default": 5}},
    )
    del data["name"]
    with pytest.raises(ManifestError) as caught:
        load_manifest(write_yaml(tmp_path, data))
    assert problems_of(caught.value) == {
        "name": "missing required field: name",
        "version": f"{BAD_VERSION}, got '1.0': did you mean '1.0.0'?",
        "nmae": "unknown field: nmae (did you mean 'name'?)",
        "dependencies[0].version": "invalid dependency version constraint: >>1",
        "permissions.teleport": "unknown permission: teleport",
        "config.port.type": CONFIG_TYPE_MESSAGE,
        "config.host": "invalid config schema: default must be a string, got int",
    }
    text = str(caught.value)
    assert "(and 6 more)" in text
    assert all(str(p) in text for p in caught.value.problems)


YAML_WITH_PROBLEMS = """\
name: demo
version: "1.0"
description: d
author: a
entry: demo:Plugin
dependencies:
  - name: cache
  - name: store
    version: ">>2"
permissions:
  cache: true
  teleport: true
config:
  port:
    type: int
"""


def test_yaml_problems_carry_file_and_line(tmp_path):
    path = tmp_path / "plugin.yaml"
    path.write_text(YAML_WITH_PROBLEMS, encoding="utf-8")
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    lines = {p.field: p.line for p in caught.value.problems}
    assert lines == {
        "version": 2,
        "dependencies[1].version": 9,
        "permissions.teleport": 12,
        "config.port.type": 15,
    }
    assert [p.line for p in caught.value.problems] == [2, 9, 12, 15]
    assert all(p.path == path for p in caught.value.problems)
    assert str(caught.value.problems[1]) == (
        f"{path}:9 [dependencies[1].version]: invalid dependency version constraint: >>2"
    )


def test_missing_field_in_yaml_has_no_line_and_sorts_last(tmp_path):
    path = tmp_path / "plugin.yaml"
    path.write_text("version: '1.0'\ndescription: d\nauthor: a\nentry: m:P\n", encoding="utf-8")
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    assert [(p.field, p.line) for p in caught.value.problems] == [("version", 1), ("name", None)]
    assert str(caught.value.problems[1]) == f"{path} [name]: missing required field: name"


def test_json_and_toml_problems_have_lines(tmp_path):
    data = valid_data(version="1.0")
    for fmt, key in (("json", '"version"'), ("toml", '"version" =')):
        path = tmp_path / f"plugin.{fmt}"
        path.write_text(json.dumps(data, indent=2) if fmt == "json" else dump(data, fmt))
        with pytest.raises(ManifestError) as caught:
            load_manifest(path)
        [problem] = caught.value.problems
        line = line_of(path, key)
        assert (problem.path, problem.field, problem.line) == (path, "version", line)


# --------------------------------------------------------------------------- defaults


@pytest.mark.parametrize(
    ("kind", "default", "message"),
    [
        ("string", 5, "invalid config schema: default must be a string, got int"),
        ("integer", "80", "invalid config schema: default must be an integer, got str"),
        ("integer", True, "invalid config schema: default must be an integer, got bool"),
        ("integer", 1.5, "invalid config schema: default must be an integer, got float"),
        ("float", "fast", "invalid config schema: default must be a number, got str"),
        ("boolean", "yes", "invalid config schema: default must be a boolean, got str"),
        ("array", "a,b", "invalid config schema: default must be an array, got str"),
        ("object", [1], "invalid config schema: default must be an object, got list"),
    ],
    ids=str,
)
def test_default_must_match_the_type(kind, default, message):
    data = valid_data(config={"key": {"type": kind, "default": default}})
    with pytest.raises(ManifestError) as caught:
        validate_manifest_data(data, path=Path("plugin.json"))
    assert problems_of(caught.value) == {"config.key": message}


def test_duration_default_must_parse():
    data = valid_data(config={"timeout": {"type": "duration", "default": "soon"}})
    with pytest.raises(ManifestError) as caught:
        validate_manifest_data(data, path=Path("plugin.json"))
    message = problems_of(caught.value)["config.timeout"]
    assert message.startswith("invalid config schema: default not a duration: 'soon'")


def test_out_of_range_duration_default_is_a_manifest_problem():
    data = valid_data(config={"timeout": {"type": "duration", "default": "99999999999999h"}})
    with pytest.raises(ManifestError) as caught:
        validate_manifest_data(data, path=Path("plugin.json"))
    assert "config.timeout" in problems_of(caught.value)


@pytest.mark.parametrize(
    ("kind", "default"),
    [
        ("string", "x"),
        ("integer", 0),
        ("float", 1),
        ("float", 2.5),
        ("boolean", False),
        ("duration", "1h30m"),
        ("duration", 30),
        ("array", []),
        ("object", {}),
    ],
    ids=str,
)
def test_default_of_the_right_type_is_kept(kind, default):
    data = valid_data(config={"key": {"type": kind, "default": default}})
    manifest = validate_manifest_data(data, path=Path("plugin.json"))
    assert manifest.config["key"].default == default


# --------------------------------------------------------------------------- constraints


@pytest.mark.parametrize(
    ("spec", "allowed"),
    [
        ({"type": "integer", "minimum": 1}, "at least 1"),
        ({"type": "integer", "maximum": 9, "default": 9}, "at most 9"),
        ({"type": "float", "minimum": 0, "maximum": 1, "default": 0.5}, "from 0 to 1"),
        ({"type": "float", "minimum": 0.25}, "at least 0.25"),
        ({"type": "duration", "minimum": "1s", "maximum": "1h", "default": "30m"}, "from 1s to 1h"),
        ({"type": "duration", "minimum": 90}, "at least 1m30s"),
        (
            {"type": "string", "choices": ["hnsw", "ivfflat"], "default": "hnsw"},
            "one of hnsw, ivfflat",
        ),
        ({"type": "integer", "choices": [1, 2, 4]}, "one of 1, 2, 4"),
        ({"type": "float", "choices": [0.5, 1]}, "one of 0.5, 1"),
        ({"type": "integer", "minimum": 3, "maximum": 3, "default": 3}, "from 3 to 3"),
        ({"type": "string"}, ""),
    ],
    ids=lambda v: v if isinstance(v, str) else v["type"],
)
def test_constraints_are_kept_and_said_in_words(spec, allowed):
    manifest = validate_manifest_data(valid_data(config={"key": spec}), path=Path("plugin.json"))
    assert manifest.config["key"].allowed == allowed


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "integer", "minimum": "1"}, "minimum must be an integer, got str"),
        ({"type": "integer", "maximum": 2.5}, "maximum must be an integer, got float"),
        ({"type": "integer", "minimum": True}, "minimum must be an integer, got bool"),
        ({"type": "float", "maximum": "1"}, "maximum must be a number, got str"),
        ({"type": "float", "maximum": float("nan")}, "maximum must be a finite number, got nan"),
        ({"type": "duration", "minimum": "soon"}, "minimum not a duration: 'soon'"),
        ({"type": "integer", "minimum": 5, "maximum": 1}, "minimum 5 is above maximum 1"),
        ({"type": "duration", "minimum": "1h", "maximum": "1m"}, "minimum 1h is above maximum 1m"),
        ({"type": "integer", "minimum": 1, "default": 0}, "default must be at least 1, got 0"),
        ({"type": "float", "maximum": 1, "default": 1.5}, "default must be at most 1, got 1.5"),
        (
            {"type": "duration", "minimum": "1s", "maximum": "1m", "default": "2m"},
            "default must be from 1s to 1m, got 2m",
        ),
        (
            {"type": "string", "choices": ["a", "b"], "default": "c"},
            "default must be one of a, b, got 'c'",
        ),
        (
            {"type": "string", "minimum": 1},
            "minimum and maximum apply to integer, float and duration keys, not string",
        ),
        (
            {"type": "boolean", "choices": [True]},
            "choices apply to string, integer and float keys, not boolean",
        ),
        ({"type": "string", "choices": []}, "choices must list at least one value"),
        ({"type": "integer", "choices": [1, "2"]}, "choice '2' must be an integer"),
        ({"type": "string", "choices": ["a", "a"]}, "choice 'a' is listed twice"),
        (
            {"type": "integer", "choices": [1, 2], "minimum": 1},
            "give choices or minimum/maximum, not both",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else v["type"],
)
def test_a_broken_constraint_is_a_manifest_problem(spec, message):
    data = valid_data(config={"key": spec})
    with pytest.raises(ManifestError) as caught:
        validate_manifest_data(data, path=Path("plugin.json"))
    assert problems_of(caught.value)["config.key"].startswith(f"invalid config schema: {message}")


def test_constraint_problems_carry_the_line_and_come_all_at_once(tmp_path):
    path = tmp_path / "plugin.yaml"
    path.write_text(
        "name: demo\nversion: 1.0.0\ndescription: d\nauthor: a\nentry: demo:Plugin\n"
        "config:\n"
        "  top_k: {type: integer, minimum: 10, maximum: 1, default: 5}\n"
        "  index: {type: string, choices: [hnsw, 3, hnsw]}\n",
        encoding="utf-8",
    )
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    assert [(p.field, p.line) for p in caught.value.problems] == [
        ("config.top_k", 7),
        ("config.index", 8),
    ]
    assert caught.value.problems[1].message == (
        "invalid config schema: choice 3 must be a string; choice 'hnsw' is listed twice"
    )


# --------------------------------------------------------------------------- files


@pytest.mark.parametrize(
    ("name", "text", "line", "fragment"),
    [
        ("plugin.yaml", "name: demo\nversion: [1\n", 2, "invalid YAML"),  # where [ opened
        ("plugin.yaml", "name: demo\n  version: 1\n", 2, "invalid YAML"),
        ("plugin.json", '{"name": "demo",\n "version": }', 2, "invalid JSON"),
        ("plugin.toml", 'name = "demo"\nversion = \n', 2, "invalid TOML"),
    ],
    ids=["yaml-flow", "yaml-indent", "json", "toml"],
)
def test_syntax_errors_name_the_file_and_line(tmp_path, name, text, line, fragment):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    [problem] = caught.value.problems
    assert caught.value.path == path
    assert str(path) in str(caught.value)
    assert problem.message.startswith(fragment)
    assert problem.line == line
    if line is None:  # tomllib puts the position in its message only
        assert "line 2" in problem.message


@pytest.mark.parametrize(
    ("text", "found"), [("", "an empty file"), ("- a\n- b\n", "list"), ("7\n", "int")]
)
def test_manifest_must_be_a_mapping(tmp_path, text, found):
    path = tmp_path / "plugin.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    assert problems_of(caught.value) == {"": f"a manifest must be a mapping of fields, got {found}"}


def test_directory_without_manifest(tmp_path):
    with pytest.raises(ManifestError) as caught:
        load_manifest(tmp_path)
    assert f"no manifest in {tmp_path}" in str(caught.value)


def test_directory_with_two_manifests(tmp_path):
    (tmp_path / "plugin.yaml").write_text(dump(valid_data(), "yaml"), encoding="utf-8")
    (tmp_path / "plugin.json").write_text(dump(valid_data(), "json"), encoding="utf-8")
    with pytest.raises(ManifestError) as caught:
        find_manifest(tmp_path)
    assert "more than one manifest" in str(caught.value)
    assert "plugin.yaml, plugin.json" in str(caught.value)


def test_unknown_suffix(tmp_path):
    path = tmp_path / "plugin.ini"
    path.write_text("name=demo\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="unknown manifest format"):
        load_manifest(path)


def test_missing_file_and_non_utf8_file(tmp_path):
    with pytest.raises(ManifestError, match="cannot read"):
        load_manifest(tmp_path / "plugin.yaml.missing.yaml")
    path = tmp_path / "plugin.yaml"
    path.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(ManifestError, match="not UTF-8"):
        load_manifest(path)


def test_problem_without_line_or_field_prints_the_path():
    problem = ManifestProblem(Path("p.toml"), "", "broken")
    assert str(problem) == "p.toml: broken"


# --------------------------------------------------------------------------- round trip

_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=24)
_IDENT = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
_NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)
_NUM = st.integers(min_value=0, max_value=10_000).map(str)
_VERSIONS = st.builds(
    lambda major, minor, patch, pre, build: f"{major}.{minor}.{patch}{pre}{build}",
    _NUM,
    _NUM,
    _NUM,
    st.sampled_from(["", "-alpha", "-rc.1", "-0.3.7", "-x-y.z"]),
    st.sampled_from(["", "+build.5", "+001"]),
)
_CONSTRAINTS = st.sampled_from(
    ["*", ">=1.0.0", "^1.2.0", "~0.3.1", ">=1.0.0,<2.0.0", "1.x", "==2.0.0", ">=1.0 || ^3.1"]
)
_INTS = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_FLOATS = st.floats(allow_nan=False, allow_infinity=False)
_SCALARS = st.one_of(_INTS, _TEXT, st.booleans(), _FLOATS)
_DEFAULTS = {
    "string": _TEXT,
    "integer": _INTS,
    "float": st.one_of(_FLOATS, _INTS),
    "boolean": st.booleans(),
    "duration": st.sampled_from(["30s", "250ms", "1h30m", "0", 5, 1.5]),
    "array": st.lists(_SCALARS, max_size=4),
    "object": st.dictionaries(_IDENT, _SCALARS, max_size=3),
}


@st.composite
def _config_fields(draw: st.DrawFn) -> dict[str, object]:
    kind = draw(st.sampled_from(CONFIG_TYPES))
    optional = {
        "required": st.booleans(),
        "default": _DEFAULTS[kind],
        "description": _TEXT,
        "secret": st.booleans(),
    }
    field = draw(st.fixed_dictionaries({"type": st.just(kind)}, optional=optional))
    if field.get("required") and "default" in field:
        del field["default"]  # a required key with a default is itself a manifest error
    return field


@st.composite
def manifests(draw: st.DrawFn) -> dict[str, object]:
    name = draw(_NAMES)
    dependency_names = draw(st.lists(_NAMES.filter(lambda n: n != name), max_size=3, unique=True))
    dependencies = [
        draw(
            st.fixed_dictionaries(
                {"name": st.just(dep)},
                optional={"version": _CONSTRAINTS, "optional": st.booleans()},
            )
        )
        for dep in dependency_names
    ]
    optional = {
        "framework": st.fixed_dictionaries({}, optional={"version": _CONSTRAINTS}),
        "dependencies": st.just(dependencies),
        "permissions": st.dictionaries(st.sampled_from(PERMISSIONS), st.booleans()),
        "config": st.dictionaries(_IDENT, _config_fields(), max_size=3),
        "hooks": st.lists(
            st.fixed_dictionaries(
                {"type": st.sampled_from(HOOK_TYPES)}, optional={"priority": _INTS}
            ),
            max_size=2,
        ),
        "events": st.fixed_dictionaries(
            {},
            optional={
                "publishes": st.lists(st.from_regex(r"[a-z]{1,8}\.[a-z]{1,8}", fullmatch=True)),
                "subscribes": st.lists(st.sampled_from(["user.*", "*", "order.paid"])),
            },
        ),
        "exports": st.lists(
            st.fixed_dictionaries({"name": _IDENT}, optional={"description": _TEXT}), max_size=2
        ),
        "isolation": st.sampled_from(["inprocess", "process"]),
        "provides": st.lists(_TEXT, max_size=2),
    }
    required = {
        "name": st.just(name),
        "version": _VERSIONS,
        "description": _TEXT,
        "author": _TEXT,
        "entry": st.from_regex(
            r"[a-z_][a-z0-9_]{0,8}(\.[a-z_]{1,5})?:[A-Z][A-Za-z]{0,8}", fullmatch=True
        ),
    }
    return draw(st.fixed_dictionaries(required, optional=optional))


@pytest.mark.parametrize("fmt", ["yaml", "json", "toml"])
@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(data=manifests())
def test_dump_then_parse_is_identity(fmt, data):
    expected = validate_manifest_data(data, path=Path("generated"))
    path = Path(f"plugin.{fmt}")
    parsed = parse_manifest(dump(data, fmt), fmt=fmt, path=path)
    assert parsed.source == path
    assert comparable(parsed) == comparable(expected)


def test_manifest_is_frozen():
    manifest = validate_manifest_data(valid_data(), path=Path("plugin.json"))
    with pytest.raises(ValueError, match="frozen"):
        manifest.name = "other"  # type: ignore[misc]


def test_name_must_start_with_a_letter_or_digit():
    with pytest.raises(ManifestError) as caught:
        validate_manifest_data(valid_data(name="-leading"), path=Path("plugin.json"))
    assert "starting with a letter or digit" in problems_of(caught.value)["name"]
