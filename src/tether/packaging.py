"""Packaging and integrity: build a plugin into a wheel or a tarball, install and
uninstall plugins, lock their files and check them against the lock.

What ``tether plugins package|install|uninstall|lock`` do, for programs::

    from tether.packaging import build_wheel, install_plugin, install_root

    wheel = build_wheel(Path("plugins/greeter"), Path("dist"))
    install_plugin(wheel, install_root("user"))

A config with ``plugins.verify: true`` makes the manager refuse, before importing it,
a plugin whose files differ from the ``tether.lock`` beside the config (see
:func:`check_plugin`). docs/packaging.md describes the formats.

A plugin's ``requirements``: :func:`plugin_environment` builds (or finds) the virtual
environment of a process plugin under :func:`venvs_root`; :func:`check_host_requirements`
refuses an in-process plugin's that the host's environment does not meet
(docs/isolation.md, "Requirements").
"""

from tether._install import (
    MAX_UNPACKED_BYTES,
    Installed,
    install_plugin,
    install_root,
    uninstall_plugin,
)
from tether._integrity import (
    LOCK_NAME,
    LOCK_VERSION,
    Lock,
    LockedPlugin,
    PluginFiles,
    check_plugin,
    hash_plugin,
    lock_entry,
    lock_path,
    plugin_files,
    read_lock,
    write_lock,
)
from tether._packaging import build_tarball, build_wheel, distribution_name, package_name
from tether._requirements import check_host_requirements
from tether.isolation._venv import Environment, plugin_environment, venvs_root

__all__ = [
    "LOCK_NAME",
    "LOCK_VERSION",
    "MAX_UNPACKED_BYTES",
    "Environment",
    "Installed",
    "Lock",
    "LockedPlugin",
    "PluginFiles",
    "build_tarball",
    "build_wheel",
    "check_host_requirements",
    "check_plugin",
    "distribution_name",
    "hash_plugin",
    "install_plugin",
    "install_root",
    "lock_entry",
    "lock_path",
    "package_name",
    "plugin_environment",
    "plugin_files",
    "read_lock",
    "uninstall_plugin",
    "venvs_root",
    "write_lock",
]
