"""Packaging and integrity: build a plugin into a wheel or a tarball, install and
uninstall plugins, lock their files and check them against the lock.

What ``tether plugins package|install|uninstall|lock`` do, for programs::

    from tether.packaging import build_wheel, install_plugin, install_root

    wheel = build_wheel(Path("plugins/greeter"), Path("dist"))
    install_plugin(wheel, install_root("user"))

A config with ``plugins.verify: true`` makes the manager refuse, before importing it,
a plugin whose files differ from the ``tether.lock`` beside the config (see
:func:`check_plugin`). docs/packaging.md describes the formats.
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

__all__ = [
    "LOCK_NAME",
    "LOCK_VERSION",
    "MAX_UNPACKED_BYTES",
    "Installed",
    "Lock",
    "LockedPlugin",
    "PluginFiles",
    "build_tarball",
    "build_wheel",
    "check_plugin",
    "distribution_name",
    "hash_plugin",
    "install_plugin",
    "install_root",
    "lock_entry",
    "lock_path",
    "package_name",
    "plugin_files",
    "read_lock",
    "uninstall_plugin",
    "write_lock",
]
