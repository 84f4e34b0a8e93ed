"""What tests/test_reload_serve*.py share: a web plugin rewritten in place, one version
after another, a plugin that depends on it, and client threads that keep calling them.

``Greeter.write(version, ...)`` rewrites the ``greeter`` plugin's directory (the same
path, as an editor or a deploy would) as that version, working or broken in one of
the ways a reload must survive. Every version serves ``GET /hello`` with its version,
stamps every response with an ``x-greeter`` header (a middleware), exports the
``Greeting`` service, subscribes to ``ping`` events (it appends its version to
``pings.txt``), starts a thread and a task it stops in ``stop()``, and hands its hit
count to the next version (``export_state`` / ``import_state``). ``front`` imports the
service (``GET /front``) and publishes ``ping`` (``POST /front/ping``).

``Load`` is a few client threads, each with its own keep-alive connection, calling
paths in turn until stopped and keeping every answer.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import httpx
import yaml

from tether import ReloadConfig, ReloadResult
from tether.hosts.web.testing import LiveServer

GREETER_CODE = """\
import asyncio
import threading
from pathlib import Path

import tether

VERSION = {version!r}
FAIL = {fail!r}
HOLD = {hold!r}
MIGRATE = {migrate!r}
LEAK = {leak!r}


def forever():  # what a thread a version never stops runs: this version's code
    threading.Event().wait()


class Greeting:
    async def greet(self):
        return VERSION


class Plugin(tether.Plugin):
    hits = 0

    def initialize(self, ctx):
        super().initialize(ctx)
        self.ctx = ctx
        self.files = Path(ctx.plugin_config["files"])
        ctx.router.get("/hello", self.hello)
        ctx.router.get("/schema", self.schema)
        ctx.register_middleware("stamp", self.stamp)
        ctx.export_service("Greeting", Greeting())
        ctx.subscribe_event("ping", self.on_ping)
        if MIGRATE is not None:
            ctx.plugin_storage.set("schema", MIGRATE)
        if FAIL == "initialize":
            raise RuntimeError(f"greeter {{VERSION}} cannot initialize")

    async def start(self):
        if HOLD is not None:
            Path(HOLD + ".waiting").touch()
            for _ in range(3000):  # 30 s at most
                if Path(HOLD).exists():
                    break
                await asyncio.sleep(0.01)
        if FAIL == "start":
            raise RuntimeError(f"greeter {{VERSION}} cannot start")
        self.halt = threading.Event()
        self.worker = threading.Thread(
            target=self.halt.wait, name=f"greeter-worker-{{VERSION}}", daemon=True
        )
        self.worker.start()
        self.ticker = asyncio.get_running_loop().create_task(
            self.tick(), name=f"greeter-task-{{VERSION}}"
        )
        if LEAK:
            threading.Thread(target=forever, name=f"greeter-leak-{{VERSION}}", daemon=True).start()
            asyncio.get_running_loop().create_task(
                self.tick(), name=f"greeter-leak-task-{{VERSION}}"
            )  # nobody cancels it

    async def tick(self):
        while True:
            await asyncio.sleep(3600)

    async def stop(self):
        self.halt.set()
        self.worker.join(5)
        self.ticker.cancel()

    async def hello(self, request):
        if FAIL == "route":
            raise RuntimeError(f"greeter {{VERSION}} is broken")
        self.hits += 1
        return {{"version": VERSION, "hits": self.hits}}

    def schema(self, request):
        return {{"version": VERSION, "schema": self.ctx.plugin_storage.get("schema", None)}}

    async def stamp(self, request, call_next):
        response = await call_next(request)
        response.headers["x-greeter"] = VERSION
        return response

    def on_ping(self, event):
        with (self.files / "pings.txt").open("a") as pings:
            pings.write(VERSION + "\\n")

    def health_check(self):
        if FAIL == "health":
            raise RuntimeError(f"greeter {{VERSION}} is unhealthy")

    def export_state(self):
        return {{"hits": self.hits, "from": VERSION}}

    def import_state(self, state):
        self.hits = state["hits"]
"""

FRONT_CODE = """\
import tether


