"""The reference docs, checked against the code.

Every complete example manifest and config in the docs is loaded; the examples
of one page in different formats must describe the same thing; every error
class, CLI command and option, manifest field, config key and lifecycle
transition the code defines must be documented; every relative link must
lead somewhere; and every Python block of README.md and docs/ runs, the plugins the
docs show are loaded by tether (see "Python blocks" below).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

import doc_blocks
import tether
from tether import errors
from tether._config import PluginConfig, PluginsSection, load_config
from tether._lifecycle import TRANSITIONS, PluginStatus
from tether._manifest import CONFIG_TYPES, PERMISSIONS, ConfigField, Manifest, load_manifest
from tether.cli import cli
from tether.cli._app import _use_config
from tether.hosts.web.testing import LiveServer

pytest_plugins = ["pg"]

DOCS = Path(__file__).resolve().parent.parent / "docs"
REFERENCE = DOCS / "reference"

_FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_TAGGED = re.compile(r"^(?P<fmt>\S+) (?P<kind>manifest|config)$")
_FILE_NAMES = {
    "manifest": {"yaml": "plugin.yaml", "json": "plugin.json", "toml": "plugin.toml"},
    "config": {"yaml": "tether.yaml", "json": "tether.json", "toml": "tether.toml"},
}
_REQUIRED_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _read(page: str) -> str:
    return (REFERENCE / page).read_text(encoding="utf-8")


def _fences(text: str) -> Iterator[tuple[str, str, int]]:
    """Every fenced block: its info string, its body and the line it starts on."""
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        yield match["info"].strip(), match["body"], line


def _examples(page: str, kind: str) -> list[pytest.param]:
    """The blocks of ``page`` tagged ``<format> <kind>``, as pytest params."""
    found = []
    for info, body, line in _fences(_read(page)):
        tagged = _TAGGED.match(info)
        if tagged and tagged["kind"] == kind:
            fmt = tagged["fmt"]
            found.append(pytest.param(fmt, body, id=f"{page}:{line}-{fmt}"))
    return found


MANIFEST_EXAMPLES = _examples("manifest.md", "manifest")
CONFIG_EXAMPLES = _examples("config.md", "config")


def _write_example(tmp_path: Path, kind: str, fmt: str, body: str) -> Path:
    names = _FILE_NAMES[kind]
    assert fmt in names, f"unknown format {fmt!r} in a '{fmt} {kind}' block; use one of {names}"
    path = tmp_path / names[fmt]
    path.write_text(body, encoding="utf-8")
    return path


def _load_config_example(
    tmp_path: Path, fmt: str, body: str, monkeypatch: pytest.MonkeyPatch
) -> object:
    for variable in _REQUIRED_VAR.findall(body):  # ${VAR} without a default must be set
        monkeypatch.setenv(variable, f"value-of-{variable}")
    return load_config(_write_example(tmp_path, "config", fmt, body))


def _section(text: str, heading: str) -> str:
    """The text under the markdown heading whose title is ``heading``, up to the next heading."""
    match = re.search(rf"^#+ {re.escape(heading)}[ \t]*$", text, re.MULTILINE)
    assert match is not None, f"no heading {heading!r}"
    after = text[match.end() :]
    following = re.search(r"^#", after, re.MULTILINE)
    return after[: following.start()] if following else after


# --------------------------------------------------------------------------- manifests


def test_manifest_reference_has_an_example_in_every_format():
    assert sorted(p.values[0] for p in MANIFEST_EXAMPLES) == ["json", "toml", "yaml"]


@pytest.mark.parametrize(("fmt", "body"), MANIFEST_EXAMPLES)
def test_manifest_example_loads(tmp_path, fmt, body):
    path = _write_example(tmp_path, "manifest", fmt, body)
    manifest = load_manifest(tmp_path)
    assert manifest.source == path


def test_manifest_examples_describe_the_same_plugin(tmp_path):
    dumps = []
    for index, param in enumerate(MANIFEST_EXAMPLES):
        fmt, body = param.values
        directory = tmp_path / str(index)
        directory.mkdir()
        _write_example(directory, "manifest", fmt, body)
        dumps.append(load_manifest(directory).model_dump())  # ``source`` is excluded
    assert dumps
    assert all(dump == dumps[0] for dump in dumps[1:])


def test_manifest_reference_lists_every_field_permission_and_config_type():
    text = _read("manifest.md")
    glance = _section(text, "Fields at a glance")
    for field in Manifest.model_fields:
        if field not in {"source", "open_config"}:  # open_config: config.additional_properties
            assert re.search(rf"^\| `{field}[`.]", glance, re.MULTILINE), field
    assert "#### `additional_properties`" in text  # a subsection of `config`
    for permission in PERMISSIONS:
        assert f"| `{permission}` |" in _section(text, "`permissions`"), permission
    for config_type in CONFIG_TYPES:
        assert f"| `{config_type}` |" in _section(text, "`config`"), config_type
    for key in ConfigField.model_fields:
        assert f"| `{key}` |" in _section(text, "`config`"), key


def test_the_constraint_example_is_a_valid_config_schema():
    [body] = [
        b for info, b, _ in _fences(_section(_read("manifest.md"), "`config`")) if info == "yaml"
    ]
    schema = {k: ConfigField.model_validate(v) for k, v in yaml.safe_load(body)["config"].items()}
    assert {k: f.allowed for k, f in schema.items()} == {
        "top_k": "from 1 to 1000",
        "share": "from 0 to 1",
        "session_ttl": "at least 1s",
        "index_type": "one of hnsw, ivfflat",
    }


# --------------------------------------------------------------------------- configs


def test_config_reference_has_an_example_in_every_format():
    assert sorted(p.values[0] for p in CONFIG_EXAMPLES) == ["json", "toml", "yaml"]


@pytest.mark.parametrize(("fmt", "body"), CONFIG_EXAMPLES)
def test_config_example_loads(tmp_path, monkeypatch, fmt, body):
    config = _load_config_example(tmp_path, fmt, body, monkeypatch)
    assert config.plugins.plugins  # type: ignore[attr-defined]


def test_config_examples_describe_the_same_config(tmp_path, monkeypatch):
    dumps = []
    for index, param in enumerate(CONFIG_EXAMPLES):
        fmt, body = param.values
        directory = tmp_path / str(index)
        directory.mkdir()
        config = _load_config_example(directory, fmt, body, monkeypatch)
        dumps.append(config.model_dump())  # type: ignore[attr-defined]  # ``path`` is excluded
    assert dumps
    assert all(dump == dumps[0] for dump in dumps[1:])


def test_config_reference_lists_every_key():
    text = _read("config.md")
    for field in PluginsSection.model_fields:
        assert f"| `{field}` |" in _section(text, "The `plugins` section"), field
    for field in PluginConfig.model_fields:
        assert f"| `{field}` |" in _section(text, "Plugin entries"), field


# --------------------------------------------------------------------------- errors


def test_every_error_is_documented():
    text = _read("errors.md")
    for name in errors.__all__:
        obj = getattr(errors, name)
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            assert re.search(rf"^### `{name}`$", text, re.MULTILINE), f"no section for {name}"
        else:
            assert f"`{name}`" in text, name


def test_error_tree_matches_the_errors_module():
    docstring = errors.__doc__ or ""
    after = docstring.split("The tree::", 1)[1]
    indented = re.match(r"\n*((?:    .*\n|\n)+)", after)
    assert indented is not None
    tree = textwrap.dedent(indented.group(1)).strip()
    blocks = [body.strip() for info, body, _ in _fences(_read("errors.md")) if not info]
    assert tree in blocks


# --------------------------------------------------------------------------- CLI


def _walk(group: click.Group, path: str) -> Iterator[tuple[str, click.Command]]:
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        assert command is not None
        yield f"{path} {name}", command
        if isinstance(command, click.Group):
            yield from _walk(command, f"{path} {name}")


COMMANDS = list(_walk(cli, "tether"))


def test_the_cli_has_commands():
    assert COMMANDS


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[path for path, _ in COMMANDS])
def test_every_command_and_its_parameters_are_documented(path, command):
    section = _section(_read("cli.md"), f"`{path}`")
    for param in command.params:
        if param.callback is _use_config:  # every command's --config: in Global options
            assert "may also come after any command's name" in _read("cli.md")
            continue
        if isinstance(param, click.Option):
            for opt in param.opts:
                assert f"`{opt}" in section, f"{path}: option {opt} is not documented"
        elif isinstance(param, click.Argument):
            assert param.human_readable_name in section, f"{path}: argument {param.name}"


def test_global_options_are_documented():
    section = _section(_read("cli.md"), "Global options")
    for param in cli.params:
        for opt in param.opts:
            assert f"`{opt}" in section, opt


# --------------------------------------------------------------------------- lifecycle


def test_transition_table_matches_the_code():
    section = _section(_read("lifecycle.md"), "Transitions")
    rows = re.findall(r"^\| `(\w+)` \| `(\w+)` \|", section, re.MULTILINE)
    documented = set(rows)
    expected = {(a.value, b.value) for a, targets in TRANSITIONS.items() for b in targets}
    assert documented == expected
    assert len(rows) == len(documented), "a transition is listed twice"


def test_every_status_is_documented():
    section = _section(_read("lifecycle.md"), "Statuses")
    for status in PluginStatus:
        assert f"| `{status.value}` |" in section, status


# --------------------------------------------------------------------------- links


def _slug(heading: str) -> str:
    """The anchor a markdown renderer (GitHub's rules) gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    return {_slug(m) for m in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}


DOC_PAGES = sorted(DOCS.rglob("*.md"))


@pytest.mark.parametrize("page", DOC_PAGES, ids=[str(p.relative_to(DOCS)) for p in DOC_PAGES])
def test_relative_links_lead_somewhere(page):
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    for target in _LINK.findall(text):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s) and other schemes are not checked
        file_part, _, anchor = target.partition("#")
        destination = (page.parent / file_part).resolve() if file_part else page
        assert destination.exists(), f"{page.name}: broken link {target}"
        if anchor and destination.suffix == ".md":
            assert anchor in _anchors(destination), f"{page.name}: no anchor for {target}"


