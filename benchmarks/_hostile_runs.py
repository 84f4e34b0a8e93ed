"""Misbehaving plugins under ``tether plugins test``, and the command line fed nonsense."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from _hostile_base import (
    GOOD_MANIFEST,
    PLUGIN_CODE,
    WRONG,
    Case,
    call_cli,
    dump,
    good_plugin,
    judge_cli,
    judge_runtime,
)

# --------------------------------------------------------------------------- runtime

RAISES = {
    "raises SystemExit": "raise SystemExit(3)",
    "raises KeyboardInterrupt": "raise KeyboardInterrupt",
    "raises a KeyboardInterrupt subclass": "raise Interrupt()",
    "raises CancelledError": "raise asyncio.CancelledError()",
    "raises a BaseException subclass": "raise Boom()",
    "raises GeneratorExit": "raise GeneratorExit()",
}
FOREVER = {
    "sleeps forever (sync)": ("def", "time.sleep(3600)"),
    "awaits forever (async)": ("async def", "await asyncio.Event().wait()"),
    "swallows its cancellation (async)": (
        "async def",
        (
            "while True:\n            try:\n                await asyncio.sleep(3600)\n"
            "            except asyncio.CancelledError:\n                pass"
        ),
    ),
    "calls os._exit": ("def", "os._exit(7)"),
}
PREAMBLE = """\
import asyncio
import os
import time


class Boom(BaseException):
    pass


class Interrupt(KeyboardInterrupt):
    pass

