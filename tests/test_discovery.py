"""Discovery: search paths, manifests in three formats, entry points, the index cache.

Every plugin here is real files in tmp_path. Plugins' code writes a marker file and
raises when imported, so any test would notice discovery importing one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import tether
from tether._discovery import (
    BUILTIN_PLUGIN_DIRECTORY,
    CACHE_FORMAT,
    DiscoveryResult,
    IndexCache,
    SearchPath,
    default_cache_path,
    default_search_paths,
    discover,
)
from tether._manifest import load_manifest
from tether.errors import ManifestError, PluginNameConflictError

HOUR_NS = 3600 * 10**9


# --------------------------------------------------------------------------- helpers


def _yaml(fields: dict[str, object]) -> str:
    return "".join(f"{key}: {json.dumps(value)}\n" for key, value in fields.items())


def _toml_value(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)


def _toml(fields: dict[str, object]) -> str:
    return "".join(f"{key} = {_toml_value(value)}\n" for key, value in fields.items())


def _fields(name: str, **extra: object) -> dict[str, object]:
    module = name.replace("-", "_")
    return {
        "name": name,
        "version": "1.0.0",
        "description": f"the {name} plugin",
        "author": "Ann Example",
        "entry": f"{module}:Plugin",
        **extra,
    }


def write_plugin(
    directory: Path,
    name: str,
    *,
    fmt: str = "yaml",
    marker: Path | None = None,
    **extra: object,
) -> Path:
    """A plugin directory with a manifest and a module that must never be imported."""
    directory.mkdir(parents=True, exist_ok=True)
    fields = _fields(name, **extra)
    text = {"yaml": _yaml, "json": json.dumps, "toml": _toml}[fmt](fields)
    (directory / f"plugin.{fmt}").write_text(text, encoding="utf-8")
    module = str(fields["entry"]).partition(":")[0]
    marker = marker or directory / "IMPORTED"
    (directory / f"{module}.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nraise RuntimeError('plugin code was imported')\n",
        encoding="utf-8",
    )
    return directory


def paths(*directories: Path, origin: str = "cli") -> list[SearchPath]:
    return [SearchPath(d, origin) for d in directories]


def scan(*directories: Path, cache: IndexCache | None = None) -> DiscoveryResult:
    return discover(paths(*directories), entry_points=False, cache=cache)


def backdate(*files: Path) -> None:
    """Move mtimes an hour back, out of the window where a same-size edit could hide."""
    for file in files:
        st = file.stat()
        os.utime(file, ns=(st.st_atime_ns, st.st_mtime_ns - HOUR_NS))


# --------------------------------------------------------------------------- search paths


def test_default_search_paths_are_in_the_documented_order(tmp_path: Path) -> None:
    home = tmp_path / "home"
    environ = {"TETHER_PLUGIN_PATH": f"/env/one::{tmp_path}/env-two:"}
    result = default_search_paths(
        cwd=tmp_path,
        home=home,
        environ=environ,
        plugin_paths=[Path("cli-dir"), Path("/abs/cli")],
        config_directories=[Path("from-config"), Path("/abs/config")],
    )
    assert [(p.origin, p.path) for p in result] == [
        ("cwd", tmp_path / "plugins"),
        ("user", home / ".tether" / "plugins"),
        ("system", Path("/usr/local/lib/tether/plugins")),
        ("env", Path("/env/one")),
        ("env", tmp_path / "env-two"),
        ("cli", tmp_path / "cli-dir"),
        ("cli", Path("/abs/cli")),
        ("config", tmp_path / "from-config"),
        ("config", Path("/abs/config")),
        ("builtin", BUILTIN_PLUGIN_DIRECTORY),
    ]


def test_default_search_paths_expand_home_and_drop_repeats(tmp_path: Path) -> None:
    home = tmp_path / "home"
    environ = {"TETHER_PLUGIN_PATH": "~/extra:plugins"}
    result = default_search_paths(cwd=tmp_path, home=home, environ=environ)
    assert [p.path for p in result][-2] == home / "extra"
    assert [p.origin for p in result] == ["cwd", "user", "system", "env", "builtin"]


def test_plugin_path_env_with_several_entries_is_searched_in_order(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    write_plugin(first / "alpha", "alpha")
    write_plugin(second / "beta", "beta")
    write_plugin(second / "gamma", "alpha")  # same name, later entry: loses
    environ = {"TETHER_PLUGIN_PATH": f"{first}::{second}"}
    search = [p for p in default_search_paths(cwd=tmp_path, environ=environ) if p.origin == "env"]

    result = discover(search, entry_points=False)

    assert result.names == ("alpha", "beta")
    assert result.get("alpha") is not None
    assert result.get("alpha").location == str(first / "alpha")  # type: ignore[union-attr]
    assert [(s.path, s.found) for s in result.searched] == [(first, 1), (second, 2)]
    assert len(result.conflicts) == 1


def test_earlier_search_path_wins_and_conflict_names_both_places(tmp_path: Path) -> None:
    cwd_copy = write_plugin(tmp_path / "cwd" / "plugins" / "auth", "auth")
    user_copy = write_plugin(tmp_path / "home" / ".tether" / "plugins" / "auth2", "auth")
    search = default_search_paths(cwd=tmp_path / "cwd", home=tmp_path / "home", environ={})

    result = discover(search, entry_points=False)

    winner = result.get("auth")
    assert winner is not None
    assert winner.origin == "cwd"
    assert winner.directory == cwd_copy
    [conflict] = result.conflicts
    assert isinstance(conflict, PluginNameConflictError)
    assert conflict.name == "auth"
    assert str(conflict).startswith(f"plugin name conflict: auth already loaded from {cwd_copy}")
    assert str(user_copy) in str(conflict)


def test_missing_search_paths_are_recorded_not_errors(tmp_path: Path) -> None:
    result = scan(tmp_path / "nowhere", tmp_path / "also" / "missing")
    assert result.plugins == ()
    assert result.invalid == ()
    assert [s.exists for s in result.searched] == [False, False]
    assert all(s.error is None for s in result.searched)


def test_a_search_path_that_is_a_file_is_reported(tmp_path: Path) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("hello", encoding="utf-8")
    [searched] = scan(file).searched
    assert searched.exists
    assert searched.error is not None
    assert "not a directory" in searched.error


# --------------------------------------------------------------------------- plugin directories


@pytest.mark.parametrize("fmt", ["yaml", "json", "toml"])
def test_each_manifest_format_is_found(tmp_path: Path, fmt: str) -> None:
    write_plugin(tmp_path / "one", "one", fmt=fmt, dependencies=[{"name": "base"}])
    result = scan(tmp_path)
    plugin = result.get("one")
    assert plugin is not None
    assert plugin.manifest.source == tmp_path / "one" / f"plugin.{fmt}"
    assert plugin.manifest.dependencies[0].name == "base"
    assert plugin.directory == tmp_path / "one"
    assert plugin.origin == "cli"


def test_a_directory_mixes_formats_and_skips_what_is_not_a_plugin(tmp_path: Path) -> None:
    write_plugin(tmp_path / "a", "a", fmt="yaml")
    write_plugin(tmp_path / "b", "b", fmt="json")
    write_plugin(tmp_path / "c", "c", fmt="toml")
    write_plugin(tmp_path / ".hidden", "hidden")
    write_plugin(tmp_path / "__pycache__", "cached")
    write_plugin(tmp_path / "group" / "nested", "nested")  # two levels down: not searched
    (tmp_path / "empty").mkdir()
    (tmp_path / "README.md").write_text("not a plugin", encoding="utf-8")

    result = scan(tmp_path)

    assert result.names == ("a", "b", "c")
    assert result.invalid == ()
    assert result.searched[0].found == 3


def test_a_search_path_that_is_a_plugin_is_one_plugin(tmp_path: Path) -> None:
    plugin_dir = write_plugin(tmp_path / "plugins" / "auth-plugin", "auth-plugin")
    write_plugin(plugin_dir / "vendored", "vendored")  # its own subdirectory: not a plugin
    result = scan(plugin_dir)
    assert result.names == ("auth-plugin",)
    assert result.get("auth-plugin").directory == plugin_dir  # type: ignore[union-attr]


def test_a_search_path_may_name_the_manifest_file(tmp_path: Path) -> None:
    plugin_dir = write_plugin(tmp_path / "solo", "solo", fmt="toml")
    result = scan(plugin_dir / "plugin.toml")
    assert result.names == ("solo",)
    assert result.get("solo").location == str(plugin_dir)  # type: ignore[union-attr]


def test_invalid_manifests_are_reported_with_every_reason(tmp_path: Path) -> None:
    write_plugin(tmp_path / "good", "good")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "plugin.yaml").write_text("name: bad\nversion: 1.0\nauthr: x\n", encoding="utf-8")

    result = scan(tmp_path)

    assert result.names == ("good",)
    [invalid] = result.invalid
    assert invalid.location == str(bad)
    assert isinstance(invalid.error, ManifestError)
    messages = [p.message for p in invalid.error.problems]
    assert (
        "invalid version format: must be semantic version (X.Y.Z), got the number 1.0: "
        "did you mean '1.0.0'?"
    ) in messages
    assert "missing required field: description" in messages
    assert "unknown field: authr (did you mean 'author'?)" in messages
    assert result.searched[0].found == 1
    assert result.searched[0].invalid == 1


def test_unparsable_and_doubled_manifests_are_invalid(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "plugin.json").write_text("{not json", encoding="utf-8")
    doubled = write_plugin(tmp_path / "doubled", "doubled")
    (doubled / "plugin.json").write_text(json.dumps(_fields("doubled")), encoding="utf-8")

    result = scan(tmp_path)

    reasons = {i.location: i.error.problems[0].message for i in result.invalid}
    assert reasons[str(broken)].startswith("invalid JSON")
    assert reasons[str(doubled)] == (
        f"more than one manifest in {doubled}: plugin.yaml, plugin.json"
    )


def test_one_directory_reached_twice_is_not_a_conflict(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(plugins / "auth", "auth")
    link = tmp_path / "link"
    link.symlink_to(plugins)
    result = scan(plugins, link, plugins / "auth")
    assert result.names == ("auth",)
    assert result.conflicts == ()
    assert [s.found for s in result.searched] == [1, 0, 0]


def test_discovery_imports_no_plugin_code(tmp_path: Path) -> None:
    marker = tmp_path / "imported.marker"
    for index in range(3):
        write_plugin(tmp_path / "plugins" / f"p{index}", f"never-{index}", marker=marker)
    cache = IndexCache(tmp_path / "cache.json")

    scan(tmp_path / "plugins", cache=cache)
    result = scan(tmp_path / "plugins", cache=IndexCache(tmp_path / "cache.json"))

    assert len(result.plugins) == 3
    assert not marker.exists()
    assert not any(name.startswith("never_") for name in sys.modules)


# --------------------------------------------------------------------------- index cache


def _plugins(root: Path, count: int) -> list[Path]:
    return [
        write_plugin(root / f"p{i:02d}", f"plugin-{i:02d}", fmt=("yaml", "json", "toml")[i % 3])
        / f"plugin.{('yaml', 'json', 'toml')[i % 3]}"
        for i in range(count)
    ]


def test_a_second_scan_is_served_from_the_cache(tmp_path: Path) -> None:
    manifests = _plugins(tmp_path / "plugins", 6)
    cache_file = tmp_path / "cache" / "index.json"

    cold = scan(tmp_path / "plugins", cache=IndexCache(cache_file))
    warm = scan(tmp_path / "plugins", cache=IndexCache(cache_file))

    assert (cold.cache_hits, cold.cache_misses) == (0, 6)
    assert (warm.cache_hits, warm.cache_misses) == (6, 0)
    assert cache_file.is_file()
    for before, after in zip(cold.plugins, warm.plugins, strict=True):
        assert after.manifest == before.manifest
        assert after.manifest.model_fields_set == before.manifest.model_fields_set
        assert after.location == before.location
    assert [p.manifest.source for p in warm.plugins] == manifests


def test_a_rich_manifest_survives_the_cache_unchanged(tmp_path: Path) -> None:
    rich = {
        "framework": {"version": ">=0.1.0,<2.0.0"},
        "dependencies": [{"name": "base", "version": "^1.0.0"}, {"name": "x", "optional": True}],
        "permissions": {"database": True, "network": True, "filesystem": {"read": ["/srv"]}},
        "config": {
            "timeout": {"type": "duration", "default": "30s"},
            "tags": {"type": "array", "default": ["a", "b"]},
            "limits": {"type": "object", "default": {"rps": 10}},
        },
        "hooks": [{"type": "pre_request", "priority": 5}],
        "events": {"publishes": ["user.created"], "subscribes": ["order.*"]},
        "exports": [{"name": "tokens"}],
        "provides": ["auth"],
        "isolation": "process",
        "command": ["node", "plugin.js"],
        "resources": {"memory": "64MiB", "cpu_time": "1m"},
        "reload": {"overlap": False},
        "requirements": ["httpx>=0.27"],
    }
    write_plugin(tmp_path / "rich", "rich", **rich)
    cache_file = tmp_path / "index.json"

    cold = scan(tmp_path, cache=IndexCache(cache_file)).get("rich")
    warm = scan(tmp_path, cache=IndexCache(cache_file))

    assert warm.cache_hits == 1
    assert cold is not None
    assert warm.get("rich") == cold
    assert warm.get("rich").manifest.dependencies[1].optional is True  # type: ignore[union-attr]
    assert warm.get("rich").manifest.permissions.paths.read == ("/srv",)  # type: ignore[union-attr]


def test_a_manifest_json_cannot_carry_is_parsed_every_time(tmp_path: Path) -> None:
    # YAML reads 2024-01-01 as a date; JSON would give back a string, so it is not cached.
    plugin = write_plugin(tmp_path / "dated", "dated")
    with (plugin / "plugin.yaml").open("a", encoding="utf-8") as manifest:
        manifest.write("config:\n  days:\n    type: array\n    default: [2024-01-01]\n")
    cache_file = tmp_path / "index.json"

    cold = scan(tmp_path, cache=IndexCache(cache_file))
    warm = scan(tmp_path, cache=IndexCache(cache_file))

    assert (warm.cache_hits, warm.cache_misses) == (0, 1)
    assert warm.get("dated") == cold.get("dated")
    default = warm.get("dated").manifest.config["days"].default  # type: ignore[union-attr]
    assert default == [dt.date(2024, 1, 1)]


def test_a_repeated_scan_in_one_process_reuses_the_manifests(tmp_path: Path) -> None:
    _plugins(tmp_path / "plugins", 2)
    cache = IndexCache(tmp_path / "index.json")
    first = scan(tmp_path / "plugins", cache=cache)
    second = scan(tmp_path / "plugins", cache=cache)
    assert [p.manifest for p in second.plugins] == [p.manifest for p in first.plugins]
    assert all(a.manifest is b.manifest for a, b in zip(first.plugins, second.plugins, strict=True))


def test_invalid_manifests_are_cached_with_their_reasons(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "plugin.yaml").write_text("name: bad\nversion: one\n", encoding="utf-8")
    cache_file = tmp_path / "index.json"

    cold = scan(tmp_path, cache=IndexCache(cache_file))
    warm = scan(tmp_path, cache=IndexCache(cache_file))

    assert warm.cache_hits == 1
    assert str(warm.invalid[0].error) == str(cold.invalid[0].error)
    assert warm.invalid[0].error.problems == cold.invalid[0].error.problems


@pytest.mark.parametrize("change", ["rewrite", "touch"])
def test_a_changed_manifest_is_the_only_miss(tmp_path: Path, change: str) -> None:
    manifests = _plugins(tmp_path / "plugins", 5)
    cache_file = tmp_path / "index.json"
    scan(tmp_path / "plugins", cache=IndexCache(cache_file))
    changed = manifests[2]
    if change == "rewrite":
        changed.write_text(changed.read_text(encoding="utf-8").replace("1.0.0", "1.10.0"))
    else:
        st = changed.stat()
        os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))

    result = scan(tmp_path / "plugins", cache=IndexCache(cache_file))

    assert (result.cache_hits, result.cache_misses) == (4, 1)
    expected = "1.10.0" if change == "rewrite" else "1.0.0"
    assert result.get("plugin-02").manifest.version == expected  # type: ignore[union-attr]


def test_a_same_size_edit_within_the_timestamp_granularity_is_seen(tmp_path: Path) -> None:
    # A coarse filesystem clock can give an edit the same size and mtime as the
    # version cached a moment before; the cache checks such young entries' bytes.
    manifest = write_plugin(tmp_path / "p", "p") / "plugin.yaml"
    cache_file = tmp_path / "index.json"
    scan(tmp_path, cache=IndexCache(cache_file))
    st = manifest.stat()
    manifest.write_text(manifest.read_text(encoding="utf-8").replace("1.0.0", "2.0.0"))
    os.utime(manifest, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime

    result = scan(tmp_path, cache=IndexCache(cache_file))

    assert result.get("p").manifest.version == "2.0.0"  # type: ignore[union-attr]
    assert result.cache_misses == 1


def read_cache(path: Path) -> tuple[dict[str, object], dict[str, dict[str, list[object]]]]:
    """The header and the body (manifests, directories) of a cache file: two lines of JSON."""
    head, body = path.read_bytes().split(b"\n")
    return json.loads(head), json.loads(body)


def write_cache(
    path: Path, header: dict[str, object], body: object, *, digest: bool = True
) -> None:
    """A cache file of ``header`` and ``body``; ``digest``: with the body's digest."""
    body = json.dumps(body).encode()
    if digest:
        header = {**header, "digest": hashlib.blake2b(body, digest_size=16).hexdigest()}
    path.write_bytes(json.dumps(header).encode() + b"\n" + body)


