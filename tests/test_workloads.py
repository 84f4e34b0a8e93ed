"""The built-in workloads (imdb, ecommerce, vector, realworld) on the embedded PostgreSQL.

Each is loaded through tether (manifest, config schema, workload contract), set up
twice (the second keeps the data), driven through every operation with a real
asyncpg connection, checked in its tables, and cleaned up. Config errors and the
example bench configs are checked without a database.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest

import tether
from tether._config import validate_plugin_config
from tether.errors import ConfigError, PluginLifecycleError

pytest_plugins = ["pg"]

WORKLOADS = Path(tether.__file__).resolve().parent / "builtin"
NAMES = ("imdb", "ecommerce", "vector", "realworld")
SMALL: dict[str, dict[str, object]] = {
    "imdb": {"movies": 300, "actors": 150, "ratings_per_movie": 2, "seed": 7},
    "ecommerce": {"catalog_size": 200, "customer_count": 50, "seed": 7},
    "vector": {"vector_dimension": 8, "initial_vectors": 200, "batch_size": 10, "seed": 7},
    "realworld": {"users": 60, "posts_per_user": 3, "follows_per_user": 5, "seed": 7},
}
ROUNDS = 5


# --------------------------------------------------------------------------- helpers


@asynccontextmanager
async def loaded(name: str, config: dict[str, object]) -> AsyncIterator[Any]:
    """The workload's instance, loaded and initialized by a PluginManager."""
    async with tether.PluginManager() as manager:
        await manager.load_plugin(WORKLOADS / name, {"config": config})
        await manager.initialize_all()
        yield manager.get_plugin(name)


@asynccontextmanager
async def connected(url: str) -> AsyncIterator[Any]:
    db = await asyncpg.connect(url)
    try:
        yield db
    finally:
        await db.close()


def on_database(url: str, name: str, config: dict[str, object]):
    """Run ``scenario(instance, db)`` with the workload loaded and set up."""

    def run(scenario: Callable[[Any, Any], Awaitable[None]]) -> None:
        async def main() -> None:
            async with loaded(name, config) as instance, connected(url) as db:
                await instance.setup(db)
                await scenario(instance, db)

        asyncio.run(main())

    return run


async def table_names(db: Any, prefix: str) -> list[str]:
    rows = await db.fetch(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = current_schema() AND table_name LIKE $1",
        prefix + "%",
    )
    return sorted(row[0] for row in rows)


async def exercise(instance: Any, db: Any, operations: list[str], rounds: int = ROUNDS) -> None:
    for _ in range(rounds):
        for operation in operations:
            await instance.execute_operation(db, operation)


async def count(db: Any, table: str) -> int:
    return int(await db.fetchval(f"SELECT count(*) FROM {table}"))


def module_of(instance: object) -> Any:
    return sys.modules[type(instance).__module__]


def initialize_error(name: str, config: dict[str, object]) -> BaseException:
    """What initialize_all raises for this config, unwrapped to the plugin's own error."""

    async def main() -> None:
        async with loaded(name, config):
            pass

    with pytest.raises(PluginLifecycleError) as caught:
        asyncio.run(main())
    assert caught.value.__cause__ is not None
    return caught.value.__cause__


# --------------------------------------------------------------------------- manifests


@pytest.mark.parametrize("name", NAMES)
def test_each_workload_is_a_plugin_with_a_documented_config(name):
    manifest = tether.load_manifest(WORKLOADS / name)
    assert manifest.name == name
    assert manifest.provides == ("workload",)
    assert manifest.framework.version == ">=0.1.0,<1.0.0"
    assert all(field.description for field in manifest.config.values())
    assert not (WORKLOADS / name / "__init__.py").exists()

    async def main() -> None:
        async with loaded(name, {}) as instance:
            info = instance.get_info()
            assert (info["name"], info["version"]) == (manifest.name, manifest.version)
            assert set(manifest.config) == module_of(instance).CONFIG_KEYS
            weights = instance.get_operation_types()
            assert weights
            assert all(isinstance(w, int) and w >= 0 for w in weights.values())
            json.dumps(info)
            json.dumps(instance.get_metrics())

    asyncio.run(main())


