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
from collections.abc import Mapping

import click
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


def _reload_options(command: click.Command) -> click.Command:
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
) -> dict[str, object]:
    """The server's result of ``action`` (reload or rollback); a failed one, which the
    server answers with 409 and the result beside the error, is returned too."""
    if not url:
        raise TetherError(
            f"{action} needs a running server",
            plugin=name,
            hint="pass --url http://127.0.0.1:8080 (or set TETHER_ADMIN_URL) and --token",
        )
    path = f"/admin/plugins/{urllib.parse.quote(name)}/{action}"
    try:
        return call_admin(
            url, "POST", path, admin_token(state, token), body, timeout=RELOAD_TIMEOUT
        )
    except AdminAnswerError as exc:
        result = exc.body.get("result")
        if isinstance(result, dict):
            return result
        raise


def _finish(result: Mapping[str, object], *, as_json: bool, action: str) -> None:
    """Print the result, then exit 1 (``Error: ...``) unless the version asked for runs."""
    if as_json:
        out.print_json(json.dumps(result, default=str))
    else:
        _print_result(result, action=action)
    outcome = result.get("outcome")
    if outcome == "reloaded":
        return
    name, step, error = result.get("plugin"), result.get("step"), result.get("error")
    tried = result.get("to_version") or "the new version"
    if outcome == "rolled_back":
        raise TetherError(
            f"plugin '{name}' was rolled back: {tried} failed at {step}: {error}",
            plugin=str(name),
            hint=f"{result.get('from_version')} runs as before; fix the plugin and reload "
            f"again (`tether plugins history {name}` lists every reload)",
        )
    raise TetherError(
        f"plugin '{name}' has no running version: {tried} failed at {step}, and "
        f"{result.get('from_version')} could not start again: {error}",
        plugin=str(name),
        hint="fix the plugin's files and reload it again; `tether plugins health "
        f"{name} --url URL` shows its errors",
    )


def _print_result(result: Mapping[str, object], *, action: str) -> None:
    name = result.get("plugin")
    old, new = result.get("from_version"), result.get("to_version") or "?"
    outcome = result.get("outcome")
    if outcome == "reloaded":
        verb = "rolled back" if action == "rollback" else "reloaded"
        out.print(f"[green]{verb}[/] [bold]{name}[/]: {old} -> {new}", highlight=False)
    elif outcome == "rolled_back":
        out.print(f"[yellow]rolled back[/] [bold]{name}[/]: {new} failed at "
                  f"{result.get('step')}; {old} runs again", highlight=False)  # fmt: skip
    else:
        out.print(f"[red]failed[/] [bold]{name}[/]: {new} failed at {result.get('step')} "
                  f"and {old} could not start again", highlight=False)  # fmt: skip
    table = Table(box=None, show_header=False, padding=(0, 2))
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
    result = _ask(state, "reload", name, url=url, token=token, body=body)
    _finish(result, as_json=as_json, action="reload")


@click.command("rollback")
@click.argument("name", type=PluginName())
@url_option
@token_option
@_reload_options
@pass_state
def plugins_rollback(
    state: State,
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
    result = _ask(state, "rollback", name, url=url, token=token, body=body)
    _finish(result, as_json=as_json, action="rollback")


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


def _print_history(rows: list[dict[str, object]]) -> None:
    table = Table("at", "from", "to", "outcome", "step", "duration", "held", "rejected",
                  "error", box=None)  # fmt: skip
    colours = {"reloaded": "green", "rolled_back": "yellow", "failed": "red"}
    for r in rows:
        outcome = str(r.get("outcome"))
        table.add_row(
            when(r.get("at")),
            str(r.get("from_version") or ""),
            str(r.get("to_version") or ""),
            f"[{colours.get(outcome, 'white')}]{outcome}[/]",
            str(r.get("step") or ""),
            f"{_seconds(r.get('duration')):.3f} s",
            str(r.get("held", 0)),
            str(r.get("rejected", 0)),
            str(r.get("error") or ""),
        )
    out.print(table)
