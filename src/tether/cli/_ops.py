"""``tether plugins health|enable|disable``: operating plugins of a server.

Without ``--url`` these read and write the state store (``state.url`` in the config,
else ``.tether/state.db`` beside it): the manager reads the enabled flags from it when
it loads plugins, and a host that starts observability writes plugin health there.
With ``--url`` (or ``$TETHER_ADMIN_URL``) they ask a running server's admin API, with
``--token`` (or ``$TETHER_ADMIN_TOKEN``, or ``admin.token``). The reload commands
(``tether.cli._reload``) use the same options and the same admin API client.
"""

from __future__ import annotations

import difflib
import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path

import click
from rich.table import Table

from tether.cli._app import State, pass_state
from tether.cli._output import out
from tether.cli._shared import discover_plugins, entry_manifest
from tether.cli._types import AdminURL, PluginName, Text
from tether.errors import PluginNotFoundError, TetherError
from tether.observability import PluginRow, PluginStateStore

__all__ = [
    "AdminAnswerError",
    "admin_token",
    "call_admin",
    "open_store",
    "plugins_disable",
    "plugins_enable",
    "plugins_health",
    "state_option",
    "store_location",
    "token_option",
    "url_option",
    "when",
]

URL_ENV = "TETHER_ADMIN_URL"
TOKEN_ENV = "TETHER_ADMIN_TOKEN"  # noqa: S105 - the variable's name, not a secret
_HEALTHY = {"running"}
_BROKEN = {"error", "disabled", "failed"}
_SHORT = 60  # the characters of an error a table shows
MAX_ANSWER = 16 * 1024 * 1024
"""The largest admin API answer read (bytes); a larger one is an error."""

url_option = click.option(
    "--url",
    envvar=URL_ENV,
    type=AdminURL(),
    help="A running server (http://127.0.0.1:8080): ask its admin API. [env: TETHER_ADMIN_URL]",
)
token_option = click.option(
    "--token",
    envvar=TOKEN_ENV,
    type=Text(),
    metavar="TOKEN",
    help="The admin API's bearer token (default: admin.token in the config). "
    "[env: TETHER_ADMIN_TOKEN]",
)
state_option = click.option(
    "--state",
    "state_target",
    type=Text(),
    metavar="PATH|URL",
    help="The state store to use instead of the config's (a SQLite file or postgresql:// URL).",
)


# --------------------------------------------------------------------------- the admin API


def admin_token(state: State, token: str | None) -> str | None:
    """``--token``, else ``admin.token`` in the config (refused with a control character)."""
    if token:
        return token
    configured = state.config().section("admin").get("token")
    if not configured:
        return None
    text = str(configured)
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):  # noqa: PLR2004 - C0 and DEL
        raise TetherError(
            "admin.token in the config holds a control character (a newline?), which no "
            "HTTP header can carry",
            path=state.config_path,
            hint="fix admin.token, or pass --token",
        )
    return text