def test_default_weights_follow_the_reference():
    async def weights(name: str) -> dict[str, int]:
        async with loaded(name, {}) as instance:
            return instance.get_operation_types()

    imdb = asyncio.run(weights("imdb"))
    assert {k: imdb[k] for k in ("movie_search", "actor_search", "rating_insert")} == {
        "movie_search": 40,
        "actor_search": 30,
        "rating_insert": 20,
    }
    assert imdb["review_insert"] == 10
    assert imdb["top_rated"] == 0
    ecommerce = asyncio.run(weights("ecommerce"))
    assert (ecommerce["product_search"], ecommerce["add_to_cart"]) == (50, 20)
    assert (ecommerce["checkout"], ecommerce["browse_catalog"]) == (15, 15)
    vector = asyncio.run(weights("vector"))
    assert vector == {
        "similarity_search": 60,
        "vector_insert": 25,
        "vector_update": 15,
        "batch_insert": 0,
    }
    realworld = asyncio.run(weights("realworld"))
    reads = realworld["view_feed"] + realworld["view_post"] + realworld["view_profile"]
    assert reads > sum(realworld.values()) / 2  # read-heavy


# --------------------------------------------------------------------------- config errors


# The manifests' constraints (minimum, maximum, choices) refuse these when the plugin is loaded.
OUT_OF_RANGE = [
    ("vector", {"index_type": "btree"}, "'index_type' must be one of hnsw, ivfflat, got 'btree'"),
    (
        "vector",
        {"similarity_function": "dot"},
        "'similarity_function' must be one of cosine, l2, inner_product, got 'dot'",
    ),
    ("vector", {"vector_dimension": 4096}, "'vector_dimension' must be from 1 to 2000, got 4096"),
    ("vector", {"initial_vectors": -1}, "'initial_vectors' must be at least 1, got -1"),
    ("vector", {"top_k": 0}, "'top_k' must be from 1 to 1000, got 0"),
    ("imdb", {"movies": -5}, "'movies' must be at least 1, got -5"),
    ("imdb", {"ratings_per_movie": -1}, "'ratings_per_movie' must be at least 0, got -1"),
    ("ecommerce", {"catalog_size": 0}, "'catalog_size' must be at least 1, got 0"),
    ("ecommerce", {"customer_count": -3}, "'customer_count' must be at least 1, got -3"),
    (
        "ecommerce",
        {"payment_decline_rate": 1.5},
        "'payment_decline_rate' must be from 0 to 1, got 1.5",
    ),
    ("realworld", {"users": -1}, "'users' must be at least 2, got -1"),
    ("realworld", {"hot_traffic": 2}, "'hot_traffic' must be from 0 to 1, got 2"),
    ("realworld", {"session_ttl": "0s"}, "'session_ttl' must be at least 1us, got 0s"),
    ("tpcb", {"scale": 0}, "'scale' must be at least 1, got 0"),
    ("tpcb", {"driver": "pg"}, "'driver' must be one of auto, libpq, asyncpg, psycopg, got 'pg'"),
]


@pytest.mark.parametrize(
    ("name", "config", "message"),
    [pytest.param(*case, id=f"{case[0]}-{next(iter(case[1]))}") for case in OUT_OF_RANGE],
)
def test_a_value_outside_the_manifests_constraints_is_refused_when_loading(name, config, message):
    async def main() -> None:
        async with tether.PluginManager() as manager:
            await manager.load_plugin(WORKLOADS / name, {"config": config})

    with pytest.raises(ConfigError) as caught:
        asyncio.run(main())
    assert caught.value.plugin == name
    assert str(caught.value) == (
        f"invalid configuration for plugin '{name}': configuration {message}"
    )


