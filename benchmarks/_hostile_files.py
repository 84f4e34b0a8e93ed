"""Hostile files (manifests and configs) and the cases that read or scan them."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from _hostile_base import (
    GOOD_MANIFEST,
    Case,
    call_cli,
    call_parse,
    dump,
    good_plugin,
    judge_call,
    judge_cli,
    judge_scan,
)
from tether import load_config, load_manifest

# --------------------------------------------------------------------------- bad files


@dataclass
class BadFile:
    """One generated hostile file: its name, how to make it, and whether tether must
    refuse it ("refuse") or may take it ("any")."""

    name: str
    fmt: str
    make: Callable[[Path], None]
    expect: str = "refuse"


def _text(content: str | bytes) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        data = content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content
        path.write_bytes(data)

    return make


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _link(target: str) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        path.symlink_to(target)

    return make


def _with(fmt: str, **fields: object) -> str:
    return dump({**GOOD_MANIFEST, **fields}, fmt)


def _deep(fmt: str, depth: int) -> str:
    if fmt == "json":
        return '{"name": "bad-plugin", "description": ' + "[" * depth + "]" * depth + "}"
    if fmt == "yaml":
        return _with("yaml").replace(
            "description: a plugin", "description: " + "[" * depth + "]" * depth
        )
    return _with("toml").replace(
        'description = "a plugin"', "description = " + "[" * depth + "]" * depth
    )


LAUGHS = (
    "name: bad-plugin\nversion: 1.0.0\n"
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
    )
    + "description: *i\n"
)


def manifest_files() -> list[BadFile]:
    """The manifest families of the issue, in each format where they make sense."""
    files: list[BadFile] = []
    big = "1" + "0" * 399
    huge = "9" * 5000
    for fmt in ("yaml", "json", "toml"):
        for digits, label in ((big, "400-digit"), (huge, "5000-digit")):
            for where, fields in (
                ("version", {"version": f"1.0.{digits}"}),
                ("timeouts.stop", {"timeouts": {"stop": "__INT__"}}),
                ("hook priority", {"hooks": [{"type": "pre_request", "priority": "__INT__"}]}),
                ("config default", {"config": {"n": {"type": "integer", "default": "__INT__"}}}),
            ):
                text = (
                    _with(fmt, **fields).replace('"__INT__"', digits).replace("'__INT__'", digits)
                )
                text = text.replace("__INT__", digits)
                expect = "any" if label == "400-digit" and where == "config default" else "refuse"
                files.append(BadFile(f"{label} int in {where}", fmt, _text(text), expect))
        files += [
            BadFile("lone surrogate, escaped", fmt, _text(_surrogate(fmt))),
            BadFile(
                "lone surrogate, raw bytes",
                fmt,
                _text(_raw_surrogate(_with(fmt, description="RAW"))),
            ),
            BadFile("2 MiB file", fmt, _text(_with(fmt, description="x" * (2 * 1024 * 1024)))),
            BadFile("trailing newline in name", fmt, _text(_with(fmt, name="bad-plugin\n"))),
            BadFile("trailing newline in entry", fmt, _text(_with(fmt, entry="plugin:Plugin\n"))),
            BadFile("control character in name", fmt, _text(_with(fmt, name="bad\x07plugin"))),
            BadFile("NEL in name", fmt, _text(_with(fmt, name="bad\x85plugin"))),
            BadFile("empty file", fmt, _text(b"")),
            BadFile("a FIFO", fmt, _fifo),
            BadFile("symlink to /dev/zero", fmt, _link("/dev/zero")),
            BadFile("dangling symlink", fmt, _link("/nonexistent/plugin")),
        ]
        for seed in range(3):
            noise = random.Random(seed).randbytes(2048)
            files.append(BadFile(f"binary garbage #{seed}", fmt, _text(noise)))
        files += _mutations(fmt, 8 if fmt == "yaml" else 4)
    files += [
        BadFile("JSON nested 100k deep", "json", _text(_deep("json", 100_000))),
        BadFile("YAML nested 10k deep", "yaml", _text(_deep("yaml", 10_000))),
        BadFile("TOML nested 5,000 deep", "toml", _text(_deep("toml", 5_000))),
        BadFile("YAML billion laughs (1 KB)", "yaml", _text(LAUGHS)),
        BadFile("YAML duplicate key", "yaml", _text(_with("yaml") + "name: other-plugin\n")),
        BadFile(
            "JSON duplicate key", "json", _text(_with("json")[:-1] + ', "name": "other-plugin"}')
        ),
        BadFile("TOML duplicate key", "toml", _text(_with("toml") + 'name = "other-plugin"\n')),
        BadFile(
            "YAML !!python tag",
            "yaml",
            _text(_with("yaml") + "x: !!python/object/apply:os.getpid []\n"),
        ),
        BadFile("YAML top-level list", "yaml", _text("- name: bad-plugin\n")),
        BadFile("JSON top-level number", "json", _text("42")),
        BadFile("UTF-8 BOM", "yaml", _text(b"\xef\xbb\xbf" + _with("yaml").encode()), "any"),
    ]
    return files


def _raw_surrogate(text: str) -> bytes:
    """``text`` with ``RAW`` replaced by a byte that is not UTF-8 (a lone surrogate once
    decoded with ``surrogateescape``)."""
    return text.replace("RAW", "a\udcffb").encode("utf-8", "surrogateescape")


def _surrogate(fmt: str) -> str:
    if fmt == "yaml":
        return _with("yaml").replace("description: a plugin", 'description: "a\\ud800b"')
    if fmt == "json":
        return _with("json").replace('"a plugin"', '"a\\ud800b"')
    return _with("toml").replace('"a plugin"', '"a\\ud800b"')


def _mutations(fmt: str, count: int) -> list[BadFile]:
    """Seeded random byte mutations of a valid manifest: flips, insertions, deletions."""
    base = bytearray(_with(fmt, hooks=[{"type": "pre_request", "priority": 5}]).encode())
    found = []
    for seed in range(count):
        rng = random.Random(f"{fmt}-{seed}")
        data = bytearray(base)
        for _ in range(rng.randint(1, 6)):
            position = rng.randrange(len(data))
            choice = rng.random()
            if choice < 0.4:
                data[position] = rng.randrange(256)
            elif choice < 0.7:
                data.insert(position, rng.choice(b"{}[]:,\"'\n\t\\&*!#%@`|>-\x00\xff"))
            else:
                del data[position]
        found.append(BadFile(f"random mutation #{seed}", fmt, _text(bytes(data)), "any"))
    return found


def _place(root: Path, bad: BadFile, stem: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{stem}.{bad.fmt}"
    bad.make(path)
    return path


def _name_is_clean(manifest: object) -> str:
    name = getattr(manifest, "name", "")
    entry = getattr(manifest, "entry", "")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in f"{name}{entry}"):
        return f"accepted a control character in name/entry: {name!r} {entry!r}"
    return ""


# --------------------------------------------------------------------------- surfaces


def manifest_cases(root: Path) -> list[Case]:
    cases = []
    for number, bad in enumerate(manifest_files()):
        path = _place(root / f"m{number}", bad, "plugin")
        cases.append(
            Case(
                "manifests",
                f"{bad.fmt}: {bad.name}",
                call_parse(load_manifest, path, _name_is_clean),
                judge_call(bad.expect),
                cwd=root,
            )
        )
    return cases


def scan_cases(root: Path) -> list[Case]:
    cases = []
    for number, bad in enumerate(manifest_files()):
        search = root / f"s{number}"
        good_plugin(search)
        _place(search / "bad-plugin", bad, "plugin")
        cases.append(_scan_case(root, f"{bad.fmt}: {bad.name} beside a good plugin", search))
    for label, make in _odd_directories():
        search = root / f"odd-{len(cases)}"
        good_plugin(search)
        make(search)
        cases.append(_scan_case(root, label, search))
    return cases


def _scan_case(
    root: Path, name: str, search: Path, env: dict[str, str | None] | None = None
) -> Case:
    cache = root / "caches" / name.replace("/", "_")[:80].replace(" ", "_")
    args = ["--plugin-path", str(search), "plugins", "scan"]
    return Case(
        "scans",
        name,
        call_cli(args, args),
        judge_scan,
        cwd=root,
        env={"TETHER_CACHE_DIR": str(cache), **(env or {})},
    )


def _odd_directories() -> list[tuple[str, Callable[[Path], None]]]:
    def loop(search: Path) -> None:
        (search / "loop").symlink_to(search / "loop")

    def fifo_dir(search: Path) -> None:
        os.mkfifo(search / "fifo-plugin")

    def manifest_is_directory(search: Path) -> None:
        (search / "bad-plugin" / "plugin.yaml").mkdir(parents=True)

    def undecodable(search: Path) -> None:
        target = Path(os.fsdecode(bytes(search) + b"/caf\xe9-plugin"))
        target.mkdir()
        (target / "plugin.yaml").write_text(dump(GOOD_MANIFEST, "yaml"))

    def to_root(search: Path) -> None:
        (search / "everything").symlink_to("/")

    def many(search: Path) -> None:
        for n in range(300):
            (search / f"empty-{n}").mkdir()

    def overlong(search: Path) -> None:
        (search / "deep").mkdir()
        (search / "deep" / "plugin.yaml").symlink_to("x" * 4000)

    return [
        ("symlink loop beside a good plugin", loop),
        ("a FIFO where a plugin directory would be", fifo_dir),
        ("plugin.yaml that is a directory", manifest_is_directory),
        ("a non-UTF-8 directory name", undecodable),
        ("a symlink to /", to_root),
        ("300 empty directories", many),
        ("a manifest symlink with a 4,000-character target", overlong),
    ]


def search_path_cases(root: Path) -> list[Case]:
    search = root / "env-search"
    good_plugin(search)
    fifo = root / "env-fifo"
    os.mkfifo(fifo)
    values = {
        "an overlong TETHER_PLUGIN_PATH entry": f"{'x' * 5000}:{search}",
        "a FIFO in TETHER_PLUGIN_PATH": f"{fifo}:{search}",
        "a file in TETHER_PLUGIN_PATH": f"/etc/passwd:{search}",
        "/proc/self in TETHER_PLUGIN_PATH": f"/proc/self:{search}",
        "a non-UTF-8 TETHER_PLUGIN_PATH entry": f"/tmp/caf\udce9:{search}",
    }
    cases = []
    for label, value in values.items():
        case = _scan_case(root, label, search, env={"TETHER_PLUGIN_PATH": value})
        case.run = call_cli(["plugins", "scan"], ["plugins", "scan"])
        cases.append(case)
    return cases


GOOD_CONFIG = {
    "plugins": {"directory": "plugins", "plugins": [{"name": "good-plugin"}]},
    "admin": {"token": "a-token"},
}


def config_files() -> list[BadFile]:
    """The manifest families applied to a config, and the config's own (``${VAR}``...)."""
    files = []
    big, huge = "1" + "0" * 399, "9" * 5000
    for fmt in ("yaml", "json", "toml"):
        for digits, label in ((big, "400-digit"), (huge, "5000-digit")):
            for where, data in (
                (
                    "priority",
                    {"plugins": {"plugins": [{"name": "good-plugin", "priority": "__INT__"}]}},
                ),
                ("health_check_timeout", {"plugins": {"health_check_timeout": "__INT__"}}),
            ):
                text = dump(data, fmt).replace('"__INT__"', digits).replace("'__INT__'", digits)
                files.append(BadFile(f"{label} int in {where}", fmt, _text(text)))
        files += [
            BadFile(
                "2 MiB file", fmt, _text(dump({**GOOD_CONFIG, "x": "y" * (2 * 1024 * 1024)}, fmt))
            ),
            BadFile("binary garbage", fmt, _text(random.Random(fmt).randbytes(2048))),
            BadFile("a FIFO", fmt, _fifo),
            BadFile("symlink to /dev/zero", fmt, _link("/dev/zero")),
            BadFile(
                "lone surrogate, raw bytes",
                fmt,
                _text(_raw_surrogate(dump({"admin": {"token": "RAW"}}, fmt))),
            ),
            BadFile(
                "trailing newline in a plugin name",
                fmt,
                _text(dump({"plugins": {"plugins": [{"name": "good-plugin\n"}]}}, fmt)),
            ),
            BadFile(
                "duplicate plugin entries",
                fmt,
                _text(
                    dump(
                        {
                            "plugins": {
                                "plugins": [{"name": "good-plugin"}, {"name": "good-plugin"}]
                            }
                        },
                        fmt,
                    )
                ),
            ),
        ]
    files += [
        BadFile(
            "JSON nested 100k deep", "json", _text('{"x": ' + "[" * 100_000 + "]" * 100_000 + "}")
        ),
        BadFile("YAML nested 10k deep", "yaml", _text("x: " + "[" * 10_000 + "]" * 10_000 + "\n")),
        BadFile("TOML nested 5,000 deep", "toml", _text("x = " + "[" * 5_000 + "]" * 5_000 + "\n")),
        BadFile(
            "YAML billion laughs (1 KB)",
            "yaml",
            _text(
                LAUGHS.replace("name: bad-plugin\nversion: 1.0.0\n", "").replace(
                    "description", "admin"
                )
            ),
        ),
        BadFile("lone surrogate, escaped", "yaml", _text('admin:\n  token: "a\\ud800b"\n')),
        BadFile("lone surrogate, escaped", "json", _text('{"admin": {"token": "a\\ud800b"}}')),
        BadFile(
            "a second top-level plugins: key",
            "yaml",
            _text(
                "plugins:\n  plugins:\n    - name: good-plugin\nplugins:\n  directory: elsewhere\n"
            ),
        ),
        BadFile(
            "JSON duplicate key",
            "json",
            _text('{"plugins": {"plugins": [{"name": "good-plugin"}]}, "plugins": {}}'),
        ),
        BadFile(
            "control character in a plugin name",
            "yaml",
            _text('plugins:\n  plugins:\n    - name: "good\\x07plugin"\n'),
        ),
        BadFile("YAML !!python tag", "yaml", _text("admin: !!python/object/apply:os.getpid []\n")),
    ]
    return files