# --------------------------------------------------------------------------- Python blocks
#
# Every ```python block of README.md and docs/**/*.md runs. A page's blocks run in
# order, in one namespace, in a directory holding the files the page shows (a block
# whose info string or first line names a path, as ```python plugins/x/x.py or
# `# plugins/x/plugin.yaml`), in a fresh interpreter (tests/doc_blocks.py says how).
# A Python file inside a plugin directory the page shows is that plugin's code: it
# does not run as a block; `tether plugins test` loads, initializes, starts and
# stops the plugin instead. What a page's prose takes for granted around its blocks
# is its Setting below.

_TIMEOUT = 120  # seconds a page's blocks may take together


@dataclasses.dataclass(frozen=True)
class Setting:
    """What a page's blocks need besides the files the page shows, and why."""

    reason: str
    copy: Mapping[str, str] = dataclasses.field(default_factory=dict)  # repository -> page path
    files: Mapping[str, str] = dataclasses.field(default_factory=dict)  # path -> text
    shown: tuple[tuple[str, str], ...] = ()  # (page, path): a file another page shows
    prelude: str = ""  # run before the page's first block
    database: bool = False  # TETHER_DSN names a test database


_GREETER = (
    ("README.md", "plugins/greeter/plugin.yaml"),
    ("README.md", "plugins/greeter/greeter.py"),
)
_EXAMPLES = {"examples": "examples"}
_RATE_LIMIT = """\
name: rate-limit
version: 1.0.0
description: Stands for the rate limiter the example config names.
author: docs
entry: rate_limit:RateLimit
permissions: {cache: true, router: true}
config:
  admin_token: {type: string, secret: true}
  requests_per_minute: {type: integer}
  window: {type: duration}
"""