# A key a workload's manifest does not declare is refused when loading, before the
# workload's own check in initialize (tether.hosts.workload.read_settings) runs.
UNDECLARED = [
    ("imdb", {"movie": 10}, ["unknown configuration key 'movie' (did you mean 'movies'?)"]),
    ("tpcb", {"scael": 2}, ["unknown configuration key 'scael' (did you mean 'scale'?)"]),
    (
        "realworld",
        {"user": 5, "feeds": 2},
        [
            "unknown configuration key 'user' (did you mean 'users'?)",
            "unknown configuration key 'feeds' (did you mean 'feed_size'?)",
        ],
    ),
]


@pytest.mark.parametrize(
    ("name", "config", "messages"),
    [pytest.param(*case, id=f"{case[0]}-{next(iter(case[1]))}") for case in UNDECLARED],
)
def test_an_undeclared_key_is_refused_when_loading_with_a_suggestion(name, config, messages):
    async def main() -> None:
        async with tether.PluginManager() as manager:
            await manager.load_plugin(WORKLOADS / name, {"config": config})

    with pytest.raises(ConfigError) as caught:
        asyncio.run(main())
    assert caught.value.plugin == name
    assert [p.message for p in caught.value.problems] == messages
    assert str(caught.value).startswith(f"invalid configuration for plugin '{name}': {messages[0]}")


@pytest.mark.parametrize("name", [*NAMES, "tpcb"])
def test_the_constraints_in_each_manifest_are_what_the_code_expects(name):
    allowed = {k: f.allowed for k, f in tether.load_manifest(WORKLOADS / name).config.items()}
    expected = {
        "vector": {
            "vector_dimension": "from 1 to 2000",
            "index_type": "one of hnsw, ivfflat",
            "similarity_function": "one of " + ", ".join(_vector_functions()),
            "top_k": "from 1 to 1000",
        },
        "ecommerce": {"payment_decline_rate": "from 0 to 1"},
        "realworld": {"users": "at least 2", "hot_traffic": "from 0 to 1"},
        "tpcb": {"scale": "at least 1", "driver": "one of auto, libpq, asyncpg, psycopg"},
        "imdb": {"movies": "at least 1", "ratings_per_movie": "at least 0"},
    }[name]
    assert {k: allowed[k] for k in expected} == expected
    assert allowed["seed"] == ""  # any integer seeds a run


def _vector_functions() -> list[str]:
    async def main() -> list[str]:
        async with loaded("vector", {}) as instance:
            return list(module_of(instance).data.SIMILARITY_FUNCTIONS)

    return asyncio.run(main())


def test_a_value_of_the_wrong_type_is_refused_by_the_manifest_schema():
    async def main() -> None:
        async with tether.PluginManager() as manager:
            await manager.load_plugin(WORKLOADS / "imdb", {"config": {"movies": "many"}})

    with pytest.raises(ConfigError, match="configuration 'movies' must be an integer, got str"):
        asyncio.run(main())


def test_a_missing_data_file_is_refused(tmp_path):
    error = initialize_error("imdb", {"data_file": str(tmp_path / "nope.csv")})
    assert isinstance(error, ConfigError)
    assert "data_file" in str(error)
    assert "does not exist" in str(error)


def test_a_data_file_without_the_required_columns_is_refused(tmp_path):
    path = tmp_path / "movies.csv"
    path.write_text("name,year\nAlien,1979\n", encoding="utf-8")
    error = initialize_error("imdb", {"data_file": str(path)})
    assert isinstance(error, ConfigError)
    assert "the header must name the columns title, year, genre" in str(error)
    assert "found name, year" in str(error)


def test_an_unknown_operation_is_an_error_naming_the_known_ones():
    async def main() -> None:
        async with loaded("vector", {}) as instance:
            await instance.execute_operation(object(), "fly")

    with pytest.raises(ValueError, match="workload 'vector' has no operation 'fly'") as caught:
        asyncio.run(main())
    assert "similarity_search, vector_insert" in str(caught.value)


# --------------------------------------------------------------------------- example configs


