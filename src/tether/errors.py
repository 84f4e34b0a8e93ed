"""Every error tether raises, and what a caller can read from it.

The tree::

    TetherError
    ├── ManifestError (ValueError)          a plugin.yaml/json/toml that does not validate
    ├── ConfigError (ValueError)            a framework config file or plugin config that is wrong
    │   └── EnvVarError                     ${VAR} used but not set
    ├── DiscoveryError                      a search path cannot be read
    │   └── PluginNameConflictError         two plugins claim one name
    ├── PluginLoadError                     the plugin's code cannot be brought in
    │   ├── PluginNotFoundError (LookupError)   no plugin at that path / of that name
    │   ├── PluginImportError               importing the plugin's code raised
    │   │   └── PluginLoadTimeoutError (TimeoutError)  ... or did not finish in time
    │   ├── InterfaceError (TypeError)      the entry object lacks a lifecycle method
    │   └── IntegrityError                  plugins.verify: the plugin's files differ from the lock
    ├── PackagingError                      a plugin cannot be packaged, installed or uninstalled
    ├── ResolutionError                     the set of plugins cannot be ordered
    │   ├── MissingDependencyError
    │   ├── VersionMismatchError
    │   ├── CircularDependencyError
    │   └── FrameworkVersionMismatchError
    ├── LifecycleError                      a lifecycle step failed or is not allowed
    │   ├── InvalidTransitionError
    │   ├── PluginLifecycleError            initialize/start/stop/cleanup raised or timed out
    │   │   └── StepTimeoutError (TimeoutError)  ... ran past its timeouts.STEP
    │   ├── StopAllError                    stop_all finished with one or more failures
    │   ├── DependentsRunningError          unload refused: running plugins depend on it
    │   └── PluginUnavailableError          the plugin's gate refused a call (stopped, reloading)
    ├── CallError                           a call into a plugin failed at the seam
    │   ├── CallTimeoutError (TimeoutError) an async call ran past the plugin's timeouts.call
    │   │   └── HookTimeoutError            ... an async hook handler, in the reference's words
    │   └── CallInputError (TypeError)      arguments that do not fit the operation (validation)
    ├── ContractError                       a plugin provides a contract no host accepts, or two
    │                                       contracts it provides disagree
    ├── IsolationError                      an isolation level this build cannot give
    │   ├── PluginCrashedError              a process plugin's worker died (calls in flight fail)
    │   ├── WorkerProtocolError             a worker broke the protocol (handshake, framing, codec)
    │   └── RemoteError                     a process plugin raised an exception with no local class
    ├── HookError                           a hook cannot be registered or run
    │   └── HookTimeoutError                (also a CallTimeoutError)
    ├── EventError                          an event cannot be published or subscribed
    │   └── UndeclaredEventError            strict mode: the manifest does not declare it
    ├── ServiceError                        a service cannot be exported or imported
    │   └── ServiceNotFoundError (LookupError)
    ├── MiddlewareError                     a middleware cannot be registered or removed
    ├── StorageError                        plugin storage failed
    │   └── StorageValueError (ValueError)  a value that cannot be stored
    ├── HealthCheckError                    a plugin's health_check() failed, raised or timed out
    └── TetherPermissionError (PermissionError)
        ├── PermissionDeniedError           a plugin used a service it was not granted
        └── PermissionMismatchError         config grants what the manifest does not declare

Every error carries structured fields (``plugin``, ``path``, ``hint``) and builds
its message from them, so the CLI can print ``Error: <message>`` followed by the
hint, and the admin API can return them as JSON. Only the message is part of the
compatibility promise where the reference documents fix its wording.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tether._describe import error_line, error_text, type_name

__all__ = [
    "CallError",
    "CallInputError",
    "CallTimeoutError",
    "CircularDependencyError",
    "ConfigError",
    "ConfigKeyProblem",
    "ConfigProblem",
    "ContractError",
    "DependentsRunningError",
    "DiscoveryError",
    "EnvVarError",
    "EventError",
    "FrameworkVersionMismatchError",
    "HealthCheckError",
    "HookError",
    "HookTimeoutError",
    "IntegrityError",
    "InterfaceError",
    "InvalidTransitionError",
    "IsolationError",
    "LifecycleError",
    "ManifestError",
    "ManifestProblem",
    "MiddlewareError",
    "MissingDependencyError",
    "PackagingError",
    "PermissionDeniedError",
    "PermissionMismatchError",
    "PluginCrashedError",
    "PluginImportError",
    "PluginLifecycleError",
    "PluginLoadError",
    "PluginLoadTimeoutError",
    "PluginNameConflictError",
    "PluginNotFoundError",
    "PluginUnavailableError",
    "RemoteError",
    "ResolutionError",
    "ServiceError",
    "ServiceNotFoundError",
    "StepTimeoutError",
    "StopAllError",
    "StorageError",
    "StorageValueError",
    "TetherError",
    "TetherPermissionError",
    "UndeclaredEventError",
    "VersionMismatchError",
    "WorkerProtocolError",
]


class TetherError(Exception):
    """The root of every error tether raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        plugin: str | None = None,
        path: Path | str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.plugin = plugin
        self.path = Path(path) if path is not None else None
        self.hint = hint

    def __str__(self) -> str:
        return self.message