class Plugin(tether.Plugin):
    def initialize(self, ctx):
        super().initialize(ctx)
        self.ctx = ctx
        self.greeting = ctx.import_service("greeter", "Greeting")
        ctx.router.get("/front", self.front)
        ctx.router.post("/front/ping", self.ping)

    async def front(self, request):
        return {"version": await self.greeting.greet()}

    async def ping(self, request):
        await self.ctx.publish_event("ping", {})
        return {"published": True}
"""

FAILURES = ("syntax", "import", "manifest", "initialize", "start")
"""The ways a new version breaks before it runs, and the step each fails at."""
FAILED_STEP = {
    "syntax": "import",
    "import": "import",
    "manifest": "manifest",
    "initialize": "initialize",
    "start": "start",
}


def _manifest(name: str, version: str, **fields: object) -> dict[str, object]:
    return {
        "name": name,
        "version": version,
        "description": f"the {name} plugin of the reload tests",
        "author": "tests",
        "entry": "plugin:Plugin",
        **fields,
    }


class Greeter:
    """The ``greeter`` plugin's directory, rewritten in place for each version."""

    def __init__(self, directory: Path, files: Path) -> None:
        self.directory = directory
        self.files = files
        directory.mkdir(parents=True, exist_ok=True)
        files.mkdir(parents=True, exist_ok=True)

    def write(
        self,
        version: str,
        *,
        fail: str | None = None,
        hold: Path | None = None,
        migrate: str | None = None,
        leak: bool = False,
    ) -> None:
        """Write ``version``; ``fail`` breaks it (one of FAILURES, or ``route`` /
        ``health``: it runs, then its route raises or its health check fails)."""
        code = GREETER_CODE.format(
            version=version,
            fail=fail,
            hold=None if hold is None else str(hold),
            migrate=migrate,
            leak=leak,
        )
        if fail == "syntax":
            code += "\n\ndef broken(:\n    pass\n"
        if fail == "import":
            code = "import tether_reload_tests_no_such_module\n" + code
        manifest = _manifest(
            "greeter",
            version,
            permissions={"router": True, "filesystem": True},
            config={"files": {"type": "string", "required": True}},
            exports=[{"name": "Greeting"}],
            events={"subscribes": ["ping"]},
        )
        text = json.dumps(manifest, indent=2)
        if fail == "manifest":
            text = text.replace('"version"', '"versoin"')  # no version: refused
        self._replace("plugin.json", text)
        self._replace("plugin.py", code)

    def _replace(self, name: str, text: str) -> None:
        """Replace a file the way editors save: a new file renamed over the old one."""
        target = self.directory / name
        scratch = target.with_name(f".{name}.new")
        scratch.write_text(text, encoding="utf-8")
        scratch.replace(target)

    def pings(self) -> list[str]:
        path = self.files / "pings.txt"
        return path.read_text(encoding="utf-8").split() if path.exists() else []


