"""``tether plugins package|install|uninstall|lock``: plugins as files to ship and check.

The work is :mod:`tether.packaging`'s; these commands choose the places (``--user``:
``~/.tether/plugins``, ``--system``: ``/usr/local/lib/tether/plugins``, ``--dir``: any
plugin directory) and print what was done.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Column, Table

from tether import Manifest, load_manifest
from tether.cli._app import State, pass_state
from tether.cli._output import out
from tether.cli._shared import discover_plugins, entry_manifest, fail
from tether.cli._types import NonEmptyPath, PluginName
from tether.errors import IntegrityError, PluginLoadError, TetherError
from tether.packaging import (
    LOCK_NAME,
    LockedPlugin,
    build_tarball,
    build_wheel,
    check_host_requirements,
    check_plugin,
    install_plugin,
    install_root,
    lock_entry,
    lock_path,
    plugin_environment,
    read_lock,
    uninstall_plugin,
    write_lock,
)

__all__ = ["plugins_install", "plugins_lock", "plugins_package", "plugins_uninstall"]


def _shown(value: object) -> str:
    return escape(str(value).encode("utf-8", "backslashreplace").decode("utf-8"))


# --------------------------------------------------------------------------- package


@click.command("package")
@click.argument("directory", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["wheel", "tar"]),
    default="wheel",
    show_default=True,
    help="wheel: a wheel exposing the plugin in the tether.plugins entry-point group; "
    "tar: a .tar.gz of the plugin's directory.",
)
@click.option(
    "--output",
    type=NonEmptyPath(path_type=Path, file_okay=False),
    default=Path("dist"),
    show_default=True,
    help="Directory to write the file into (created if missing).",
)
def plugins_package(directory: Path, fmt: str, output: Path) -> None:
    """Build the plugin at DIRECTORY (its manifest and code) into a wheel or a tarball.

    Left out: __pycache__ directories, *.pyc files and names starting with a dot.
    """
    build = build_wheel if fmt == "wheel" else build_tarball
    built = build(directory, output)
    out.print(f"Built {_shown(built)}")
    if fmt == "wheel":
        out.print(f"[dim]Install it with `pip install {_shown(built)}` (discovered through its "
                  f"entry point) or `tether plugins install {_shown(built)}`.[/]")  # fmt: skip
    else:
        out.print(f"[dim]Install it with `tether plugins install {_shown(built)}`.[/]")


# --------------------------------------------------------------------------- install, uninstall


def _where(scope: str, directory: Path | None) -> Path:
    if directory is None:
        return install_root("system" if scope == "system" else "user")
    if scope == "system":
        raise click.UsageError("give --system or --dir, not both")
    return directory


def _scope_options(verb: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """``--user`` (the default), ``--system`` and ``--dir DIR``: where to ``verb``."""

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        for option in (
            click.option(
                "--dir",
                "directory",
                type=NonEmptyPath(path_type=Path, file_okay=False),
                metavar="DIR",
                help=f"{verb} this plugin directory instead (./plugins, a config's "
                "plugins.directory).",
            ),
            click.option(
                "--system",
                "scope",
                flag_value="system",
                help=f"{verb} /usr/local/lib/tether/plugins.",
            ),
            click.option(
                "--user",
                "scope",
                flag_value="user",
                default=True,
                help=f"{verb} ~/.tether/plugins (the default).",
            ),
        ):
            command = option(command)
        return command

    return decorate


@click.command("install")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@_scope_options("Install into")
@click.option("--force", is_flag=True, help="Replace an installed plugin of another version.")
def plugins_install(path: Path, force: bool, scope: str, directory: Path | None) -> None:
    """Install the plugin at PATH: a plugin directory, or a .tar.gz or .whl that
    `tether plugins package` built.

    The manifest validates first; the files land in ROOT/NAME through a hidden
    directory renamed into place. A wheel holding anything else is refused: pip
    installs those.

    A process plugin with `requirements` then gets its virtual environment built (under
    ~/.tether/venvs, or $TETHER_HOME/venvs); an in-process plugin's are checked against
    this environment, with a warning where it does not meet them.
    """
    root = _where(scope, directory)
    done = install_plugin(path, root, force=force)
    name = f"{_shown(done.name)} {_shown(done.version)}"
    if not done.changed:
        out.print(f"{name} is already installed at {_shown(done.path)}: nothing to do")
    elif done.replaced is not None:
        out.print(f"Installed {name} at {_shown(done.path)} (replaced {_shown(done.replaced)})")
    else:
        out.print(f"Installed {name} at {_shown(done.path)}")
    _prepare_requirements(load_manifest(done.path))


def _prepare_requirements(manifest: Manifest) -> None:
    """Build a process plugin's environment; check an in-process plugin's requirements."""
    if not manifest.requirements or manifest.command:
        return
    if manifest.isolation != "process":
        try:
            check_host_requirements(manifest)
        except PluginLoadError as exc:
            out.print(f"[yellow]warning:[/] {_shown(exc)}")
            if exc.hint:
                out.print(f"[dim]{_shown(exc.hint)}[/]")
            return
        out.print("Its requirements are met by this environment")
        return
    environment = plugin_environment(manifest)
    if environment is None:
        out.print("Its requirements do not apply to this Python (markers): none to install")
    elif environment.built:
        out.print(f"Built its environment at {_shown(environment.path)} in "
                  f"{environment.seconds:.1f}s")  # fmt: skip
    else:
        out.print(f"Its environment is ready at {_shown(environment.path)}")


@click.command("uninstall")
@click.argument("name", type=PluginName())
@_scope_options("Uninstall from")
def plugins_uninstall(name: str, scope: str, directory: Path | None) -> None:
    """Remove plugin NAME from the plugin directory (~/.tether/plugins by default)."""
    root = _where(scope, directory)
    manifest = uninstall_plugin(name, root)
    out.print(f"Uninstalled {_shown(manifest.name)} {_shown(manifest.version)} from {_shown(root)}")


# --------------------------------------------------------------------------- lock


def _lockable(state: State) -> tuple[list[Manifest], list[str]]:
    """The configured plugins, then every other plugin found; and what cannot be locked."""
    config = state.config()
    chosen: dict[str, Manifest] = {}
    for entry in config.plugins.plugins:
        manifest = entry_manifest(state, config, entry)
        chosen.setdefault(manifest.name, manifest)
    skipped = []
    for plugin in discover_plugins(state).plugins:
        if plugin.name in chosen:
            continue
        if plugin.directory is None:
            skipped.append(f"{plugin.name} ({plugin.location}: an entry point without a manifest)")
            continue
        chosen[plugin.name] = plugin.manifest
    return list(chosen.values()), skipped


@click.command("lock")
@click.option(
    "--check",
    is_flag=True,
    help=f"Compare the plugins with {LOCK_NAME} instead of writing it; exit 1 if any differs.",
)
@pass_state
def plugins_lock(state: State, check: bool) -> None:
    """Write tether.lock beside the config: each plugin's name, version, path and the
    SHA-256 of its files, for plugins.verify: true.

    The plugins are the config's entries and every plugin found in the search paths.
    """
    path = lock_path(state.config_path)
    manifests, skipped = _lockable(state)
    if check:
        _check(path, manifests)
        return
    locked = write_lock(path, [lock_entry(m, path) for m in manifests])
    table = Table("name", "version", "sha256", Column("path", overflow="fold"), box=None)
    for p in sorted(locked.plugins.values(), key=lambda p: p.name):
        table.add_row(*map(_shown, (p.name, p.version, p.sha256[:16], p.path)))
    out.print(table)
    out.print(f"Wrote {_shown(path)}: {len(locked.plugins)} plugin(s)")
    for item in skipped:
        out.print(f"[yellow]not locked:[/] {_shown(item)}")


def _check(path: Path, manifests: list[Manifest]) -> None:
    lock = read_lock(path)
    refused = 0
    for manifest in manifests:
        try:
            check_plugin(manifest, lock)
        except IntegrityError as exc:
            refused += 1
            out.print(f"[red]✗[/] {_shown(exc)}")
            continue
        except TetherError as exc:  # a file that cannot be read
            refused += 1
            out.print(f"[red]✗[/] {_shown(manifest.name)}: {_shown(exc)}")
            continue
        out.print(f"[green]✓[/] {_shown(manifest.name)} {_shown(manifest.version)}")
    gone = sorted(set(lock.plugins) - {m.name for m in manifests})
    for name in gone:
        entry: LockedPlugin = lock.plugins[name]
        out.print(f"[yellow]in the lock, not found:[/] {_shown(name)} {_shown(entry.version)}")
    if refused:
        raise fail(
            f"{refused} plugin(s) differ from {path}",
            "if the changes are intended, run `tether plugins lock` to record the files again",
        )