# --------------------------------------------------------------------------- manifests


@dataclass(frozen=True, slots=True)
class ManifestProblem:
    """One thing wrong with a manifest: where it is and what is wrong."""

    path: Path
    field: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        field = f" [{self.field}]" if self.field else ""
        return f"{where}{field}: {self.message}"


class ManifestError(TetherError, ValueError):
    """A manifest failed to parse or validate; ``problems`` lists every reason."""

    def __init__(self, path: Path, problems: list[ManifestProblem]) -> None:
        self.problems = tuple(problems)
        first = problems[0].message if problems else "invalid manifest"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        details = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"invalid manifest {path}: {first}{more}\n{details}",
            path=path,
            hint="fix the fields listed above; `tether plugins validate PATH` re-checks a manifest",
        )


# --------------------------------------------------------------------------- config


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with a configuration: the dotted key and what is wrong."""

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}" if self.key else self.message


@dataclass(frozen=True, slots=True)
class ConfigKeyProblem(ConfigProblem):
    """A problem at one key of a config file: its ``line`` (``None``: not known, as for a
    config built in code) and a ``hint`` saying what to do about it (``""``: the error's own)."""

    line: int | None = None
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.key}: {self.message}" if self.key else self.message
        return f"line {self.line}: {text}" if self.line is not None else text


class ConfigError(TetherError, ValueError):
    """A framework config file or a plugin's config is wrong."""

    def __init__(
        self,
        message: str,
        *,
        plugin: str | None = None,
        path: Path | str | None = None,
        hint: str | None = None,
        problems: list[ConfigProblem] | None = None,
    ) -> None:
        self.problems = tuple(problems or ())
        super().__init__(message, plugin=plugin, path=path, hint=hint)


class EnvVarError(ConfigError):
    """A ``${VAR}`` reference names a variable that is not set and has no default."""

    def __init__(self, variable: str, *, key: str, path: Path | str | None = None) -> None:
        self.variable = variable
        self.key = key
        where = f" in {path}" if path is not None else ""
        super().__init__(
            f"environment variable '{variable}' is not set (used at '{key}'{where})",
            path=path,
            hint=f"set {variable}, or give a default: ${{{variable}:-value}}",
        )


# --------------------------------------------------------------------------- discovery


class DiscoveryError(TetherError):
    """Searching for plugins failed."""


class PluginNameConflictError(DiscoveryError):
    """Two plugins declare the same name (or one plugin is loaded twice)."""

    @classmethod
    def same_place(cls, name: str, location: str) -> PluginNameConflictError:
        error = cls.__new__(cls)
        error.name, error.first, error.second = name, location, location
        TetherError.__init__(
            error,
            f"plugin name conflict: {name} already loaded from {location}",
            plugin=name,
            path=location,
            hint=f"'{name}' is loaded already; unload it first to load it again",
        )
        return error

    def __init__(self, name: str, first: str, second: str) -> None:
        self.name = name
        self.first = first
        self.second = second
        super().__init__(
            f"plugin name conflict: {name} already loaded from {first} (also found at {second})",
            plugin=name,
            path=second,
            hint="give each plugin a unique name in its manifest, or remove one copy",
        )


