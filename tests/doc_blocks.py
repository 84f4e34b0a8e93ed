"""The fenced blocks of README.md and docs/**/*.md, and the runner of their Python.

test_docs.py imports this module to collect the blocks, writes each page's files
into a directory of its own, and runs this file as a script there, in a fresh
interpreter under a timeout::

    python doc_blocks.py BLOCKS.json

``BLOCKS.json`` holds the page's name, a prelude and the page's Python blocks in
order. They run as in ``python -m asyncio``: one namespace for the page, and a
block may ``await`` at top level (on one event loop that lives as long as the page,
in a thread of its own, so a block may also call ``asyncio.run``). A block that
defines ``test_*`` functions has them called after it, as pytest would (a
``tmp_path`` parameter gets a fresh directory). The first block that fails stops
the page: the script prints the block's page and line and the traceback (whose
line numbers are the markdown file's) and exits 1.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import inspect
import json
import re
import sys
import tempfile
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = (ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")))

_FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_PATH = r"[\w.-]+(?:/[\w.-]+)*\.(?:py|ya?ml|toml|json)"
_INFO_PATH = re.compile(rf"^\w+ (?P<path>{_PATH})$")  # ```python plugins/x/x.py
_COMMENT_PATH = re.compile(rf"^# (?P<path>{_PATH})\n")  # a first line `# plugins/x/x.py`
NO_RUN = "no-run"


@dataclasses.dataclass(frozen=True, slots=True)
class Block:
    """One fenced block: its page (relative to the repository), line, info string and body."""

    page: str
    line: int
    info: str
    body: str

    @property
    def language(self) -> str:
        return self.info.split(" ", 1)[0]

    @property
    def path(self) -> str | None:
        """The file the block is, when it names one (info string or first-line comment)."""
        named = _INFO_PATH.match(self.info) or _COMMENT_PATH.match(self.body)
        return named["path"] if named else None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def first_line(self) -> str:
        return self.body.split("\n", 1)[0]


def blocks(page: Path) -> Iterator[Block]:
    """Every fenced block of ``page``, in order."""
    text = page.read_text(encoding="utf-8")
    name = page.relative_to(ROOT).as_posix()
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 2  # the body's first line
        yield Block(name, line, match["info"].strip(), match["body"])


def python_blocks(page: Path) -> list[Block]:
    return [b for b in blocks(page) if b.language == "python"]


# --------------------------------------------------------------------------- the runner


def _compile(block: dict[str, object]) -> object:
    source = "\n" * (int(str(block["line"])) - 1) + str(block["body"])  # markdown line numbers
    return compile(source, str(block["page"]), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def _call_tests(namespace: dict[str, object], before: set[str]) -> None:
    for name, value in list(namespace.items()):
        if name.startswith("test_") and name not in before and inspect.isfunction(value):
            parameters = inspect.signature(value).parameters
            arguments = {"tmp_path": Path(tempfile.mkdtemp())} if "tmp_path" in parameters else {}
            value(**arguments)


def run(page: dict[str, object]) -> int:
    """Run the page's prelude and blocks; 0 when all of them ran."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    namespace: dict[str, object] = {"__name__": "__main__"}
    prelude = {"page": f"{page['page']} (the test's prelude)", "line": 1, "body": page["prelude"]}
    for block in [prelude, *page["blocks"]]:  # type: ignore[list-item]
        before = set(namespace)
        try:
            code = _compile(block)
            if code.co_flags & inspect.CO_COROUTINE:  # type: ignore[attr-defined]
                awaitable = eval(code, namespace)
                asyncio.run_coroutine_threadsafe(awaitable, loop).result()
            else:
                exec(code, namespace)
            _call_tests(namespace, before)
        except BaseException:  # reported, with the block's place
            print(f"the block at {block['page']}:{block['line']} failed:", file=sys.stderr)
            traceback.print_exc()
            return 1
    loop.call_soon_threadsafe(loop.stop)
    return 0


if __name__ == "__main__":
    sys.exit(run(json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))))