class AdminAnswerError(TetherError):
    """An error answer of the admin API, in the server's words, with its status and its
    JSON body (a failed reload carries its result there)."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        body: dict[str, object],
        plugin: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, plugin=plugin, hint=hint)
        self.status = status
        self.body = body


def call_admin(
    url: str,
    method: str,
    path: str,
    token: str | None,
    body: dict[str, object] | None = None,
    *,
    timeout: float = 30.0,
) -> dict[str, object]:
    """One admin API request; its JSON answer, or a ``TetherError`` in the server's words
    (an :class:`AdminAnswerError` when the server answered with an error)."""
    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise TetherError(
            f"not an http(s) URL: {url}", hint="pass --url http://127.0.0.1:8080 (the server)"
        )
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)  # noqa: S310 - checked above
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            raw = _read_answer(base, response)
    except urllib.error.HTTPError as exc:
        raise _server_error(exc) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
        raise TetherError(
            f"cannot reach the tether server at {base}: {reason}",
            hint="is `tether serve` running there? check --url / TETHER_ADMIN_URL",
        ) from None
    return _answer(base, raw)


def _read_answer(base: str, response: http.client.HTTPResponse) -> bytes:
    raw = response.read(MAX_ANSWER + 1)
    if len(raw) > MAX_ANSWER:
        raise TetherError(
            f"the server at {base} answered more than {MAX_ANSWER // (1024 * 1024)} MiB",
            hint="is --url a tether server? check --url / TETHER_ADMIN_URL",
        )
    return bytes(raw)


def _answer(base: str, raw: bytes) -> dict[str, object]:
    """The JSON object a tether server answers; anything else is an error naming the URL."""
    try:
        answer = json.loads(raw or b"{}")
    except (ValueError, RecursionError):
        answer = None
    if not isinstance(answer, dict):
        raise TetherError(
            f"the server at {base} did not answer with a JSON object: is it a tether server?",
            hint="check --url / TETHER_ADMIN_URL: it is the address `tether serve` printed",
        )
    return answer


def _server_error(exc: urllib.error.HTTPError) -> TetherError:
    try:
        body = json.loads(exc.read(MAX_ANSWER))
    except (ValueError, OSError, RecursionError, http.client.HTTPException):
        body = {}
    if not isinstance(body, dict) or "message" not in body:
        return TetherError(f"the server answered {exc.code} {exc.reason}")
    hint = body.get("hint")
    if exc.code in {401, 403} and not hint:
        hint = "pass --token (or set TETHER_ADMIN_TOKEN)"
    plugin = body.get("plugin")
    return AdminAnswerError(
        f"{body['message']} (HTTP {exc.code})",
        status=exc.code,
        body=body,
        plugin=str(plugin) if plugin else None,
        hint=str(hint) if hint else None,
    )


# --------------------------------------------------------------------------- the state store


def store_location(state: State, override: str | None) -> str:
    """The state store the command reads: ``--state``, else the config's."""
    if override:
        return override
    config = state.config()
    return config.state.target or str(config.base_directory / ".tether" / "state.db")


def _is_file(target: str) -> bool:
    try:
        return Path(target).is_file()
    except OSError:  # a name too long to look up
        return False


def open_store(target: str, *, create: bool) -> PluginStateStore:
    is_file = not target.startswith(("postgresql://", "postgres://"))
    if is_file and not create and not _is_file(target):
        raise TetherError(
            f"no plugin state store at {target}",
            hint="a server writes it while it runs (once it starts observability); pass "
            "--url to ask a running server, or --config/--state to point at the right one",
        )
    return PluginStateStore(target)


# --------------------------------------------------------------------------- health


@click.command("health")
@click.argument("name", required=False, type=PluginName())
@url_option
@token_option
@state_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@pass_state
def plugins_health(
    state: State,
    name: str | None,
    url: str | None,
    token: str | None,
    state_target: str | None,
    as_json: bool,
) -> None:
    """Health of every plugin, or of plugin NAME: status, errors, hooks, last error.

    Reads the state store, or a running server with --url. Exits 1 when a plugin is
    not running, disabled or degraded.
    """
    if url:
        rows = _live_health(url, admin_token(state, token), name)
    else:
        rows = _stored_health(store_location(state, state_target), name, as_json=as_json)
    if as_json:
        out.print_json(json.dumps({"plugins": rows}, default=str))
    else:
        _print_health(rows, detailed=name is not None)
    unhealthy = [r for r in rows if r.get("state") not in _HEALTHY]
    if unhealthy:
        names = ", ".join(str(r["name"]) for r in unhealthy)
        raise TetherError(
            f"{len(unhealthy)} plugin(s) not healthy: {names}",
            hint=_health_hint({str(r.get("state")) for r in unhealthy}, detailed=name is not None),
        )