# --------------------------------------------------------------------------- loading


class PluginLoadError(TetherError):
    """A plugin's code could not be loaded."""


class PluginNotFoundError(PluginLoadError, LookupError):
    """No plugin exists at the given path, or under the given name."""


class PluginImportError(PluginLoadError):
    """Importing a plugin's module raised; ``file`` and ``line`` point into the plugin."""

    def __init__(
        self,
        plugin: str,
        cause: BaseException,
        *,
        file: Path | None,
        line: int | None,
    ) -> None:
        self.file = file
        self.line = line
        self.cause_type = type_name(cause)
        where = ""
        if file is not None:
            where = f" ({file}, line {line})" if line else f" ({file})"
        detail = getattr(cause, "msg", None) if isinstance(cause, SyntaxError) else None
        text = detail if isinstance(detail, str) and detail else error_text(cause)
        super().__init__(
            f"failed to import plugin '{plugin}': {self.cause_type}: {text}{where}",
            plugin=plugin,
            path=file,
            hint=_import_hint(cause, file),
        )


def _import_hint(cause: BaseException, file: Path | None) -> str:
    """What to do about a failed import: a missing module is the plugin's own (import it
    relatively) or a library to install; anything else is fixed where it was raised."""
    missing = cause.name if isinstance(cause, ModuleNotFoundError) else None
    if not missing:
        return "fix the error at the file and line shown"
    top = missing.partition(".")[0]
    here = file.parent if file is not None else None
    if here is not None and ((here / f"{top}.py").is_file() or (here / top).is_dir()):
        return (
            f"'{top}' is one of the plugin's own modules: import it relatively "
            f"(from . import {top})"
        )
    return (
        f"'{top}' is not installed where tether runs: install it into that environment "
        f"(pip install ...), or import the plugin's own modules relatively (from . import {top})"
    )


class PluginLoadTimeoutError(PluginImportError, TimeoutError):
    """Loading a plugin's code (its import and the creation of its object) ran past its
    ``timeouts.initialize``; ``file`` and ``line`` say where it was then."""

    def __init__(self, plugin: str, timeout: float, *, file: Path | None, line: int | None) -> None:
        self.file = file
        self.line = line
        self.cause_type = "TimeoutError"
        self.timeout = timeout
        where = ""
        if file is not None:
            where = f" ({file}, line {line})" if line else f" ({file})"
        TetherError.__init__(
            self,
            f"plugin load timeout: plugin '{plugin}': importing its code did not finish "
            f"within {timeout:g}s{where}",
            plugin=plugin,
            path=file,
            hint="a plugin's module-level code and its class's __init__ must return within "
            "its timeouts.initialize: do slow work in initialize() or start(). The import "
            "was abandoned and runs on in a daemon thread (isolation: process can end it)",
        )


class InterfaceError(PluginLoadError, TypeError):
    """The object named by ``entry`` does not implement its contract."""

    def __init__(
        self,
        plugin: str,
        missing: str,
        *,
        entry: str,
        contract: str = "plugin",
        required: tuple[str, ...] = (),
    ) -> None:
        self.missing = missing
        self.entry = entry
        self.contract = contract
        methods = ", ".join(required) if required else "initialize, start, stop and cleanup"
        base = (
            " (subclass tether.Plugin for no-op lifecycle methods)" if contract == "plugin" else ""
        )
        super().__init__(
            f"plugin does not implement required interface: missing method {missing}",
            plugin=plugin,
            hint=f"'{entry}' (plugin '{plugin}') must provide every method of the "
            f"'{contract}' contract: {methods}{base}",
        )


class IntegrityError(PluginLoadError):
    """``plugins.verify: true`` refused a plugin before importing its code: its files
    differ from ``tether.lock``, or the lock does not list it.

    ``lock`` is the lock file; ``file`` the first file (relative to the plugin's
    directory) that changed, was added or was removed, and ``change`` which of those
    (``None`` for both when the lock does not list the plugin).
    """

    def __init__(
        self,
        message: str,
        *,
        plugin: str,
        lock: Path,
        file: str | None = None,
        change: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, plugin=plugin, path=lock, hint=hint)
        self.lock = lock
        self.file = file
        self.change = change


