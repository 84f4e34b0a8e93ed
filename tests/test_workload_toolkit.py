"""What workload plugins share (``tether.hosts.workload``'s toolkit), and the guide's example.

The pure parts run without a database; ``Dataset`` and ``copy_rows`` run against
the session's embedded PostgreSQL, and so does the guide's ``notes`` workload,
through ``tether bench`` as a third-party plugin.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import asyncpg
import pytest
from click.testing import CliRunner

from tether.cli import cli
from tether.errors import ConfigError
from tether.hosts.workload import (
    Counters,
    Dataset,
    Operations,
    Pool,
    Workload,
    copy_rows,
    read_settings,
    seeded_random,
    settings_keys,
    skewed,
)

pytest_plugins = ["pg"]


@dataclass(frozen=True, slots=True)
class Settings:
    users: int
    ttl: timedelta
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.users == 13:
            raise ValueError("'users' must not be 13")


# --------------------------------------------------------------------------- settings


def test_settings_are_read_into_the_dataclass_leaving_the_weights_to_tether():
    config = {"users": 5, "ttl": timedelta(seconds=3), "operation_weights": {"a": 1}}
    assert read_settings(Settings, config, workload="demo") == Settings(5, timedelta(seconds=3))
    assert settings_keys(Settings) == {"users", "ttl", "seed", "operation_weights"}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"user": 5, "ttl": 1, "sed": 2},
            (
                "unknown key 'user' (did you mean 'users'?); "
                "unknown key 'sed' (did you mean 'seed'?); missing key 'users'"
            ),
        ),
        ({"users": 5}, "missing key 'ttl'"),
        ({"users": 13, "ttl": 1}, "'users' must not be 13"),
        ({"users": 1, "ttl": 1, "colour": "red"}, "unknown key 'colour'"),
    ],
    ids=["unknown", "missing", "own-check", "no-suggestion"],
)
def test_a_config_the_settings_refuse_names_the_workload_and_every_problem(config, message):
    with pytest.raises(ConfigError) as caught:
        read_settings(Settings, config, workload="demo")
    assert str(caught.value) == f"invalid configuration for workload 'demo': {message}"
    assert caught.value.plugin == "demo"
    assert caught.value.hint is not None
    assert "`tether plugins info demo`" in caught.value.hint


def test_seeded_streams_repeat_and_differ():
    draw = [seeded_random(7, "a").random() for _ in range(2)]
    assert draw[0] == draw[1]
    assert seeded_random(7, "a").random() != seeded_random(7, "b").random()
    assert seeded_random(7, 0).random() == random.Random("7:0").random()


# --------------------------------------------------------------------------- operations


def test_an_unknown_operation_is_refused_before_the_state_is_read():
    async def read_state(db: object) -> int:
        raise AssertionError("the state must not be read for an unknown operation")

    async def noop(db: object, state: int) -> None:
        pass

    operations = Operations("demo", {"get": noop, "put": noop}, read_state=read_state)
    with pytest.raises(
        ValueError, match=r"workload 'demo' has no operation 'fly' \(it has get, put\)"
    ):
        asyncio.run(operations.run(object(), "fly"))


def test_the_state_is_read_once_for_every_client_and_each_run_is_counted():
    reads: list[object] = []
    seen: list[tuple[object, int]] = []

    async def read_state(db: object) -> int:
        reads.append(db)
        await asyncio.sleep(0.01)  # the other clients arrive meanwhile
        return 42

    async def get(db: object, state: int) -> None:
        seen.append((db, state))

    async def main() -> Operations[int]:
        operations = Operations("demo", {"get": get, "put": get}, read_state=read_state)
        await asyncio.gather(*(operations.run(f"db{i}", "get") for i in range(5)))
        await operations.run("db9", "put")
        return operations

    operations = asyncio.run(main())
    assert reads == ["db0"]
    assert {state for _, state in seen} == {42}
    assert operations.counts == {"get": 5, "put": 1}
    assert operations.metrics() == {"operations_get": 5, "operations_put": 1}


def test_setup_can_prepare_the_state_and_cleanup_forget_it():
    async def read_state(db: object) -> str:
        return f"state of {db}"

    async def main() -> list[object]:
        states: list[object] = []

        async def get(db: object, state: str) -> None:
            states.append(state)

        operations = Operations("demo", {"get": get}, read_state=read_state)
        await operations.prepare("setup's db")
        await operations.run("client's db", "get")
        operations.state = None
        await operations.run("client's db", "get")
        return states

    assert asyncio.run(main()) == ["state of setup's db", "state of client's db"]


def test_counters_start_with_what_setup_did():
    counters = Counters("misses", "hits")
    assert list(counters) == ["rows_loaded", "data_loads", "setups_reused", "misses", "hits"]
    counters.loaded(120)
    counters.loaded(None)
    counters["misses"] += 2
    assert counters == {
        "rows_loaded": 120,
        "data_loads": 1,
        "setups_reused": 1,
        "misses": 2,
        "hits": 0,
    }


def test_a_pool_gives_each_item_once_at_random():
    pool: Pool[int] = Pool()
    for item in [3, 1, 2, 3, 1]:
        pool.add(item)
    assert len(pool) == 3
    rng = random.Random(1)
    taken = [pool.take(rng) for _ in range(4)]
    assert sorted(taken[:3]) == [1, 2, 3]  # type: ignore[type-var]
    assert taken[3] is None
    pool.add(2)
    assert pool.take(rng) == 2


def test_skewed_ids_stay_in_range_and_favour_a_few():
    rng = random.Random(3)
    ids = Counter(skewed(rng, 1000) for _ in range(20_000))
    assert min(ids) >= 1
    assert max(ids) <= 1000
    top_ten = sum(count for _, count in ids.most_common(10))
    assert top_ten > 20_000 * 0.25  # uniform would give 1%


# --------------------------------------------------------------------------- the base class


class _Demo(Workload[Settings, int]):
    NAME = "demo"
    VERSION = "2.1.0"
    DESCRIPTION = "A demo."
    AUTHOR = "Tests"
    OPERATION_WEIGHTS: ClassVar = {"get": 3, "put": 1}
    DATA = Dataset("demo_meta", tables=("demo_rows", "demo_meta"))
    SETTINGS = Settings

    def __init__(self) -> None:
        super().__init__(
            {"get": self._get, "put": self._get}, read_state=self._read, counters=["hits"]
        )

    async def _read(self, db: object) -> int:
        return 7

    async def _get(self, db: object, state: int) -> None:
        self.counters["hits"] += state


def _demo(**config: object) -> _Demo:
    demo = _Demo()
    demo.initialize({"users": 5, "ttl": timedelta(seconds=1), **config})
    return demo


def test_a_workload_subclass_gets_its_settings_info_weights_and_metrics():
    demo = _demo(seed=3)
    assert demo.settings == Settings(5, timedelta(seconds=1), seed=3)
    assert demo.get_info() == {
        "name": "demo",
        "version": "2.1.0",
        "description": "A demo.",
        "author": "Tests",
        "tables": ["demo_rows", "demo_meta"],
        "operation_types": {"get": 3, "put": 1},
    }
    weights = demo.get_operation_types()
    weights["get"] = 0
    assert demo.get_operation_types() == {"get": 3, "put": 1}  # a copy each time
    asyncio.run(demo.operations.run(object(), "get"))
    assert demo.get_metrics() == {
        "operations_get": 1,
        "operations_put": 0,
        "rows_loaded": 0,
        "data_loads": 0,
        "setups_reused": 0,
        "hits": 7,
    }
    with pytest.raises(ValueError, match=r"workload 'demo' has no operation 'fly'"):
        asyncio.run(demo.operations.run(object(), "fly"))


def test_each_instance_of_a_workload_class_draws_its_own_stream_of_the_seed():
    class Fresh(_Demo):  # a class of its own: its instances are numbered from 0
        pass

    def draws(rng: random.Random) -> list[float]:
        return [rng.random() for _ in range(3)]

    instances = [Fresh() for _ in range(3)]
    for instance in reversed(instances):  # numbered as they are initialized
        instance.initialize({"users": 5, "ttl": 1, "seed": 3})
    expected = [draws(seeded_random(3, n)) for n in (2, 1, 0)]
    assert [draws(instance.rng) for instance in instances] == expected
    assert draws(_demo().rng) != draws(_demo().rng)  # no seed, no repeats


def test_a_workload_refuses_a_bad_config_naming_itself():
    with pytest.raises(ConfigError, match=r"invalid configuration for workload 'demo': .*'sed'"):
        _demo(sed=3)


# --------------------------------------------------------------------------- data


DATA = Dataset("toolkit_meta", tables=("toolkit_rows", "toolkit_meta"))
SCHEMA = "CREATE TABLE IF NOT EXISTS toolkit_rows (id int PRIMARY KEY, label text NOT NULL)"


@pytest.mark.slow
def test_a_dataset_loads_once_per_signature_and_drops_cleanly(pg_url):
    async def main() -> None:
        db: Any = await asyncpg.connect(pg_url)
        try:

            async def fill(count: int) -> int:
                rows = ((i, f"row {i}") for i in range(count))
                return await copy_rows(db, "toolkit_rows", ("id", "label"), rows)

            assert await DATA.loaded_signature(db) is None
            loaded = await DATA.load(db, {"rows": 30}, schema=SCHEMA, fill=lambda: fill(30))
            assert loaded == 30
            assert await DATA.loaded_signature(db) == {"rows": 30}
            await db.execute("INSERT INTO toolkit_rows VALUES (1000, 'a run wrote this')")
            kept = await DATA.load(db, {"rows": 30}, schema=SCHEMA, fill=lambda: fill(30))
            assert kept is None
            assert await db.fetchval("SELECT count(*) FROM toolkit_rows") == 31  # kept as it was
            reloaded = await DATA.load(db, {"rows": 5}, schema=SCHEMA, fill=lambda: fill(5))
            assert reloaded == 5
            assert await db.fetchval("SELECT count(*) FROM toolkit_rows") == 5
            assert await db.fetchval("SELECT rows_loaded FROM toolkit_meta") == 5
            await DATA.drop(db)
            assert await DATA.loaded_signature(db) is None
            assert await db.fetchval("SELECT to_regclass('toolkit_rows')") is None
            assert await copy_rows(db, "nowhere", ("id",), []) == 0  # nothing to copy, no COPY
        finally:
            await db.close()

    asyncio.run(main())


# --------------------------------------------------------------------------- the guide's example

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "workloads.md"


def _guide_notes_plugin(directory: Path) -> Path:
    text = GUIDE.read_text(encoding="utf-8")
    start = text.index("### Helpers the built-in workloads share")
    section = text[start : text.index("\n## ", start)]
    manifest, code = re.findall(
        r"^```(?:yaml|python) plugins/notes/\S+\n(.*?)^```$", section, re.MULTILINE | re.DOTALL
    )
    plugin = directory / "notes"
    plugin.mkdir(parents=True)
    (plugin / "plugin.yaml").write_text(manifest, encoding="utf-8")
    (plugin / "notes_workload.py").write_text(code, encoding="utf-8")
    return plugin


@pytest.mark.slow
def test_the_guides_notes_workload_runs_with_the_helpers(tmp_path, pg_url):
    plugins = tmp_path / "plugins"
    _guide_notes_plugin(plugins)

    def run(*args: str) -> dict[str, Any]:
        result = CliRunner().invoke(
            cli,
            ["--plugin-path", str(plugins), "bench", "-w", "notes", "--dsn", pg_url,
             "-t", "200", "-c", "2", "--format", "json", "-q", *args],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    first = run("--set", "notes=50", "--seed", "1")["metrics"]
    assert (first["data_loads"], first["rows_loaded"], first["setups_reused"]) == (1, 50, 0)
    assert first["operations_read"] + first["operations_edit"] == 200
    assert first["missing"] == 0
    second = run("--set", "notes=50", "--cleanup")["metrics"]
    assert (second["data_loads"], second["setups_reused"]) == (0, 1)

    refused = CliRunner().invoke(
        cli, ["--plugin-path", str(plugins), "bench", "-w", "notes", "--set", "notes=0"]
    )
    assert refused.exit_code == 1
    assert "configuration 'notes' must be at least 1, got 0" in refused.stderr
