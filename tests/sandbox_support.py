"""Running a real child process confined by a Policy, for tests/test_sandbox*.py.

:func:`run_confined` starts the test's interpreter with ``apply(policy)`` as the first
thing it does, then ``body`` (Python source, which calls ``report(...)`` to send JSON
back on stdout). The host's side (``prepare``) is made first and the child is added to
it as soon as it exists; every process and cgroup is gone when the helper returns.

The child imports the sandbox modules without running ``tether/isolation/__init__.py``
(:data:`LIGHT_IMPORT`), which imports the whole worker machinery: the tests are about
what the kernel enforces, and a second less per child keeps the files fast.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from tether.isolation._sandbox import Confinement, Policy, prepare

SRC = str(Path(__file__).resolve().parent.parent / "src")
LIGHT_IMPORT = """
import sys, types, tether
_package = types.ModuleType("tether.isolation")
_package.__path__ = [tether.__path__[0] + "/isolation"]
sys.modules["tether.isolation"] = _package
"""
PRELUDE = (
    LIGHT_IMPORT
    + """
import json, os, sys
def report(**values):
    print(json.dumps(values), flush=True)
from tether.isolation._sandbox import Policy, apply
applied = apply(Policy.from_json(sys.argv[1]))
"""
)


@dataclass
class Outcome:
    returncode: int
    reports: list[dict[str, object]] = field(default_factory=list)
    stderr: str = ""

    @property
    def last(self) -> dict[str, object]:
        assert self.reports, f"the child reported nothing; stderr:\n{self.stderr}"
        return self.reports[-1]


@dataclass
class Box:
    """A plugin directory (readable), a data directory (writable), a secret outside both."""

    base: Path
    plugin_dir: Path
    data_dir: Path
    secret: Path

    def policy(self, uid: int, **changes: object) -> Policy:
        values: dict[str, object] = {
            "plugin": "attacker",
            "read": (str(self.plugin_dir),),
            "write": (str(self.data_dir),),
            "uid": uid,
        }
        values.update(changes)
        return Policy(**values)  # type: ignore[arg-type]


def make_box() -> Box:
    base = Path(tempfile.mkdtemp(prefix="tether-sandbox-", dir="/tmp"))
    base.chmod(0o755)
    plugin_dir = base / "plugin"
    plugin_dir.mkdir(mode=0o755)
    (plugin_dir / "plugin.py").write_text("VALUE = 42\n")
    (plugin_dir / "plugin.py").chmod(0o644)
    data_dir = base / "data"
    data_dir.mkdir()
    secret = base / "secret.txt"
    secret.write_text("the host's secret\n")
    secret.chmod(0o644)  # readable by anyone, as far as file modes go: Landlock decides
    return Box(base, plugin_dir, data_dir, secret)


def remove_box(box: Box) -> None:
    shutil.rmtree(box.base, ignore_errors=True)


def run_confined(
    policy: Policy,
    body: str,
    *,
    args: tuple[str, ...] = (),
    timeout: float = 20.0,
    confine: bool = True,
    prelude: str = PRELUDE,
    during: object = None,
) -> tuple[Outcome, Confinement | None]:
    """Run ``body`` in a confined child; ``during(process, confinement)`` runs while it
    lives. The confinement is returned closed (its pids were checked by then)."""
    confinement = prepare(policy, name="test-sandbox") if confine else None
    script = prelude + textwrap.dedent(body)
    env = {"PYTHONPATH": SRC, "TETHER_TEST_SECRET": "do-not-leak", "PATH": os.environ["PATH"]}
    process = subprocess.Popen(
        [sys.executable, "-c", script, policy.to_json(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        if confinement is not None:
            confinement.add(process.pid)
        if callable(during):
            during(process, confinement)
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
            process.communicate()
        if confinement is not None:
            confinement.close()
    reports = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return Outcome(process.returncode, reports, stderr), confinement