class PackagingError(TetherError):
    """A plugin cannot be packaged (``tether plugins package``), installed or uninstalled;
    ``path`` is the file or directory at fault."""


class ContractError(TetherError):
    """A manifest's ``provides`` names a contract no host registered, or two that disagree."""


class IsolationError(TetherError):
    """The isolation a plugin asks for cannot be given here, or its worker failed."""


class PluginCrashedError(IsolationError):
    """A process plugin's worker died: every call in flight fails with this (503 in
    ``tether serve``). ``ended`` says how it ended (``exit code 3``, ``signal SIGSEGV``)."""

    def __init__(self, plugin: str, ended: str, *, during: str | None = None) -> None:
        self.ended = ended
        self.during = during
        doing = f" during {during}" if during else ""
        super().__init__(
            f"plugin '{plugin}' crashed{doing}: its worker process ended ({ended})",
            plugin=plugin,
            hint=f"the worker's last output is in the log (logger tether.worker.{plugin}); "
            "tether restarts it with backoff",
        )


class WorkerProtocolError(IsolationError):
    """A worker process broke the protocol (docs/reference/protocol.md): a bad handshake,
    an oversized or undecodable frame, a message of an unknown kind."""

    def __init__(self, plugin: str, detail: str) -> None:
        self.detail = detail
        super().__init__(
            f"plugin '{plugin}': its worker broke the protocol: {detail}",
            plugin=plugin,
            hint="a worker in another language must speak docs/reference/protocol.md; the "
            "worker was stopped",
        )


class RemoteError(IsolationError):
    """An exception a process plugin raised whose class has no counterpart here: ``kind``
    is the class's name in the worker (``module.Class``), ``remote_traceback`` its trace."""

    def __init__(self, plugin: str, kind: str, text: str, remote_traceback: str = "") -> None:
        self.kind = kind
        self.text = text
        self.remote_traceback = remote_traceback
        super().__init__(f"{kind}: {text}" if text else kind, plugin=plugin)


# --------------------------------------------------------------------------- resolution


class ResolutionError(TetherError):
    """The set of plugins cannot be resolved into a load order."""


class MissingDependencyError(ResolutionError):
    def __init__(self, plugin: str, dependency: str, constraint: str, *, note: str = "") -> None:
        self.dependency = dependency
        self.constraint = constraint
        super().__init__(
            f"missing dependency: plugin '{plugin}' requires '{dependency}' version "
            f"'{constraint}'{note}",
            plugin=plugin,
            hint=f"install or enable '{dependency}', or mark the dependency optional",
        )


class VersionMismatchError(ResolutionError):
    def __init__(self, plugin: str, dependency: str, constraint: str, found: str) -> None:
        self.dependency = dependency
        self.constraint = constraint
        self.found = found
        super().__init__(
            f"version mismatch: plugin '{plugin}' requires '{dependency}' {constraint}, "
            f"found {found}",
            plugin=plugin,
            hint=f"install a version of '{dependency}' matching {constraint}, or relax the "
            "constraint in the manifest",
        )


class CircularDependencyError(ResolutionError):
    """``cycles`` holds every cycle found, each as a path that returns to its start."""

    def __init__(self, cycles: list[list[str]]) -> None:
        self.cycles = tuple(tuple(c) for c in cycles)
        text = "; ".join(" -> ".join(c) for c in cycles)
        super().__init__(
            f"circular dependency detected: {text}",
            plugin=cycles[0][0] if cycles else None,
            hint="break the cycle: move shared code into its own plugin, or talk over events",
        )


class FrameworkVersionMismatchError(ResolutionError):
    def __init__(self, plugin: str, constraint: str, found: str) -> None:
        self.constraint = constraint
        self.found = found
        super().__init__(
            f"framework version mismatch: plugin requires {constraint}, found {found}",
            plugin=plugin,
            hint=f"plugin '{plugin}' needs tether {constraint}; upgrade tether or the plugin",
        )


# --------------------------------------------------------------------------- lifecycle


class LifecycleError(TetherError):
    """A lifecycle step failed or is not allowed now."""


