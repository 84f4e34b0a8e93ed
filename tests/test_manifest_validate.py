"""``tether plugins validate`` reading the entry module without importing it, the default
entry, the lines of manifest errors in each format, version suggestions, the reference's
own manifests, and the reference's names of the built-in workloads."""

from __future__ import annotations

import asyncio
import json
import shutil
import textwrap
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result

import tether
from helpers import line_of
from tether import check_entry_source, load_manifest
from tether.cli import cli
from tether.errors import ManifestError, PluginLoadError, TetherError

pytest_plugins = ["pg"]

DATA = Path(__file__).resolve().parent / "data" / "reference-manifests"
BAD_VERSION = "invalid version format: must be semantic version (X.Y.Z)"


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def plugin(directory: Path, entry: str | None = "m:Plugin", **files: str) -> Path:
    """A plugin directory: a YAML manifest (``entry`` left out when ``None``) and ``files``
    by name (``m_py`` is ``m.py``; see :func:`tree` for files in packages)."""
    return tree(
        directory, entry, {name.replace("_py", ".py"): code for name, code in files.items()}
    )


def tree(directory: Path, entry: str | None, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True)
    lines = ["name: demo", "version: 1.0.0", "description: a demo", "author: tests"]
    if entry is not None:
        lines.append(f"entry: {entry}")
    (directory / "plugin.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for name, code in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(code), encoding="utf-8")
    return directory


PLUGIN_CLASS = """\
    import tether

    class Plugin(tether.Plugin):
        def hello(self) -> str:
            return "hello"
    """


# --------------------------------------------------------------------------- the entry module


def test_a_missing_entry_module_is_a_problem_of_the_entry_field(tmp_path):
    directory = plugin(tmp_path / "p", entry="greeter:Plugin", greter_py=PLUGIN_CLASS)
    result = run("plugins", "validate", str(directory))
    assert result.exit_code == 1
    manifest = directory / "plugin.yaml"
    assert (
        f"{manifest}:5 [entry]: entry module 'greeter' not found: no greeter.py and no "
        f"greeter/__init__.py in {directory}"
    ) in result.stdout
    assert "did you mean 'greter'?" in result.stdout


def test_a_missing_attribute_lists_what_the_module_defines(tmp_path):
    directory = plugin(tmp_path / "p", entry="m:Plugn", m_py=PLUGIN_CLASS)
    result = run("plugins", "validate", str(directory))
    assert result.exit_code == 1
    module = directory / "m.py"
    assert (
        f"[entry]: entry attribute 'Plugn' not found: {module} defines no 'Plugn' at module "
        "level (it defines Plugin)"
    ) in result.stdout
    assert "did you mean 'Plugin'?" in result.stdout


def test_a_syntax_error_names_the_manifest_the_field_and_the_module_line(tmp_path):
    code = "import tether\n\nclass Plugin(tether.Plugin):\n    def hello(self)\n        pass\n"
    directory = plugin(tmp_path / "p", m_py=code)
    result = run("plugins", "validate", str(directory))
    assert result.exit_code == 1
    module = directory / "m.py"
    assert f"{directory / 'plugin.yaml'}:5 [entry]: syntax error in {module}, line 4: " in (
        result.stdout
    )


def test_a_syntax_error_in_a_package_on_the_way_is_found(tmp_path):
    files = {"pkg/__init__.py": "def broken(:\n", "pkg/impl.py": PLUGIN_CLASS}
    directory = tree(tmp_path / "p", "pkg.impl:Plugin", files)
    result = run("plugins", "validate", str(directory))
    assert result.exit_code == 1
    assert f"syntax error in {directory / 'pkg' / '__init__.py'}, line 1" in result.stdout


@pytest.mark.parametrize(
    ("code", "attribute"),
    [
        pytest.param("from .impl import Plugin\n", "Plugin", id="from-import"),
        pytest.param("import json as Plugin\n", "Plugin", id="import-as"),
        pytest.param("def factory():\n    return 1\n", "factory", id="def"),
        pytest.param("try:\n    X = 1\nexcept ImportError:\n    X = 2\n", "X", id="under-try"),
        pytest.param("if True:\n    a, (b, X) = 1, (2, 3)\n", "X", id="unpacked"),
        pytest.param("class Outer:\n    class Inner:\n        pass\n", "Outer.Inner", id="nested"),
    ],
)
def test_attributes_defined_at_module_level_are_found(tmp_path, code, attribute):
    directory = plugin(tmp_path / "p", entry=f"m:{attribute}", m_py=code)
    check = check_entry_source(load_manifest(directory))
    assert check.findings == ()


def test_a_dotted_module_in_packages_is_located(tmp_path):
    files = {"pkg/sub/mod.py": PLUGIN_CLASS}  # pkg and pkg/sub have no __init__.py
    directory = tree(tmp_path / "p", "pkg.sub.mod:Plugin", files)
    assert check_entry_source(load_manifest(directory)).findings == ()
    result = run("plugins", "validate", str(directory))
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        pytest.param("from helpers import *\n", "it uses 'from helpers import *'", id="star"),
        pytest.param("def __getattr__(name):\n    return 1\n", "it defines __getattr__", id="ga"),
        pytest.param("globals()['Plugin'] = object\n", "it calls globals()", id="globals"),
    ],
)
def test_names_the_parser_cannot_see_are_a_warning_not_an_error(tmp_path, code, reason):
    directory = plugin(tmp_path / "p", m_py=code)
    result = run("plugins", "validate", str(directory))
    assert result.exit_code == 0, result.output
    assert "✓" in result.stdout
    assert (
        f"warning: {directory / 'plugin.yaml'}:5 [entry]: cannot tell without importing it "
        f"whether {directory / 'm.py'} defines 'Plugin': {reason}"
    ) in result.stdout