def _token_is(value: str) -> Callable[[object], str]:
    def check(config: object) -> str:
        token = config.section("admin").get("token")  # type: ignore[attr-defined]
        if token != value or not isinstance(token, str):
            return f"admin.token is {token!r} ({type(token).__name__}), not the string {value!r}"
        return ""

    return check


def _env_cases() -> list[tuple[str, str, dict[str, str], str, Callable[[object], str] | None]]:
    entry = "plugins:\n  directory: plugins\n  plugins:\n    - name: good-plugin\n"
    token = entry + "admin:\n  token: ${TOKEN}\n"
    return [
        ("${VAR}: a numeric token", token, {"TOKEN": "123456"}, "any", _token_is("123456")),
        (
            "${VAR}: a token that is YAML text",
            token,
            {"TOKEN": "[1, {a: b}]"},
            "any",
            _token_is("[1, {a: b}]"),
        ),
        (
            "${VAR}: a token that is a YAML tag",
            token,
            {"TOKEN": "!!python/object/apply:os.getpid []"},
            "any",
            _token_is("!!python/object/apply:os.getpid []"),
        ),
        (
            "${VAR}: a token with a newline",
            token,
            {"TOKEN": "a\nb: c"},
            "any",
            _token_is("a\nb: c"),
        ),
        (
            "${VAR}: unterminated ${X",
            entry + "admin:\n  token: ${TOKEN\n",
            {"TOKEN": "x"},
            "refuse",
            None,
        ),
        (
            "${VAR}: nested ${A${B}}",
            entry + "admin:\n  token: ${A${B}}\n",
            {"A": "x", "B": "y"},
            "refuse",
            None,
        ),
        ("${VAR}: refers to itself", token, {"TOKEN": "${TOKEN}"}, "any", None),
        (
            "${VAR}: a boolean that is not one",
            entry.replace("good-plugin\n", "good-plugin\n      enabled: ${FLAG}\n"),
            {"FLAG": "maybe"},
            "refuse",
            None,
        ),
        (
            "${VAR}: an integer that is not one",
            entry.replace("good-plugin\n", "good-plugin\n      priority: ${P}\n"),
            {"P": "abc"},
            "refuse",
            None,
        ),
        (
            "${VAR}: a 5000-digit integer",
            entry.replace("good-plugin\n", "good-plugin\n      priority: ${P}\n"),
            {"P": "9" * 5000},
            "refuse",
            None,
        ),
        ("${VAR}: an empty name", "${X}:\n  a: 1\n", {"X": ""}, "any", None),
    ]