def test_the_cache_file_is_a_header_and_its_entries(tmp_path: Path) -> None:
    manifests = _plugins(tmp_path / "plugins", 2)
    cache_file = tmp_path / "index.json"
    scan(tmp_path / "plugins", cache=IndexCache(cache_file))

    header, body = read_cache(cache_file)

    assert header["format"] == CACHE_FORMAT
    assert header["tether"] == tether.__version__
    assert sorted(body["manifests"]) == sorted(str(m) for m in manifests)
    directories = {path: listing[3] for path, listing in body["directories"].items()}
    assert directories == {
        str(tmp_path / "plugins"): [],
        **{str(m.parent): [m.name] for m in manifests},
    }
    body = cache_file.read_bytes().split(b"\n")[1]
    assert header["digest"] == hashlib.blake2b(body, digest_size=16).hexdigest()


def test_a_corrupt_cache_file_is_ignored_and_rebuilt(tmp_path: Path) -> None:
    _plugins(tmp_path / "plugins", 3)
    cache_file = tmp_path / "index.json"
    cache_file.write_text('{"format": 2, "tether": "0.', encoding="utf-8")

    result = scan(tmp_path / "plugins", cache=IndexCache(cache_file))

    assert (len(result.plugins), result.cache_misses) == (3, 3)
    assert read_cache(cache_file)[0]["format"] == CACHE_FORMAT
    assert scan(tmp_path / "plugins", cache=IndexCache(cache_file)).cache_hits == 3