def test_validate_never_imports_the_entry_module(tmp_path):
    touched = tmp_path / "imported"
    code = f"""\
        import tether
        open({str(touched)!r}, "w").close()
        raise SystemExit("importing this module is the failure")

        class Plugin(tether.Plugin):
            pass
        """
    directory = plugin(tmp_path / "p", m_py=code)
    result = run("plugins", "validate", str(directory))
    assert result.exit_code == 0, result.output
    assert not touched.exists()
    # loading it really would run it: the file is the proof the test can tell
    with pytest.raises(PluginLoadError):
        asyncio.run(_load(directory))
    assert touched.exists()


async def _load(directory: Path) -> str:
    async with tether.PluginManager() as manager:
        await manager.load_plugin(directory)
        await manager.initialize_all()
        await manager.start_all()
        return str(manager.get_handle("demo").call("hello"))


# --------------------------------------------------------------------------- the default entry


def test_without_entry_the_plugin_class_of_plugin_py_is_loaded(tmp_path):
    code = """\
        from tether import Plugin as Base

        class Shared(Base):
            pass

        class Greeter(Shared):
            def hello(self) -> str:
                return "hello by convention"
        """
    directory = plugin(tmp_path / "p", entry=None, plugin_py=code)
    result = run("plugins", "validate", str(directory))
    assert result.exit_code == 0, result.output
    assert "demo 1.0.0 (entry plugin:Greeter, by convention)" in result.stdout
    assert "entry: plugin:Greeter (by convention)" in run("plugins", "info", str(directory)).stdout
    assert asyncio.run(_load(directory)) == "hello by convention"


def test_without_entry_the_package_named_after_the_plugin_is_next(tmp_path):
    code = PLUGIN_CLASS.replace("class Plugin", "class DemoPlugin")
    directory = tree(tmp_path / "p", None, {"demo/__init__.py": code})
    assert check_entry_source(load_manifest(directory)).entry == "demo:DemoPlugin"
    assert asyncio.run(_load(directory)) == "hello"


