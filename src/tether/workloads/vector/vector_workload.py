"""The vector workload: pgvector similarity search, inserts and updates.

``db`` is an asyncpg connection (one per client). Setup creates the ``vector``
extension if it is missing (it never drops it), the ``vector_items`` table with a
``vector(vector_dimension)`` column, loads ``initial_vectors`` embeddings clustered
around ``clusters`` centroids, then builds one ``hnsw`` or ``ivfflat`` index for
the chosen similarity function (ivfflat gets ``lists = rows / 1000``, at least 1).
A second setup with the same config keeps everything; any change of dimension,
index, function, size or seed reloads.

Operations:

- ``similarity_search``: the ``top_k`` nearest rows to a vector near a random
  centroid, ``ORDER BY embedding <op> $1 LIMIT k`` (``<=>`` cosine, ``<->`` l2,
  ``<#>`` inner product), which the index serves;
- ``vector_insert``: one new row;
- ``vector_update``: a new embedding for a random existing row;
- ``batch_insert`` (weight 0): ``batch_size`` rows in one statement.

Vectors are sent as pgvector's text format, so connections need no codec.
"""

from __future__ import annotations

import asyncio
import difflib
import itertools
import json
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from tether.errors import ConfigError

from . import vector_data as data
from .vector_data import Connection, Embeddings, Statements

NAME = "vector"
VERSION = "1.0.0"
DESCRIPTION = "pgvector: similarity search over an hnsw or ivfflat index, inserts and updates."
CONFIG_KEYS = frozenset(
    {
        "operation_weights",
        "vector_dimension",
        "index_type",
        "similarity_function",
        "initial_vectors",
        "batch_size",
        "top_k",
        "clusters",
        "seed",
    }
)
OPERATION_WEIGHTS = {
    "similarity_search": 60,
    "vector_insert": 25,
    "vector_update": 15,
    "batch_insert": 0,
}
_LOAD_CHUNK = 1000
_HNSW_EF_SEARCH = 40  # pgvector's default hnsw.ef_search
_MAX_TOP_K = 1000  # the largest hnsw.ef_search
_LIMITS = {
    "vector_dimension": " (pgvector's hnsw and ivfflat indexes take up to 2000 dimensions)",
    "top_k": " (an hnsw scan returns at most hnsw.ef_search rows, at most 1000)",
}
_instances = itertools.count()


@dataclass(frozen=True, slots=True)
class Settings:
    vector_dimension: int
    index_type: str
    similarity_function: str
    initial_vectors: int
    batch_size: int
    top_k: int
    clusters: int
    seed: int | None

    def signature(self) -> dict[str, object]:
        """What the loaded data depends on: a different signature means a new load."""
        return {
            "vector_dimension": self.vector_dimension,
            "index_type": self.index_type,
            "similarity_function": self.similarity_function,
            "initial_vectors": self.initial_vectors,
            "clusters": self.clusters,
            "seed": self.seed,
        }


def _fail(message: str) -> ConfigError:
    return ConfigError(
        f"invalid configuration for workload '{NAME}': {message}",
        plugin=NAME,
        hint="see the `config` section of the vector workload's plugin.yaml",
    )


def _integer(config: Mapping[str, object], key: str, *, minimum: int, maximum: int = 0) -> int:
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(f"'{key}' must be an integer, got {value!r}")
    if value < minimum:
        raise _fail(f"'{key}' must be at least {minimum}, got {value}")
    if maximum and value > maximum:
        raise _fail(f"'{key}' must be at most {maximum}, got {value}{_LIMITS.get(key, '')}")
    return value