@pytest.mark.parametrize(
    "change",
    [
        {"format": 1},
        {"tether": "0.0.0-other"},
        {"manifest": "another-model"},
        {"digest": "0" * 32},
        {"body": ["not", "an", "object"]},
        {"body": {"manifests": {}}},
        {"whole": ["not", "an", "object"]},
        {"one-line": True},
    ],
    ids=["other-format", "other-tether", "other-manifest-model", "wrong-digest",
         "body-not-an-object", "no-directories", "header-not-an-object", "one-line"],
)  # fmt: skip
def test_a_cache_this_build_cannot_trust_is_ignored(
    tmp_path: Path, change: dict[str, object]
) -> None:
    _plugins(tmp_path / "plugins", 2)
    cache_file = tmp_path / "index.json"
    scan(tmp_path / "plugins", cache=IndexCache(cache_file))
    header, body = read_cache(cache_file)
    if "whole" in change:
        cache_file.write_text(json.dumps(change["whole"]), encoding="utf-8")
    elif "one-line" in change:
        cache_file.write_text(json.dumps({**header, **body}), encoding="utf-8")
    elif "body" in change:
        write_cache(cache_file, header, change["body"])
    else:
        write_cache(cache_file, {**header, **change}, body, digest="digest" not in change)

    result = scan(tmp_path / "plugins", cache=IndexCache(cache_file))

    assert (len(result.plugins), result.cache_misses) == (2, 2)


