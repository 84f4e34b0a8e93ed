"""What every surface of ``benchmarks/hostile.py`` shares: cases, outcomes, judges,
and the calls a forked child makes."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import tether
from tether.errors import TetherError

SURFACES = ("manifests", "scans", "configs", "runtime", "admin", "cli")
OUTCOMES = ("clear", "wrong", "traceback/5xx", "hang", "host exit", "os._exit")
CLEAR, WRONG, TRACEBACK, HANG, EXIT, OS_EXIT = OUTCOMES
TRACE = "Traceback (most recent call last)"
MARK = "@@outcome "
MEMORY_LIMIT = 1024 * 1024 * 1024  # address space a case may add to this process's
SOURCE = Path(tether.__file__).resolve().parents[1]

GOOD_MANIFEST = {
    "name": "bad-plugin",
    "version": "1.0.0",
    "description": "a plugin",
    "author": "hostile",
    "entry": "plugin:Plugin",
}
PLUGIN_CODE = """\
class Plugin:
    def initialize(self, ctx): pass
    def start(self): pass
    def stop(self): pass
    def cleanup(self): pass
"""


def dump(data: object, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2)
    if fmt == "yaml":
        import yaml

        return yaml.safe_dump(data, sort_keys=False)
    return _toml(data)


def _toml(data: dict[str, object], prefix: str = "") -> str:
    plain = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    lines = [f"{k} = {_toml_value(v)}" for k, v in plain.items()]
    for key, value in tables.items():
        lines += ["", f"[{prefix}{key}]", _toml(value, f"{prefix}{key}.")]
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False)


def good_plugin(directory: Path) -> Path:
    target = directory / "good-plugin"
    target.mkdir(parents=True, exist_ok=True)
    (target / "plugin.yaml").write_text(dump({**GOOD_MANIFEST, "name": "good-plugin"}, "yaml"))
    (target / "plugin.py").write_text(PLUGIN_CODE)
    return target


# --------------------------------------------------------------------------- cases


@dataclass
class Case:
    """One hostile input: ``run`` is called in a child process and returns its exit code."""

    surface: str
    name: str
    run: Callable[[], int]
    judge: Callable[[Ran], str]
    cwd: Path | None = None
    env: dict[str, str | None] = field(default_factory=dict)
    timeout: float | None = None
    on_timeout: str = HANG


@dataclass
class Ran:
    """What a child did: its exit code (None when the timeout fired) and its output."""

    code: int | None
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err

    @property
    def has_traceback(self) -> bool:
        return TRACE in self.text or "Error: internal error:" in self.text

    def outcome(self) -> dict[str, object] | None:
        for line in self.out.splitlines():
            if line.startswith(MARK):
                return dict(json.loads(line[len(MARK) :]))
        return None


@dataclass
class Result:
    case: Case
    outcome: str
    detail: str


# --------------------------------------------------------------------------- judges


def judge_call(expect: str) -> Callable[[Ran], str]:
    """For a parse call: refused with a TetherError is clear; accepted is clear unless
    ``expect`` is "refuse"; any other exception is a traceback."""

    def judge(ran: Ran) -> str:
        found = ran.outcome()
        if found is None:
            return TRACEBACK if ran.has_traceback or ran.code == 1 else EXIT
        kind = found["kind"]
        if kind == "refused":
            return CLEAR
        if kind == "accepted":
            return WRONG if expect == "refuse" else CLEAR
        if kind == "wrong":
            return WRONG
        return TRACEBACK

    return judge


def judge_cli(*, expect: str = "refuse", named: str | None = None) -> Callable[[Ran], str]:
    """For a command: exit 1 or 2 with an ``Error:`` line (naming ``named``) is a clear
    refusal; exit 0 is wrong when a refusal is expected; other codes are host exits."""

    def judge(ran: Ran) -> str:
        if ran.has_traceback:
            return TRACEBACK
        if ran.code not in {0, 1, 2}:
            return EXIT
        if ran.code == 0:
            return WRONG if expect == "refuse" else CLEAR
        if expect == "quiet":  # a closed standard output: exit 1 and nothing more to say
            return CLEAR
        if "Error:" not in ran.err:
            return EXIT  # failed with nothing said: the summary is missing
        return WRONG if named is not None and named not in ran.err else CLEAR

    return judge


def judge_scan(ran: Ran) -> str:
    """A scan must go on past the bad file: exit 0 and the good plugin listed, twice."""
    if ran.has_traceback:
        return TRACEBACK
    if ran.code not in {0, 1, 2}:
        return EXIT
    if ran.code != 0 or ran.out.count("good-plugin 1.0.0") < 2:
        return WRONG
    return CLEAR


def judge_runtime(*, exits: bool) -> Callable[[Ran], str]:
    """``plugins test`` of a misbehaving plugin must report it: exit 1 with the step table
    and ``Error:``. ``exits``: the case calls ``os._exit``."""

    def judge(ran: Ran) -> str:
        if ran.has_traceback:
            return TRACEBACK
        reported = " step " in ran.out and "Error:" in ran.err
        if ran.code == 1 and reported:
            return CLEAR
        if exits and ran.code == 7:
            return OS_EXIT
        if ran.code == 0:
            return WRONG
        return EXIT

    return judge


# --------------------------------------------------------------------------- calls in a child


def _report(kind: str, message: object) -> None:
    print(MARK + json.dumps({"kind": kind, "message": str(message)[:500]}), flush=True)


def call_parse(load: Callable[[Path], object], path: Path, check: Callable[[object], str] | None):
    """A case that parses ``path``: refused (a TetherError), accepted or a traceback."""

    def run() -> int:
        try:
            value = load(path)
        except TetherError as exc:
            _report("refused", f"{type(exc).__name__}: {tether.error_text(exc)}")
            return 0
        problem = check(value) if check is not None else ""
        if problem:
            _report("wrong", problem)
        else:
            _report("accepted", type(value).__name__)
        return 0

    return run


def call_cli(*runs: list[str], stdout_closed: bool = False) -> Callable[[], int]:
    """A case that runs the ``tether`` command line once per item of ``runs``."""

    def run() -> int:
        from tether.cli import cli

        if stdout_closed:
            read, write = os.pipe()
            os.close(read)
            os.dup2(write, 1)
        code = 0
        for args in runs:
            try:
                cli.main(args=args, prog_name="tether")
            except SystemExit as exc:
                code = code_of(exc)
            if code:
                break
        return code

    return run


def code_of(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def read_output(path: Path) -> str:
    try:
        return path.read_bytes()[:200_000].decode("utf-8", "replace")
    except OSError:
        return ""