SETTINGS: dict[str, Setting] = {
    "README.md": Setting("`examples/app.yaml` is the repository's", copy=_EXAMPLES),
    "docs/operations.md": Setting(
        "the prose speaks of `manager`, a PluginManager with the plugins of `examples/app.yaml`",
        copy=_EXAMPLES,
        prelude="import tether\n\nmanager = tether.PluginManager()\n"
        'await manager.load_plugins_from_config("examples/app.yaml")\n',
    ),
    "docs/reference/lifecycle.md": Setting(
        "the page loads the README's greeter and a tether.yaml naming the examples' logging plugin",
        copy=_EXAMPLES,
        shown=_GREETER,
        files={
            "tether.yaml": "plugins:\n  plugins:\n    - path: ./examples/plugins/logging-plugin\n"
        },
        prelude="import tether\n",
    ),
    "docs/reference/errors.md": Setting(
        "the page catches what `manager` raises loading a tether.yaml that names no plugin there",
        files={"tether.yaml": "plugins:\n  plugins:\n    - path: ./plugins/missing\n"},
        prelude="import tether\n\nmanager = tether.PluginManager()\n",
    ),
    "docs/reference/config.md": Setting(
        "tether.yaml is the page's YAML example, whose plugins (the examples' cache-plugin and a "
        "stand-in rate-limit) are in ./plugins and whose ${RATE_LIMIT_ADMIN_TOKEN} is set",
        copy={"examples/plugins/cache-plugin": "plugins/cache-plugin"},
        files={
            "plugins/rate-limit/plugin.yaml": _RATE_LIMIT,
            "plugins/rate-limit/rate_limit.py": (
                "import tether\n\n\nclass RateLimit(tether.Plugin):\n    pass\n"
            ),
        },
        prelude="import os\n\nos.environ['RATE_LIMIT_ADMIN_TOKEN'] = 'docs'\n",
    ),
    "docs/reference/context.md": Setting(
        "the page's fragments are calls a plugin makes on its `ctx`: `ctx` is a real plugin's "
        "context in a running `manager`, beside an auth-plugin exporting AuthService; `handler` "
        "and `token` are what the prose calls them",
        files={
            "plugins/docs/plugin.yaml": "name: docs\nversion: 1.0.0\ndescription: d\nauthor: docs\n"
            "entry: docs:Docs\ndependencies: [{name: auth-plugin}]\n"
            "events: {publishes: [user.created]}\n",
            "plugins/docs/docs.py": "import tether\n\n\nclass Docs(tether.Plugin):\n    pass\n",
            "plugins/auth/plugin.yaml": "name: auth-plugin\nversion: 1.0.0\ndescription: a\n"
            "author: docs\nentry: auth:Auth\nexports: [{name: AuthService}]\n",
            "plugins/auth/auth.py": "import tether\n\n\nclass Auth(tether.Plugin):\n"
            "    def initialize(self, ctx):\n        super().initialize(ctx)\n"
            "        ctx.export_service('AuthService', self)\n\n"
            "    def verify(self, token):\n        return 'ada' if token == 'secret' else None\n",
        },
        prelude=textwrap.dedent(
            """\
            import tether

            manager = tether.PluginManager()
            await manager.load_plugin("plugins/auth")
            await manager.load_plugin("plugins/docs")
            await manager.initialize_all()
            await manager.start_all()
            ctx = manager.get_plugin("docs").ctx
            self = manager.get_plugin("docs")
            token = "secret"


            async def handler(*args):  # a hook's, an event's or a middleware's
                return await args[1](args[0]) if len(args) == 2 else None
            """
        ),
    ),
    "docs/workloads.md": Setting("the page's test runs a bench on a database", database=True),
}