@pytest.mark.parametrize("name", NAMES)
def test_the_example_config_parses_and_validates_against_the_manifest(name, examples_dir):
    config = tether.load_config(examples_dir / f"config_{name}.yaml")
    assert config.database.dsn == ""  # TETHER_DSN is unset in tests
    workload = config.section("workload")
    assert (workload["type"], workload["plugin_name"]) == ("plugin", name)
    plugin_config = workload["plugin_config"]
    manifest = tether.load_manifest(WORKLOADS / name)
    values = validate_plugin_config(name, manifest.config, plugin_config)
    assert set(values) <= set(manifest.config)
    assert config.section("bench")["clients"] > 0

    async def main() -> None:
        async with loaded(name, plugin_config) as instance:
            weights = plugin_config["operation_weights"]
            assert set(weights) == set(instance.get_operation_types())
            assert all(isinstance(w, int) and w >= 0 for w in weights.values())

    asyncio.run(main())


# --------------------------------------------------------------------------- every workload


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_setup_is_idempotent_operations_run_and_cleanup_removes_every_table(name, pg_url):
    prefix = f"{name}_"

    async def main() -> None:
        async with loaded(name, SMALL[name]) as instance, connected(pg_url) as db:
            tables = instance.get_info()["tables"]
            await instance.setup(db)
            assert await table_names(db, prefix) == sorted(tables)
            first = {t: await count(db, t) for t in tables}
            await instance.setup(db)  # same config: the data is kept, not reloaded
            assert {t: await count(db, t) for t in tables} == first
            operations = list(instance.get_operation_types())
            await exercise(instance, db, operations)
            metrics = instance.get_metrics()
            assert json.loads(json.dumps(metrics)) == metrics
            assert all(isinstance(v, int | float) for v in metrics.values())  # flat counters
            assert {op: metrics[f"operations_{op}"] for op in operations} == dict.fromkeys(
                operations, ROUNDS
            )
            assert (metrics["data_loads"], metrics["setups_reused"]) == (1, 1)
            assert metrics["rows_loaded"] > 0
            await instance.cleanup(db)
            assert await table_names(db, prefix) == []
            await instance.cleanup(db)  # nothing left to drop: still fine

    asyncio.run(main())


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_a_fresh_instance_runs_on_tables_another_one_set_up(name, pg_url):
    """The runner may set up with one instance and run operations with another."""

    async def main() -> None:
        async with connected(pg_url) as db:
            async with loaded(name, SMALL[name]) as first:
                await first.setup(db)
            async with loaded(name, SMALL[name]) as second:
                await exercise(second, db, list(second.get_operation_types()), rounds=1)
                await second.cleanup(db)

    asyncio.run(main())


# --------------------------------------------------------------------------- imdb


@pytest.mark.slow
def test_imdb_ratings_and_reviews_grow_by_the_operations_run(pg_url):
    @on_database(pg_url, "imdb", SMALL["imdb"])
    async def _(instance, db):
        assert await count(db, "imdb_movies") == 300
        assert await count(db, "imdb_actors") == 150
        assert await count(db, "imdb_ratings") == 600
        cast = await db.fetchval("SELECT count(DISTINCT movie_id) FROM imdb_movie_actors")
        assert cast == 300  # every movie has a cast
        ratings, reviews = await count(db, "imdb_ratings"), await count(db, "imdb_reviews")
        await exercise(instance, db, ["rating_insert"], rounds=7)
        await exercise(instance, db, ["review_insert"], rounds=3)
        assert await count(db, "imdb_ratings") == ratings + 7
        assert await count(db, "imdb_reviews") == reviews + 3
        metrics = instance.get_metrics()
        assert (metrics["ratings_inserted"], metrics["reviews_inserted"]) == (7, 3)
        await exercise(instance, db, ["top_rated", "actor_filmography"], rounds=3)
        assert instance.get_metrics()["rows_returned"] > 0


