"""What confining a worker costs: apply() inside the child, and start-to-exit of a child
that applies a full policy against one that does not, alternated, medians.

    PYTHONPATH=src python benchmarks/sandbox.py [ROUNDS]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tether.isolation._sandbox import Limits, Policy, pick_uid, prepare, probe

CHILD = """
import sys, time
from tether.isolation._sandbox import Policy, apply
if sys.argv[1] != "-":
    start = time.perf_counter()
    apply(Policy.from_json(sys.argv[1]))
    print(time.perf_counter() - start)
"""


def run(policy_json: str) -> tuple[float, float | None]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, policy_json],
        capture_output=True, text=True, check=True, env={"PYTHONPATH": "src"},
    )  # fmt: skip
    wall = time.perf_counter() - start
    return wall, float(done.stdout) if done.stdout.strip() else None


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    start = time.perf_counter()
    probe()
    print(f"probe (first call): {(time.perf_counter() - start) * 1e3:.1f} ms")
    base = Path(tempfile.mkdtemp(dir="/tmp"))
    base.chmod(0o755)
    (base / "data").mkdir()
    plain, confined, inside, prepares = [], [], [], []
    for _ in range(rounds):
        plain.append(run("-")[0])
        policy = Policy("bench", read=(str(base),), write=(str(base / "data"),), uid=pick_uid(),
                        limits=Limits(memory=256 << 20, processes=16, cpu_time=30))  # fmt: skip
        t = time.perf_counter()
        confinement = prepare(policy, name="bench")
        prepares.append(time.perf_counter() - t)
        wall, applied = run(policy.to_json())
        confinement.close()
        confined.append(wall)
        inside.append(applied or 0.0)
    p, c = statistics.median(plain), statistics.median(confined)
    print(f"child start-to-exit, plain:    {p * 1e3:.1f} ms (median of {rounds})")
    print(f"child start-to-exit, confined: {c * 1e3:.1f} ms")
    print(f"apply() inside the child:      {statistics.median(inside) * 1e3:.1f} ms")
    print(f"prepare() on the host:         {statistics.median(prepares) * 1e3:.1f} ms")
    print(f"confined/plain ratio:          {c / p:.2f}")


if __name__ == "__main__":
    main()
