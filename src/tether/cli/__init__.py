"""The ``tether`` command line.

Each module defines its commands and registers nothing; the whole command tree is put
together here, in one place, as tables: a command's name, where it lives
(``"module:attribute"``) and its short help. ``tether --help`` (and a group's
``--help``) prints the tables without importing any command; a command's module is
imported when the command runs or shows its own help (see :class:`LazyGroup`). A
new command is one line in its group's table.
"""

from tether.cli._app import LazyGroup, cli, main

__all__ = ["cli", "main"]

_PLUGINS = "tether.cli._plugins"
_OPS = "tether.cli._ops"
_RELOAD = "tether.cli._reload"
_PACKAGING = "tether.cli._packaging"

plugins = LazyGroup(
    "plugins",
    help="Find, inspect, validate, test, run and create plugins.",
    lazy={
        "list": (f"{_PLUGINS}:plugins_list", "List the plugins found in every search path."),
        "scan": (
            f"{_PLUGINS}:plugins_scan",
            "Show every path searched, what was found there, and what was invalid and why.",
        ),
        "info": (
            f"{_PLUGINS}:plugins_info",
            (
                "Everything the manifest of plugin NAME declares, the contract it provides, and "
                "how its dependencies resolve."
            ),
        ),
        "validate": (
            f"{_PLUGINS}:plugins_validate",
            "Check the manifest of each plugin directory or manifest file in PATHS.",
        ),
        "graph": (
            f"{_PLUGINS}:plugins_graph",
            "The dependency graph of the configured plugins (or of every plugin found).",
        ),
        "test": (
            "tether.cli._exercise:plugins_test",
            (
                "Load, initialize, start, stop and clean up a plugin (NAME or PATH) "
                "in a fresh manager."
            ),
        ),
        "exec": (
            "tether.cli._exec:plugins_exec",
            "Run the executor plugin NAME once on the input and print what execute() returns.",
        ),
        "new": (
            f"{_PLUGINS}:plugins_new",
            "Create plugin NAME: a manifest, the plugin's code and a passing test.",
        ),
        "health": (
            f"{_OPS}:plugins_health",
            "Health of every plugin, or of plugin NAME: status, errors, hooks, last error.",
        ),
        "enable": (
            f"{_OPS}:plugins_enable",
            "Enable plugin NAME: saved in the state store (the next `tether serve` starts it).",
        ),
        "disable": (
            f"{_OPS}:plugins_disable",
            (
                "Disable plugin NAME: saved in the state store (the next `tether serve` does not "
                "start it)."
            ),
        ),
        "reload": (
            f"{_RELOAD}:plugins_reload",
            "Hot reload plugin NAME in a running server: the new version from its directory.",
        ),
        "rollback": (
            f"{_RELOAD}:plugins_rollback",
            "Bring back the previous version of plugin NAME in a running server.",
        ),
        "history": (
            f"{_RELOAD}:plugins_history",
            "The reloads and rollbacks of plugin NAME, newest first.",
        ),
        "package": (
            f"{_PACKAGING}:plugins_package",
            "Build the plugin at DIRECTORY (its manifest and code) into a wheel or a tarball.",
        ),
        "install": (
            f"{_PACKAGING}:plugins_install",
            (
                "Install the plugin at PATH: a plugin directory, or a .tar.gz or .whl that "
                "`tether plugins package` built."
            ),
        ),
        "uninstall": (
            f"{_PACKAGING}:plugins_uninstall",
            "Remove plugin NAME from the plugin directory (~/.tether/plugins by default).",
        ),
        "lock": (
            f"{_PACKAGING}:plugins_lock",
            (
                "Write tether.lock beside the config: each plugin's name, version, path and the "
                "SHA-256 of its files, for plugins.verify: true."
            ),
        ),
    },
)

config = LazyGroup(
    "config",
    help="Check and show the framework config.",
    lazy={
        "validate": (
            "tether.cli._config_commands:config_validate",
            (
                "Check the config FILE (else --config, $TETHER_CONFIG or ./tether.yaml), every "
                "plugin it names, their configs and their dependencies, and its bench sections "
                "when it has them."
            ),
        ),
        "show": (
            "tether.cli._config_commands:config_show",
            (
                "The config FILE (else --config, $TETHER_CONFIG or ./tether.yaml) as tether sees "
                "it: env vars expanded, defaults applied, secrets masked."
            ),
        ),
    },
)

workloads = LazyGroup(
    "workloads",
    help="The workload plugins tether bench can run.",
    lazy={
        "list": (
            "tether.cli._workloads:workloads_list",
            "Built-in and plugin workloads: name, version, origin, operations and description.",
        ),
    },
)

cli.add_command(plugins)
cli.add_command(config)
cli.add_command(workloads)
cli.lazy.update(
    {
        "bench": (
            "tether.cli._bench:bench",
            "Run a workload plugin against PostgreSQL and report throughput and latency.",
        ),
        "serve": (
            "tether.cli._serve:serve",
            "Serve the plugins of a config over HTTP until SIGINT or SIGTERM.",
        ),
        "doctor": (
            "tether.cli._doctor:doctor",
            (
                "What this host's kernel offers process plugins (Landlock, seccomp, namespaces, "
                "cgroups, uid drop, rlimits) and whether their isolation is enforced."
            ),
        ),
        "demo": (
            "tether.cli._demo:demo",
            "Walk a config's plugins through their whole life, printing each step.",
        ),
    }
)
