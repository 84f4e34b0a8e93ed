"""``tether serve``: the web host, serving a config's plugins over HTTP."""

from __future__ import annotations

import logging
from pathlib import Path

import click
from rich.table import Table

from tether.cli._app import State, pass_state
from tether.cli._output import out
from tether.cli._shared import retries_option
from tether.cli._types import Seconds, Text
from tether.errors import TetherError

__all__ = ["serve"]

MAX_WATCH_DEBOUNCE = 60.0  # tether._watch's bound, checked here before anything starts


@click.command("serve")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Config file whose plugins to serve. Default: the global --config.",
)
@click.option(
    "--host",
    type=Text(),
    help="Address to listen on. Default: serve.host in the config, else 127.0.0.1.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    help="Port to listen on (0: any free port). Default: serve.port in the config, else 8080.",
)
@click.option(
    "--admin-token",
    type=Text(),
    metavar="TOKEN",
    help="Bearer token the admin API requires. Default: admin.token in the config, "
    "else $TETHER_ADMIN_TOKEN.",
)
@click.option(
    "--graceful-timeout",
    type=Seconds(),
    help="Seconds (or a duration: 30s) to wait for requests in flight when stopping. "
    "Default: serve.graceful_timeout in the config, else 30s.",
)
@click.option(
    "--watch",
    is_flag=True,
    help="Reload a plugin when a file in its directory changes (plugins loaded from a "
    "directory). A burst of saves makes one reload; a save that breaks the plugin rolls "
    "back, the running version keeps serving, and one log line names the file and line. "
    "Editor swap and backup files, dot-files and __pycache__ are ignored; a plugin added "
    "to a watched directory is not loaded.",
)
@click.option(
    "--watch-debounce",
    type=Seconds(),
    metavar="SECONDS",
    help="With --watch: seconds without a further change that end a burst of saves "
    "(at most 60, or a duration: 500ms). Default: 0.5.",
)
@retries_option
@pass_state
def serve(  # noqa: PLR0917 - click passes one argument per option
    state: State,
    config_file: Path | None,
    host: str | None,
    port: int | None,
    admin_token: str | None,
    graceful_timeout: float | None,
    watch: bool,
    watch_debounce: float | None,
    retry_attempts: int | None,
) -> None:
    """Serve the plugins of a config over HTTP until SIGINT or SIGTERM.

    \b
    Plugins add routes (ctx.router), middleware and request hooks; the
    admin API (/admin, /healthz, /readyz, /metrics) sits beside them. On
    SIGINT/SIGTERM: stop accepting, finish the requests in flight, stop the
    plugins in reverse dependency order, exit 0. A plugin that fails to come
    up (after its retries) stops the server before it serves, unless its
    entry says `required: false`: then it serves without it, degraded.
    With --watch, saving a plugin's files reloads it in place.
    """
    from tether import load_config
    from tether.hosts.web import ServeInfo, ServeSection
    from tether.hosts.web import serve as run_server

    _check_watch(watch=watch, debounce=watch_debounce)
    path = config_file or state.config_path
    if path is None:
        raise TetherError(
            "no config file given",
            hint="pass one: tether serve --config app.yaml",
        )
    config = load_config(path)
    section = ServeSection.of(config)
    plugin_logger = logging.getLogger("tether.plugin")
    level = plugin_logger.level
    if plugin_logger.getEffectiveLevel() > logging.INFO:
        plugin_logger.setLevel(logging.INFO)  # access logs and plugin messages are the point

    def ready(info: ServeInfo) -> None:
        out.print(f"tether serving {len(info.plugins)} plugin(s) on {info.url}")
        for name, reason in info.failed:
            out.print(f"  without {name} (failed, not required): {reason}", markup=False)
        table = Table("method", "path", "plugin", box=None)
        for method, route, plugin in info.routes:
            table.add_row(method, route, plugin)
        out.print(table if info.routes else "  no plugin routes")
        out.print(
            f"  admin API: {info.url}/admin/plugins, /admin/health, /healthz, /readyz, /metrics",
            markup=False,
        )
        if info.watching:
            out.print(
                f"  watching {len(info.watching)} plugin director"
                f"{'y' if len(info.watching) == 1 else 'ies'}: a save reloads its plugin",
                markup=False,
            )
        out.print("Press Ctrl+C to stop.", style="dim")

    try:
        server = run_server(
            config,
            host=section.host if host is None else host,
            port=section.port if port is None else port,
            admin_token=admin_token,
            graceful_timeout=section.graceful_timeout
            if graceful_timeout is None
            else graceful_timeout,
            on_ready=ready,
            retry_attempts=retry_attempts,
            watch=watch,
            watch_debounce=watch_debounce,
        )
    finally:
        plugin_logger.setLevel(level)
    stopped = " -> ".join(server.stopped_order) or "none"
    out.print(f"stopped plugins in reverse order: {stopped}")


def _check_watch(*, watch: bool, debounce: float | None) -> None:
    if debounce is None:
        return
    if not watch:
        raise click.UsageError("--watch-debounce needs --watch")
    if debounce > MAX_WATCH_DEBOUNCE:
        raise click.BadParameter(
            f"{debounce:g} is out of range: give at most {MAX_WATCH_DEBOUNCE:g} seconds "
            "(saves closer together than this make one reload)",
            param_hint="'--watch-debounce'",
        )