def test_several_plugin_classes_are_ambiguous(tmp_path):
    code = "import tether as t\n\nclass A(t.Plugin):\n    pass\n\nclass B(t.Plugin):\n    pass\n"
    directory = plugin(tmp_path / "p", entry=None, plugin_py=code)
    result = run("plugins", "validate", str(directory))
    assert result.exit_code == 1
    assert (
        f"{directory / 'plugin.yaml'} [entry]: no `entry`, and {directory / 'plugin.py'} "
        "defines 2 tether.Plugin subclasses: A, B"
    ) in result.stdout
    assert "hint: set `entry` to the one to load, e.g. 'entry: plugin:A'" in result.stdout


def test_no_plugin_class_anywhere_is_a_clear_error_and_refuses_to_load(tmp_path):
    directory = plugin(tmp_path / "p", entry=None, plugin_py="class Plugin:\n    pass\n")
    result = run("plugins", "validate", str(directory))
    assert result.exit_code == 1
    assert (
        "no `entry`, and no tether.Plugin subclass found by convention in plugin.py, "
        "demo/__init__.py, demo.py (plugin.py define none)"
    ) in result.stdout
    with pytest.raises(PluginLoadError) as caught:
        asyncio.run(_load(directory))
    assert str(caught.value).startswith("plugin 'demo': no `entry`, and no tether.Plugin subclass")


# --------------------------------------------------------------------------- lines


def test_an_unterminated_quote_is_reported_where_it_opened(tmp_path):
    path = tmp_path / "plugin.yaml"
    path.write_text(
        'name: demo\nversion: 1.0.0\ndescription: "oops\nauthor: tests\nentry: m:P\n\n',
        encoding="utf-8",
    )
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    [problem] = caught.value.problems
    assert problem.line == 3
    assert problem.message == "invalid YAML: a quoted string opened on line 3 is never closed"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        pytest.param(
            "name: demo\nversion 1.0.0\nauthor: a\n",
            2,
            "could not find expected ':' on line 3, after the key that starts on line 2",
            id="key-without-colon",
        ),
        pytest.param(
            "name: demo\nprovides: [workload\nauthor: a\n",
            2,
            "did not find expected ',' or ']' on line 3, in a [ list opened on line 2",
            id="open-bracket",
        ),
        pytest.param(
            "name: demo\ndeps:\n  - name: a\n   version: 1\n",
            4,
            "did not find expected '-' indicator",
            id="indentation",  # here the line where the parser stopped is the one to fix
        ),
    ],
)
def test_yaml_syntax_errors_point_at_the_line_to_fix(tmp_path, text, line, message):
    path = tmp_path / "plugin.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    [problem] = caught.value.problems
    assert (problem.line, problem.message) == (line, f"invalid YAML: {message}")


def test_json_field_errors_carry_the_line_of_their_key(tmp_path):
    path = tmp_path / "plugin.json"
    data = {
        "name": "demo",
        "description": "d",
        "author": "a",
        "entry": "m:P",
        "dependencies": [{"name": "cache"}, {"name": "store", "version": "=>2.0.0"}],
        "version": "1.0",
    }
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    lines = {p.field: p.line for p in caught.value.problems}
    assert lines == {
        "dependencies[1].version": line_of(path, '"=>2.0.0"'),
        "version": line_of(path, '"1.0"'),
    }


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        pytest.param(
            '{\n  "name": "demo",\n  "version": "1.0.0",\n}\n',
            3,
            "a comma before '}' (JSON allows no trailing comma): remove it",
            id="trailing-comma-object",
        ),
        pytest.param(
            '{\n  "name": "demo",\n  "tags": ["a",\n  ]\n}\n',
            3,
            "a comma before ']' (JSON allows no trailing comma): remove it",
            id="trailing-comma-array",
        ),
        pytest.param(
            '{\n  "name": "demo"\n  "version": "1.0.0"\n}\n',
            2,
            "a ',' is missing at the end of this line",
            id="missing-comma",
        ),
        pytest.param(
            '{"name": "demo" "version": "1.0.0"}\n',
            1,
            "Expecting ',' delimiter",
            id="missing-comma-on-one-line",
        ),
    ],
)
def test_json_syntax_slips_are_named_on_their_own_line(tmp_path, text, line, message):
    path = tmp_path / "plugin.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    [problem] = caught.value.problems
    assert (problem.line, problem.message) == (line, f"invalid JSON: {message}")