# Blocks marked ```python no-run, by page and first line: why each cannot run.
NOT_RUN: dict[tuple[str, str], str] = {}


def _page_blocks() -> list[pytest.param]:
    params = []
    for page in doc_blocks.PAGES:
        found = doc_blocks.python_blocks(page)
        if found:
            name = found[0].page
            params.append(pytest.param(name, found, id=name))
    return params


PYTHON_PAGES = _page_blocks()
_ALL_BLOCKS = [b for page in doc_blocks.PAGES for b in doc_blocks.blocks(page)]


def _plugin_directories(directory: Path, page: str) -> list[Path]:
    shown = {Path(b.path).parent for b in _ALL_BLOCKS if b.page == page and b.path}
    return sorted(directory / d for d in shown if (directory / d / "plugin.yaml").exists())


def _write_page_directory(directory: Path, page: str) -> Setting:
    setting = SETTINGS.get(page, Setting("nothing but its own files"))
    root = doc_blocks.ROOT
    for source, target in setting.copy.items():
        shutil.copytree(root / source, directory / target, ignore=_CACHES)
    shown = [
        b for b in _ALL_BLOCKS if b.path and (b.page == page or (b.page, b.path) in setting.shown)
    ]
    for block in shown:
        target = directory / str(block.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.body, encoding="utf-8")
    for relative, text in setting.files.items():
        target = directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    for block in _ALL_BLOCKS:
        if block.page == page and block.info == "yaml config":
            (directory / "tether.yaml").write_text(block.body, encoding="utf-8")
    return setting