def _health_hint(states: set[str], *, detailed: bool) -> str:
    """What to do about the unhealthy states shown: only the advice that applies."""
    advice = [] if detailed else ["`tether plugins health NAME` shows one in detail"]
    if "disabled" in states:
        advice.append("`tether plugins enable NAME` brings back a disabled one")
    if "failed" in states:
        advice.append(
            "a failed one (required: false) did not come up when the server started: fix "
            "its error, then restart the server"
        )
    return "; ".join(advice) or "its last error, above, says what went wrong"


def _live_health(url: str, token: str | None, name: str | None) -> list[dict[str, object]]:
    if name is not None:
        return [call_admin(url, "GET", f"/admin/plugins/{urllib.parse.quote(name)}/health", token)]
    answer = call_admin(url, "GET", "/admin/health", token)
    found = answer.get("plugins")
    rows = found.values() if isinstance(found, dict) else ()
    return [row for row in rows if isinstance(row, dict)]


def _stored_health(target: str, name: str | None, *, as_json: bool) -> list[dict[str, object]]:
    with open_store(target, create=False) as store:
        found = store.plugins(name)
        if name is not None and not found:
            raise TetherError(
                f"plugin '{name}' is not in the state store at {target}",
                plugin=name,
                hint="`tether plugins health` lists the plugins it knows",
            )
        rows = [_stored_row(row) for row in found]
        if name is not None:
            rows[0]["hook_metrics"] = {
                h.hook_type: {
                    "execution_count": h.execution_count,
                    "average_duration_seconds": (
                        h.total_duration_ms / h.execution_count / 1000 if h.execution_count else 0
                    ),
                    "error_count": h.error_count,
                }
                for h in store.hooks(name)
            }
            rows[0]["recent_errors"] = [
                {"at": e.recorded_at.isoformat(), **(e.labels or {})}
                for e in store.recent_errors(name)
            ]
    if not rows and not as_json:
        out.print(f"No plugins in the state store at {target}.")
    return rows


def _stored_row(row: PluginRow) -> dict[str, object]:
    data = row.to_dict()
    data["state"] = row.status
    data["status"] = row.lifecycle_status
    data["updated_at"] = data.get("updated_at")
    return data


def _print_health(rows: list[dict[str, object]], *, detailed: bool) -> None:
    if not rows:
        return
    table = Table("name", "state", "enabled", "errors", "last error", "at", box=None)
    for r in rows:
        state = str(r.get("state"))
        colour = "green" if state in _HEALTHY else "red" if state in _BROKEN else "yellow"
        table.add_row(
            str(r.get("name")),
            f"[{colour}]{state}[/]",
            "yes" if r.get("enabled") else "no",
            str(r.get("error_count", 0)),
            _short(r.get("last_error")),
            when(r.get("last_error_at")),
        )
    out.print(table)
    if detailed:
        _print_detail(rows[0])


def _print_detail(row: dict[str, object]) -> None:
    reason = row.get("unavailable_reason") or row.get("disabled_reason")
    if reason:
        out.print(f"\nunavailable: {reason}", markup=False)
    last = row.get("last_error")
    if last and len(str(last)) > _SHORT:  # the table cut it
        out.print(f"last error: {last}", markup=False)
    hooks = row.get("hook_metrics")
    if isinstance(hooks, dict) and hooks:
        table = Table("hook", "executions", "avg", "errors", box=None)
        for hook, m in hooks.items():
            if not isinstance(m, dict):
                continue
            average = _number(m.get("average_duration_seconds")) * 1000
            table.add_row(hook, str(m.get("execution_count")), f"{average:.3f} ms",
                          str(m.get("error_count")))  # fmt: skip
        out.print("\n[bold]Hooks[/]")
        out.print(table)
    errors = row.get("recent_errors")
    if isinstance(errors, list) and errors:
        out.print("\n[bold]Recent errors[/]")
        for e in (e for e in errors if isinstance(e, dict)):
            out.print(f"  {when(e.get('at'))}  {e.get('type')}: {_short(e.get('message'))}",
                      markup=False)  # fmt: skip


