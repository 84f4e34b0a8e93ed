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

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from tether.hosts.workload import AsyncConnection, Workload, seeded_random, settings_keys

from . import vector_data as data
from .vector_data import Embeddings, Statements

_LOAD_CHUNK = 1000
_HNSW_EF_SEARCH = 40  # pgvector's default hnsw.ef_search


@dataclass(frozen=True, slots=True)
class Settings:
    """The plugin_config, as the manifest checks it (ranges and choices there)."""

    vector_dimension: int
    index_type: str
    similarity_function: str
    initial_vectors: int
    batch_size: int
    top_k: int
    clusters: int
    seed: int | None = None

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


CONFIG_KEYS = settings_keys(Settings)


class VectorWorkload(Workload[Settings, Statements]):
    """The ``vector`` workload plugin (see the module docstring)."""

    NAME = "vector"
    VERSION = "1.0.0"
    DESCRIPTION = "pgvector: similarity search over an hnsw or ivfflat index, inserts and updates."
    AUTHOR = "tether"
    OPERATION_WEIGHTS: ClassVar = {
        "similarity_search": 60,
        "vector_insert": 25,
        "vector_update": 15,
        "batch_insert": 0,
    }
    DATA = data.DATA  # cleanup drops its tables; the vector extension stays (others may use it)
    SETTINGS = Settings

    _embeddings: Embeddings  # set by initialize, with the settings

    def __init__(self) -> None:
        self._max_id = 0
        super().__init__(
            {
                "similarity_search": self._similarity_search,
                "vector_insert": self._vector_insert,
                "vector_update": self._vector_update,
                "batch_insert": self._batch_insert,
            },
            read_state=self._prepare,
            counters=("vectors_inserted", "vectors_updated", "updates_missed", "results_returned"),
        )

    # ------------------------------------------------------------------ contract

    def initialize(self, config: Mapping[str, object]) -> None:
        super().initialize(config)
        settings = self.settings
        self._embeddings = Embeddings(
            seeded_random(settings.seed, "centroids"),
            dimension=settings.vector_dimension,
            clusters=settings.clusters,
        )

    def get_info(self) -> dict[str, object]:
        settings = self.settings
        return {
            **super().get_info(),
            "vector_dimension": settings.vector_dimension,
            "index_type": settings.index_type,
            "similarity_function": settings.similarity_function,
        }

    async def setup(self, db: AsyncConnection) -> None:
        settings = self.settings
        statements = self._statements_for(await self._extension_schema(db, create=True))
        index = statements.index(settings.initial_vectors)

        async def fill() -> int:
            await self._load(db, statements)
            await db.execute(index)
            return settings.initial_vectors

        signature = settings.signature()
        rows = await data.DATA.load(
            db, signature, schema=statements.tables(), fill=fill, analyze=["vector_items"]
        )
        if rows is None:  # the data was there: make sure its index is too
            await db.execute(index)
        self.counters.loaded(rows)
        self._max_id = await db.fetchval("SELECT coalesce(max(id), 0) FROM vector_items")
        self.operations.state = statements

    # ------------------------------------------------------------------ state

    def _statements_for(self, schema: str) -> Statements:
        settings = self.settings
        return Statements(
            schema=schema,
            dimension=settings.vector_dimension,
            index_type=settings.index_type,
            function=settings.similarity_function,
        )

    async def _extension_schema(self, db: AsyncConnection, *, create: bool) -> str:
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
                    f"workload '{self.NAME}' needs the pgvector extension, and "
                    f"CREATE EXTENSION vector failed: {exc} (install pgvector on the server, "
                    "or have a superuser run CREATE EXTENSION vector in this database)"
                ) from exc
            schema = await db.fetchval(query)
        if schema is None:
            raise RuntimeError(
                f"workload '{self.NAME}': the pgvector extension is not installed in this "
                "database; run setup() first"
            )
        return str(schema)

    async def _load(self, db: AsyncConnection, statements: Statements) -> None:
        settings = self.settings
        rng = random.Random(settings.seed)  # noqa: S311 - same seed, same rows
        generator = self._embeddings
        insert = statements.insert_many()
        for start in range(0, settings.initial_vectors, _LOAD_CHUNK):
            count = min(_LOAD_CHUNK, settings.initial_vectors - start)
            categories, vectors = generator.many(rng, count)
            await db.fetchval(insert, categories, vectors)

    async def _prepare(self, db: AsyncConnection) -> Statements:
        """The statements, for an instance that did not run setup itself."""
        schema = await self._extension_schema(db, create=False)
        self._max_id = await db.fetchval("SELECT coalesce(max(id), 0) FROM vector_items")
        return self._statements_for(schema)

    # ------------------------------------------------------------------ operations

    async def _similarity_search(self, db: AsyncConnection, statements: Statements) -> None:
        _, query = self._embeddings.one(self.rng)
        top_k = self.settings.top_k
        if statements.index_type == "hnsw" and top_k > _HNSW_EF_SEARCH:
            # An hnsw scan returns at most hnsw.ef_search rows: widen it for this query.
            async with db.transaction():
                await db.execute("SELECT set_config('hnsw.ef_search', $1, true)", str(top_k))
                rows = await db.fetch(statements.search(), query, top_k)
        else:
            rows = await db.fetch(statements.search(), query, top_k)
        self.counters["results_returned"] += len(rows)

    async def _vector_insert(self, db: AsyncConnection, statements: Statements) -> None:
        category, vector = self._embeddings.one(self.rng)
        new_id = await db.fetchval(statements.insert(), category, vector)
        self._max_id = max(self._max_id, new_id)
        self.counters["vectors_inserted"] += 1

    async def _vector_update(self, db: AsyncConnection, statements: Statements) -> None:
        if self._max_id == 0:
            return
        _, vector = self._embeddings.one(self.rng)
        status = await db.execute(statements.update(), self.rng.randint(1, self._max_id), vector)
        # 0 rows: the id belongs to another client's insert that has not committed yet.
        updated = int(status.rpartition(" ")[2])
        self.counters["vectors_updated" if updated else "updates_missed"] += 1

    async def _batch_insert(self, db: AsyncConnection, statements: Statements) -> None:
        count = self.settings.batch_size
        categories, vectors = self._embeddings.many(self.rng, count)
        new_id = await db.fetchval(statements.insert_many(), categories, vectors)
        self._max_id = max(self._max_id, new_id)
        self.counters["vectors_inserted"] += count
