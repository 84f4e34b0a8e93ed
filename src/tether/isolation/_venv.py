"""The virtual environment of a process plugin with ``requirements``.

:func:`plugin_python` is the interpreter a process plugin's worker runs: the host's own
for a plugin without requirements (or whose requirements' markers all fail here), else
the ``python`` of an environment holding its requirements, built on first use (or by
``tether plugins install``) and then reused.

Where: ``$TETHER_HOME/venvs/<key>`` (``~/.tether/venvs`` by default). The key is a hash
of the plugin's applicable requirements (normalized and sorted: two plugins that need
the same things share one environment) and of the interpreter (implementation, version,
base installation), so another Python builds its own.

What the worker imports from where: the environment has no tether in it. The worker
starts with the environment's interpreter (``python -I``: no ``PYTHON*`` variables, no
user site; the environment's own site-packages is still set up, ``.pth`` files
included), so the plugin's requirements come first; its boot line then adds the host's
import paths after them with :func:`site.addsitedir` (which honours the host's ``.pth``
files, editable installs included), where tether and its own dependencies are found.
The environment stays independent of any one host: the host passes its paths when it
starts a worker.

pip never sees the host's packages (it installs into a bare environment), so it is given
the host's versions of tether's own dependencies as constraints: a requirement that would
bring a pydantic or msgspec other than the host's (which tether, imported in the same
worker, needs) fails to install with pip's explanation, instead of breaking the worker.

A build is atomic and exclusive: the environment is made in a hidden directory beside
its place and renamed there once pip succeeded (a directory without its marker file is
not an environment); an exclusive ``flock`` on ``<key>.lock`` makes a second host
loading the same plugin wait, then find it built. Waiting and building are bounded
(:data:`BUILD_LIMIT`); a failed install is a :class:`~tether.errors.PluginLoadError`
naming the plugin, the requirement pip failed on and the end of pip's output.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from tether._manifest import Manifest
from tether._requirements import applicable, normalized
from tether.errors import PluginLoadError

__all__ = [
    "BUILD_LIMIT",
    "Environment",
    "ensure_environment",
    "environment_key",
    "plugin_environment",
    "plugin_python",
    "venvs_root",
]

log = logging.getLogger("tether.isolation")

BUILD_LIMIT = 600.0
"""Seconds a build (waiting for another host's build included) may take."""
_FORMAT = 1  # of the key: bump to rebuild every environment
_MARKER = "tether-environment.json"
_TAIL_LINES = 12
_LOCK_POLL = 0.1
# pip's words for the requirement it could not satisfy, most specific first.
_FAILED_ON = (
    re.compile(r"No matching distribution found for (?P<req>.+?)\s*$"),
    re.compile(r"Could not find a version that satisfies the requirement (?P<req>\S+)"),
    re.compile(r"Cannot install (?P<req>.+?) because these package versions have conflicting"),
    re.compile(r"Invalid requirement: '?(?P<req>[^']+)'?"),
)
_UNSET = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH", "PIP_PYTHON")


@dataclass(frozen=True, slots=True)
class Environment:
    """A plugin's environment: where it is, its interpreter, and whether this call built
    it (``seconds``: how long that took)."""

    path: Path
    python: Path
    built: bool
    seconds: float


def venvs_root(environ: Mapping[str, str] | None = None) -> Path:
    """``$TETHER_HOME/venvs``, else ``~/.tether/venvs``."""
    environ = os.environ if environ is None else environ
    home = environ.get("TETHER_HOME")
    return (Path(home) if home else Path.home() / ".tether") / "venvs"


def environment_key(requirements: Sequence[Requirement]) -> str:
    """The hash naming the environment of ``requirements`` on this interpreter."""
    payload = {
        "format": _FORMAT,
        "requirements": sorted({normalized(r) for r in requirements}),
        "python": [sys.implementation.name, platform.python_version(), sys.base_prefix],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def plugin_environment(
    manifest: Manifest, *, root: Path | None = None, limit: float = BUILD_LIMIT
) -> Environment | None:
    """The environment of ``manifest``'s worker, built if need be (blocking): ``None``
    for a plugin with no applicable requirements (its worker runs the host's Python)."""
    requirements = applicable(manifest.requirements)
    if not requirements:
        return None
    return ensure_environment(
        manifest.name, requirements, root=root, limit=limit, source=manifest.source
    )


def plugin_python(manifest: Manifest) -> str | None:
    """The interpreter of ``manifest``'s worker: ``None`` for the host's."""
    environment = plugin_environment(manifest)
    return None if environment is None else str(environment.python)


def ensure_environment(
    plugin: str,
    requirements: Sequence[Requirement],
    *,
    root: Path | None = None,
    limit: float = BUILD_LIMIT,
    source: Path | None = None,
) -> Environment:
    """The environment holding ``requirements``: found in the cache, or built there."""
    root = venvs_root() if root is None else root
    key = environment_key(requirements)
    target = root / key
    if _is_built(target):
        return Environment(target, _python_of(target), built=False, seconds=0.0)
    root.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + limit
    with _exclusive(root / f"{key}.lock", plugin, deadline, limit, source):
        if _is_built(target):  # another host built it while this one waited
            return Environment(target, _python_of(target), built=False, seconds=0.0)
        return _build(plugin, requirements, target, deadline, limit, source)


def _is_built(target: Path) -> bool:
    return (target / _MARKER).is_file()


def _python_of(target: Path) -> Path:
    return target / "bin" / "python"


@contextlib.contextmanager
def _exclusive(
    path: Path, plugin: str, deadline: float, limit: float, source: Path | None
) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (released by the kernel if the holder
    dies: a lock file left behind never blocks anyone)."""
    with path.open("a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise PluginLoadError(
                        f"plugin '{plugin}': another process has been building its "
                        f"environment for more than {limit:g}s (lock {path})",
                        plugin=plugin,
                        path=source,
                        hint="wait for that build to end and load the plugin again",
                    ) from None
                time.sleep(_LOCK_POLL)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(
    plugin: str,
    requirements: Sequence[Requirement],
    target: Path,
    deadline: float,
    limit: float,
    source: Path | None,
) -> Environment:
    texts = [str(r) for r in requirements]
    log.info("plugin %s: building its environment at %s for %s", plugin, target,
             ", ".join(texts))  # fmt: skip
    started = time.monotonic()
    for stale in target.parent.glob(f".{target.name}-*"):  # a killed build's (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        venv.EnvBuilder(with_pip=False, symlinks=True).create(staging)
        _install(plugin, requirements, staging, deadline, limit, source)
        seconds = time.monotonic() - started
        marker = {"requirements": texts, "python": platform.python_version(),
                  "seconds": round(seconds, 3), "built": time.time()}  # fmt: skip
        (staging / _MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        if target.exists():  # a directory without its marker: not an environment
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("plugin %s: built its environment at %s in %.1fs", plugin, target, seconds)
    return Environment(target, _python_of(target), built=True, seconds=seconds)


def _install(
    plugin: str,
    requirements: Sequence[Requirement],
    staging: Path,
    deadline: float,
    limit: float,
    source: Path | None,
) -> None:
    """``pip install`` the requirements into ``staging`` (the host's pip, run for the
    environment's interpreter), within what is left of ``limit``."""
    if importlib.util.find_spec("pip") is None:
        raise PluginLoadError(
            f"plugin '{plugin}' has requirements, but pip is not installed in the host's "
            f"environment ({sys.prefix}) to install them",
            plugin=plugin,
            path=source,
            hint="install pip where tether runs (python -m ensurepip)",
        )
    constraints = staging / "tether-constraints.txt"
    constraints.write_text("".join(f"{pin}\n" for pin in _host_pins()))
    argv = [sys.executable, "-m", "pip", "--python", str(_python_of(staging)), "install",
            "--disable-pip-version-check", "--no-input", "--no-warn-script-location",
            "--progress-bar", "off", "--constraint", str(constraints),
            *(str(r) for r in requirements)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in _UNSET}
    process = subprocess.Popen(  # noqa: S603 - the host's own interpreter running pip
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        raise PluginLoadError(
            f"plugin '{plugin}': installing its requirements did not finish within "
            f"{limit:g}s{_tail(output)}",
            plugin=plugin,
            path=source,
            hint="check that pip can reach its index (PIP_INDEX_URL, pip.conf), then load "
            "the plugin again",
        ) from None
    finally:
        constraints.unlink(missing_ok=True)
    if process.returncode != 0:
        raise _install_failed(plugin, requirements, output, source)


def _install_failed(
    plugin: str, requirements: Sequence[Requirement], output: bytes, source: Path | None
) -> PluginLoadError:
    failed = _failed_on(output.decode(errors="replace"))
    if failed is None:
        what = "its requirements (" + ", ".join(f"'{r}'" for r in requirements) + ")"
    else:
        theirs = {canonicalize_name(r.name): r for r in requirements}
        name = re.split(r"[\s\[<>=!~;@(,]", failed, maxsplit=1)[0]
        own = theirs.get(canonicalize_name(name)) if name else None
        what = f"'{own}'" if own is not None else f"'{failed}' (which its requirements need)"
    return PluginLoadError(
        f"plugin '{plugin}': pip could not install {what}{_tail(output)}",
        plugin=plugin,
        path=source,
        hint="fix the plugin's `requirements`, or make the distribution available where pip "
        "looks (PIP_INDEX_URL, PIP_FIND_LINKS, pip.conf); nothing was kept, the next load "
        "tries again",
    )


def _failed_on(output: str) -> str | None:
    for pattern in _FAILED_ON:
        for line in output.splitlines():
            match = pattern.search(line)
            if match:
                return match.group("req").strip()
    return None


def _tail(output: bytes) -> str:
    lines = [line.rstrip() for line in output.decode(errors="replace").splitlines()]
    kept = [line for line in lines if line.strip()][-_TAIL_LINES:]
    return ("; pip said:\n  " + "\n  ".join(kept)) if kept else ""


def _host_pins() -> list[str]:
    """``name==version`` for tether's installed dependencies (their closure, markers
    honoured), which the worker imports from the host."""
    pins: dict[str, str] = {}
    todo = ["tether"]
    while todo:
        try:
            dist = metadata.distribution(todo.pop())
        except metadata.PackageNotFoundError:
            continue
        name = canonicalize_name(dist.metadata["Name"])
        if name in pins:
            continue
        pins[name] = dist.version
        for text in dist.requires or ():
            with contextlib.suppress(InvalidRequirement):
                todo.extend(r.name for r in applicable([text]))
    pins.pop("tether", None)
    return [f"{name}=={version}" for name, version in sorted(pins.items())]
