"""``tether plugins reload|rollback|history``: hot reload of a running server, and its record.

``reload`` and ``rollback`` ask a running server's admin API (``--url``, else
``$TETHER_ADMIN_URL``) and print the outcome as data: reloaded or rolled back, the
versions, the step that failed and its error, the time it took, the calls held and
refused. They exit 0 when the new version (or, for ``rollback``, the previous one)
runs, and 1 when it was rolled back or no version runs. ``history`` reads the
reloads from the server, or straight from the state store without one.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click
from rich.markup import escape
from rich.table import Table

from tether.cli._app import State, pass_state
from tether.cli._ops import (
    AdminAnswerError,
    admin_token,
    call_admin,
    open_store,
    state_option,
    store_location,
    token_option,
    url_option,
    when,
)
from tether.cli._output import out
from tether.cli._types import PluginName, Seconds
from tether.errors import TetherError

__all__ = ["plugins_history", "plugins_reload", "plugins_rollback"]

RELOAD_TIMEOUT = 300.0
"""Seconds the CLI waits for a reload's answer (the server holds calls meanwhile)."""
HISTORY_LIMIT = 1000
"""The most rows ``history --limit`` takes (as the admin API)."""
_MAX_QUEUE = 1_000_000
_Function = TypeVar("_Function", bound=Callable[..., Any])


