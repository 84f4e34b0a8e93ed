"""The ``tether`` command line.

Each module defines its commands and groups and registers nothing; the whole
command tree is put together here, in one place.
"""

from tether.cli._app import accept_config_everywhere, cli, main
from tether.cli._bench import bench
from tether.cli._config_commands import config_group, config_show, config_validate
from tether.cli._demo import demo
from tether.cli._exec import plugins_exec
from tether.cli._exercise import plugins_test
from tether.cli._ops import plugins_disable, plugins_enable, plugins_health, plugins_reload
from tether.cli._packaging import (
    plugins_install,
    plugins_lock,
    plugins_package,
    plugins_uninstall,
)
from tether.cli._plugins import (
    plugins,
    plugins_graph,
    plugins_info,
    plugins_list,
    plugins_new,
    plugins_scan,
    plugins_validate,
)
from tether.cli._serve import serve
from tether.cli._workloads import workloads, workloads_list

__all__ = ["cli", "main"]

plugins.add_command(plugins_list)
plugins.add_command(plugins_scan)
plugins.add_command(plugins_info)
plugins.add_command(plugins_validate)
plugins.add_command(plugins_graph)
plugins.add_command(plugins_test)
plugins.add_command(plugins_exec)
plugins.add_command(plugins_new)
plugins.add_command(plugins_health)
plugins.add_command(plugins_enable)
plugins.add_command(plugins_disable)
plugins.add_command(plugins_reload)
plugins.add_command(plugins_package)
plugins.add_command(plugins_install)
plugins.add_command(plugins_uninstall)
plugins.add_command(plugins_lock)

config_group.add_command(config_validate)
config_group.add_command(config_show)

workloads.add_command(workloads_list)

cli.add_command(plugins)
cli.add_command(config_group)
cli.add_command(workloads)
cli.add_command(bench)
cli.add_command(serve)
cli.add_command(demo)
accept_config_everywhere(cli)