def _choice(config: Mapping[str, object], key: str, choices: tuple[str, ...]) -> str:
    value = config.get(key)
    if value not in choices:
        raise _fail(f"'{key}' must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def _check_keys(config: Mapping[str, object]) -> None:
    for key in config:
        if key not in CONFIG_KEYS:
            close = difflib.get_close_matches(key, sorted(CONFIG_KEYS), n=1)
            suggestion = f" (did you mean '{close[0]}'?)" if close else ""
            raise _fail(f"unknown key '{key}'{suggestion}")


def parse_settings(config: Mapping[str, object]) -> Settings:
    _check_keys(config)
    seed = config.get("seed")
    return Settings(
        vector_dimension=_integer(
            config, "vector_dimension", minimum=1, maximum=data.MAX_INDEXED_DIMENSIONS
        ),
        index_type=_choice(config, "index_type", data.INDEX_TYPES),
        similarity_function=_choice(
            config, "similarity_function", tuple(data.SIMILARITY_FUNCTIONS)
        ),
        initial_vectors=_integer(config, "initial_vectors", minimum=1),
        batch_size=_integer(config, "batch_size", minimum=1),
        top_k=_integer(config, "top_k", minimum=1, maximum=_MAX_TOP_K),
        clusters=_integer(config, "clusters", minimum=1),
        seed=None if seed is None else _integer(config, "seed", minimum=-(2**63)),
    )


class VectorWorkload:
    """The ``vector`` workload plugin (see the module docstring)."""

    def __init__(self) -> None:
        self.settings: Settings | None = None
        self._rng = random.Random()  # noqa: S311 - benchmark data, not secrets
        self._embeddings: Embeddings | None = None
        self._statements: Statements | None = None
        self._state_lock = asyncio.Lock()
        self._max_id = 0
        self._operations: dict[str, Callable[[Connection, Statements], Awaitable[None]]] = {
            "similarity_search": self._similarity_search,
            "vector_insert": self._vector_insert,
            "vector_update": self._vector_update,
            "batch_insert": self._batch_insert,
        }
        self._counts = dict.fromkeys(self._operations, 0)
        self._metrics: dict[str, int] = dict.fromkeys(
            (
                "rows_loaded",
                "data_loads",
                "setups_reused",
                "vectors_inserted",
                "vectors_updated",
                "updates_missed",
                "results_returned",
            ),
            0,
        )

    # ------------------------------------------------------------------ contract

    def initialize(self, config: dict[str, object]) -> None:
        settings = self.settings = parse_settings(config)
        seed = settings.seed
        instance = next(_instances)
        self._rng = random.Random(None if seed is None else f"{seed}:{instance}")  # noqa: S311
        centroids = random.Random(None if seed is None else f"{seed}:centroids")  # noqa: S311
        self._embeddings = Embeddings(
            centroids, dimension=settings.vector_dimension, clusters=settings.clusters
        )

    def get_info(self) -> dict[str, object]:
        settings = self._settings()
        return {
            "name": NAME,
            "version": VERSION,
            "description": DESCRIPTION,
            "author": "tether",
            "tables": list(data.TABLES),
            "operation_types": self.get_operation_types(),
            "vector_dimension": settings.vector_dimension,
            "index_type": settings.index_type,
            "similarity_function": settings.similarity_function,
        }

    def get_operation_types(self) -> dict[str, int]:
        return dict(OPERATION_WEIGHTS)

    def get_metrics(self) -> dict[str, object]:
        # Flat counters, so the metrics of several worker processes add up.
        operations = {f"operations_{op}": n for op, n in self._counts.items()}
        return {**operations, **self._metrics}

    async def setup(self, db: Connection) -> None:
        settings = self._settings()
        statements = self._statements_for(await self._extension_schema(db, create=True))
        signature = settings.signature()
        if await self._loaded_signature(db) == signature:
            self._metrics["setups_reused"] += 1
            await db.execute(statements.index(settings.initial_vectors))
        else:
            await db.execute(f"DROP TABLE IF EXISTS {', '.join(data.TABLES)} CASCADE")
            await db.execute(statements.tables())
            async with db.transaction():
                await self._load(db, statements)
                await db.execute(statements.index(settings.initial_vectors))
                await db.execute(
                    "INSERT INTO vector_meta (id, signature, rows_loaded) "
                    "VALUES (1, $1::jsonb, $2)",
                    json.dumps(signature),
                    settings.initial_vectors,
                )
            await db.execute("ANALYZE vector_items")
            self._metrics["rows_loaded"] += settings.initial_vectors
            self._metrics["data_loads"] += 1
        self._max_id = await db.fetchval("SELECT coalesce(max(id), 0) FROM vector_items")
        self._statements = statements

    async def cleanup(self, db: Connection) -> None:
        # The vector extension stays: other objects in the database may use it.
        await db.execute(f"DROP TABLE IF EXISTS {', '.join(data.TABLES)} CASCADE")
        self._statements = None

    async def execute_operation(self, db: Connection, operation_type: str) -> None:
        operation = self._operations.get(operation_type)
        if operation is None:
            known = ", ".join(self._operations)
            raise ValueError(
                f"workload '{NAME}' has no operation '{operation_type}' (it has {known})"
            )
        await operation(db, await self._ready(db))
        self._counts[operation_type] += 1

    # ------------------------------------------------------------------ state

    def _settings(self) -> Settings:
        if self.settings is None:
            raise RuntimeError(f"workload '{NAME}' is not initialized: call initialize() first")
        return self.settings

    def _generator(self) -> Embeddings:
        if self._embeddings is None:
            raise RuntimeError(f"workload '{NAME}' is not initialized: call initialize() first")
        return self._embeddings

    def _statements_for(self, schema: str) -> Statements:
        settings = self._settings()
        return Statements(
            schema=schema,
            dimension=settings.vector_dimension,
            index_type=settings.index_type,
            function=settings.similarity_function,
        )

    async def _extension_schema(self, db: Connection, *, create: bool) -> str:
        query = (
            "SELECT n.nspname FROM pg_extension e "
            "JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'"
        )
        schema = await db.fetchval(query)
        if schema is None and create:
            try:
                await db.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except Exception as exc:
                raise RuntimeError(
                    f"workload '{NAME}' needs the pgvector extension, and "
                    f"CREATE EXTENSION vector failed: {exc} (install pgvector on the server, "
                    "or have a superuser run CREATE EXTENSION vector in this database)"
                ) from exc
            schema = await db.fetchval(query)
        if schema is None:
            raise RuntimeError(
                f"workload '{NAME}': the pgvector extension is not installed in this "
                "database; run setup() first"
            )
        return str(schema)

    async def _loaded_signature(self, db: Connection) -> object:
        if not await db.fetchval("SELECT to_regclass('vector_meta') IS NOT NULL"):
            return None
        text = await db.fetchval("SELECT signature::text FROM vector_meta WHERE id = 1")
        return None if text is None else json.loads(text)

    async def _load(self, db: Connection, statements: Statements) -> None:
        settings = self._settings()
        rng = random.Random(settings.seed)  # noqa: S311 - same seed, same rows
        generator = self._generator()
        insert = statements.insert_many()
        for start in range(0, settings.initial_vectors, _LOAD_CHUNK):
            count = min(_LOAD_CHUNK, settings.initial_vectors - start)
            categories, vectors = generator.many(rng, count)
            await db.fetchval(insert, categories, vectors)

    async def _ready(self, db: Connection) -> Statements:
        if self._statements is None:
            async with self._state_lock:
                if self._statements is None:
                    schema = await self._extension_schema(db, create=False)
                    self._max_id = await db.fetchval(
                        "SELECT coalesce(max(id), 0) FROM vector_items"
                    )
                    self._statements = self._statements_for(schema)
        return self._statements

    # ------------------------------------------------------------------ operations

    async def _similarity_search(self, db: Connection, statements: Statements) -> None:
        _, query = self._generator().one(self._rng)
        top_k = self._settings().top_k
        if statements.index_type == "hnsw" and top_k > _HNSW_EF_SEARCH:
            # An hnsw scan returns at most hnsw.ef_search rows: widen it for this query.
            async with db.transaction():
                await db.execute("SELECT set_config('hnsw.ef_search', $1, true)", str(top_k))
                rows = await db.fetch(statements.search(), query, top_k)
        else:
            rows = await db.fetch(statements.search(), query, top_k)
        self._metrics["results_returned"] += len(rows)

    async def _vector_insert(self, db: Connection, statements: Statements) -> None:
        category, vector = self._generator().one(self._rng)
        new_id = await db.fetchval(statements.insert(), category, vector)
        self._max_id = max(self._max_id, new_id)
        self._metrics["vectors_inserted"] += 1

    async def _vector_update(self, db: Connection, statements: Statements) -> None:
        if self._max_id == 0:
            return
        _, vector = self._generator().one(self._rng)
        status = await db.execute(statements.update(), self._rng.randint(1, self._max_id), vector)
        # 0 rows: the id belongs to another client's insert that has not committed yet.
        updated = int(status.rpartition(" ")[2])
        self._metrics["vectors_updated" if updated else "updates_missed"] += 1

    async def _batch_insert(self, db: Connection, statements: Statements) -> None:
        count = self._settings().batch_size
        categories, vectors = self._generator().many(self._rng, count)
        new_id = await db.fetchval(statements.insert_many(), categories, vectors)
        self._max_id = max(self._max_id, new_id)
        self._metrics["vectors_inserted"] += count