def test_a_cache_edited_by_hand_is_ignored_as_a_whole(tmp_path: Path) -> None:
    # Cached manifests are rebuilt without validating again: the digest stands for it.
    manifests = _plugins(tmp_path / "plugins", 2)
    cache_file = tmp_path / "index.json"
    scan(tmp_path / "plugins", cache=IndexCache(cache_file))
    header, body = read_cache(cache_file)
    entry = body["manifests"][str(manifests[0])]
    entry[6] = str(entry[6]).replace('"1.0.0"', '"not-semver"')
    write_cache(cache_file, header, body, digest=False)  # the old digest

    result = scan(tmp_path / "plugins", cache=IndexCache(cache_file))

    assert (result.cache_hits, result.cache_misses) == (0, 2)
    assert [p.manifest.version for p in result.plugins] == ["1.0.0", "1.0.0"]


def _tampered(tmp_path: Path, tamper: Callable[[list[object]], object]) -> DiscoveryResult:
    """A warm scan after ``tamper`` changed the entry of plugin-01 (the digest made to
    match: what a bug in tether could write, not an edit)."""
    manifests = _plugins(tmp_path / "plugins", 2)
    cache_file = tmp_path / "index.json"
    scan(tmp_path / "plugins", cache=IndexCache(cache_file))
    header, body = read_cache(cache_file)
    tamper(body["manifests"][str(manifests[1])])
    write_cache(cache_file, header, body)
    return scan(tmp_path / "plugins", cache=IndexCache(cache_file))