TOML = """\
name = "demo"
version = "v1.2.3"
description = "d"
author = "a"
entry = "m:P"
timeouts = { start = "1s", stop = "soon" }

[framework]
version = ">=0.1.0"

[[dependencies]]
name = "cache"

[[dependencies]]
name = "store"
version = "1.0 - 2.0"

[config.port]
type = "int"
"""


def test_toml_field_errors_carry_the_line_of_their_key(tmp_path):
    path = tmp_path / "plugin.toml"
    path.write_text(TOML, encoding="utf-8")
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    found = {p.field: (p.line, p.message) for p in caught.value.problems}
    assert found["version"] == (2, f"{BAD_VERSION}, got 'v1.2.3': did you mean '1.2.3'?")
    assert found["timeouts.stop"][0] == 6
    assert found["dependencies[1].version"] == (
        16,
        "invalid dependency version constraint: 1.0 - 2.0 (did you mean '>=1.0,<=2.0'?)",
    )
    assert found["config.port.type"][0] == 19
    assert str(caught.value.problems[0]).startswith(f"{path}:2 [version]: ")


# --------------------------------------------------------------------------- suggestions


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("version: 1.0", f"{BAD_VERSION}, got the number 1.0: did you mean '1.0.0'?"),
        ("version: 1", f"{BAD_VERSION}, got the number 1: did you mean '1.0.0'?"),
        ("version: v1.2.3", f"{BAD_VERSION}, got 'v1.2.3': did you mean '1.2.3'?"),
        ("version: '01.2.3'", f"{BAD_VERSION}, got '01.2.3': did you mean '1.2.3'?"),
        ("version: 1.0-beta", f"{BAD_VERSION}, got '1.0-beta': did you mean '1.0.0-beta'?"),
        ("version: latest", f"{BAD_VERSION}, got 'latest'"),
    ],
)
def test_version_errors_echo_the_value_and_suggest_the_fix(tmp_path, written, message):
    path = tmp_path / "plugin.yaml"
    path.write_text(f"name: demo\n{written}\ndescription: d\nauthor: a\n", encoding="utf-8")
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    [problem] = caught.value.problems
    assert (problem.field, problem.line, problem.message) == ("version", 2, message)


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("'=>1.0.0'", "invalid dependency version constraint: =>1.0.0 (did you mean '>=1.0.0'?)"),
        (
            "'>=1.0 && <2.0'",
            "invalid dependency version constraint: >=1.0 && <2.0 (did you mean '>=1.0 , <2.0'?)",
        ),
        (
            "2",
            (
                "invalid dependency version constraint: got the number 2: did you mean '2' "
                "(in quotes: a constraint is a string)?"
            ),
        ),
        ("'>>1'", "invalid dependency version constraint: >>1"),
    ],
)
def test_dependency_constraint_errors_suggest_the_fix(tmp_path, written, message):
    path = tmp_path / "plugin.yaml"
    path.write_text(
        "name: demo\nversion: 1.0.0\ndescription: d\nauthor: a\n"
        f"dependencies:\n  - name: cache\n    version: {written}\n",
        encoding="utf-8",
    )
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    [problem] = caught.value.problems
    assert (problem.field, problem.line, problem.message) == (
        "dependencies[0].version",
        7,
        message,
    )


# --------------------------------------------------------------------------- the reference's own