_CACHES = shutil.ignore_patterns("__pycache__", ".tether")


def _is_plugin_code(directory: Path, block: doc_blocks.Block) -> bool:
    return (
        block.path is not None and (directory / block.path).parent.joinpath("plugin.yaml").exists()
    )


@pytest.mark.slow
@pytest.mark.parametrize(("page", "found"), PYTHON_PAGES)
def test_every_python_block_of_the_page_runs(page, found, tmp_path, request):
    directory = tmp_path / "page"
    directory.mkdir()
    setting = _write_page_directory(directory, page)
    env = {**os.environ, "PYTHONPATH": str(Path(tether.__file__).resolve().parent.parent)}
    if setting.database:
        env["TETHER_DSN"] = request.getfixturevalue("pg_url")
    runnable = [
        dataclasses.asdict(b)
        for b in found
        if doc_blocks.NO_RUN not in b.info.split() and not _is_plugin_code(directory, b)
    ]
    script = tmp_path / "blocks.json"
    script.write_text(json.dumps({"page": page, "prelude": setting.prelude, "blocks": runnable}))
    finished = subprocess.run(
        [sys.executable, doc_blocks.__file__, str(script)],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=_TIMEOUT,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-6000:]
    for plugin in _plugin_directories(directory, page):
        _load_as_tether_does(plugin, page)


def _load_as_tether_does(plugin: Path, page: str) -> None:
    """`tether plugins test`, or for a web plugin, `tether serve` (behind a LiveServer)."""
    if "web" in load_manifest(plugin).provides:
        config = plugin.parent / f"serve-{plugin.name}.yaml"
        config.write_text(f"plugins:\n  plugins:\n    - path: ./{plugin.name}\n", encoding="utf-8")
        with LiveServer(config) as server:
            assert [p.name for p in server.manager.list_plugins()] == [load_manifest(plugin).name]
        return
    tested = CliRunner().invoke(cli, ["plugins", "test", str(plugin)])
    assert tested.exit_code == 0, f"{page}: {plugin.name}: {tested.output}"


def test_the_python_blocks_are_found_and_every_page_with_one_is_run():
    pages = {p.values[0] for p in PYTHON_PAGES}
    assert {"README.md", "docs/workloads.md", "docs/reference/context.md"} <= pages
    assert set(SETTINGS) <= pages, "a Setting for a page without Python blocks"
    blocks = [b for p in PYTHON_PAGES for b in p.values[1]]
    assert len(blocks) > 30


def test_a_block_is_marked_no_run_only_with_a_reason():
    marked = {(b.page, b.first_line) for b in _ALL_BLOCKS if doc_blocks.NO_RUN in b.info.split()}
    assert marked == set(NOT_RUN)
    assert all(NOT_RUN.values())