@pytest.mark.parametrize(
    "tamper",
    [
        lambda entry: entry.__setitem__(0, "large"),
        lambda entry: entry.__setitem__(5, None),
        lambda entry: entry.__setitem__(7, [["a", "b"]]),
        lambda entry: entry.__setitem__(6, {"name": "plugin-01"}),
    ],
    ids=["size-not-a-number", "no-name", "problems-and-manifest", "manifest-not-text"],
)
def test_an_entry_of_the_wrong_shape_is_a_miss(
    tmp_path: Path, tamper: Callable[[list[object]], object]
) -> None:
    result = _tampered(tmp_path, tamper)
    assert (result.cache_hits, result.cache_misses) == (1, 1)
    assert [p.name for p in result.plugins] == ["plugin-00", "plugin-01"]


def _manifest_change(
    change: Callable[[dict[str, object]], object],
) -> Callable[[list[object]], None]:
    def tamper(entry: list[object]) -> None:
        data = json.loads(str(entry[6]))
        change(data)
        entry[6] = json.dumps(data)

    return tamper


@pytest.mark.parametrize(
    "change",
    [
        lambda data: data.pop("author"),
        lambda data: data.__setitem__("nickname", "x"),
        lambda data: data.__setitem__("dependencies", {"name": "x"}),
        lambda data: data.__setitem__("framework", ["*"]),
        lambda data: data.clear(),
    ],
    ids=["missing-field", "unknown-field", "mapping-for-a-list", "list-for-a-mapping", "empty"],
)
def test_a_cached_manifest_that_does_not_rebuild_is_read_from_its_file(
    tmp_path: Path, change: Callable[[dict[str, object]], object]
) -> None:
    result = _tampered(tmp_path, _manifest_change(change))

    assert result.cache_hits == 2  # its name reads back; the manifest is built when used
    plugin = result.get("plugin-01")
    assert plugin is not None
    assert plugin.manifest == load_manifest(tmp_path / "plugins" / "p01")
    assert plugin.manifest.author == "Ann Example"