def config_cases(root: Path) -> list[Case]:
    cases = []
    directory = root / "configs"
    good_plugin(directory / "plugins")
    for number, bad in enumerate(config_files()):
        path = _place(directory, bad, f"c{number}")
        name = f"{bad.fmt}: {bad.name}"
        cases.append(
            Case(
                "configs",
                name,
                call_parse(load_config, path, None),
                judge_call(bad.expect),
                cwd=directory,
            )
        )
        cases.append(
            _config_cli(
                directory, f"config validate: {name}", ["--config", str(path), "config", "validate"]
            )
        )
        if bad.name == "duplicate plugin entries" and bad.fmt == "yaml":
            cases.append(
                _config_cli(
                    directory, f"plugins graph: {name}", ["--config", str(path), "plugins", "graph"]
                )
            )
            cases.append(_config_cli(directory, f"demo: {name}", ["demo", str(path)]))
    for number, (label, text, env, expect, check) in enumerate(_env_cases()):
        path = directory / f"env{number}.yaml"
        path.write_text(text)
        cases.append(
            Case(
                "configs",
                label,
                call_parse(load_config, path, check),
                judge_call(expect),
                cwd=directory,
                env=dict(env),
            )
        )
        cli = _config_cli(
            directory, f"config show: {label}", ["--config", str(path), "config", "show"]
        )
        cli.env = dict(env)
        cli.judge = judge_cli(expect="any")
        cases.append(cli)
    return cases


def _config_cli(directory: Path, name: str, args: list[str]) -> Case:
    return Case("configs", name, call_cli(args), judge_cli(expect="any"), cwd=directory)
