"""``tether plugins new``: a plugin directory with a manifest, code and a passing test."""

from __future__ import annotations

import contextlib
import json
import re
import string
from pathlib import Path

from tether import __version__, load_manifest
from tether.errors import TetherError

__all__ = ["NAME_HINT", "name_problem", "scaffold"]

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}[a-z0-9]$")
_SHORTEST, _LONGEST = 2, 64
_NAME_CHARACTERS = frozenset(string.ascii_lowercase + string.digits + "-")


def _manifest(name: str, module: str, cls: str) -> dict[str, object]:
    major_minor = ".".join(__version__.split(".")[:2])
    return {
        "name": name,
        "version": "0.1.0",
        "description": f"The {name} plugin.",
        "author": "Your Name <you@example.com>",
        "entry": f"{module}:{cls}",
        "framework": {"version": f">={major_minor}.0"},
        "permissions": {},
        "config": {
            "greeting": {
                "type": "string",
                "default": "hello",
                "description": "What the plugin says.",
            }
        },
    }


def _render(data: dict[str, object], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    if fmt == "yaml":
        import yaml

        return yaml.safe_dump(data, sort_keys=False)
    lines = []
    tables: list[str] = []
    for key, value in data.items():
        if isinstance(value, dict):
            continue
        lines.append(f"{key} = {json.dumps(value)}")
    tables.append('\n[framework]\nversion = "{}"'.format(data["framework"]["version"]))  # type: ignore[index]
    tables.append("\n[permissions]")
    tables.append(
        '\n[config.greeting]\ntype = "string"\ndefault = "hello"\n'
        'description = "What the plugin says."'
    )
    return "\n".join(lines) + "\n" + "\n".join(tables) + "\n"


_CODE = '''"""{name}: describe what the plugin does here."""

from __future__ import annotations

import tether


class {cls}(tether.Plugin):
    def initialize(self, ctx: tether.PluginContext) -> None:
        super().initialize(ctx)
        self.greeting = str(ctx.plugin_config["greeting"])

    def start(self) -> None:
        self.ctx.logger.info("%s started", self.ctx.name)

    def greet(self, who: str) -> str:
        storage = self.ctx.plugin_storage  # durable, and private to this plugin
        storage.set("greeted", int(storage.get("greeted", 0)) + 1)  # type: ignore[call-overload]
        return f"{{self.greeting}}, {{who}}"

    def stop(self) -> None:
        self.ctx.logger.info("%s stopped", self.ctx.name)
'''

_TEST = '''"""Runs the plugin through its whole lifecycle, without a host."""

from pathlib import Path

from tether.testing import PluginHarness

HERE = Path(__file__).resolve().parent


def test_greets_and_counts() -> None:
    with PluginHarness(HERE, config={{"greeting": "hi"}}) as harness:
        assert harness.status == "running"
        assert harness.plugin.greet("ada") == "hi, ada"
        assert harness.storage() == {{"greeted": 1}}
        harness.stop()
        assert harness.status == "stopped"
'''


NAME_HINT = "use lowercase letters, digits and '-', 2 to 64 characters, e.g. 'rate-limit'"


def name_problem(name: str) -> str | None:
    """What is wrong with ``name`` as a new plugin's name (``None``: nothing)."""
    if _NAME.fullmatch(name):
        return None
    return f"invalid plugin name {name!r}: {_broken_rule(name)}"


def _broken_rule(name: str) -> str:
    """Which rule of a new plugin's name ``name`` breaks (the first)."""
    if not _SHORTEST <= len(name) <= _LONGEST:
        return f"it is {len(name)} characters long ({_SHORTEST} to {_LONGEST})"
    odd = next((c for c in name if c not in _NAME_CHARACTERS), None)
    if odd is not None:
        return f"{odd!r} is not allowed (lowercase letters, digits and '-' only)"
    if not name[0].isalpha():
        return "it must start with a lowercase letter"
    return "it must end with a letter or digit"


def scaffold(name: str, directory: Path, *, fmt: str = "yaml") -> Path:
    """Create ``directory/name`` and return it; refuse to overwrite anything.

    A directory that cannot be created or written (missing permissions, a file in the
    way, ``/proc``) is a ``TetherError`` naming it; nothing is left half-made.
    """
    problem = name_problem(name)
    if problem is not None:
        raise TetherError(problem, hint=NAME_HINT)
    target = directory / name
    if _is_taken(target):
        raise TetherError(
            f"{target} already exists",
            path=target,
            hint="choose another name or --dir; nothing was changed",
        )
    module = name.replace("-", "_")
    cls = "".join(part.capitalize() for part in name.split("-")) + "Plugin"
    files = {
        f"plugin.{fmt}": _render(_manifest(name, module, cls), fmt),
        f"{module}.py": _CODE.format(name=name, cls=cls),
        f"test_{module}.py": _TEST.format(name=name),
    }
    made = _make_directory(target)
    try:
        for file, text in files.items():
            (target / file).write_text(text, "utf-8")
    except OSError as exc:
        _remove(target, made)
        raise _cannot_create(target, exc) from None
    load_manifest(target)  # the scaffold must validate; fail loudly here if it does not
    return target


def _is_taken(target: Path) -> bool:
    try:
        return target.exists() or target.is_symlink()
    except OSError as exc:
        raise _cannot_create(target, exc) from None


def _make_directory(target: Path) -> list[Path]:
    """Create ``target`` and the parents it lacks; the directories made, outermost first."""
    missing = [target]
    try:
        missing += [p for p in target.parents if not p.exists()]
        target.mkdir(parents=True)
    except OSError as exc:
        _remove(target, [p for p in reversed(missing) if p.is_dir()])
        raise _cannot_create(target, exc) from None
    return list(reversed(missing))


def _remove(target: Path, made: list[Path]) -> None:
    """Undo a scaffold that failed half-way: the files written, then the directories made."""
    for file in target.iterdir() if target.is_dir() else ():
        file.unlink(missing_ok=True)
    for directory in reversed(made):
        with contextlib.suppress(OSError):
            directory.rmdir()


def _cannot_create(target: Path, exc: OSError) -> TetherError:
    reason = exc.strerror or str(exc)
    shown = str(target)
    if len(shown) > 200:  # noqa: PLR2004 - keep the reason on screen
        shown = f"{shown[:100]}…{shown[-100:]}"
    return TetherError(
        f"cannot create the plugin directory {shown}: {reason}",
        path=target,
        hint="pick a --dir you can write to (the default is ./plugins); nothing was left behind",
    )