@pytest.mark.slow
def test_imdb_loads_movies_from_a_csv_data_file(pg_url, tmp_path):
    path = tmp_path / "movies.csv"
    path.write_text(
        "genre,title,year,runtime_minutes\n"
        'Drama,"The Godfather",1972,175\n'
        'Science Fiction,"Alien",1979,\n'
        'Comedy,"Some Like It Hot, Again",1959,121\n',
        encoding="utf-8",
    )
    config = {"data_file": str(path), "actors": 20, "ratings_per_movie": 1, "seed": 1}

    @on_database(pg_url, "imdb", config)
    async def _(instance, db):
        rows = await db.fetch("SELECT title, year, genre, runtime_minutes FROM imdb_movies")
        assert sorted(tuple(r) for r in rows) == [
            ("Alien", 1979, "Science Fiction", None),
            ("Some Like It Hot, Again", 1959, "Comedy", 121),
            ("The Godfather", 1972, "Drama", 175),
        ]
        cast = await count(db, "imdb_movie_actors")
        assert instance.get_metrics()["rows_loaded"] == 3 + 20 + cast + 3  # ratings: 1 each
        await exercise(instance, db, list(instance.get_operation_types()), rounds=3)


@pytest.mark.slow
def test_imdb_is_reproducible_with_a_seed(pg_url):
    async def run() -> tuple[object, object]:
        async with loaded("imdb", SMALL["imdb"]) as instance, connected(pg_url) as db:
            await instance.setup(db)
            await exercise(instance, db, ["rating_insert", "review_insert"], rounds=5)
            movies = await db.fetchval(
                "SELECT md5(string_agg(title || year || genre, ',' ORDER BY movie_id)) "
                "FROM imdb_movies"
            )
            ratings = await db.fetch(
                "SELECT movie_id, user_id, score FROM imdb_ratings ORDER BY rating_id"
            )
            await instance.cleanup(db)
            return movies, [tuple(r) for r in ratings]

    assert asyncio.run(run()) == asyncio.run(run())


# --------------------------------------------------------------------------- ecommerce


async def _ecommerce_invariants(instance: Any, db: Any) -> dict[str, Any]:
    metrics = instance.get_metrics()
    assert await count(db, "ecommerce_orders") == metrics["checkouts_completed"]
    assert await count(db, "ecommerce_payments") == metrics["checkouts_completed"]
    sold = await db.fetchval("SELECT coalesce(sum(quantity), 0) FROM ecommerce_order_items")
    assert sold == metrics["items_sold"]
    assert await db.fetchval("SELECT min(stock) FROM ecommerce_inventory") >= 0
    mismatched = await db.fetchval(
        "SELECT count(*) FROM ecommerce_orders o WHERE o.total <> "
        "(SELECT sum(i.quantity * i.unit_price) FROM ecommerce_order_items i "
        "WHERE i.order_id = o.order_id)"
    )
    assert mismatched == 0
    return metrics


@pytest.mark.slow
def test_ecommerce_checkouts_become_orders_and_never_oversell(pg_url):
    @on_database(pg_url, "ecommerce", SMALL["ecommerce"])
    async def _(instance, db):
        assert await count(db, "ecommerce_products") == 200
        assert await count(db, "ecommerce_carts") == 5  # one customer in ten
        before = await db.fetchval("SELECT sum(stock) FROM ecommerce_inventory")
        await exercise(instance, db, ["add_to_cart", "add_to_cart", "checkout"], rounds=15)
        metrics = await _ecommerce_invariants(instance, db)
        assert metrics["checkouts_completed"] > 0
        after = await db.fetchval("SELECT sum(stock) FROM ecommerce_inventory")
        assert before - after == metrics["items_sold"]
        await exercise(instance, db, ["inventory_update"], rounds=3)
        assert instance.get_metrics()["restocks"] == 3
        restocked = await db.fetchval("SELECT sum(stock) FROM ecommerce_inventory")
        assert restocked - after == instance.get_metrics()["units_restocked"]


