"""Hostile manifests, configs and search paths: each is a clear error for its file, never
another exception, never a hang, and every other plugin still loads.

Every case is small (the largest file is the 1 MiB size limit plus one byte) and
writes only under tmp_path. Reads that could block (FIFOs) run in a thread that the
test releases itself if the read ever did block; nothing measures time.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import line_of
from tether import TetherConfig, load_config, load_manifest, validate_plugin_config
from tether._discovery import IndexCache, SearchPath, default_search_paths, discover
from tether._documents import MAX_BYTES
from tether._expansion import expand_env
from tether._manifest import ConfigField
from tether.cli import cli
from tether.errors import ConfigError, EnvVarError, ManifestError, TetherError

GOOD = "name: {name}\nversion: 1.0.0\ndescription: d\nauthor: a\nentry: {module}:Plugin\n"
FIELDS = {"version": "1.0.0", "description": "d", "author": "a", "entry": "m:Plugin"}
fast = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


def good_yaml(name: str = "good") -> str:
    return GOOD.format(name=name, module=name.replace("-", "_"))


def billion_laughs(levels: int = 9) -> str:
    """Ten lists of ten aliases each, nine deep: under 1 KB, a billion strings if expanded."""
    lines = ["a0: &a0 [" + ", ".join(["lol"] * 10) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def finishes(call: Callable[[], object], release: Path | None = None) -> object:
    """``call()``'s result (or the exception it raised), from a thread; if it ever blocks
    on the FIFO ``release``, the FIFO is opened for writing so the thread ends, and the
    test fails."""
    outcome: list[object] = []

    def target() -> None:
        try:
            outcome.append(call())
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(30)
    if thread.is_alive() and release is not None:
        fd = os.open(release, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        thread.join(30)
        pytest.fail(f"reading {release} blocked")
    assert outcome, "the call did not finish"
    return outcome[0]


# --------------------------------------------------------------------------- bad manifests

MANIFEST_CASES = [
    (
        "int400.json",
        json.dumps(FIELDS | {"name": "x"})[:-1] + ', "n": ' + "9" * 400 + "}",
        "at most 20 digits",
    ),
    ("int400.yaml", good_yaml() + "timeouts: {call: " + "9" * 400 + "}\n", "at most 20 digits"),
    ("int5000.yaml", good_yaml() + "x: " + "9" * 5000 + "\n", "at most 20 digits"),
    ("int400.toml", 'name = "x"\n[timeouts]\ncall = ' + "9" * 400 + "\n", "at most 20 digits"),
    ("deep.json", "[" * 100_000 + "]" * 100_000, "nested more than 64 deep"),
    ("deep.toml", "a = " + "[" * 5000 + "]" * 5000 + "\n", "nested more than 64 deep"),
    ("deepflow.yaml", "a: " + "[" * 200 + "]" * 200 + "\n", "nested more than 64 deep"),
    ("deepblock.yaml", "- " * 100 + "x\n", "nested more than 64 deep"),
    (
        "surrogate.json",
        json.dumps(FIELDS | {"name": "x", "description": "\ud800"}),
        "lone surrogate",
    ),
    ("surrogatekey.json", '{"\\udfff": 1}', "lone surrogate"),
    ("laughs.yaml", billion_laughs(), "more than 100,000 values"),
    ("cycle.yaml", "a: &a [1, *a]\n", "an alias refers to a mapping or list it is part of"),
    ("date.yaml", good_yaml() + "when: 2001-13-45\n", "invalid date '2001-13-45'"),
    ("binint.yaml", good_yaml() + "x: 0b_\n", "invalid integer '0b_'"),
    ("nan.json", '{"timeouts": {"call": NaN}}', "NaN is not a JSON number"),
    ("binary.yaml", "\x00\x01\x02", "invalid YAML"),
    ("latin1.yaml", b"name: caf\xe9\n", "not UTF-8 text (byte 0xe9 on line 1)"),
    ("empty.yaml", "", "got an empty file"),
    ("twodocs.yaml", good_yaml() + "---\n" + good_yaml(), "expected a single document"),
]


@pytest.mark.parametrize(
    ("name", "content", "fragment"), MANIFEST_CASES, ids=[c[0] for c in MANIFEST_CASES]
)
def test_a_bad_manifest_is_a_manifest_error_naming_the_file(tmp_path, name, content, fragment):
    path = tmp_path / f"plugin.{name.rsplit('.', 1)[1]}"
    data = content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass")
    path.write_bytes(data)
    with pytest.raises(ManifestError) as caught:
        load_manifest(tmp_path)
    assert caught.value.path == path
    assert fragment in str(caught.value)
    assert all(problem.path == path for problem in caught.value.problems)


@pytest.mark.parametrize(
    ("fmt", "text", "lines", "key"),
    [
        ("yaml", good_yaml() + "name: other\n", (1, 6), "name"),
        ("yaml", good_yaml() + "timeouts:\n  call: 1s\n  call: 2s\n", (7, 8), "timeouts.call"),
        (
            "yaml",
            good_yaml() + "permissions: {cache: true, cache: false}\n",
            (6, 6),
            "permissions.cache",
        ),
        ("json", '{\n "name": "a",\n "version": "1.0.0",\n "name": "b"\n}', (2, 4), "name"),
        (
            "json",
            '{"events": {\n "publishes": [],\n "publishes": ["x"]}}',
            (2, 3),
            "events.publishes",
        ),
    ],
    ids=["yaml-top", "yaml-nested", "yaml-flow", "json-top", "json-nested"],
)
def test_duplicate_keys_name_both_lines(tmp_path, fmt, text, lines, key):
    path = tmp_path / f"plugin.{fmt}"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    [problem] = caught.value.problems
    assert f"duplicate key '{key}' on lines {lines[0]} and {lines[1]}" in problem.message
    assert problem.line == lines[1]


def test_toml_refuses_a_table_given_twice(tmp_path):
    path = tmp_path / "plugin.toml"
    path.write_text("[permissions]\ncache = true\n[permissions]\nconfig = true\n")
    with pytest.raises(ManifestError, match="invalid TOML") as caught:
        load_manifest(path)
    assert caught.value.problems[0].line == 3


def test_merge_keys_may_override_what_they_merge(tmp_path):
    path = tmp_path / "plugin.yaml"
    path.write_text(good_yaml() + "x: &base {a: 1, b: 2}\ny: {<<: *base, a: 3}\n")
    with pytest.raises(ManifestError) as caught:  # unknown fields, but no duplicate key
        load_manifest(path)
    assert "duplicate" not in str(caught.value)
    assert [p.message for p in caught.value.problems] == ["unknown field: x", "unknown field: y"]


def test_a_billion_laughs_line_points_at_the_alias_that_overflows(tmp_path):
    path = tmp_path / "plugin.yaml"
    path.write_text(billion_laughs())
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    assert len(path.read_bytes()) < 1024
    assert caught.value.problems[0].line == 5  # a4 stands for 111,111 values


def test_aliases_within_the_bound_are_read_and_lines_stay_at_their_anchors(tmp_path):
    path = tmp_path / "plugin.yaml"
    path.write_text(
        good_yaml() + "config:\n  a: &field {type: integer, default: x}\n  b: *field\n  c: *field\n"
    )
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    lines = {p.field: p.line for p in caught.value.problems}
    assert lines == {"config.a": 7, "config.b": 8, "config.c": 9}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "good\n"),
        ("name", "go\x1bod"),
        ("entry", "m:Plugin\n"),
        ("entry", "m:Plu\tgin"),
        ("dependencies", [{"name": "other\n"}]),
        ("events", {"publishes": ["user.created\n"]}),
        ("exports", [{"name": "svc\n"}]),
        ("hooks", [{"type": "pre_request\n"}]),
    ],
    ids=["name-newline", "name-escape", "entry-newline", "entry-tab", "dependency",
         "event", "export", "hook"],
)  # fmt: skip
def test_names_and_entries_refuse_trailing_newlines_and_control_characters(tmp_path, field, value):
    path = tmp_path / "plugin.json"
    path.write_text(json.dumps(FIELDS | {"name": "good", field: value}))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    assert caught.value.problems[0].field.startswith(field)


def test_an_unknown_field_with_control_characters_is_shown_escaped(tmp_path):
    path = tmp_path / "plugin.json"
    path.write_text(json.dumps(FIELDS | {"name": "good", "x\x1b[2J": 1}))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    [problem] = caught.value.problems
    assert "\x1b" not in str(problem)
    assert "x\\x1b[2J" in problem.message


def test_problems_are_listed_up_to_a_bound(tmp_path):
    path = tmp_path / "plugin.json"
    path.write_text(json.dumps(FIELDS | {"name": "good"} | {f"k{i}": i for i in range(500)}))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    assert len(caught.value.problems) == 51
    assert caught.value.problems[-1].message == "450 more problem(s) not listed"


# --------------------------------------------------------------------------- odd files


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "plugin.yaml"
    os.mkfifo(fifo)
    outcome = finishes(lambda: load_manifest(tmp_path), release=fifo)
    assert isinstance(outcome, ManifestError)
    assert "not a regular file (a FIFO)" in str(outcome)


def test_a_symlink_to_dev_zero_is_refused(tmp_path):
    (tmp_path / "plugin.yaml").symlink_to("/dev/zero")
    with pytest.raises(ManifestError, match=r"not a regular file \(a character device\)"):
        load_manifest(tmp_path / "plugin.yaml")


def test_a_directory_named_like_a_manifest_is_refused(tmp_path):
    (tmp_path / "plugin.yaml").mkdir()
    with pytest.raises(ManifestError, match=r"not a regular file \(a directory\)"):
        load_manifest(tmp_path)


def test_a_file_over_the_size_limit_is_refused(tmp_path):
    path = tmp_path / "plugin.yaml"
    path.write_bytes(good_yaml().encode() + b"#" * MAX_BYTES)
    with pytest.raises(ManifestError, match=r"too large: [\d,]+ bytes, at most 1 MiB is read"):
        load_manifest(path)


def test_a_file_at_the_size_limit_is_read(tmp_path):
    path = tmp_path / "plugin.yaml"
    text = good_yaml().encode()
    path.write_bytes(text + b"#" * (MAX_BYTES - len(text)))
    assert load_manifest(path).name == "good"


@pytest.mark.parametrize(
    "path", ["x" * 5000 + "/plugin.yaml", "a\x00b/plugin.yaml"], ids=["too-long", "nul-byte"]
)
def test_an_unusable_path_is_a_manifest_error(path):
    with pytest.raises(ManifestError, match="cannot read"):
        load_manifest(Path(path))


# --------------------------------------------------------------------------- discovery


def test_one_bad_plugin_of_each_kind_beside_good_ones(tmp_path):
    root = tmp_path / "plugins"
    for name in ("alpha", "omega"):
        (root / name).mkdir(parents=True)
        (root / name / "plugin.yaml").write_text(good_yaml(name))
    bad = {}
    for index, (name, content, fragment) in enumerate(MANIFEST_CASES):
        directory = root / f"bad{index:02d}"
        directory.mkdir()
        data = content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass")
        (directory / f"plugin.{name.rsplit('.', 1)[1]}").write_bytes(data)
        bad[str(directory)] = fragment
    os.mkfifo(root / "fifo-plugin.yaml.d")  # not a directory: skipped
    (root / "fifo").mkdir()
    os.mkfifo(root / "fifo" / "plugin.yaml")
    bad[str(root / "fifo")] = "not a regular file (a FIFO)"
    cache = IndexCache(tmp_path / "index.json")
    for _ in range(2):  # cold, then from the index cache
        result = finishes(
            lambda: discover([SearchPath(root, "cli")], entry_points=False, cache=cache),
            release=root / "fifo" / "plugin.yaml",
        )
        assert isinstance(result, object)
        assert result.names == ("alpha", "omega")
        found = {i.location: str(i.error) for i in result.invalid}
        assert found.keys() == bad.keys()
        for location, fragment in bad.items():
            assert fragment in found[location]
    assert result.cache_hits == len(bad) - 1 + 2  # all but the FIFO came from the cache


def test_odd_search_paths_are_reported_not_raised(tmp_path):
    plugins = tmp_path / "plugins"
    (plugins / "good").mkdir(parents=True)
    (plugins / "good" / "plugin.yaml").write_text(good_yaml())
    (tmp_path / "file").write_text("")
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    odd = [Path("x" * 5000), Path("a\x00b"), tmp_path / "file", loop, Path("/dev/zero")]
    paths = [SearchPath(p, "env") for p in odd] + [SearchPath(plugins, "cli")]
    result = discover(paths, entry_points=False)
    assert result.names == ("good",)
    errors = [str(s.error) for s in result.searched]
    assert "cannot search: File name too long" in errors[0]
    assert "cannot search: not a usable path" in errors[1]
    assert "embedded null byte" in errors[1]
    assert "not a directory" in errors[2]
    assert "cannot search: Too many levels of symbolic links" in errors[3]
    assert "not a directory" in errors[4]
    assert errors[5] == "None"


def test_cli_scan_with_an_overlong_and_an_undecodable_plugin_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "[bold]markup").write_text("")  # a file: could not search it
    undecodable = tmp_path / os.fsdecode(b"\xff\xfe-not-utf8")
    undecodable.write_text("")
    entries = ["y" * 5000, str(undecodable), "[bold]markup"]
    env = {"TETHER_PLUGIN_PATH": os.pathsep.join(entries)}
    result = run("plugins", "scan", env=env)
    assert result.exit_code == 0
    assert "cannot search: File name too long" in result.output
    assert (
        f"could not search {tmp_path}/\\udcff\\udcfe-not-utf8: cannot read: not a" in result.output
    )
    assert (
        f"could not search {tmp_path}/[bold]markup: cannot read: not a directory" in result.output
    )
    result = run("plugins", "list", env=env)
    assert result.exit_code == 0


def test_cli_lists_plugins_in_directories_with_undecodable_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    good = tmp_path / "plugins" / os.fsdecode(b"good-\xff")
    bad = tmp_path / "plugins" / os.fsdecode(b"bad-\xfe")
    for directory, text in ((good, good_yaml("good")), (bad, "name: [")):
        directory.mkdir(parents=True)
        (directory / "plugin.yaml").write_text(text)
    for command in (("plugins", "list"), ("plugins", "scan"), ("plugins", "list", "--json")):
        result = run(*command)
        assert result.exit_code == 0, result.output
    assert "good-\\udcff" in run("plugins", "scan").output
    assert "bad-\\udcfe/plugin.yaml:2: invalid YAML" in run("plugins", "scan").output


def test_cli_list_shows_markup_in_a_manifest_as_text(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plugins" / "odd").mkdir(parents=True)
    text = good_yaml("odd").replace("description: d", 'description: "[/] [bold]x"')
    (tmp_path / "plugins" / "odd" / "plugin.yaml").write_text(text)
    result = run("plugins", "list")
    assert result.exit_code == 0
    assert "[/] [bold]x" in result.output


def test_cli_validate_refuses_a_fifo_and_dev_zero(tmp_path):
    fifo = tmp_path / "plugin.yaml"
    os.mkfifo(fifo)
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    result = finishes(lambda: run("plugins", "validate", str(fifo), str(tmp_path / "zero.yaml")))
    assert isinstance(result, Result)
    assert result.exit_code == 1
    assert "not a regular file (a FIFO)" in result.output
    assert "not a regular file (a character device)" in result.output


def test_default_search_paths_keep_odd_entries_for_the_scan_to_report():
    paths = default_search_paths(environ={"TETHER_PLUGIN_PATH": "z" * 5000 + ":"})
    assert [p.origin for p in paths].count("env") == 1


# --------------------------------------------------------------------------- bad configs


CONFIG_CASES = [
    ("binary.yaml", bytes(range(256)), "cannot read config file"),
    ("binary.json", b"\x89PNG\r\n\x1a\n\x00\x00", "cannot read config file"),
    ("int400.yaml", b"plugins: {health_check_interval: " + b"9" * 400 + b"}", "at most 20 digits"),
    ("deep.json", b"[" * 100_000 + b"]" * 100_000, "nested more than 64 deep"),
    ("deep.toml", b"a = " + b"[" * 5000 + b"]" * 5000, "nested more than 64 deep"),
    ("laughs.yaml", billion_laughs().encode(), "more than 100,000 values"),
    ("surrogate.json", b'{"server": {"name": "\\ud800"}}', "lone surrogate"),
    ("dup.yaml", b"plugins:\n  plugins: [{name: a}]\nserver: {}\nplugins:\n  enabled: false\n",
     "duplicate key 'plugins' on lines 1 and 4"),
    ("dup.json", b'{"plugins": {},\n "plugins": {"enabled": false}}',
     "duplicate key 'plugins' on lines 1 and 2"),
    ("list.yaml", b"- a\n- b\n", "config must be a mapping at the top level, got list"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "content", "fragment"), CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES]
)
def test_a_bad_config_is_a_config_error(tmp_path, name, content, fragment):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.path == path
    assert fragment in str(caught.value)


def test_an_oversize_config_is_refused(tmp_path):
    path = tmp_path / "tether.yaml"
    path.write_bytes(b"#" * (MAX_BYTES + 1))
    with pytest.raises(ConfigError, match="too large"):
        load_config(path)


def test_a_fifo_config_is_refused_by_the_cli(tmp_path):
    fifo = tmp_path / "tether.yaml"
    os.mkfifo(fifo)
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    for config in (fifo, tmp_path / "zero.yaml"):
        result = finishes(lambda c=config: run("--config", str(c), "config", "validate"))
        assert isinstance(result, Result)
        assert result.exit_code == 1
        assert f"cannot read config file {config}: not a regular file" in result.output


def test_a_binary_config_through_the_cli_is_an_error_not_a_traceback(tmp_path):
    path = tmp_path / "tether.yaml"
    path.write_bytes(bytes(range(128, 256)))
    result = run("--config", str(path), "plugins", "list")
    assert result.exit_code == 1
    assert "Error: cannot read config file" in result.output


# --------------------------------------------------------------------------- ${VAR}


def config_with(tmp_path: Path, text: str, **environ: str) -> TetherConfig:
    path = tmp_path / "tether.yaml"
    path.write_text(text)
    return load_config(path, environ=environ)


def test_a_numeric_token_stays_a_string(tmp_path):
    config = config_with(
        tmp_path, 'admin: {token: "${TETHER_ADMIN_TOKEN}"}\n', TETHER_ADMIN_TOKEN="123456"
    )
    token = config.section("admin")["token"]
    assert token == "123456"
    assert type(token) is str
    assert yaml.safe_dump(config.section("admin")) == "token: '123456'\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [(t, True) for t in ("true", "TRUE", "yes", "On", "1", " true ")]
    + [(t, False) for t in ("false", "No", "OFF", "0")],
)
def test_booleans_accept_exactly_the_documented_words(tmp_path, text, expected):
    config = config_with(tmp_path, "plugins: {strict: '${STRICT}'}\n", STRICT=text)
    assert config.plugins.strict is expected


@pytest.mark.parametrize("text", ["maybe", "t", "y", "", "2", "truee"])
def test_other_words_are_not_booleans(tmp_path, text):
    with pytest.raises(ConfigError) as caught:
        config_with(tmp_path, "plugins:\n  strict: ${STRICT}\n", STRICT=text)
    message = str(caught.value)
    assert "plugins.strict: ${STRICT} gives" in message
    assert "true/false, yes/no, on/off or 1/0" in message


def test_fields_of_the_runtime_convert_by_their_type(tmp_path):
    config = config_with(
        tmp_path,
        "plugins:\n"
        "  error_threshold: {max_errors: '${M}', warn_at: '${W}', enabled: '${E}'}\n"
        "  plugins:\n"
        "    - name: a\n"
        "      priority: ${P}\n"
        "      enabled: ${E}\n"
        "      timeouts: {call: '${C}'}\n"
        "      permissions: {cache: '${K}'}\n"
        "events: {queue_size: '${Q}'}\n"
        "reload: {queue_timeout: '${C}'}\n",
        P=" -3 ", E="off", C="90", K="Yes", M="5", W="0.5", Q="10",
    )  # fmt: skip
    entry = config.plugins.plugins[0]
    assert (entry.priority, entry.enabled, entry.permissions) == (-3, False, {"cache": True})
    assert entry.timeouts is not None
    assert entry.timeouts.call == 90.0
    threshold = config.plugins.error_threshold
    assert threshold is not None
    assert (threshold.max_errors, threshold.warn_at, threshold.enabled) == (5, 0.5, False)
    assert (config.events.queue_size, config.reload.queue_timeout) == (10, 90.0)


@pytest.mark.parametrize(
    ("text", "seconds"), [("30", 30.0), ("0.5", 0.5), ("1h30m", 5400.0), (" 2m ", 120.0)]
)
def test_durations_take_text_or_seconds(tmp_path, text, seconds):
    config = config_with(tmp_path, "plugins: {health_check_interval: '${I}'}\n", I=text)
    assert config.plugins.health_check_interval == seconds


def test_a_value_that_does_not_convert_names_the_variable_and_the_field(tmp_path):
    with pytest.raises(ConfigError) as caught:
        config_with(
            tmp_path, "plugins:\n  plugins:\n    - name: a\n      priority: ${PRIO}\n", PRIO="high"
        )
    assert caught.value.problems[0].key == "plugins.plugins[0].priority"
    assert "${PRIO} gives 'high', which is not an integer" in str(caught.value)


def test_text_written_in_the_file_is_not_converted(tmp_path):
    with pytest.raises(ConfigError, match="valid integer"):
        config_with(tmp_path, "plugins:\n  plugins:\n    - name: a\n      priority: '7'\n")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("${X", "'${X' is not closed with '}'"),
        ("a ${A${B}} b", "a reference cannot hold another"),
        ("${A:-${B}}", "a reference cannot hold another"),
        ("${1X}", "'${1X}' is not a reference to a variable"),
        ("${}", "'${}' is not a reference to a variable"),
        ("${A B}", "is not a reference to a variable"),
    ],
    ids=["unterminated", "nested", "nested-default", "digit", "empty", "space"],
)
def test_malformed_references_are_errors(tmp_path, text, fragment):
    with pytest.raises(ConfigError) as caught:
        config_with(tmp_path, f"server: {{url: '{text}'}}\n", A="a", B="b", X="x")
    assert fragment in str(caught.value)
    assert "'server.url'" in str(caught.value)
    assert "$$" in str(caught.value.hint)


def test_a_variable_is_never_expanded_again(tmp_path):
    config = config_with(tmp_path, "database: {a: '${A}', b: '$${A}'}\n", A="${A}", B="x")
    assert config.section("database") == {"a": "${A}", "b": "${A}"}


def test_an_unset_variable_is_still_named():
    with pytest.raises(EnvVarError, match="'NOPE' is not set"):
        expand_env({"a": "${NOPE}"}, environ={})


def test_plugin_config_converts_by_the_schema():
    schema = {
        "port": ConfigField(type="integer"),
        "ratio": ConfigField(type="float"),
        "debug": ConfigField(type="boolean"),
        "wait": ConfigField(type="duration"),
        "token": ConfigField(type="string"),
    }
    env = {"P": "8080", "R": "0.25", "D": "yes", "W": "90", "T": "123456"}
    values = expand_env(
        {"port": "${P}", "ratio": "${R}", "debug": "${D}", "wait": "${W}", "token": "${T}",
         "free": ["${T}"]},
        environ=env,
    )  # fmt: skip
    result = validate_plugin_config("p", schema, values, additional_properties=True)
    assert result["port"] == 8080
    assert result["ratio"] == 0.25
    assert result["debug"] is True
    assert result["wait"].total_seconds() == 90
    assert result["token"] == "123456"
    assert type(result["token"]) is str
    assert type(result["free"][0]) is str
    yaml.safe_dump(result["free"])


def test_plugin_config_names_variable_and_key_and_hides_secrets():
    schema = {
        "port": ConfigField(type="integer"),
        "pin": ConfigField(type="integer", secret=True),
        "hosts": ConfigField(type="array"),
    }
    values = expand_env(
        {"port": "${PORT}", "pin": "${PIN}", "hosts": "${HOSTS}"},
        environ={"PORT": "eighty", "PIN": "s3cret", "HOSTS": "a,b"},
    )
    with pytest.raises(ConfigError) as caught:
        validate_plugin_config("p", schema, values)
    messages = [p.message for p in caught.value.problems]
    assert messages[0].startswith("configuration 'port': ${PORT} gives 'eighty'")
    assert "s3cret" not in str(caught.value)
    assert messages[1].startswith("configuration 'pin': ${PIN} gives a value that does not fit")
    assert "a variable gives text, never an array" in messages[2]


# --------------------------------------------------------------------------- one entry per plugin


def test_a_plugin_listed_twice_by_name_names_both_entries_and_lines(tmp_path):
    path = tmp_path / "tether.yaml"
    path.write_text(
        "plugins:\n  plugins:\n    - name: auth\n      priority: 1\n"
        "    - name: cache\n    - name: auth\n      priority: 2\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert (
        "plugin 'auth' is listed twice: plugins.plugins[0] (line 3) and plugins.plugins[2] (line 6)"
    ) in str(caught.value)
    assert caught.value.problems[0].key == "plugins.plugins[2]"


def test_a_plugin_listed_twice_by_path_in_json(tmp_path):
    path = tmp_path / "tether.json"
    entries = [{"path": "./plugins/a"}, {"path": "plugins/a/plugin.yaml"}]
    path.write_text(json.dumps({"plugins": {"plugins": entries}}, indent=1))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    first, second = line_of(path, "./plugins/a") - 1, line_of(path, "plugin.yaml") - 1
    assert (
        f"the plugin at plugins/a/plugin.yaml is listed twice: plugins.plugins[0] (line {first})"
        f" and plugins.plugins[1] (line {second})"
    ) in str(caught.value)


def test_cli_graph_and_validate_refuse_one_plugin_by_name_and_by_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plugins" / "auth").mkdir(parents=True)
    (tmp_path / "plugins" / "auth" / "plugin.yaml").write_text(good_yaml("auth"))
    (tmp_path / "tether.yaml").write_text(
        "plugins:\n  plugins:\n    - name: auth\n    - path: plugins/auth\n"
    )
    for command in (("plugins", "graph"), ("config", "validate")):
        result = run(*command)
        assert result.exit_code == 1, result.output
        assert (
            "plugin 'auth' is listed twice: plugins.plugins[0] (line 3) and "
            "plugins.plugins[1] (line 4)"
        ) in result.output


def test_the_manager_refuses_one_plugin_by_name_and_by_path(tmp_path, monkeypatch):
    """``serve`` and ``demo`` load through ``load_plugins_from_config``: a ConfigError
    naming both entries there too, before any plugin is imported."""
    import asyncio

    import tether

    monkeypatch.chdir(tmp_path)
    (tmp_path / "plugins" / "auth").mkdir(parents=True)
    (tmp_path / "plugins" / "auth" / "plugin.yaml").write_text(good_yaml("auth"))
    (tmp_path / "tether.yaml").write_text(
        "plugins:\n  plugins:\n    - name: auth\n    - path: plugins/auth\n"
    )

    async def main() -> None:
        async with tether.PluginManager(state_directory=tmp_path / "state") as manager:
            with pytest.raises(ConfigError, match=r"plugin 'auth' is listed twice"):
                await manager.load_plugins_from_config(tmp_path / "tether.yaml")
            assert manager.list_plugins() == []

    asyncio.run(main())


def test_a_version_with_a_400_digit_number_is_refused_by_the_rule(tmp_path):
    directory = tmp_path / "big"
    directory.mkdir()
    (directory / "plugin.yaml").write_text(
        good_yaml("big").replace("version: 1.0.0", "version: 1.0." + "9" * 400)
    )
    with pytest.raises(ManifestError, match="each number at most 20 digits"):
        load_manifest(directory)


@pytest.mark.parametrize("name", ["auth\n", "au\x07th", " auth", "a" * 65])
def test_a_config_entry_name_follows_the_plugin_name_rule(tmp_path, name):
    path = tmp_path / "tether.json"
    path.write_text(json.dumps({"plugins": {"plugins": [{"name": name}]}}))
    with pytest.raises(ConfigError, match=r"plugins\.plugins\[0\]\.name: invalid plugin name"):
        load_config(path)


# --------------------------------------------------------------------------- generated


YAML_CHARACTERS = list("{}[]:,-&*!|>'\"#%@ \n\t0129aeb.\\u$<?")
YAMLISH = st.text(alphabet=st.sampled_from(YAML_CHARACTERS), max_size=300)
VALID = good_yaml()


@st.composite
def mutated(draw: st.DrawFn) -> str:
    position = draw(st.integers(0, len(VALID)))
    inserted = draw(YAMLISH.filter(lambda t: len(t) < 40))
    return VALID[:position] + inserted + VALID[position:]


def _containers(inner: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    _containers,
    max_leaves=12,
)
TEXTS = (
    YAMLISH,
    mutated(),
    st.builds(lambda v: json.dumps(FIELDS | {"name": "x", "config": v}), JSON_VALUES),
)


def outcome_of(call: Callable[[], object]) -> object:
    try:
        return call()
    except Exception as exc:
        return exc


@pytest.mark.parametrize("fmt", ["yaml", "json", "toml"])
@fast
@given(content=st.one_of(st.binary(max_size=400), *(s.map(str.encode) for s in TEXTS)))
def test_any_bytes_as_a_manifest_give_a_manifest_or_a_manifest_error(
    tmp_path_factory, fmt, content
):
    directory = tmp_path_factory.mktemp("m", numbered=True)
    (directory / f"plugin.{fmt}").write_bytes(content)
    outcome = outcome_of(lambda: load_manifest(directory))
    if isinstance(outcome, Exception):
        assert isinstance(outcome, ManifestError)
        assert outcome.problems
        str(outcome).encode("utf-8")  # printable, whatever the file held
    result = discover([SearchPath(directory, "cli")], entry_points=False)
    assert len(result.plugins) + len(result.invalid) == 1


@pytest.mark.parametrize("fmt", ["yaml", "json", "toml"])
@fast
@given(content=st.one_of(st.binary(max_size=400), *(s.map(str.encode) for s in TEXTS)))
def test_any_bytes_as_a_config_give_a_config_or_a_tether_error(tmp_path_factory, fmt, content):
    path = tmp_path_factory.mktemp("c", numbered=True) / f"tether.{fmt}"
    path.write_bytes(content)
    outcome = outcome_of(lambda: load_config(path, environ={"A": "1"}))
    if isinstance(outcome, Exception):
        assert isinstance(outcome, TetherError)
        str(outcome).encode("utf-8")


@fast
@given(text=st.text(max_size=60), value=st.text(max_size=20))
def test_expansion_gives_text_or_a_config_error(text, value):
    try:
        result = expand_env(text, environ={"A": value, "B": "b"})
    except ConfigError:
        return
    assert isinstance(result, str)
    if "$" not in text:
        assert result == text