def _number(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0


def _short(value: object, limit: int = _SHORT) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def when(value: object) -> str:
    if not value:
        return ""
    try:
        return datetime.fromisoformat(str(value)).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(value)


# --------------------------------------------------------------------------- switching


def _switch(
    state: State,
    name: str,
    *,
    enabled: bool,
    url: str | None,
    token: str | None,
    state_target: str | None,
    force: bool = False,
    reason: str | None = None,
) -> None:
    action = "enable" if enabled else "disable"
    target = store_location(state, state_target)
    if not url:
        _require_known(state, name, target)  # with --url, the server says whether it knows it
    if url:
        query = "?force=true" if force else ""
        body: dict[str, object] = {} if enabled or reason is None else {"reason": reason}
        path = f"/admin/plugins/{urllib.parse.quote(name)}/{action}{query}"
        answer = call_admin(url, "POST", path, admin_token(state, token), body)
        out.print(f"{action}d [bold]{name}[/] on {url}: it is {answer.get('status')}")
    with open_store(target, create=True) as store:
        known = bool(store.plugins(name))
        store.set_enabled(name, enabled, reason or "it is disabled")
    out.print(f"{action}d [bold]{name}[/] in the state store at {target}", highlight=False)
    if not known:
        out.print(f"[yellow]note:[/] no plugin named '{name}' has run with this state store yet")
    if not url:
        out.print(
            "[dim]A running server picks this up when it restarts; pass --url to apply it now.[/]"
        )


def _require_known(state: State, name: str, target: str) -> None:
    """Refuse (changing nothing) a name no search path, config entry or the state store
    knows: a typo would otherwise save a flag for a plugin that does not exist."""
    known = _known_names(state)
    if name in known:
        return
    if target.startswith(("postgresql://", "postgres://")) or _is_file(target):
        with open_store(target, create=False) as store:
            known |= {row.name for row in store.plugins()}
    if name in known:
        return
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = (
        f"did you mean '{close[0]}'?" if close else "`tether plugins list` shows the plugins found"
    )
    raise PluginNotFoundError(
        f"plugin not found: {name!r} (not in the search paths, the config or the state store "
        f"at {target}); nothing was changed",
        plugin=name,
        hint=hint,
    )


def _known_names(state: State) -> set[str]:
    config = state.config()
    names = {p.name for p in discover_plugins(state).plugins}
    for entry in config.plugins.plugins:
        if entry.name:
            names.add(entry.name)
        elif entry.path:
            try:
                names.add(entry_manifest(state, config, entry).name)
            except TetherError:
                continue  # `tether config validate` reports a broken entry
    return names


@click.command("enable")
@click.argument("name", type=PluginName())
@url_option
@token_option
@state_option
@pass_state
def plugins_enable(
    state: State, name: str, url: str | None, token: str | None, state_target: str | None
) -> None:
    """Enable plugin NAME: saved in the state store (the next `tether serve` starts it).

    With --url the running server enables and starts it now as well.
    """
    _switch(state, name, enabled=True, url=url, token=token, state_target=state_target)


@click.command("disable")
@click.argument("name", type=PluginName())
@url_option
@token_option
@state_option
@click.option("--force", is_flag=True, help="Disable it even though running plugins depend on it.")
@click.option("--reason", help="Why; callers refused by the plugin's gate are told this.")
@pass_state
def plugins_disable(
    state: State,
    name: str,
    url: str | None,
    token: str | None,
    state_target: str | None,
    force: bool,
    reason: str | None,
) -> None:
    """Disable plugin NAME: saved in the state store (the next `tether serve` does not start it).

    With --url the running server stops it and refuses calls to it now as well.
    """
    _switch(
        state, name, enabled=False, url=url, token=token, state_target=state_target,
        force=force, reason=reason,
    )  # fmt: skip