@pytest.mark.slow
def test_ecommerce_an_out_of_stock_checkout_rolls_back_as_a_business_outcome(pg_url):
    @on_database(pg_url, "ecommerce", SMALL["ecommerce"])
    async def _(instance, db):
        await db.execute("UPDATE ecommerce_inventory SET stock = 0")
        carts = await count(db, "ecommerce_cart_items")
        assert carts > 0
        await exercise(instance, db, ["checkout"], rounds=5)  # the five open carts
        metrics = await _ecommerce_invariants(instance, db)
        assert metrics["checkouts_out_of_stock"] == 5
        assert metrics["checkouts_completed"] == 0
        assert metrics["revenue"] == 0.0
        assert await count(db, "ecommerce_cart_items") == 0  # sold-out items left the carts
        assert await db.fetchval("SELECT max(stock) FROM ecommerce_inventory") == 0


@pytest.mark.slow
def test_ecommerce_a_declined_payment_rolls_the_checkout_back(pg_url):
    config = {**SMALL["ecommerce"], "payment_decline_rate": 1.0}

    @on_database(pg_url, "ecommerce", config)
    async def _(instance, db):
        stock = await db.fetchval("SELECT sum(stock) FROM ecommerce_inventory")
        items = await count(db, "ecommerce_cart_items")
        await exercise(instance, db, ["checkout"], rounds=5)
        metrics = await _ecommerce_invariants(instance, db)
        assert metrics["checkouts_payment_declined"] + metrics["checkouts_out_of_stock"] == 5
        assert metrics["checkouts_completed"] == 0
        assert await db.fetchval("SELECT sum(stock) FROM ecommerce_inventory") == stock
        assert await count(db, "ecommerce_cart_items") <= items


@pytest.mark.slow
def test_ecommerce_concurrent_clients_keep_the_invariants(pg_url):
    async def main() -> None:
        async with loaded("ecommerce", SMALL["ecommerce"]) as instance:
            async with connected(pg_url) as db:
                await instance.setup(db)

            async def client() -> None:
                async with connected(pg_url) as db:
                    await exercise(instance, db, ["add_to_cart", "checkout"], rounds=20)

            await asyncio.gather(*(client() for _ in range(4)))
            async with connected(pg_url) as db:
                metrics = await _ecommerce_invariants(instance, db)
                assert metrics["operations_checkout"] == 80

    asyncio.run(main())


async def _one_default_address_each(db: Any) -> None:
    """Every customer has exactly one default address, and orders ship to their own."""
    defaults = await db.fetch(
        "SELECT c.customer_id, count(a.address_id) AS defaults FROM ecommerce_customers c "
        "LEFT JOIN ecommerce_addresses a ON a.customer_id = c.customer_id AND a.is_default "
        "GROUP BY c.customer_id HAVING count(a.address_id) <> 1"
    )
    assert [tuple(row) for row in defaults] == []
    foreign = await db.fetchval(
        "SELECT count(*) FROM ecommerce_orders o JOIN ecommerce_addresses a "
        "ON a.address_id = o.shipping_address_id WHERE a.customer_id <> o.customer_id"
    )
    assert foreign == 0


@pytest.mark.slow
def test_ecommerce_customers_register_look_up_edit_and_move(pg_url):
    @on_database(pg_url, "ecommerce", SMALL["ecommerce"])
    async def _(instance, db):
        assert await count(db, "ecommerce_addresses") == 50  # one default each
        await _one_default_address_each(db)
        await exercise(instance, db, ["customer_register"], rounds=4)
        assert await count(db, "ecommerce_customers") == 54
        assert await count(db, "ecommerce_addresses") == 54
        new = await db.fetch(
            "SELECT customer_id, email FROM ecommerce_customers WHERE customer_id > 50"
        )
        assert sorted(r["customer_id"] for r in new) == [51, 52, 53, 54]
        assert all(r["email"].endswith(f".{r['customer_id']}@example.com") for r in new)

        await exercise(instance, db, ["customer_update"], rounds=5)
        edited = await db.fetchval(
            "SELECT count(*) FROM ecommerce_customers WHERE updated_at > created_at"
        )
        assert 1 <= edited <= 5  # a customer may be drawn twice

        await exercise(instance, db, ["address_update"], rounds=6)
        assert await count(db, "ecommerce_addresses") == 54 + 6  # the old ones are kept
        await _one_default_address_each(db)

        await exercise(instance, db, ["add_to_cart", "checkout"], rounds=10)
        shipped = await db.fetchval(
            "SELECT count(*) FROM ecommerce_orders WHERE shipping_address_id IS NOT NULL"
        )
        assert shipped == await count(db, "ecommerce_orders") > 0
        await _one_default_address_each(db)

        before = instance.get_metrics()["rows_returned"]
        await exercise(instance, db, ["customer_lookup"], rounds=3)
        metrics = instance.get_metrics()
        assert metrics["rows_returned"] >= before + 3  # at least the profile each time
        assert (metrics["customers_registered"], metrics["addresses_changed"]) == (4, 6)
        assert metrics["customers_updated"] == 5