@pytest.mark.parametrize(
    ("directory", "version"),
    [("auth-yaml", "1.2.0"), ("auth-json", "1.2.0"), ("auth-documented", "1.0.0")],
)
def test_the_references_manifests_validate_as_they_are(tmp_path, directory, version):
    copy = shutil.copytree(DATA / directory, tmp_path / "auth-plugin")
    (copy / "plugin.py").write_text(
        "import tether\n\n\nclass AuthPlugin(tether.Plugin):\n    pass\n", encoding="utf-8"
    )
    result = run("plugins", "validate", str(copy))
    assert result.exit_code == 0, result.output
    assert f"auth-plugin {version} (entry plugin:AuthPlugin, by convention)" in result.stdout


def test_the_references_manifest_is_then_checked_as_any_plugin(tmp_path):
    """Its dependencies and required config are checked when it is loaded: with
    ``jwt_secret`` given and tether taken for a 1.x framework, the missing
    ``cache-plugin`` is the only error."""
    copy = shutil.copytree(DATA / "auth-yaml", tmp_path / "auth-plugin")
    (copy / "plugin.py").write_text(
        "import tether\n\n\nclass AuthPlugin(tether.Plugin):\n    pass\n", encoding="utf-8"
    )
    manifest = load_manifest(copy)
    assert [d.name for d in manifest.dependencies] == ["cache-plugin", "logging-plugin"]
    assert manifest.config["token_ttl"].default == "24h"
    assert manifest.hooks[1].type == "pre_request"

    async def load(config: dict[str, object]) -> None:
        async with tether.PluginManager(framework_version="1.5.0") as manager:
            await manager.load_plugin(copy, {"config": config})
            await manager.initialize_all()

    with pytest.raises(TetherError) as caught:
        asyncio.run(load({}))
    assert "required configuration 'jwt_secret' is missing" in str(caught.value)
    with pytest.raises(TetherError) as caught:
        asyncio.run(load({"jwt_secret": "s"}))
    assert str(caught.value).startswith(
        "missing dependency: plugin 'auth-plugin' requires 'cache-plugin' version '>=2.0.0'"
    )


# --------------------------------------------------------------------------- 001's names


@pytest.mark.slow
def test_the_references_workload_names_run_the_built_in_workloads(tmp_path, pg_url):
    result = run(
        "bench", "--workload", "imdb_plugin", "--dsn", pg_url, "-c", "1", "-t", "20",
        "--set", "movies=50", "--set", "actors=20", "--set", "ratings_per_movie=1",
        "--format", "json", "-q", "--cleanup",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["workload"]["name"] == "imdb"
    assert data["totals"]["transactions"] == 20

    config = tmp_path / "bench.yaml"
    config.write_text(
        "workload:\n  type: plugin\n  plugin_name: ecommerce_plugin\n"
        "  plugin_config: {catalog_size: 40, customer_count: 10, seed: 3}\n"
        f'database: {{dsn: "{pg_url}"}}\nbench: {{clients: 1, transactions: 20}}\n',
        encoding="utf-8",
    )
    result = run("bench", "--config", str(config), "--format", "json", "-q")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["workload"]["name"] == "ecommerce"
    with psycopg.connect(pg_url, autocommit=True) as conn:  # its plugin_config was applied
        assert conn.execute("SELECT count(*) FROM ecommerce_products").fetchone() == (40,)
    checked = run("config", "validate", str(config))
    assert "workload 'ecommerce' (builtin)" in checked.stdout


def test_a_plugin_really_named_like_the_reference_wins(tmp_path):
    directory = tmp_path / "plugins" / "imdb_plugin"
    directory.mkdir(parents=True)
    (directory / "plugin.yaml").write_text(
        "name: imdb_plugin\nversion: 2.0.0\ndescription: mine\nauthor: me\n"
        "entry: w:W\nprovides: [workload]\n",
        encoding="utf-8",
    )
    (directory / "w.py").write_text("class W:\n    pass\n", encoding="utf-8")
    config = tmp_path / "bench.yaml"
    config.write_text("workload: {plugin_name: imdb_plugin}\n", encoding="utf-8")
    result = run("--plugin-path", str(directory.parent), "config", "validate", str(config))
    assert "workload 'imdb_plugin' (cli)" in result.stdout