"""
STEPS = ("initialize", "start", "stop", "cleanup", "health_check")


def _runtime_plugin(step: str, kind: str, body: str) -> str:
    methods = dict.fromkeys(STEPS, ("def", "pass"))
    methods["health_check"] = ("def", "return True")
    if step != "import":
        methods[step] = (kind, body)
    lines = [PREAMBLE]
    if step == "import":
        lines.append(body.replace("\n        ", "\n") + "\n\n")
    lines.append("class Plugin:\n")
    for name, (keyword, code) in methods.items():
        argument = ", ctx" if name == "initialize" else ""
        lines.append(f"    {keyword} {name}(self{argument}):\n        {code}\n\n")
    return "".join(lines)


def runtime_cases(root: Path) -> list[Case]:
    directory = root / "runtime"
    directory.mkdir()
    (directory / "tether.yaml").write_text("plugins:\n  health_check_timeout: 0.5s\n")
    behaviours = [(label, "def", code) for label, code in RAISES.items()]
    behaviours += [(label, kind, code) for label, (kind, code) in FOREVER.items()]
    cases = []
    for step in ("import", *STEPS):
        for label, kind, code in behaviours:
            if step == "import" and kind == "async def":
                continue
            body = (
                code
                if not (step == "import" and "sleep" in code)
                else "while True:\n    time.sleep(0.05)"
            )
            name = (
                f"{step} {label}"
                if step != "import"
                else f"import {label.replace('sleeps forever (sync)', 'loops forever')}"
            )
            cases.append(
                _runtime_case(
                    directory,
                    len(cases),
                    name,
                    _runtime_plugin(step, kind, body),
                    exits="os._exit" in code,
                )
            )
    return cases


def _runtime_case(directory: Path, number: int, name: str, code: str, *, exits: bool) -> Case:
    target = directory / f"p{number}"
    target.mkdir()
    manifest = {
        **GOOD_MANIFEST,
        "name": f"runtime-{number}",
        "timeouts": {"initialize": "0.5s", "start": "0.5s", "stop": "0.5s", "call": "0.5s"},
    }
    (target / "plugin.json").write_text(json.dumps(manifest))
    (target / "plugin.py").write_text(code)
    args = ["plugins", "test", str(target), "--timeout", "0.5"]
    return Case(
        "runtime",
        f"plugins test: {name}",
        call_cli(args),
        judge_runtime(exits=exits),
        cwd=directory,
        timeout=8.0,
    )


# --------------------------------------------------------------------------- cli


def cli_cases(root: Path) -> list[Case]:
    work = root / "cli"
    work.mkdir()
    plugin = good_plugin(work / "plugins")
    executor = work / "echo"
    executor.mkdir()
    (executor / "plugin.json").write_text(
        json.dumps({**GOOD_MANIFEST, "name": "echo", "provides": ["executor"]})
    )
    (executor / "plugin.py").write_text(PLUGIN_CODE + "    def execute(self, data): return data\n")
    fifo = work / "fifo"
    os.mkfifo(fifo)
    garbage = work / "garbage.yaml"
    garbage.write_bytes(random.Random(1).randbytes(4096))
    (work / "file").write_text("")
    store = work / "state.db"
    long = "x" * 5000
    dsn = {"TETHER_DSN": "postgresql://127.0.0.1:1/hostile"}
    refuse = [
        # (args, the text the Error line must name, environment)
        (["--log-file", str(work / "missing" / "t.log"), "plugins", "list"], "--log-file", {}),
        (["--log-file", "/proc/self/t.log", "plugins", "list"], "--log-file", {}),
        (["--log-file", str(work / "file" / "t.log"), "plugins", "list"], "--log-file", {}),
        (["--log-file", f"/tmp/{long}", "plugins", "list"], "--log-file", {}),
        (["--log-file", str(fifo), "plugins", "list"], "--log-file", {}),
        (["--log-file", "", "plugins", "list"], "--log-file", {}),
        (["--config", "", "plugins", "list"], "--config", {}),
        (["--config", str(garbage), "plugins", "list"], "garbage.yaml", {}),
        (["--config", str(fifo), "plugins", "list"], "fifo", {}),
        (["--config", "/dev/zero", "config", "validate"], "/dev/zero", {}),
        (["plugins", "list"], "fifo", {"TETHER_CONFIG": str(fifo)}),
        (["--log-level", "loud", "plugins", "list"], "--log-level", {}),
        (["plugins", "new", "x", "--dir", "/proc/self"], "invalid plugin name", {}),
        (["plugins", "new", "rate-limit", "--dir", "/proc/self"], "/proc/self", {}),
        (["plugins", "new", "rate-limit", "--dir", str(work / "file" / "sub")], "file", {}),
        (["plugins", "new", "rate-limit", "--dir", "/dev/null/x"], "/dev/null", {}),
        (["plugins", "new", "rate-limit", "--dir", f"/tmp/{long}"], "cannot create", {}),
        (["plugins", "new", "rate-limit", "--dir", ""], "--dir", {}),
        (["plugins", "new", "rate-limit\n"], "invalid plugin name", {}),
        (["plugins", "new", "caf\udce9"], "invalid plugin name", {}),
        (["plugins", "new", "rate-limit", "--format", "xml"], "--format", {}),
        (["plugins", "info", long], "not found", {}),
        (["plugins", "info", "a/" + long], "no plugin directory", {}),
        (["plugins", "info", ""], "", {}),
        (["plugins", "info", str(fifo)], "fifo", {}),
        (["plugins", "validate", "/dev/zero"], "invalid", {}),
        (["plugins", "validate", str(fifo)], "invalid", {}),
        (["plugins", "graph", "--format", "svg"], "--format", {}),
        (["plugins", "exec", str(executor), "--input", f"@{fifo}"], "--input", {}),
        (["plugins", "exec", str(executor), "--input", "@/dev/zero"], "--input", {}),
        (["plugins", "exec", str(executor), "--input", "[" * 100_000], "--input", {}),
        (["plugins", "exec", str(executor), "--input", "9" * 5000], "--input", {}),
        (["plugins", "exec", str(executor), "--input", "1", "--format", "xml"], "--format", {}),
        (["plugins", "health", "--state", str(garbage)], "garbage.yaml", {}),
        (["plugins", "health", "--state", ""], "--state", {}),
        (["plugins", "health", "--state", "/dev/zero"], "/dev/zero", {}),
        (["plugins", "health", "caf\udce9", "--state", str(store)], "NAME", {}),
        (["plugins", "enable", "good-plugn", "--state", str(store)], "good-plugn", {}),
        (["plugins", "disable", "nope", "--state", str(store)], "nope", {}),
        (["plugins", "disable", "", "--state", str(store)], "NAME", {}),
        (["plugins", "disable", "good-plugin", "--state", "/proc/self/s.db"], "/proc/self", {}),
        (["plugins", "reload", "good-plugin"], "running server", {}),
    ]
    for url in (
        "http://[::1",
        "http://127.0.0.1:70000",
        "ftp://x",
        "",
        "http://",
        "http://127.0.0.1:0",
    ):
        refuse.append((["plugins", "health", "--url", url], "--url", {}))
        refuse.append((["plugins", "reload", "good-plugin", "--url", url], "--url", {}))
    refuse.append((["plugins", "health"], "--url", {"TETHER_ADMIN_URL": "http://127.0.0.1:99999"}))
    refuse.append(
        (["plugins", "health", "--url", "http://127.0.0.1:9", "--token", "a\nb"], "--token", {})
    )
    refuse.append(
        (
            ["plugins", "health", "--url", "http://127.0.0.1:9"],
            "--token",
            {"TETHER_ADMIN_TOKEN": "a\rb"},
        )
    )
    refuse += [
        (["plugins", "test", str(plugin), "--timeout", value], "--timeout", {})
        for value in ("-1", "nan", "inf", "0", "1e400", "5x", "")
    ]
    for item in (
        "novalue",
        "=1",
        "a=[",
        "a=" + "[" * 5000,
        "a=" + "9" * 5000,
        "a=[&x [1], *x]",
        "a=2024-13-01",
    ):
        refuse.append((["plugins", "test", str(plugin), "--set", item], "--set", {}))
        refuse.append(
            (["plugins", "exec", str(executor), "--input", "1", "--set", item], "--set", {})
        )
    bench = ["bench", "-w", "tpcb", "-q"]
    for option, value in (
        ("--duration", "5x"), ("--duration", "-1"), ("--duration", "nan"), ("--duration", "inf"),
        ("--duration", "99999999999999999999d"), ("--warmup", "5x"), ("--transactions", "-1"),
        ("--transactions", "0"), ("--clients", "0"), ("--clients", "-1"), ("--rate", "0"),
        ("--rate", "nan"), ("--rate", "inf"), ("--processes", "0"), ("--processes", "-1"),
        ("--max-error-rate", "2"), ("--max-error-rate", "nan"), ("--max-error-rate", "x%"),
        ("--seed", "abc"), ("--dsn", ""), ("--pgdata", ""), ("--format", "xml"),
        ("--clients", "9" * 30), ("--workload", ""),
    ):  # fmt: skip
        refuse.append(
            ([*bench, option, value], option if option != "--workload" else "workload", dsn)
        )
    serve_config = work / "serve.yaml"
    serve_config.write_text(
        dump({"plugins": {"plugins": [{"name": "good-plugin", "path": str(plugin)}]}}, "yaml")
    )
    serve = ["serve", "--config", str(serve_config), "--port", "0"]
    for option, value in (
        ("--port", "70000"), ("--port", "-1"), ("--port", "x"), ("--graceful-timeout", "nan"),
        ("--graceful-timeout", "inf"), ("--graceful-timeout", "-1"), ("--graceful-timeout", "5x"),
        ("--host", ""), ("--admin-token", ""), ("--admin-token", "a\nb"),
    ):  # fmt: skip
        refuse.append(([*serve, option, value], option, {}))
    refuse.append((["demo", "/"], "CONFIG_FILE", {}))
    refuse.append((["demo", str(garbage)], "garbage.yaml", {}))
    refuse.append((["config", "show", "--format", "xml"], "--format", {}))
    refuse.append((["workloads", "list", "--jsn"], "--jsn", {}))
    refuse.append((["no-such-command"], "no-such-command", {}))
    cases = []
    for args, named, env in refuse:
        shown = " ".join(a if len(a) < 40 else a[:37] + "..." for a in args)
        case = Case(
            "cli", shown, call_cli(args), judge_cli(named=named or None), cwd=work, env=dict(env)
        )
        if args[0] == "serve":
            case.timeout, case.on_timeout = 6.0, WRONG  # accepted: it served
        cases.append(case)
    for args in (["plugins", "list"], ["plugins", "scan"], ["workloads", "list"], ["--help"]):
        name = " ".join(args) + " with standard output closed"
        cases.append(
            Case(
                "cli", name, call_cli(args, stdout_closed=True), judge_cli(expect="quiet"), cwd=work
            )
        )
    return cases