@pytest.mark.slow
def test_ecommerce_concurrent_address_changes_keep_one_default_address(pg_url):
    """Two customers and four clients moving them: the customer lock orders the changes."""
    config = {**SMALL["ecommerce"], "customer_count": 2}

    async def main() -> None:
        async with loaded("ecommerce", config) as instance:
            async with connected(pg_url) as db:
                await instance.setup(db)

            async def client() -> None:
                async with connected(pg_url) as db:
                    await exercise(instance, db, ["address_update", "customer_update"], rounds=15)

            await asyncio.gather(*(client() for _ in range(4)))
            async with connected(pg_url) as db:
                await _one_default_address_each(db)
                assert await count(db, "ecommerce_addresses") == 2 + 4 * 15
            assert instance.get_metrics()["addresses_changed"] == 60

    asyncio.run(main())


# --------------------------------------------------------------------------- vector


@pytest.mark.slow
@pytest.mark.parametrize(
    ("index_type", "function", "opclass"),
    [
        ("hnsw", "cosine", "vector_cosine_ops"),
        ("ivfflat", "l2", "vector_l2_ops"),
        ("hnsw", "inner_product", "vector_ip_ops"),
    ],
)
def test_vector_builds_the_configured_index_and_counts_rows(pg_url, index_type, function, opclass):
    config = {**SMALL["vector"], "index_type": index_type, "similarity_function": function}

    @on_database(pg_url, "vector", config)
    async def _(instance, db):
        index = await db.fetchrow(
            "SELECT am.amname, opc.opcname FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam "
            "JOIN pg_opclass opc ON opc.oid = i.indclass[0] "
            "WHERE i.indrelid = 'vector_items'::regclass AND NOT i.indisprimary"
        )
        assert tuple(index) == (index_type, opclass)
        await exercise(instance, db, list(instance.get_operation_types()), rounds=4)
        assert await count(db, "vector_items") == 200 + 4 + 4 * 10
        metrics = instance.get_metrics()
        assert metrics["vectors_inserted"] == 4 + 4 * 10
        assert metrics["vectors_updated"] == 4
        assert metrics["results_returned"] == 4 * 10  # top_k rows per search
        updated = await db.fetchval(
            "SELECT count(*) FROM vector_items WHERE updated_at IS NOT NULL"
        )
        assert 1 <= updated <= 4


@pytest.mark.slow
def test_vector_returns_top_k_rows_beyond_the_default_hnsw_search_width(pg_url):
    config = {**SMALL["vector"], "top_k": 60}

    @on_database(pg_url, "vector", config)
    async def _(instance, db):
        await exercise(instance, db, ["similarity_search"], rounds=3)
        assert instance.get_metrics()["results_returned"] == 3 * 60


@pytest.mark.slow
def test_vector_search_orders_by_the_similarity_operator(pg_url):
    @on_database(pg_url, "vector", {**SMALL["vector"], "similarity_function": "l2"})
    async def _(instance, db):
        statements = instance.operations.state
        query = "[" + ",".join(["0.5"] * 8) + "]"
        rows = await db.fetch(statements.search(), query, 10)
        distances = [row["distance"] for row in rows]
        assert distances == sorted(distances)
        schema = statements.schema
        exact = await db.fetch(
            f'SELECT id FROM vector_items ORDER BY embedding OPERATOR("{schema}".<->) '
            f'$1::"{schema}".vector LIMIT 10',
            query,
        )
        assert len({r["id"] for r in rows} & {r["id"] for r in exact}) >= 8  # approximate


