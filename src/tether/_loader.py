"""The only module that imports plugin code.

Each load of a directory plugin gets a private package of its own,
``_tether_plugins.<name>_<version>_<n>``, whose ``__path__`` is the plugin's
directory. The plugin's modules live under that package, so two versions of one
plugin (the running one and the one a reload brings in) never share a module
object, and unloading removes exactly the modules of one load.

Inside a plugin, import the plugin's own modules relatively
(``from . import helpers`` or ``from .helpers import x``).

Plugins that come from installed distributions (entry points) are imported by
their real module names: Python's import system allows one version of those.

Whatever the plugin's module or its class's ``__init__`` raises, ``SystemExit`` and
other ``BaseException`` subclasses included, is a :class:`~tether.errors.PluginLoadError`
naming the plugin; only what is the host's (a real Ctrl-C) passes as it is. The manager
runs :func:`load_code` in a daemon thread within the plugin's ``timeouts.initialize``
(see ``tether._bounded``).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import itertools
import os
import re
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from tether._bounded import PluginCode, is_hosts
from tether._contracts import PLUGIN_CONTRACT, Contract
from tether._describe import error_line
from tether._entry_source import with_default_entry
from tether._manifest import Manifest
from tether.errors import InterfaceError, PluginImportError, PluginLoadError

__all__ = [
    "ROOT_PACKAGE",
    "LoadedCode",
    "check_contract",
    "code_directory",
    "load_code",
    "loaded_namespaces",
    "renew_code",
    "unload_code",
]

ROOT_PACKAGE = "_tether_plugins"
_generation = itertools.count(1)
_lock = threading.Lock()
_UNSAFE = re.compile(r"\W")


@dataclass(frozen=True, slots=True)
class LoadedCode:
    """What one load produced: the plugin object and where its modules live.

    ``closer`` ends what the load started beside the modules (a process plugin's worker);
    :func:`unload_code` calls it."""

    manifest: Manifest
    instance: object
    module: ModuleType
    namespace: str | None
    closer: Callable[[], object] | None = None


def _root() -> ModuleType:
    root = sys.modules.get(ROOT_PACKAGE)
    if root is None:
        spec = importlib.util.spec_from_loader(ROOT_PACKAGE, loader=None, is_package=True)
        if spec is None:  # pragma: no cover - spec_from_loader only fails on bad input
            raise RuntimeError("cannot create the plugin root package")
        root = importlib.util.module_from_spec(spec)
        root.__path__ = []
        sys.modules[ROOT_PACKAGE] = root
    return root


class _FreshSourceLoader(importlib.machinery.SourceFileLoader):
    """Compiles a plugin's modules from their source on every load, never from a cached
    ``.pyc``: Python checks a cache against its source's size and whole-second mtime, which
    a save within the same second (a watcher's reload) passes with the old code. With no
    stats there is no cache to read or to write."""

    def path_stats(self, path: str) -> Mapping[str, float]:
        raise OSError(f"{path}: plugin code is compiled from its source")


_plugin_roots: set[str] = set()


def _plugin_finder(path: str) -> importlib.machinery.FileFinder:
    """The path hook for directories of plugins loaded in private packages (and the
    directories below them): a finder whose source loader skips the bytecode cache."""
    resolved = os.path.abspath(path)  # noqa: PTH100 - as the import system compares them
    if not any(resolved == root or resolved.startswith(root + os.sep) for root in _plugin_roots):
        raise ImportError(f"{path} is not a plugin directory")
    return importlib.machinery.FileFinder(
        path,
        (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES),
        (_FreshSourceLoader, importlib.machinery.SOURCE_SUFFIXES),
        (importlib.machinery.SourcelessFileLoader, importlib.machinery.BYTECODE_SUFFIXES),
    )  # the import system's own order


def _watch_directory(directory: Path) -> None:
    """Make imports under ``directory`` go through :func:`_plugin_finder`."""
    root = os.path.abspath(directory)  # noqa: PTH100
    if root not in _plugin_roots:
        _plugin_roots.add(root)
        for cached in [
            p for p in sys.path_importer_cache if p == root or p.startswith(root + os.sep)
        ]:
            del sys.path_importer_cache[cached]  # a finder made before the hook was in place
    if _plugin_finder not in sys.path_hooks:
        sys.path_hooks.insert(0, _plugin_finder)


def _new_namespace(manifest: Manifest, directory: Path) -> str:
    _watch_directory(directory)
    with _lock:
        root = _root()
        safe = _UNSAFE.sub("_", f"{manifest.name}_{manifest.version}")
        name = f"{ROOT_PACKAGE}.{safe}_{next(_generation)}"
        spec = importlib.util.spec_from_loader(name, loader=None, is_package=True)
        if spec is None:  # pragma: no cover
            raise RuntimeError(f"cannot create package {name}")
        spec.submodule_search_locations = [str(directory)]
        package = importlib.util.module_from_spec(spec)
        package.__path__ = [str(directory)]
        sys.modules[name] = package
        setattr(root, name.rpartition(".")[2], package)
    return name


def loaded_namespaces() -> list[str]:
    """The private packages currently holding plugin code (for tests and diagnostics)."""
    prefix = ROOT_PACKAGE + "."
    return sorted(n for n in sys.modules if n.startswith(prefix) and n.count(".") == 1)


def _location(exc: BaseException, directory: Path | None) -> tuple[Path | None, int | None]:
    if isinstance(exc, SyntaxError) and exc.filename:
        return Path(exc.filename), exc.lineno
    frames = traceback.extract_tb(exc.__traceback__)
    inside = [f for f in frames if directory is not None and _is_within(f.filename, directory)]
    if not inside:
        return None, None
    chosen = inside[-1]
    return Path(chosen.filename), chosen.lineno


def _is_within(filename: str, directory: Path) -> bool:
    try:
        Path(filename).resolve().relative_to(directory.resolve())
    except ValueError:
        return False
    return True


def _import(manifest: Manifest, module_name: str, directory: Path | None) -> ModuleType:
    importlib.invalidate_caches()
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            file, line = _location(exc, directory)
            raise PluginImportError(manifest.name, exc, file=file, line=line) from exc
        where = f" in {directory}" if directory is not None else ""
        raise PluginLoadError(
            f"plugin '{manifest.name}': entry module '{manifest.entry_module}' not found{where}",
            plugin=manifest.name,
            path=directory,
            hint=f"`entry` is '{manifest.entry}': its module part must name a .py file or a "
            "package inside the plugin directory",
        ) from None
    except BaseException as exc:  # SystemExit at module level is the plugin's failure too
        if not isinstance(exc, Exception) and is_hosts(
            exc, PluginCode.of(manifest.name, directory)
        ):
            raise
        file, line = _location(exc, directory)
        raise PluginImportError(manifest.name, exc, file=file, line=line) from exc


def _resolve_attribute(manifest: Manifest, module: ModuleType) -> object:
    target: object = module
    for part in manifest.entry_attribute.split("."):
        if not hasattr(target, part):
            raise PluginLoadError(
                f"plugin '{manifest.name}': entry '{manifest.entry}' not found: module "
                f"'{manifest.entry_module}' has no attribute '{part}'",
                plugin=manifest.name,
                path=module.__file__,
                hint="set `entry` in the manifest to 'module:attribute' naming the plugin "
                "class or factory",
            )
        target = getattr(target, part)
    return target


def check_contract(manifest: Manifest, contract: Contract, candidate: object) -> None:
    for method in contract.required:
        if not callable(getattr(candidate, method, None)):
            raise InterfaceError(
                manifest.name,
                method,
                entry=manifest.entry,
                contract=contract.name,
                required=contract.required,
            )


def _fulfils(contract: Contract, candidate: object) -> bool:
    return all(callable(getattr(candidate, m, None)) for m in contract.required)


def _instantiate(
    manifest: Manifest, contract: Contract, target: object, directory: Path | None
) -> object:
    if isinstance(target, type):
        check_contract(manifest, contract, target)
    elif _fulfils(contract, target):
        return target
    if not callable(target):
        check_contract(manifest, contract, target)
        return target  # pragma: no cover - _check_contract raised
    try:
        instance = target()
    except BaseException as exc:  # SystemExit in __init__ is the plugin's failure too
        if not isinstance(exc, Exception) and is_hosts(
            exc, PluginCode.of(manifest.name, directory)
        ):
            raise
        file, line = _location(exc, directory)
        where = f" ({file}, line {line})" if file else ""
        raise PluginLoadError(
            f"plugin '{manifest.name}': creating '{manifest.entry}' raised "
            f"{error_line(exc)}{where}",
            plugin=manifest.name,
            path=file,
            hint="the plugin class or factory is called with no arguments; do setup work in "
            "initialize() or start()",
        ) from exc
    check_contract(manifest, contract, instance)
    return instance


def load_code(
    manifest: Manifest,
    *,
    contract: Contract = PLUGIN_CONTRACT,
    private_namespace: bool = True,
) -> LoadedCode:
    """Import the plugin's entry module, resolve ``entry`` and check it against ``contract``.

    A manifest without ``entry`` gets the default one (:mod:`tether._entry_source`).

    ``private_namespace=False`` imports the module by its real name (entry-point
    plugins from installed distributions).
    """
    manifest = with_default_entry(manifest)
    directory = manifest.directory
    if private_namespace and directory is None:
        raise PluginLoadError(
            f"plugin '{manifest.name}' has no directory to load from",
            plugin=manifest.name,
        )
    namespace = _new_namespace(manifest, directory) if private_namespace and directory else None
    module_name = f"{namespace}.{manifest.entry_module}" if namespace else manifest.entry_module
    try:
        module = _import(manifest, module_name, directory)
        target = _resolve_attribute(manifest, module)
        instance = _instantiate(manifest, contract, target, directory)
    except BaseException:
        if namespace is not None:
            _drop(namespace)
        raise
    return LoadedCode(manifest=manifest, instance=instance, module=module, namespace=namespace)


def renew_code(code: LoadedCode, *, contract: Contract = PLUGIN_CONTRACT) -> LoadedCode:
    """A fresh plugin object from code already imported (nothing is imported again): what
    a rollback brings back. Its modules stay those of ``code``."""
    manifest = code.manifest
    target = _resolve_attribute(manifest, code.module)
    instance = _instantiate(manifest, contract, target, manifest.directory)
    return LoadedCode(manifest=manifest, instance=instance, module=code.module,
                      namespace=code.namespace)  # fmt: skip


def _drop(namespace: str) -> None:
    prefix = namespace + "."
    for name in [n for n in sys.modules if n == namespace or n.startswith(prefix)]:
        del sys.modules[name]
    root = sys.modules.get(ROOT_PACKAGE)
    if root is not None:
        root.__dict__.pop(namespace.rpartition(".")[2], None)


def code_directory(code: LoadedCode) -> str | None:
    """Where the plugin's code lives (its directory, else its module's), for telling its
    frames from others (attribution of audit events, of exceptions, of threads)."""
    if code.manifest.directory is not None:
        return str(code.manifest.directory.absolute())
    origin = getattr(code.module, "__file__", None)
    return str(Path(origin).resolve().parent) if origin else None


def unload_code(code: LoadedCode) -> None:
    """Forget the modules of one load (and end what it started: ``code.closer``). Objects
    still referenced elsewhere stay alive."""
    if code.closer is not None:
        code.closer()
    if code.namespace is not None:
        with _lock:
            _drop(code.namespace)
