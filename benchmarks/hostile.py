"""Hostile inputs against every surface of issue 9, counted: how many end as a clear error,
and how many as a traceback (or an HTTP 5xx), a hang or a host exit.

    PYTHONPATH=src .venv/bin/python benchmarks/hostile.py [--jobs 4] [--timeout 5]
        [--surface manifests --surface cli ...] [--verbose]

The surfaces and their generated case families (from the issue's text):

- **manifests**: ``load_manifest`` of a file with a 400- or 5,000-digit integer in each
  numeric field, JSON nested 100k deep, YAML 10k deep, TOML 5,000 deep, a 1 KB YAML
  "billion laughs", lone surrogates (escaped and raw), binary garbage, a FIFO, a
  symlink to ``/dev/zero``, a 2 MiB file, duplicate keys, a trailing newline or a
  control character in ``name``/``entry``, ``!!python`` tags, and seeded random
  mutations of a valid manifest, in YAML, JSON and TOML;
- **scans**: ``tether plugins scan`` (cold, then warm from the index cache) of a
  directory holding one good plugin beside one bad file of each family above, or beside
  an odd directory (symlink loop, FIFO, non-UTF-8 name...);
- **configs**: ``load_config`` and ``tether config validate`` of a config with each bad
  file family, plus ``${VAR}`` cases (a numeric token, unterminated ``${X``, nested
  ``${A${B}}``, recursion, YAML text in a variable), duplicate plugin entries (also
  through ``plugins graph`` and ``demo``);
- **runtime**: ``tether plugins test`` of a plugin that raises ``SystemExit``,
  ``KeyboardInterrupt`` (and a subclass), ``CancelledError`` or another
  ``BaseException`` in each step, sleeps or awaits forever, swallows its cancellation,
  loops forever in its import, or calls ``os._exit`` (the one host exit in-process that
  only isolation can prevent: counted apart);
- **admin**: requests to a real ``tether serve`` on 127.0.0.1: non-UTF-8 bodies, deep
  nesting, huge integers, huge paths and headers, bodies over 1 MiB, wrong methods,
  lying ``Content-Length``, odd names; and plugins whose import loops or whose start
  blocks, loaded through the API while ``/healthz`` is asked;
- **cli**: every command's options fed nonsense (negative counts, ``nan``, ``5x``, port
  70000, empty strings, ``--log-file`` in a missing directory, ``--dir /proc/self``,
  malformed ``--set``, unknown names to ``enable``/``disable``, binary and FIFO configs,
  an overlong ``TETHER_PLUGIN_PATH`` entry, a closed standard output...).

Each case runs in a child process, forked from this one once tether is imported (so a
case costs milliseconds, not an interpreter start), with its own working directory, an
address-space limit, and a timeout: the child runs the case, then does what Python does
at exit (joins non-daemon threads, runs ``atexit`` functions) and exits with the code.
The admin cases talk to a ``tether serve`` subprocess. Only processes this script
started are ended, by pid; every file is in one temporary directory.

A case's outcome is one of:

- ``clear``: refused with a clear error (a ``TetherError``, an ``Error:`` line naming
  the option or file, an HTTP 4xx), or accepted where accepting is right;
- ``wrong``: no crash, but not what the issue asks (a duplicate key or a trailing
  newline accepted, a flag written for an unknown plugin, a misbehaving plugin passing
  its test, a scan that stops at one bad file, a 4xx other than the one expected);
- ``traceback/5xx``: a Python traceback ("Traceback (most recent call last)", or an
  exception other than the documented error; the CLI's ``Error: internal error``
  counts too), or an HTTP status of 500 or more;
- ``hang``: the timeout fired (for the admin API, also a ``/healthz`` that stops
  answering while a plugin loads);
- ``host exit``: the process ended by a plugin's (or an input's) doing where it should
  have reported and gone on: an exit code other than 0, 1 or 2, a missing summary, a
  server that no longer accepts connections;
- ``os._exit``: a plugin calling ``os._exit`` ended the host (expected in-process).

It prints counts, not pass or fail; ``--verbose`` lists every case that was not clear.
The families live beside this script: ``_hostile_files.py`` (manifests, scans, configs),
``_hostile_runs.py`` (runtime, cli), ``_hostile_admin.py`` (admin); ``_hostile_base.py``
holds the cases, outcomes and judges they share.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import logging
import os
import resource
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import tether
from _hostile_admin import admin_results
from _hostile_base import (
    CLEAR,
    MARK,
    MEMORY_LIMIT,
    OUTCOMES,
    SOURCE,
    SURFACES,
    Case,
    Ran,
    Result,
    code_of,
    good_plugin,
    read_output,
)
from _hostile_files import config_cases, manifest_cases, scan_cases, search_path_cases
from _hostile_runs import cli_cases, runtime_cases

# --------------------------------------------------------------------------- the runner


def _exit_like_python(code: int) -> None:
    """End a forked child as the interpreter would: wait for non-daemon threads, run
    ``atexit`` functions, flush, exit with ``code``."""
    with contextlib.suppress(BaseException):
        threading._shutdown()  # type: ignore[attr-defined]  # noqa: SLF001
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()  # noqa: SLF001
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    os._exit(code)


def _child(case: Case, out: Path, err: Path) -> None:
    atexit._clear()  # noqa: SLF001 - the parent's (its temporary directory's cleanup among them)
    atexit.register(logging.shutdown)
    try:
        soft = _address_space() + MEMORY_LIMIT
        resource.setrlimit(resource.RLIMIT_AS, (soft, soft))
        stdin = os.open(os.devnull, os.O_RDONLY)
        os.dup2(stdin, 0)
        for fd, path in ((1, out), (2, err)):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
        if case.cwd is not None:
            os.chdir(case.cwd)
        for key, value in case.env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        code = case.run()
    except SystemExit as exc:
        code = code_of(exc)
    except BaseException:
        traceback.print_exc()
        code = 1
    _exit_like_python(code)


def _address_space() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 512 * 1024 * 1024


@dataclass
class _Running:
    case: Case
    pid: int
    limit: float
    started: float
    out: Path
    err: Path
    cpu: float = 0.0
    checked: float = 0.0

    def is_hung(self, now: float) -> bool | None:
        """None while within its time; then True for a hang, False to wait a little more.

        On a busy machine a case may be slow without hanging, so past its limit a case is
        a hang only when it has burned a whole limit of CPU time, has made no progress
        (no CPU time) for the last second, or has run three times its limit.
        """
        elapsed = now - self.started
        if elapsed < self.limit:
            return None
        cpu = _cpu_seconds(self.pid)
        if cpu >= self.limit or elapsed >= 3 * self.limit:
            return True
        if self.checked and now - self.checked >= 1.0:
            if cpu - self.cpu < 0.001:
                return True
            self.cpu, self.checked = cpu, now
        elif not self.checked:
            self.cpu, self.checked = cpu, now
        return False


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_cases(cases: list[Case], *, jobs: int, timeout: float, scratch: Path) -> list[Result]:
    """Run every case in a forked child, ``jobs`` at a time, each bounded by its timeout."""
    pending = deque(enumerate(cases))
    running: list[_Running] = []
    results: dict[int, Result] = {}
    index_of: dict[int, int] = {}
    while pending or running:
        while pending and len(running) < jobs:
            index, case = pending.popleft()
            out, err = scratch / f"case-{index}.out", scratch / f"case-{index}.err"
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(case, out, err)
            limit = case.timeout or timeout
            running.append(_Running(case, pid, limit, time.monotonic(), out, err))
            index_of[pid] = index
        time.sleep(0.01)
        for item in list(running):
            code = _poll(item)
            if code is _STILL:
                continue
            running.remove(item)
            ran = Ran(code, read_output(item.out), read_output(item.err))  # type: ignore[arg-type]
            results[index_of[item.pid]] = _judge(item.case, ran)
    return [results[i] for i in range(len(cases))]


_STILL = object()


def _poll(item: _Running) -> object:
    pid, status = os.waitpid(item.pid, os.WNOHANG)
    if pid:
        return os.waitstatus_to_exitcode(status)
    if not item.is_hung(time.monotonic()):
        return _STILL
    with contextlib.suppress(ProcessLookupError):
        os.kill(item.pid, signal.SIGKILL)  # our own child, by its pid
    os.waitpid(item.pid, 0)
    return None


def _judge(case: Case, ran: Ran) -> Result:
    if ran.code is None:
        return Result(case, case.on_timeout, "the timeout fired")
    outcome = case.judge(ran)
    return Result(case, outcome, _detail(ran))


def _detail(ran: Ran) -> str:
    lines = [line for line in ran.text.splitlines() if line.strip() and not line.startswith(MARK)]
    errors = [line for line in lines if "Error" in line or "error" in line]
    found = ran.outcome()
    shown = (errors or lines or [""])[-1][:160]
    if found is not None:
        shown = f"{found.get('kind')}: {str(found.get('message'))[:150]}"
    return f"exit {ran.code}: {shown}"


# --------------------------------------------------------------------------- report


def table(results: list[Result], surfaces: tuple[str, ...]) -> str:
    rows = [("surface", "tried", *OUTCOMES)]
    totals: Counter[str] = Counter()
    for surface in surfaces:
        counts = Counter(r.outcome for r in results if r.case.surface == surface)
        tried = sum(counts.values())
        totals.update(counts)
        rows.append((surface, str(tried), *(str(counts[o]) for o in OUTCOMES)))
    rows.append(("total", str(sum(totals.values())), *(str(totals[o]) for o in OUTCOMES)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.rjust(w) if i else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.insert(len(lines) - 1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _warm_up(root: Path) -> None:
    """Run a scan and an info here once, so that forked children start with everything
    they share imported and cached (a case then costs milliseconds)."""
    from tether.cli import cli

    search = ["--plugin-path", str(root / "warm-up")]
    good_plugin(root / "warm-up")
    with (
        Path(os.devnull).open("w") as sink,
        contextlib.redirect_stdout(sink),
        contextlib.redirect_stderr(sink),
    ):
        for args in (["plugins", "scan"], ["plugins", "info", "good-plugin"]):
            with contextlib.suppress(SystemExit):
                cli.main(args=[*search, *args], prog_name="tether")
    logging.getLogger().handlers.clear()


@contextlib.contextmanager
def scratch_directory() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="tether-hostile-") as name:
        yield Path(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--surface", action="append", choices=SURFACES, help="only these surfaces (repeatable)"
    )
    parser.add_argument(
        "--jobs", type=int, default=max(4, (os.cpu_count() or 2) * 2), help="cases run at once"
    )
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="seconds before a case counts as a hang"
    )
    parser.add_argument("--verbose", action="store_true", help="list every case that was not clear")
    options = parser.parse_args()
    surfaces = tuple(options.surface or SURFACES)
    started = time.monotonic()
    with scratch_directory() as root:
        os.environ["TETHER_CACHE_DIR"] = str(root / "cache")
        os.environ["HOME"] = str(root / "home")
        for name in (
            "TETHER_PLUGIN_PATH",
            "TETHER_CONFIG",
            "TETHER_ADMIN_URL",
            "TETHER_ADMIN_TOKEN",
            "TETHER_DSN",
        ):
            os.environ.pop(name, None)
        builders = {
            "manifests": manifest_cases,
            "scans": lambda r: scan_cases(r / "scans") + search_path_cases(r),
            "configs": config_cases,
            "runtime": runtime_cases,
            "cli": cli_cases,
        }
        cases = [case for s in surfaces if s in builders for case in builders[s](root)]
        _warm_up(root)
        results = run_cases(cases, jobs=options.jobs, timeout=options.timeout, scratch=root)
        if "admin" in surfaces:
            results += admin_results(root)
    order = {s: i for i, s in enumerate(surfaces)}
    results.sort(key=lambda r: order[r.case.surface])
    print(f"tether {tether.__version__} from {SOURCE}; hang timeout {options.timeout:g} s "
          f"(runtime cases 8 s); {time.monotonic() - started:.0f} s in all\n")  # fmt: skip
    print(table(results, surfaces))
    if options.verbose:
        for result in results:
            if result.outcome != CLEAR:
                where = f"[{result.case.surface}] {result.outcome}"
                print(f"\n{where}: {result.case.name}\n    {result.detail}")


if __name__ == "__main__":
    main()