class InvalidTransitionError(LifecycleError):
    def __init__(self, plugin: str, current: str, target: str) -> None:
        self.current = current
        self.target = target
        super().__init__(
            f"invalid transition for plugin '{plugin}': {current} -> {target}",
            plugin=plugin,
            hint=f"a plugin that is {current} cannot become {target}; "
            "see the lifecycle table in docs/reference/lifecycle.md",
        )


class PluginLifecycleError(LifecycleError):
    """A plugin's lifecycle method raised or timed out; ``step`` names which one."""

    def __init__(self, plugin: str, step: str, cause: BaseException | str) -> None:
        self.step = step
        self.cause_text = cause if isinstance(cause, str) else error_line(cause)
        super().__init__(
            f"plugin {step} failed: plugin '{plugin}': {self.cause_text}",
            plugin=plugin,
            hint=cause.hint if isinstance(cause, TetherError) else None,
        )


_STEP_LIMITS = {"initialization": "initialize", "start": "start", "stop": "stop",
                "cleanup": "stop"}  # fmt: skip


class StepTimeoutError(PluginLifecycleError, TimeoutError):
    """A plugin's lifecycle method ran past its time limit (``timeouts.initialize``,
    ``start`` or ``stop``; ``cleanup`` has the stop limit). ``abandoned``: it could not
    be stopped and runs on; ``file`` and ``line`` say where it was when the limit came."""

    def __init__(
        self,
        plugin: str,
        step: str,
        method: str,
        timeout: float,
        *,
        abandoned: bool = False,
        file: Path | str | None = None,
        line: int | None = None,
    ) -> None:
        self.step = step
        self.method = method
        self.timeout = timeout
        self.abandoned = abandoned
        self.file = Path(file) if file is not None else None
        self.line = line
        where = ""
        if file is not None:
            where = f" ({file}, line {line})" if line else f" ({file})"
        self.cause_text = f"{method}() did not return within {timeout:g}s{where}"
        setting = _STEP_LIMITS.get(step, step)
        left = (
            "; it was abandoned and runs on (a plain method in its daemon thread): only "
            "isolation: process can end it"
            if abandoned
            else ""
        )
        TetherError.__init__(
            self,
            f"plugin {step} timeout: plugin '{plugin}': {self.cause_text}",
            plugin=plugin,
            path=self.file,
            hint=f"make {method}() of plugin '{plugin}' return sooner (long work belongs in a "
            f"background task), or raise its timeouts.{setting}{left}",
        )


class StopAllError(LifecycleError):
    """``stop_all`` stopped every plugin it could; ``failures`` lists the ones that failed."""

    def __init__(self, failures: list[PluginLifecycleError]) -> None:
        self.failures = tuple(failures)
        names = ", ".join(f.plugin or "?" for f in failures)
        details = "\n".join(f"  - {f}" for f in failures)
        super().__init__(
            f"{len(failures)} plugin(s) failed to stop: {names}\n{details}",
            hint="the other plugins were stopped; see each failure above",
        )


class PluginUnavailableError(LifecycleError):
    """A call into a plugin was refused at its gate; ``reason`` says why."""

    def __init__(self, plugin: str, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"plugin '{plugin}' is unavailable: {reason}",
            plugin=plugin,
            hint=f"the call reached '{plugin}' while it was not running; check its status "
            "(`PluginManager.get_status`) and its last error",
        )


class DependentsRunningError(LifecycleError):
    """Unloading (or disabling, reloading: ``action``) a plugin that running plugins need."""

    def __init__(self, plugin: str, dependents: list[str], *, action: str = "unload") -> None:
        self.dependents = tuple(dependents)
        self.action = action
        names = ", ".join(f"'{d}'" for d in dependents)
        super().__init__(
            f"cannot {action} plugin '{plugin}': running plugins depend on it: {names}",
            plugin=plugin,
            hint=f"{action} the dependents first, or pass force=True to {action} anyway",
        )


# --------------------------------------------------------------------------- calls


class CallError(TetherError):
    """A call into a plugin failed at the seam (not inside the plugin's own code)."""