def write_front(directory: Path) -> Path:
    directory.mkdir(parents=True)
    manifest = _manifest(
        "front",
        "1.0.0",
        dependencies=[{"name": "greeter"}],
        permissions={"router": True},
        events={"publishes": ["ping"]},
    )
    (directory / "plugin.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    (directory / "plugin.py").write_text(FRONT_CODE, encoding="utf-8")
    return directory


def write_config(
    path: Path,
    greeter: Greeter,
    *,
    front: Path | None = None,
    greeter_entry: dict[str, object] | None = None,
    plugins_section: dict[str, object] | None = None,
    **sections: object,
) -> Path:
    """A config serving the greeter (and ``front``). ``greeter_entry`` adds keys to the
    greeter's plugin entry, ``plugins_section`` to the ``plugins`` section; ``sections``
    are further top-level sections (``reload={...}``)."""
    entries: list[dict[str, object]] = [
        {"path": str(greeter.directory), "config": {"files": str(greeter.files)}}
        | dict(greeter_entry or {})
    ]
    if front is not None:
        entries.append({"path": str(front)})
    document = {"plugins": {**(plugins_section or {}), "plugins": entries}, **sections}
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- waiting


def wait_for(condition: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    """Poll until ``condition()`` holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# --------------------------------------------------------------------------- reloading


def reload(server: LiveServer, name: str = "greeter", **fields: object) -> ReloadResult:
    """``manager.reload_plugin(name)`` on the server's loop, with ReloadConfig ``fields``."""
    config = ReloadConfig(**fields)  # type: ignore[arg-type]
    return server.call(lambda: server.manager.reload_plugin(name, config=config))


def reload_later(
    pool: ThreadPoolExecutor, server: LiveServer, name: str = "greeter", **fields: object
) -> Future[ReloadResult]:
    """Start a reload and return at once; the future holds its result."""
    return pool.submit(reload, server, name, **fields)


def release(hold: Path) -> None:
    """Let a version written with ``hold=hold`` finish its start()."""
    hold.touch()


def wait_until_holding(hold: Path) -> None:
    wait_for((hold.parent / (hold.name + ".waiting")).exists, "the new version's start()")


# --------------------------------------------------------------------------- load


@dataclass(frozen=True, slots=True)
class Answer:
    """One response a client thread got (``status`` 0: the request itself failed)."""

    worker: int
    path: str
    status: int
    version: str | None
    stamp: str | None  # the x-greeter header: which middleware answered
    retry_after: str | None
    error: str | None = None


class Load:
    """``threads`` client threads, each calling ``paths`` in turn until ``stop()``."""

    def __init__(self, url: str, paths: Iterable[str] = ("/hello",), *, threads: int = 4) -> None:
        self.url = url
        self.paths = tuple(paths)
        self.answers: list[list[Answer]] = [[] for _ in range(threads)]
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(n,), name=f"reload-load-{n}", daemon=True)
            for n in range(threads)
        ]

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        self.wait_for_answers(len(self._threads) * 2)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, worker: int) -> None:
        mine = self.answers[worker]
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                for path in self.paths:
                    mine.append(_ask(client, worker, path))

    def stop(self) -> list[Answer]:
        """Stop the threads (bounded) and return every answer."""
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
            if thread.is_alive():
                raise AssertionError(f"load thread {thread.name} did not stop")
        return self.all()

    def all(self) -> list[Answer]:
        return [answer for mine in self.answers for answer in list(mine)]

    def count(self) -> int:
        return sum(len(mine) for mine in self.answers)

    def wait_for_answers(self, more: int, what: str = "answers") -> None:
        """Wait until ``more`` answers beyond those already in have arrived."""
        target = self.count() + more
        wait_for(lambda: self.count() >= target, f"{more} more {what}")

    def failures(self) -> list[Answer]:
        return [a for a in self.all() if a.status != 200]


def _ask(client: httpx.Client, worker: int, path: str) -> Answer:
    method = "POST" if path.endswith("/ping") else "GET"
    try:
        response = client.request(method, path)
    except httpx.HTTPError as exc:
        return Answer(worker, path, 0, None, None, None, f"{type(exc).__name__}: {exc}")
    version = None
    if response.headers.get("content-type", "").startswith("application/json"):
        body = response.json()
        version = body.get("version") if isinstance(body, dict) else None
    return Answer(
        worker,
        path,
        response.status_code,
        version,
        response.headers.get("x-greeter"),
        response.headers.get("retry-after"),
        None if response.status_code == 200 else response.text[:300],
    )


def versions_in_order(answers: list[Answer]) -> Iterator[tuple[int, list[str]]]:
    """Per client thread, the versions it saw, repeats collapsed."""
    for worker in sorted({a.worker for a in answers}):
        seen: list[str] = []
        for answer in answers:
            if answer.worker == worker and answer.version and answer.version not in seen[-1:]:
                seen.append(answer.version)
        yield worker, seen


async def task_names(prefix: str) -> list[str]:
    """The names of the server loop's unfinished tasks starting with ``prefix``."""
    return sorted(
        t.get_name()
        for t in asyncio.all_tasks()
        if t.get_name().startswith(prefix) and not t.done()
    )


def thread_names(prefix: str) -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith(prefix))
