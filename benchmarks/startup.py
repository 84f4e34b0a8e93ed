"""Start-up: whole processes of ``import tether`` and ``tether --help`` against baselines.

Each contender is a fresh interpreter (this script's own, so the same venv and
``PYTHONPATH``), timed from spawn to exit:

- ``import tether`` against ``import pluggy, click`` (what a plugin runtime with a
  command line costs at the least): the import ratio, goal <= 2;
- ``tether --help`` (what the console script runs: ``from tether.cli import main``)
  against ``python -c pass`` (the interpreter alone): the help ratio, goal <= 8;
- for scale, not a goal: ``tether bench --help`` (a subcommand's help) and
  ``import tether; tether.Plugin`` (a plugin author's first access).

    .venv/bin/python benchmarks/startup.py [--rounds 15]

Every contender runs once untimed first (compiled bytecode and the page cache are warm
for all alike); then each round runs all of them, in an order that rotates from round
to round, so machine noise hits them alike. The figures are medians over the rounds
(minimum-maximum in brackets).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time

CLI = "import sys; from tether.cli import main; sys.exit(main())"
CONTENDERS: dict[str, list[str]] = {
    "import tether": ["-c", "import tether"],
    "import pluggy, click": ["-c", "import pluggy, click"],
    "tether --help": ["-c", CLI, "--help"],
    "python -c pass": ["-c", "pass"],
    "tether bench --help": ["-c", CLI, "bench", "--help"],
    "tether.Plugin": ["-c", "import tether; tether.Plugin"],
}
RATIOS = (
    ("import ratio", "import tether", "import pluggy, click", 2.0),
    ("help ratio", "tether --help", "python -c pass", 8.0),
    ("bench help ratio", "tether bench --help", "python -c pass", None),
    ("Plugin ratio", "tether.Plugin", "import pluggy, click", None),
)


def run_once(arguments: list[str]) -> float:
    """Seconds from spawning ``python ARGUMENTS`` to its exit; the run must succeed."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *arguments],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
        timeout=60,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"python {' '.join(arguments)} failed:\n{done.stderr.decode(errors='replace')}")
    return seconds


def measure(rounds: int) -> dict[str, list[float]]:
    names = list(CONTENDERS)
    for name in names:
        run_once(CONTENDERS[name])  # warm-up, untimed
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(run_once(CONTENDERS[name]))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    print(f"python {platform.python_version()} on {platform.platform()}")
    print(f"{args.rounds} alternating rounds of {len(CONTENDERS)} whole processes\n")
    samples = measure(args.rounds)
    median = {name: statistics.median(values) * 1000 for name, values in samples.items()}
    for name, values in samples.items():
        print(
            f"{name:>22}: median {median[name]:7.1f} ms "
            f"({min(values) * 1000:.1f}-{max(values) * 1000:.1f})"
        )
    print()
    for label, measured, baseline, goal in RATIOS:
        ratio = median[measured] / median[baseline]
        verdict = (
            "" if goal is None else f"  goal <= {goal:g}: {'met' if ratio <= goal else 'NOT met'}"
        )
        print(f"{label}: {ratio:.2f} ({measured} / {baseline}){verdict}")


if __name__ == "__main__":
    main()