@pytest.mark.slow
def test_vector_a_new_dimension_reloads_and_cleanup_keeps_the_extension(pg_url):
    async def column_type(db: Any) -> str:
        # Without the schema: the extension may live in another test's schema.
        return await db.fetchval(
            "SELECT t.typname || '(' || a.atttypmod || ')' FROM pg_attribute a "
            "JOIN pg_type t ON t.oid = a.atttypid "
            "WHERE a.attrelid = 'vector_items'::regclass AND a.attname = 'embedding'"
        )

    async def main() -> None:
        async with connected(pg_url) as db:
            async with loaded("vector", SMALL["vector"]) as instance:
                await instance.setup(db)
                assert await column_type(db) == "vector(8)"
            async with loaded("vector", {**SMALL["vector"], "vector_dimension": 16}) as instance:
                await instance.setup(db)
                assert await column_type(db) == "vector(16)"
                assert instance.get_metrics()["data_loads"] == 1
                await instance.cleanup(db)
            assert await table_names(db, "vector_") == []
            assert await db.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'vector'")

    asyncio.run(main())


# --------------------------------------------------------------------------- realworld


@pytest.mark.slow
def test_realworld_counters_sessions_and_audit_rows_agree_with_the_tables(pg_url):
    @on_database(pg_url, "realworld", SMALL["realworld"])
    async def _(instance, db):
        sessions = await count(db, "realworld_sessions")
        assert sessions == 6  # one user in ten starts logged in
        await exercise(instance, db, list(instance.get_operation_types()), rounds=8)
        await exercise(instance, db, ["logout"], rounds=10)  # more logouts than logins
        metrics = instance.get_metrics()
        likes = await db.fetchval("SELECT sum(like_count) FROM realworld_posts")
        assert likes == await count(db, "realworld_likes")
        comments = await db.fetchval("SELECT sum(comment_count) FROM realworld_posts")
        assert comments == await count(db, "realworld_comments")
        assert await count(db, "realworld_audit_log") == metrics["audit_rows"]
        assert await count(db, "realworld_sessions") == sessions + metrics["sessions_opened"]
        ended = await db.fetchval(
            "SELECT count(*) FROM realworld_sessions WHERE ended_at IS NOT NULL"
        )
        assert ended == metrics["sessions_closed"]
        assert metrics["sessions_closed"] + metrics["logouts_without_session"] == 18
        assert metrics["likes_new"] + metrics["likes_repeated"] == 8


@pytest.mark.slow
def test_realworld_hot_users_get_most_of_the_activity(pg_url):
    @on_database(pg_url, "realworld", SMALL["realworld"])
    async def _(instance, db):
        authors = await db.fetch(
            "SELECT user_id, count(*) AS posts FROM realworld_posts "
            "GROUP BY user_id ORDER BY posts DESC"
        )
        assert authors[0]["user_id"] == 1  # 60 users: one hot user
        assert authors[0]["posts"] > sum(r["posts"] for r in authors) / 2
        followers = await db.fetchval(
            "SELECT count(*) FROM realworld_follows WHERE followee_id = 1"
        )
        assert followers > 50  # almost everyone follows the hot user


@pytest.mark.parametrize("name", [*NAMES, "tpcb"])
def test_each_builtin_manifest_declares_the_weights_its_workload_gives(name):
    """`tether workloads list` reads the weights from the manifest; they must be the
    ones the workload itself returns (four said `(not declared)`)."""

    async def main() -> object:
        async with loaded(name, SMALL.get(name, {})) as instance:
            return instance.get_operation_types()

    manifest = tether.load_manifest(WORKLOADS / name)
    declared = manifest.config["operation_weights"].default
    assert declared == asyncio.run(main())