def test_entries_for_vanished_manifests_are_dropped(tmp_path: Path) -> None:
    manifests = _plugins(tmp_path / "plugins", 3)
    cache_file = tmp_path / "index.json"
    scan(tmp_path / "plugins", cache=IndexCache(cache_file))
    manifests[0].unlink()

    scan(tmp_path / "plugins", cache=IndexCache(cache_file))

    assert sorted(read_cache(cache_file)[1]["manifests"]) == sorted(str(m) for m in manifests[1:])


def test_the_cache_is_written_only_when_something_changed(tmp_path: Path) -> None:
    manifests = _plugins(tmp_path / "plugins", 3)
    backdate(*manifests, *(m.parent for m in manifests), tmp_path / "plugins")
    cache_file = tmp_path / "index.json"
    cache = IndexCache(cache_file)
    scan(tmp_path / "plugins", cache=cache)
    old = cache_file.stat()
    os.utime(cache_file, ns=(old.st_atime_ns, old.st_mtime_ns - HOUR_NS))
    before = cache_file.stat().st_mtime_ns

    result = scan(tmp_path / "plugins", cache=IndexCache(cache_file))

    assert result.cache_hits == 3
    assert cache_file.stat().st_mtime_ns == before
    assert cache.save() is False


def test_a_manifest_added_beside_a_cached_one_is_seen(tmp_path: Path) -> None:
    manifest = _plugins(tmp_path / "plugins", 1)[0]
    backdate(manifest, manifest.parent)
    cache_file = tmp_path / "index.json"
    assert scan(tmp_path / "plugins", cache=IndexCache(cache_file)).names == ("plugin-00",)
    (manifest.parent / "plugin.json").write_text(json.dumps(_fields("plugin-00")), "utf-8")

    result = scan(tmp_path / "plugins", cache=IndexCache(cache_file))

    assert result.names == ()
    [invalid] = result.invalid
    assert "more than one manifest" in str(invalid.error)


def test_a_manifest_replaced_by_another_format_is_read(tmp_path: Path) -> None:
    manifest = _plugins(tmp_path / "plugins", 1)[0]  # plugin.yaml
    backdate(manifest, manifest.parent)
    cache_file = tmp_path / "index.json"
    scan(tmp_path / "plugins", cache=IndexCache(cache_file))
    manifest.unlink()
    toml = manifest.with_name("plugin.toml")
    toml.write_text(_toml({**_fields("plugin-00"), "version": "2.0.0"}), encoding="utf-8")

    result = scan(tmp_path / "plugins", cache=IndexCache(cache_file))

    assert result.get("plugin-00").manifest.source == toml  # type: ignore[union-attr]
    assert result.get("plugin-00").manifest.version == "2.0.0"  # type: ignore[union-attr]


