"""Watching plugin directories: a save reloads the plugin it belongs to.

:class:`PluginWatcher` watches the directory of each plugin loaded from a directory
(watchfiles, inotify on Linux), maps every changed file to the plugin whose directory
holds it, and calls ``PluginManager.reload_plugin`` once per burst of saves: a burst
ends when ``debounce`` seconds pass without another change (or, for files that never
stop changing, after ``max_burst`` seconds). Changes that are not the plugin's source
are ignored: ``__pycache__`` and compiled files, editors' swap, backup and lock files,
dot-files and dot-directories, and anything under the manager's state directory.

A save that breaks the plugin is the core's to roll back (``reload_plugin`` returns
outcome ``rolled_back``); the watcher then logs one line naming the file and line that
broke it and the version that keeps serving, and goes on watching: the next good save
reloads. A plugin added to a watched directory after the watch started is not loaded.

Two tasks share the work, so a burst can be waited for without cancelling watchfiles'
generator (cancelling it ends the watch): one turns watchfiles' batches into
``(plugin, file)`` items on a queue, the other gathers the items of a burst and reloads.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Self

from tether._describe import error_text
from tether.errors import ConfigError, TetherError

if TYPE_CHECKING:
    from watchfiles import Change

    from tether._manager import PluginManager
    from tether._reload_result import ReloadConfig, ReloadResult

__all__ = ["DEBOUNCE", "PluginWatcher", "SourceFilter"]

log = logging.getLogger("tether.watch")

DEBOUNCE = 0.5
"""Seconds without a further change that end a burst of saves (one reload per burst)."""

_MAX_DEBOUNCE = 60.0
_KEPT_RESULTS = 100  # the last reloads a watcher remembers (``results``)
_STOP_WAIT = 60.0  # seconds stop() waits for a reload under way, then cancels it

_LOCATIONS = (  # where an error text says it happened, in the shapes tether's errors use
    re.compile(r" ?\((?P<file>[^()]+?), line (?P<line>\d+)\)"),  # SyntaxError's own
    re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+)'),  # a traceback's
    re.compile(r"(?P<file>[^\s:()\"']+\.(?:py|json|ya?ml|toml)):(?P<line>\d+)"),  # path:line
)


class SourceFilter:
    """Which changed paths are a plugin's source: a watchfiles ``watch_filter``.

    Ignored: ``__pycache__``, compiled files (``.pyc``, ``.pyo``), any path with a part
    starting with a dot (``.git``, ``.mypy_cache``, vim's ``.plugin.py.swp``, emacs'
    ``.#plugin.py``), editors' backups and temporaries (``plugin.py~``, ``*.bak``,
    ``*.orig``, ``*.tmp``, ``*.swp``, emacs' ``#plugin.py#``, vim's ``4913``, JetBrains'
    ``___jb_tmp___``), and everything under the paths in ``ignore`` (the state directory).
    """

    _IGNORED_NAME = re.compile(
        r"^\.|~$|^#.*#$|\.(?:pyc|pyo|swp|swo|swx|bak|orig|tmp)$|^4913$|___jb_(?:tmp|old)___$"
    )

    def __init__(self, ignore: Iterable[Path] = ()) -> None:
        self._ignore = tuple(ignore)

    def __call__(self, change: Change, path: str) -> bool:
        del change  # an added, modified or deleted source file all reload
        return self.is_source(Path(path))

    def is_source(self, path: Path) -> bool:
        if any(part == "__pycache__" or part.startswith(".") for part in path.parts[1:]):
            return False
        if self._IGNORED_NAME.search(path.name):
            return False
        return not any(path.is_relative_to(ignored) for ignored in self._ignore)


class PluginWatcher:
    """Reloads each watched plugin when files in its directory change.

    Made by ``PluginManager.watch()``, which starts it; ``stop()`` ends it (so does the
    manager's ``aclose``), and it can be used as an async context manager. ``plugins``
    names the plugins to watch (by default every plugin loaded from a directory).
    ``config`` is passed to every ``reload_plugin`` call. ``results`` holds the last
    reloads it made, oldest first.
    """

    def __init__(
        self,
        manager: PluginManager,
        plugins: Sequence[str] = (),
        *,
        debounce: float = DEBOUNCE,
        config: ReloadConfig | None = None,
    ) -> None:
        self.manager = manager
        self.debounce = _checked_debounce(debounce)
        self.max_burst = max(5.0, 10 * self.debounce)
        self.config = config
        self.directories: Mapping[str, Path] = _directories_of(manager, plugins)
        self.results: deque[ReloadResult] = deque(maxlen=_KEPT_RESULTS)
        self._filter = SourceFilter([Path(manager.runtime.state_directory).resolve()])
        self._changes: asyncio.Queue[tuple[str, Path]] = asyncio.Queue()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._reloading = False

    @property
    def running(self) -> bool:
        """Whether it watches: started, and neither stopped nor ended by an error."""
        return bool(self._tasks) and not any(task.done() for task in self._tasks)

    async def start(self) -> Self:
        """Start watching. Returns once the directories are watched: a change made after
        that is seen. Raises ``TetherError`` when a directory cannot be watched."""
        if self._tasks:
            return self
        _quiet_watchfiles()
        collector = asyncio.create_task(self._collect(), name="tether-watch-files")
        # watchfiles sets up its OS watch in the first step of its generator, before its
        # first await: one turn of the loop runs that step (or ends the task with an error)
        await asyncio.sleep(0)
        if collector.done():
            collector.result()  # raises what the watch could not do
        reloader = asyncio.create_task(self._reload_bursts(), name="tether-watch-reload")
        self._tasks = [collector, reloader]
        for task in self._tasks:
            task.add_done_callback(self._ended)
        shown = ", ".join(f"{name} ({path})" for name, path in self.directories.items())
        log.info("watching %d plugin director%s for changes: %s", len(self.directories),
                 "y" if len(self.directories) == 1 else "ies", shown)  # fmt: skip
        return self

    async def stop(self) -> None:
        """Stop watching; a reload under way finishes first. Safe to call twice."""
        self._stop.set()  # the watch thread notices within a step (50 ms)
        tasks, self._tasks = self._tasks, []
        if not tasks:
            return
        if not self._reloading:  # the reloader waits for changes: nothing to finish
            tasks[-1].cancel()
        _, pending = await asyncio.wait(tasks, timeout=_STOP_WAIT)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # an error was logged as it came

    def _ended(self, task: asyncio.Task[None]) -> None:
        """Say at once when the watch ends on its own: saves no longer reload."""
        if task.cancelled() or self._stop.is_set():
            return
        error = task.exception()
        why = error_text(error) if error is not None else "it ended"
        log.error("the plugin watcher stopped: %s; saves no longer reload (restart the watch)",
                  why)  # fmt: skip

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ collecting changes

    async def _collect(self) -> None:
        from watchfiles import awatch

        roots = _outermost(self.directories.values())
        try:
            async for batch in awatch(*roots, watch_filter=self._filter, stop_event=self._stop,
                                      step=50, debounce=int(self.max_burst * 1000)):  # fmt: skip
                for _, changed in sorted(batch, key=lambda c: c[1]):
                    self._note(Path(changed))
        except OSError as exc:  # a directory gone, or the OS's watch limit reached
            raise TetherError(
                f"cannot watch the plugin directories: {error_text(exc)}",
                hint="check that each directory exists; on Linux a low "
                "fs.inotify.max_user_watches stops watches too (sysctl raises it)",
            ) from None

    def _note(self, path: Path) -> None:
        name = self._owner(path)
        if name is not None:
            self._changes.put_nowait((name, path))

    def _owner(self, path: Path) -> str | None:
        """The watched plugin whose directory holds ``path`` (the innermost one)."""
        owners = [(len(d.parts), n) for n, d in self.directories.items() if path.is_relative_to(d)]
        return max(owners)[1] if owners else None

    # ------------------------------------------------------------------ reloading

    async def _reload_bursts(self) -> None:
        while not self._stop.is_set():
            burst = await self._next_burst()
            self._reloading = True
            try:
                for name in self._in_load_order(burst):
                    if self._stop.is_set():
                        return
                    await self._reload(name, burst[name])
            finally:
                self._reloading = False

    async def _next_burst(self) -> dict[str, list[Path]]:
        """The changes of one burst, by plugin: from the first change until ``debounce``
        seconds pass without another (at most ``max_burst`` seconds)."""
        loop = asyncio.get_running_loop()
        burst: dict[str, list[Path]] = {}
        name, path = await self._changes.get()
        burst[name] = [path]
        end = loop.time() + self.max_burst
        while (left := end - loop.time()) > 0:
            try:
                name, path = await asyncio.wait_for(self._changes.get(), min(self.debounce, left))
            except TimeoutError:
                break
            files = burst.setdefault(name, [])
            if path not in files:
                files.append(path)
        return burst

    def _in_load_order(self, burst: Mapping[str, list[Path]]) -> list[str]:
        order = [info.name for info in self.manager.list_plugins()]
        return sorted(burst, key=lambda n: order.index(n) if n in order else len(order))

    async def _reload(self, name: str, files: list[Path]) -> None:
        changed = _describe_files(files)
        set_aside = name in self.manager.failed_plugins()
        if not set_aside and not self.manager.is_loaded(name):
            log.info("%s changed, but plugin %s is no longer loaded: not reloaded", changed, name)
            return
        try:
            result = await self.manager.reload_plugin(name, config=self.config)
        except TetherError as exc:
            hint = f" ({exc.hint})" if exc.hint else ""
            log.warning("plugin %s: %s changed, not reloaded: %s%s", name, changed, exc, hint)
            return
        except Exception:  # the watcher outlives whatever one reload raised
            log.exception("plugin %s: %s changed, reloading it failed", name, changed)
            return
        self.results.append(result)
        log_result(result, files, set_aside=set_aside)


def log_result(result: ReloadResult, files: Sequence[Path], *, set_aside: bool = False) -> None:
    """One line about a reload the watcher made: what changed, and what came of it.
    ``set_aside``: the plugin had failed to come up at start (it had no running version)."""
    name, old, new = result.plugin, result.from_version, result.to_version or "?"
    if result.outcome == "reloaded":
        log.info("plugin %s reloaded %s -> %s after a change to %s (%.2fs)", name, old, new,
                 _describe_files(files), result.duration)  # fmt: skip
        return
    where, error = locate_error(result.error or "unknown error", files)
    at = f" at {result.step}" if result.step else ""
    if set_aside:
        log.error("plugin %s: reload to %s failed%s: %s: %s; it stays set aside (not "
                  "running), fix it and save again", name, new, at, where, error)  # fmt: skip
    elif result.outcome == "rolled_back":
        log.error("plugin %s: reload to %s rolled back%s: %s: %s; version %s keeps serving, "
                  "fix it and save again", name, new, at, where, error, old)  # fmt: skip
    else:
        log.error("plugin %s: reload to %s failed%s: %s: %s; the previous version %s could "
                  "not start again either: the plugin is in error and saves no longer reload "
                  "it, fix it and restart the host", name, new, at, where, error, old)  # fmt: skip


def locate_error(error: str, files: Sequence[Path]) -> tuple[str, str]:
    """``(file:line, error)``: where ``error`` happened, and its text (one line).

    The place comes from the error text when it names one (a ``SyntaxError``'s ``(file,
    line N)``, a traceback's ``File "...", line N``, ``path:line``); else from compiling
    the changed Python files (a syntax error the text did not place); else it is the
    changed files.
    """
    text = error.strip()
    first = text.splitlines()[0] if text else "unknown error"
    for pattern in _LOCATIONS:
        found = pattern.search(text)
        if found:
            if pattern is _LOCATIONS[0]:  # said once, in front
                first = pattern.sub("", first, count=1).strip()
            return f"{found['file']}:{found['line']}", first
    for path in files:
        place = _syntax_error_in(path)
        if place is not None:
            return place, first
    return _describe_files(files), first


def _syntax_error_in(path: Path) -> str | None:
    if path.suffix != ".py":
        return None
    try:
        compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
    except SyntaxError as exc:
        return f"{exc.filename or path}:{exc.lineno or 1}"
    except (OSError, ValueError):  # gone again, or a NUL byte: the core says what
        return None
    return None


def _describe_files(files: Sequence[Path]) -> str:
    if not files:
        return "its directory"
    more = f" (and {len(files) - 1} more)" if len(files) > 1 else ""
    return f"{files[0]}{more}"


def _checked_debounce(debounce: float) -> float:
    if (
        isinstance(debounce, bool)
        or not isinstance(debounce, int | float)
        or not math.isfinite(debounce)
        or not 0 < debounce <= _MAX_DEBOUNCE
    ):
        raise ConfigError(
            f"watch debounce must be a number of seconds above 0 and at most "
            f"{_MAX_DEBOUNCE:g}, not {debounce!r}",
            hint=f"saves closer together than the debounce make one reload; {DEBOUNCE:g} "
            "is the default",
        )
    return float(debounce)


def _directories_of(manager: PluginManager, plugins: Sequence[str]) -> dict[str, Path]:
    """Each plugin to watch and its directory: those named, or every directory plugin.

    Plugins set aside at start (``required: false``, they failed to come up) count too:
    a save that fixes one brings it up."""
    locations = {info.name: info.path for info in manager.list_plugins()}
    for name, failed in manager.failed_plugins().items():
        locations.setdefault(name, failed.path)
    chosen: dict[str, Path] = {}
    for name in plugins or locations:
        if name not in locations:
            manager.get_info(name)  # raises PluginNotFoundError, with its hint
        directory = _directory(locations[name])
        if directory is not None:
            chosen[name] = directory
        elif plugins:
            raise TetherError(
                f"plugin '{name}' cannot be watched: it was not loaded from a directory "
                f"({locations[name] or 'no path'})",
                plugin=name,
                hint="only plugins loaded from a directory are watched; reload this one "
                f"with `tether plugins reload {name}`",
            )
    if not chosen:
        raise TetherError(
            "nothing to watch: no plugin is loaded from a directory",
            hint="load plugins by `path` (or from a searched directory); plugins installed "
            "as packages reload with `tether plugins reload NAME`",
        )
    return chosen


def _directory(location: str | None) -> Path | None:
    if location is None:
        return None
    path = Path(location)
    return path.resolve() if path.is_dir() else None


def _quiet_watchfiles() -> None:
    """watchfiles logs "N changes detected" at INFO for every batch; the watcher's own
    lines say what matters. A level someone set for it is kept."""
    noisy = logging.getLogger("watchfiles.main")
    if noisy.level == logging.NOTSET:
        noisy.setLevel(logging.WARNING)


def _outermost(directories: Iterable[Path]) -> list[str]:
    """The directories to hand watchfiles: one nested in another is watched through it."""
    unique = sorted(set(directories), key=lambda d: len(d.parts))
    roots: list[Path] = []
    for directory in unique:
        if not any(directory.is_relative_to(root) for root in roots):
            roots.append(directory)
    return [str(root) for root in roots]