def _reload_options(command: _Function) -> _Function:
    """The ``ReloadConfig`` options; each one not given is the server's ``reload:`` section's."""
    options = [
        click.option(
            "--queue-timeout",
            type=Seconds(),
            help="How long a call held during the swap waits before it is refused (503). "
            "[default: the server's reload.queue_timeout, 30s]",
        ),
        click.option(
            "--max-queue-size",
            type=click.IntRange(1, _MAX_QUEUE),
            metavar="N",
            help="At most N calls held; more are refused. [default: reload.max_queue_size, 1000]",
        ),
        click.option(
            "--strategy",
            type=click.Choice(["block", "reject"]),
            help="block: hold new calls until the new version runs; reject: refuse them "
            "at once. [default: reload.strategy, block]",
        ),
        click.option(
            "--grace-period",
            type=Seconds(),
            help="How long the new version is watched (a crash or failing health check "
            "rolls it back). [default: reload.grace_period, 30s]",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _reload_body(given: dict[str, object]) -> dict[str, object]:
    """The admin API's body: the ``ReloadConfig`` options given (``None``: not given)."""
    return {key: value for key, value in given.items() if value is not None}


def _ask(
    state: State,
    action: str,
    name: str,
    *,
    url: str | None,
    token: str | None,
    body: dict[str, object],
) -> tuple[dict[str, object], str | None]:
    """The server's result of ``action`` (reload or rollback), and its hint; a failed one,
    which the server answers with 409 and the result beside the error, is returned too."""
    if not url:
        doing = "reloading a plugin" if action == "reload" else "rolling a plugin back"
        raise TetherError(
            f"{doing} needs a running server",
            plugin=name,
            hint="pass --url http://127.0.0.1:8080 (or set TETHER_ADMIN_URL) and --token",
        )
    path = f"/admin/plugins/{urllib.parse.quote(name)}/{action}"
    try:
        return call_admin(
            url, "POST", path, admin_token(state, token), body, timeout=RELOAD_TIMEOUT
        ), None
    except AdminAnswerError as exc:
        result = exc.body.get("result")
        if isinstance(result, dict):
            return result, exc.hint
        raise


def _succeeded(result: Mapping[str, object]) -> bool:
    """The version asked for runs: the new one (reloaded), or for a rollback the previous
    one (brought back from the kept copy, ``reloaded``; or from memory within a grace
    period, ``rolled_back`` with no failed step)."""
    return result.get("outcome") != "failed" and result.get("step") is None


def _finish(answer: tuple[Mapping[str, object], str | None], *, as_json: bool) -> None:
    """Print the result, then exit 1 (``Error: ...``) unless the version asked for runs."""
    result, hint = answer
    if as_json:
        out.print_json(json.dumps(result, default=str))
    else:
        _print_result(result)
    if _succeeded(result):
        return
    name, step, error = result.get("plugin"), result.get("step"), result.get("error")
    if result.get("outcome") == "rolled_back":
        tried = result.get("to_version") or "the new version"
        raise TetherError(
            f"plugin '{name}' was rolled back: {tried} failed at {step}: {error}",
            plugin=str(name),
            hint=f"{result.get('from_version')} runs as before; fix the plugin and reload "
            f"again (`tether plugins history {name}` lists every reload)",
        )
    raise TetherError(
        f"plugin '{name}' has no running version: {error}", plugin=str(name), hint=hint
    )


def _print_result(result: Mapping[str, object]) -> None:
    """The outcome on one line, then its figures (the server's text, shown as text)."""
    name, step = escape(str(result.get("plugin"))), escape(str(result.get("step")))
    old = escape(str(result.get("from_version")))
    new = escape(str(result.get("to_version") or "?"))
    if _succeeded(result):
        verb = "rolled back" if result.get("kind") == "rollback" else "reloaded"
        out.print(f"[green]{verb}[/] [bold]{name}[/]: {old} -> {new}")
    elif result.get("outcome") == "rolled_back":
        out.print(f"[yellow]rolled back[/] [bold]{name}[/]: {new} failed at {step}; "
                  f"{old} runs again")  # fmt: skip
    else:
        out.print(f"[red]failed[/] [bold]{name}[/]: {new} failed at {step}; no version runs")
    table = Table(box=None, show_header=False, padding=(0, 2, 0, 2))
    table.add_column("field", no_wrap=True)
    table.add_column("value", overflow="fold")
    if result.get("error"):
        table.add_row("error", str(result["error"]))
    table.add_row("duration", f"{_seconds(result.get('duration')):.3f} s")
    table.add_row("held", _calls(result.get("held")))
    table.add_row("rejected", _calls(result.get("rejected")))
    if result.get("discarded_writes"):
        table.add_row("discarded", f"{result['discarded_writes']} storage write(s) restored")
    out.print(table)


def _seconds(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _calls(value: object) -> str:
    return f"{value} call" if value == 1 else f"{value} calls"


# --------------------------------------------------------------------------- commands


@click.command("reload")
@click.argument("name", type=PluginName())
@url_option
@token_option
@_reload_options
@pass_state
def plugins_reload(
    state: State,
    /,
    name: str,
    url: str | None,
    token: str | None,
    as_json: bool,
    **options: object,
) -> None:
    """Hot reload plugin NAME in a running server: the new version from its directory.

    Calls are held meanwhile; a new version that fails is rolled back and the old one
    keeps serving. Prints the outcome; exits 0 when the new version runs, 1 when it was
    rolled back or no version runs.
    """
    body = _reload_body(options)
    _finish(_ask(state, "reload", name, url=url, token=token, body=body), as_json=as_json)


@click.command("rollback")
@click.argument("name", type=PluginName())
@url_option
@token_option
@_reload_options
@pass_state
def plugins_rollback(
    state: State,
    /,
    name: str,
    url: str | None,
    token: str | None,
    as_json: bool,
    **options: object,
) -> None:
    """Bring back the previous version of plugin NAME in a running server.

    The server keeps a copy of each plugin's previous version under its state
    directory, so this works after the grace period too. Exits 0 when the previous
    version runs, 1 otherwise.
    """
    body = _reload_body(options)
    _finish(_ask(state, "rollback", name, url=url, token=token, body=body), as_json=as_json)


@click.command("history")
@click.argument("name", type=PluginName())
@url_option
@token_option
@state_option
@click.option(
    "--limit",
    type=click.IntRange(1, HISTORY_LIMIT),
    default=20,
    show_default=True,
    metavar="N",
    help="Show the N newest reloads.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_state
def plugins_history(
    state: State,
    name: str,
    url: str | None,
    token: str | None,
    state_target: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """The reloads and rollbacks of plugin NAME, newest first.

    From a running server with --url, else straight from the state store (the
    config's, or --state), so it works with no server running.
    """
    if url:
        path = f"/admin/plugins/{urllib.parse.quote(name)}/history?limit={limit}"
        answer = call_admin(url, "GET", path, admin_token(state, token))
        found = answer.get("reloads")
        rows = [r for r in found if isinstance(r, dict)] if isinstance(found, list) else []
        where = url
    else:
        where = store_location(state, state_target)
        rows = _stored_history(where, name, limit)
    if as_json:
        out.print_json(json.dumps({"plugin": name, "reloads": rows}, default=str))
    elif rows:
        _print_history(rows)
    else:
        out.print(f"No reloads of {name} recorded at {where}.", highlight=False)


def _stored_history(target: str, name: str, limit: int) -> list[dict[str, object]]:
    with open_store(target, create=False) as store:
        return [row.to_dict() for row in store.reloads(name, limit=limit)]


def _label(row: Mapping[str, object]) -> tuple[str, str]:
    """What a history line calls a reload, and its colour."""
    if _succeeded(row):
        return ("rollback", "green") if row.get("kind") == "rollback" else ("reloaded", "green")
    if row.get("outcome") == "rolled_back":
        return "rolled back", "yellow"
    return "failed", "red"


def _print_history(rows: list[dict[str, object]]) -> None:
    """One line per reload (when, versions, outcome, time, calls), and the failure under
    one that failed: a table of nine columns does not fit a terminal."""
    for r in rows:
        label, colour = _label(r)
        versions = escape(f"{r.get('from_version') or '?'} -> {r.get('to_version') or '?'}")
        out.print(
            f"{escape(when(r.get('at'))):<19}  {versions:<17} [{colour}]{label:<11}[/] "
            f"{_seconds(r.get('duration')):>7.3f} s  "
            f"held {r.get('held', 0)}, rejected {r.get('rejected', 0)}"
        )
        if r.get("outcome") == "failed":  # the error names both failures
            out.print(f"    {r.get('error') or ''}", markup=False)
        elif r.get("step") is not None:
            out.print(f"    failed at {r.get('step')}: {r.get('error') or ''}", markup=False)
