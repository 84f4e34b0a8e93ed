"""Node.js for the tests of plugins written in JavaScript (examples/node-plugin).

:func:`find_node` returns the ``node`` program, installing Debian's ``nodejs`` package
when there is none (bounded by a timeout), or ``None`` when that is not possible here;
:func:`copy_node_example` copies the example into a test's directory with its
manifest's ``command`` pointing at that program.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import yaml

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "node-plugin"
LIBRARY = EXAMPLE / "tether-worker.js"
_INSTALL_LIMIT = 600.0  # seconds for `apt-get install -y nodejs`


def _which() -> str | None:
    return shutil.which("node") or shutil.which("nodejs")


@functools.cache
def find_node() -> str | None:
    """The path of ``node``; installs Debian's ``nodejs`` when absent (as root, with
    apt-get); ``None`` when it is not there and cannot be installed."""
    found = _which()
    if found is not None or shutil.which("apt-get") is None or os.geteuid() != 0:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "install", "-y", "nodejs"], env=env, check=True,
                       capture_output=True, timeout=_INSTALL_LIMIT)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return _which()


def copy_node_example(node: str, target: Path) -> Path:
    """examples/node-plugin copied to ``target``, its worker started by ``node``."""
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns("README.md"))
    manifest = target / "plugin.yaml"
    data = yaml.safe_load(manifest.read_text())
    data["command"] = [node, *data["command"][1:]]
    manifest.write_text(yaml.safe_dump(data, sort_keys=False))
    return target