class CallTimeoutError(CallError, TimeoutError):
    """An async call ran past its time limit and was cancelled (``timeouts.call``)."""

    def __init__(self, plugin: str, source: str, timeout: str) -> None:
        self.source = source
        self.timeout = timeout
        super().__init__(
            f"plugin execution timeout: plugin '{plugin}' did not finish {source} within {timeout}",
            plugin=plugin,
            hint=f"make {source} of plugin '{plugin}' faster, move slow work to a background "
            "task, or raise its timeouts.call",
        )


class CallInputError(CallError, TypeError):
    """The arguments of a call do not fit the operation's signature (the validation link)."""

    def __init__(self, plugin: str, source: str, detail: str) -> None:
        self.source = source
        self.detail = detail
        super().__init__(
            f"invalid input: {source} of plugin '{plugin}' was called with arguments that do "
            f"not fit it: {detail}",
            plugin=plugin,
            hint="check the arguments the host passes against the plugin's method signature",
        )


# --------------------------------------------------------------------------- mechanisms


class HookError(TetherError):
    """A hook cannot be registered or run."""


class HookTimeoutError(HookError, CallTimeoutError):
    def __init__(self, plugin: str, hook_type: str, timeout: str) -> None:
        self.hook_type = hook_type
        self.source = f"hook:{hook_type}"
        self.timeout = timeout
        TetherError.__init__(
            self,
            f"hook execution timeout: {hook_type} hook exceeded {timeout} timeout",
            plugin=plugin,
            hint=f"make the {hook_type} hook of plugin '{plugin}' faster, move slow work to a "
            "background task, or raise the hook's timeout",
        )


class EventError(TetherError):
    """An event cannot be published or subscribed to."""


class UndeclaredEventError(EventError):
    def __init__(self, plugin: str, event: str, kind: str) -> None:
        self.event = event
        self.kind = kind
        section = "publishes" if kind == "publish" else "subscribes"
        super().__init__(
            f"undeclared event: plugin '{plugin}' tried to {kind} '{event}' but its manifest "
            f"does not list it under events.{section}",
            plugin=plugin,
            hint=f"add '{event}' to events.{section} in the manifest of '{plugin}'",
        )


class ServiceError(TetherError):
    """A service cannot be exported or imported."""


class ServiceNotFoundError(ServiceError, LookupError):
    def __init__(self, plugin: str, service: str, *, available: tuple[str, ...] = ()) -> None:
        self.service = service
        listed = ", ".join(available) if available else "nothing"
        super().__init__(
            f"service not found: plugin '{plugin}' does not export '{service}'",
            plugin=plugin,
            hint=f"'{plugin}' exports: {listed}; check the name, and that '{plugin}' is loaded "
            "and initialized before the importer",
        )


class MiddlewareError(TetherError):
    """A middleware cannot be registered or removed."""


class StorageError(TetherError):
    """Plugin storage failed."""


class StorageValueError(StorageError, ValueError):
    """A value cannot be stored (not serializable, or too large)."""


# --------------------------------------------------------------------------- permissions


class HealthCheckError(TetherError):
    """A plugin's ``health_check()`` raised, returned ``False`` or ran past its time limit."""

    def __init__(self, plugin: str, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"plugin '{plugin}' failed its health check: {reason}",
            plugin=plugin,
            hint=f"see the logs of plugin '{plugin}'; the plugin is marked degraded until "
            "a check passes",
        )


class TetherPermissionError(TetherError, PermissionError):
    """A plugin and its permissions disagree."""


class PermissionDeniedError(TetherPermissionError):
    def __init__(self, plugin: str, permission: str, *, service: str | None = None) -> None:
        self.permission = permission
        what = service or permission
        super().__init__(
            f"permission denied: plugin '{plugin}' attempted {what} access without permission",
            plugin=plugin,
            hint=f"grant it in the config (plugins.plugins[].permissions.{permission}: true) "
            "and declare it in the plugin's manifest",
        )


class PermissionMismatchError(TetherPermissionError, ConfigError):
    def __init__(self, plugin: str, permission: str, *, path: Path | str | None = None) -> None:
        self.permission = permission
        TetherError.__init__(
            self,
            f"permission mismatch: plugin requests '{permission}' permission but manifest "
            "does not declare it",
            plugin=plugin,
            path=path,
            hint=f"declare '{permission}: true' in the manifest of '{plugin}', or remove the "
            "grant from the config",
        )
        self.problems = ()