def test_a_young_directory_is_probed_again_whatever_its_timestamp(tmp_path: Path) -> None:
    # A coarse clock can give a directory the same mtime after a manifest is added.
    manifest = _plugins(tmp_path / "plugins", 1)[0]
    cache_file = tmp_path / "index.json"
    scan(tmp_path / "plugins", cache=IndexCache(cache_file))
    st = manifest.parent.stat()
    (manifest.parent / "plugin.json").write_text(json.dumps(_fields("plugin-00")), "utf-8")
    os.utime(manifest.parent, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime

    result = scan(tmp_path / "plugins", cache=IndexCache(cache_file))

    [invalid] = result.invalid
    assert "more than one manifest" in str(invalid.error)


def test_listings_of_vanished_directories_are_dropped(tmp_path: Path) -> None:
    manifests = _plugins(tmp_path / "plugins", 2)
    cache_file = tmp_path / "index.json"
    scan(tmp_path / "plugins", cache=IndexCache(cache_file))
    shutil.rmtree(manifests[0].parent)

    scan(tmp_path / "plugins", cache=IndexCache(cache_file))

    directories = read_cache(cache_file)[1]["directories"]
    assert sorted(directories) == sorted([str(tmp_path / "plugins"), str(manifests[1].parent)])


def test_one_cache_object_serves_repeated_scans(tmp_path: Path) -> None:
    _plugins(tmp_path / "plugins", 2)
    cache = IndexCache(tmp_path / "index.json")
    assert scan(tmp_path / "plugins", cache=cache).cache_misses == 2
    assert scan(tmp_path / "plugins", cache=cache).cache_hits == 2
    assert len(cache) == 2


def test_an_unwritable_cache_location_does_not_fail_discovery(tmp_path: Path) -> None:
    _plugins(tmp_path / "plugins", 1)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache directory should be", encoding="utf-8")
    result = scan(tmp_path / "plugins", cache=IndexCache(blocker / "index.json"))
    assert result.names == ("plugin-00",)


def test_default_cache_path_follows_the_environment(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert default_cache_path(environ={"TETHER_CACHE_DIR": "/c"}, home=home) == Path(
        "/c/index.json"
    )
    assert default_cache_path(environ={"XDG_CACHE_HOME": "/x"}, home=home) == Path(
        "/x/tether/index.json"
    )
    assert default_cache_path(environ={}, home=home) == home / ".cache" / "tether" / "index.json"


def test_index_cache_uses_tether_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_CACHE_DIR", str(tmp_path / "c"))
    assert IndexCache().path == tmp_path / "c" / "index.json"


# --------------------------------------------------------------------------- entry points


def _distribution(
    site: Path,
    *,
    dist: str,
    version: str,
    package: str,
    entry_points: dict[str, str],
    manifest: dict[str, object] | None = None,
) -> Path:
    """A real installed distribution: dist-info (METADATA, RECORD, entry_points.txt) + package."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n"
        f"Summary: {dist} does things\nAuthor-email: Bo <bo@example.com>\n",
        encoding="utf-8",
    )
    lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[tether.plugins]\n{lines}", encoding="utf-8")
    pkg = site / package
    pkg.mkdir()
    marker = site / f"{package}.imported"
    (pkg / "__init__.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nraise RuntimeError('imported')\n", encoding="utf-8"
    )
    files = [f"{package}/__init__.py", f"{info.name}/METADATA", f"{info.name}/entry_points.txt"]
    if manifest is not None:
        (pkg / "plugin.yaml").write_text(_yaml(manifest), encoding="utf-8")
        files.append(f"{package}/plugin.yaml")
    files.append(f"{info.name}/RECORD")
    (info / "RECORD").write_text("".join(f"{f},,\n" for f in files), encoding="utf-8")
    return pkg


def _entry_point_plugins(result: DiscoveryResult, prefix: str) -> dict[str, object]:
    found: dict[str, object] = {p.name: p for p in result.plugins if p.name.startswith(prefix)}
    found.update({i.location: i for i in result.invalid if prefix in i.location})
    return found


def test_an_entry_point_with_a_manifest_uses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fields = _fields("ep-manifest", description="from the manifest file")
    del fields["entry"]  # taken from the entry point
    pkg = _distribution(
        tmp_path,
        dist="ep-manifest-dist",
        version="2.0.0",
        package="ep_manifest_pkg",
        entry_points={"ep-manifest": "ep_manifest_pkg.plugin:Plugin"},
        manifest=fields,
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    result = discover([], cache=IndexCache(tmp_path / "index.json"))

    plugin = result.get("ep-manifest")
    assert plugin is not None
    assert plugin.origin == "entry-point"
    assert plugin.location == "ep-manifest-dist 2.0.0 (entry point ep-manifest)"
    assert plugin.manifest.description == "from the manifest file"
    assert plugin.manifest.entry == "ep_manifest_pkg.plugin:Plugin"
    assert plugin.directory == pkg
    assert "ep_manifest_pkg" not in sys.modules
    assert not (tmp_path / "ep_manifest_pkg.imported").exists()
    warm = discover([], cache=IndexCache(tmp_path / "index.json"))
    assert warm.get("ep-manifest") == plugin
    assert warm.cache_hits >= 1


def test_an_entry_point_without_a_manifest_is_described_by_its_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _distribution(
        tmp_path,
        dist="ep-meta-dist",
        version="1.4.2",
        package="ep_meta_pkg",
        entry_points={"ep-meta": "ep_meta_pkg:Plugin"},
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    result = discover([])

    plugin = result.get("ep-meta")
    assert plugin is not None
    manifest = plugin.manifest
    assert (manifest.name, manifest.version, manifest.entry) == (
        "ep-meta",
        "1.4.2",
        "ep_meta_pkg:Plugin",
    )
    assert manifest.description == "ep-meta-dist does things"
    assert manifest.author == "Bo <bo@example.com>"
    assert plugin.directory is None
    assert plugin.location == "ep-meta-dist 1.4.2 (entry point ep-meta)"
    assert "ep_meta_pkg" not in sys.modules
    assert not (tmp_path / "ep_meta_pkg.imported").exists()


def test_an_entry_point_whose_version_is_not_semver_is_invalid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _distribution(
        tmp_path,
        dist="ep-old-dist",
        version="1.0",
        package="ep_old_pkg",
        entry_points={"ep-old": "ep_old_pkg:Plugin"},
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    result = discover([])

    assert result.get("ep-old") is None
    [invalid] = [i for i in result.invalid if "ep-old-dist" in i.location]
    assert invalid.origin == "entry-point"
    assert invalid.location == "ep-old-dist 1.0 (entry point ep-old)"
    [problem] = invalid.error.problems
    assert problem.field == "version"
    assert problem.message == (
        "invalid version format: must be semantic version (X.Y.Z), got '1.0': did you mean '1.0.0'?"
    )
    assert problem.path.name == "METADATA"


def test_directories_come_before_entry_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    _distribution(
        site,
        dist="ep-dup-dist",
        version="1.0.0",
        package="ep_dup_pkg",
        entry_points={"ep-dup": "ep_dup_pkg:Plugin"},
    )
    monkeypatch.syspath_prepend(str(site))
    local = write_plugin(tmp_path / "plugins" / "ep-dup", "ep-dup")

    result = discover(paths(tmp_path / "plugins"))

    assert result.get("ep-dup").directory == local  # type: ignore[union-attr]
    [conflict] = [c for c in result.conflicts if c.name == "ep-dup"]
    assert conflict.first == str(local)
    assert conflict.second == "ep-dup-dist 1.0.0 (entry point ep-dup)"


def test_a_changed_entry_point_value_is_not_served_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fields = _fields("ep-moving")
    del fields["entry"]
    _distribution(
        tmp_path,
        dist="ep-moving-dist",
        version="1.0.0",
        package="ep_moving_pkg",
        entry_points={"ep-moving": "ep_moving_pkg:Old"},
        manifest=fields,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cache_file = tmp_path / "index.json"
    discover([], cache=IndexCache(cache_file))
    info = tmp_path / "ep_moving_dist-1.0.0.dist-info" / "entry_points.txt"
    info.write_text("[tether.plugins]\nep-moving = ep_moving_pkg:New\n", encoding="utf-8")

    result = discover([], cache=IndexCache(cache_file))

    assert result.get("ep-moving").manifest.entry == "ep_moving_pkg:New"  # type: ignore[union-attr]


def test_entry_points_can_be_left_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _distribution(
        tmp_path,
        dist="ep-off-dist",
        version="1.0.0",
        package="ep_off_pkg",
        entry_points={"ep-off": "ep_off_pkg:Plugin"},
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert discover([], entry_points=False).plugins == ()
