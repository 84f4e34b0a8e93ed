"""What workload plugins share: a base class, settings, operations, counters, data, helpers.

The built-in workloads import these from :mod:`tether.hosts.workload`, as any
workload plugin may (``docs/workloads.md`` has a complete example).
:class:`Workload` writes the contract methods such workloads have in common
(``initialize``, ``get_info``, ``get_operation_types``, ``get_metrics``,
``execute_operation``, ``cleanup``) from what the subclass declares; the subclass
writes ``setup`` and its operations::

    @dataclass(frozen=True)
    class Settings:                  # one field per key of the manifest's config
        notes: int                   # the manifest's default applies when it is not set
        seed: int | None = None      # a key without a default; Workload needs a seed


    class NotesWorkload(Workload[Settings, int]):   # int: the state the operations share
        NAME = "notes"
        VERSION = "1.0.0"
        DESCRIPTION = "Notes - point reads and edits."
        AUTHOR = "You"
        OPERATION_WEIGHTS = {"read": 9, "edit": 1}
        DATA = Dataset("notes_meta", tables=("notes", "notes_meta"))
        SETTINGS = Settings

        def __init__(self):
            operations = {"read": self._read, "edit": self._edit}
            super().__init__(operations, read_state=self._count, counters=("missing",))

        async def setup(self, db):
            async def fill():
                return await copy_rows(db, "notes", ("id", "body"), rows(self.settings))

            signature = {"notes": self.settings.notes}
            self.counters.loaded(await self.DATA.load(db, signature, schema=SCHEMA, fill=fill))
            await self.operations.prepare(db)

Range and choice checks belong in the manifest (``minimum``, ``maximum``,
``choices``): tether applies them, and the defaults, before ``initialize``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import itertools
import json
import random
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, ClassVar, Generic, NoReturn, Protocol, TypeVar

from tether.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "AsyncConnection",
    "Counters",
    "Dataset",
    "Operations",
    "Pool",
    "Workload",
    "copy_rows",
    "read_settings",
    "seeded_random",
    "settings_keys",
    "skewed",
]

_S = TypeVar("_S", bound="DataclassInstance")
_Item = TypeVar("_Item")
_State = TypeVar("_State")
_Seeded = TypeVar("_Seeded", bound="_SeededSettings")
WEIGHTS_KEY = "operation_weights"  # tether bench's key in every plugin_config


class AsyncConnection(Protocol):
    """The part of an asyncpg ``Connection`` the built-in workloads use (asyncpg ships no types)."""

    async def execute(self, query: str, *args: object) -> str: ...
    async def fetch(self, query: str, *args: object) -> list[Any]: ...
    async def fetchrow(self, query: str, *args: object) -> Any: ...  # noqa: ANN401 - asyncpg Records are untyped
    async def fetchval(self, query: str, *args: object) -> Any: ...  # noqa: ANN401 - a column value of any type
    def transaction(self) -> AbstractAsyncContextManager[Any]: ...
    async def copy_records_to_table(
        self, table_name: str, *, records: object, columns: Sequence[str]
    ) -> str: ...
    async def copy_to_table(
        self,
        table_name: str,
        *,
        source: object,
        columns: Sequence[str],
        format: str,  # noqa: A002 - asyncpg's parameter name
        header: bool,
    ) -> str: ...


class _SeededSettings(Protocol):
    """What :class:`Workload` needs of its settings: a dataclass with a ``seed`` field."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    @property
    def seed(self) -> int | None: ...


# --------------------------------------------------------------------------- settings


def settings_keys(settings: type[DataclassInstance]) -> frozenset[str]:
    """The config keys of a settings dataclass: its fields and ``operation_weights``."""
    return frozenset({f.name for f in dataclasses.fields(settings)} | {WEIGHTS_KEY})


def read_settings(settings: type[_S], config: Mapping[str, object], *, workload: str) -> _S:
    """``config``, a ``plugin_config`` tether checked against the manifest, as ``settings``.

    Each field of the dataclass ``settings`` is a config key (``operation_weights``
    belongs to tether bench and is left out). A key that is no field is refused,
    with the closest field suggested; a field without a default must be given
    (when tether loads the plugin, the manifest's defaults see to that). A
    ``ValueError`` from the dataclass's own ``__post_init__`` checks is reported
    the same way: a :class:`~tether.errors.ConfigError` naming the workload.
    """
    fields = {f.name: f for f in dataclasses.fields(settings)}
    known = settings_keys(settings)
    problems = [_unknown_key(key, known) for key in config if key not in known]
    problems += [
        f"missing key '{name}'"
        for name, f in fields.items()
        if name not in config and f.default is f.default_factory is dataclasses.MISSING
    ]
    if not problems:
        try:
            return settings(**{k: v for k, v in config.items() if k in fields})
        except ValueError as exc:
            problems.append(str(exc))
    raise ConfigError(
        f"invalid configuration for workload '{workload}': {'; '.join(problems)}",
        plugin=workload,
        hint=f"see the `config` section of the {workload} workload's plugin.yaml "
        f"(`tether plugins info {workload}`)",
    )


def _unknown_key(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f"unknown key '{key}'" + (f" (did you mean '{close[0]}'?)" if close else "")


def seeded_random(seed: int | None, stream: object) -> random.Random:
    """A generator for one ``stream`` of a seeded run (``random`` each run without a seed).

    The same seed and stream give the same numbers; other streams of the seed give others.
    """
    return random.Random(None if seed is None else f"{seed}:{stream}")  # noqa: S311 - load, not secrets


# --------------------------------------------------------------------------- operations, counters


class Operations(dict[str, Callable[["AsyncConnection", _State], Awaitable[None]]]):
    """A workload's operations by name, the state they run on, and how often each ran.

    Each operation is ``await operation(db, state)``. The state (what operations
    draw from: ids, sizes, prepared statements...) is ``await read_state(db)``, read
    by whichever client runs the first operation while the others wait, unless
    setup set it (:meth:`prepare`). A name the workload does not have raises
    ``ValueError`` naming the ones it has, before the database is touched.
    """

    def __init__(
        self,
        workload: str,
        operations: Mapping[str, Callable[[AsyncConnection, _State], Awaitable[None]]],
        *,
        read_state: Callable[[AsyncConnection], Awaitable[_State]],
    ) -> None:
        super().__init__(operations)
        self.workload = workload
        self.counts = dict.fromkeys(operations, 0)
        self.state: _State | None = None
        self._read_state = read_state
        self._lock = asyncio.Lock()

    def __missing__(self, name: str) -> NoReturn:
        raise ValueError(
            f"workload '{self.workload}' has no operation '{name}' (it has {', '.join(self)})"
        )

    async def run(self, db: AsyncConnection, name: str) -> None:
        """Run the operation ``name`` on ``db``, and count it."""
        operation = self[name]
        state = self.state
        if state is None:
            async with self._lock:
                if self.state is None:
                    self.state = await self._read_state(db)
            state = self.state
        await operation(db, state)
        self.counts[name] += 1

    async def prepare(self, db: AsyncConnection) -> None:
        """Read the state now (setup does, once the data is loaded)."""
        self.state = await self._read_state(db)

    def metrics(self) -> dict[str, int]:
        """The counts as flat metrics: ``operations_NAME``."""
        return {f"operations_{name}": count for name, count in self.counts.items()}


class Counters(dict[str, int]):
    """Flat integer counters for ``get_metrics()``, so those of worker processes add up.

    The first three count what setup did: ``rows_loaded``, ``data_loads`` and
    ``setups_reused`` (see :meth:`loaded`); ``names`` follow, each from 0.
    """

    def __init__(self, *names: str) -> None:
        super().__init__(dict.fromkeys(("rows_loaded", "data_loads", "setups_reused", *names), 0))

    def loaded(self, rows: int | None) -> None:
        """Count one setup: ``rows`` loaded, or ``None`` when the data was already there."""
        if rows is None:
            self["setups_reused"] += 1
        else:
            self["rows_loaded"] += rows
            self["data_loads"] += 1


class Pool(Generic[_Item]):
    """Items (each at most once) to take out at random: carts to check out, sessions to end."""

    def __init__(self) -> None:
        self._items: list[_Item] = []
        self._members: set[_Item] = set()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: _Item) -> None:
        if item not in self._members:
            self._members.add(item)
            self._items.append(item)

    def take(self, rng: random.Random) -> _Item | None:
        """One item at random, out of the pool; ``None`` when it is empty."""
        if not self._items:
            return None
        index = rng.randrange(len(self._items))
        self._items[index], self._items[-1] = self._items[-1], self._items[index]
        item = self._items.pop()
        self._members.discard(item)
        return item


# --------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True, slots=True)
class Dataset:
    """The tables a workload's setup loads, and the one-row ``meta`` table saying what they hold.

    ``tables`` (``meta`` among them) are dropped in their order, dependents first.
    :meth:`load` loads them only when the data's *signature* (what it depends on:
    sizes, seed...) differs from the one ``meta`` records, so a second setup with
    the same config keeps the data.
    """

    meta: str
    tables: tuple[str, ...]

    @property
    def meta_schema(self) -> str:
        return f"""
CREATE TABLE IF NOT EXISTS {self.meta} (
    id integer PRIMARY KEY CHECK (id = 1),
    signature jsonb NOT NULL,
    rows_loaded bigint NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now()
);"""

    async def drop(self, db: AsyncConnection) -> None:
        await db.execute(f"DROP TABLE IF EXISTS {', '.join(self.tables)} CASCADE")

    async def loaded_signature(self, db: AsyncConnection) -> object:
        """The signature of the data the tables hold (``None``: none loaded)."""
        if not await db.fetchval(f"SELECT to_regclass('{self.meta}') IS NOT NULL"):
            return None
        text = await db.fetchval(f"SELECT signature::text FROM {self.meta} WHERE id = 1")  # noqa: S608 - a table name of the workload's own
        return None if text is None else json.loads(text)

    async def load(
        self,
        db: AsyncConnection,
        signature: Mapping[str, object],
        *,
        schema: str,
        fill: Callable[[], Awaitable[int]],
        analyze: Sequence[str] | None = None,
    ) -> int | None:
        """Load the data unless it is there: the rows loaded, or ``None`` if it was kept.

        Loading drops the tables, creates ``meta`` and runs ``schema``, then runs
        ``fill`` (which returns how many rows it loaded) and records the signature
        in one transaction, and analyzes ``analyze`` (default: every table).
        """
        if await self.loaded_signature(db) == signature:
            return None
        await self.drop(db)
        await db.execute(self.meta_schema + schema)
        async with db.transaction():
            rows = await fill()
            await db.execute(
                f"INSERT INTO {self.meta} (id, signature, rows_loaded) VALUES (1, $1::jsonb, $2)",  # noqa: S608 - see above
                json.dumps(signature),
                rows,
            )
        await db.execute(f"ANALYZE {', '.join(analyze or self.tables)}")
        return rows


async def copy_rows(
    db: AsyncConnection, table: str, columns: Sequence[str], rows: Iterable[tuple[Any, ...]]
) -> int:
    """COPY ``rows`` into ``table``; return how many there were."""
    records = list(rows)
    if records:
        await db.copy_records_to_table(table, records=records, columns=list(columns))
    return len(records)


_SCRAMBLE = 2_654_435_761  # a prime: (rank * _SCRAMBLE) % n is a permutation of 0..n-1


def skewed(rng: random.Random, n: int) -> int:
    """An id in ``1..n``, Zipf-like (P(rank k) ~ 1/k); the popular ids are spread out."""
    rank = min(int((n + 1) ** rng.random()), n)
    return (rank - 1) * _SCRAMBLE % n + 1


# --------------------------------------------------------------------------- the workload


class Workload(Generic[_Seeded, _State]):
    """The contract methods a workload built from this toolkit writes the same way.

    A subclass declares what it is in class attributes (``NAME``, ``VERSION``,
    ``DESCRIPTION``, ``AUTHOR``, ``OPERATION_WEIGHTS``, ``DATA``: its
    :class:`Dataset`, and ``SETTINGS``: its settings dataclass, which has a
    ``seed``) and passes its operations, how to read their state and the names of
    its counters to ``__init__``, which makes :attr:`operations` (an
    :class:`Operations`) and :attr:`counters` (a :class:`Counters`). It writes
    ``setup`` itself, and extends ``initialize``, ``get_info``, ``get_metrics`` or
    ``cleanup`` through ``super()`` with what is its own.

    ``initialize`` reads :attr:`settings` (:func:`read_settings`) and seeds
    :attr:`rng`, the generator the operations draw from: each instance of the
    class, numbered from 0 as they are initialized, draws its own stream of the
    seed (:func:`seeded_random`). ``get_info`` gives the class attributes, with
    ``DATA``'s tables; ``get_metrics`` is ``{**operations.metrics(), **counters}``;
    ``execute_operation`` runs the operation (:meth:`Operations.run`); ``cleanup``
    drops ``DATA``'s tables and forgets the operations' state.
    """

    NAME: ClassVar[str]
    VERSION: ClassVar[str]
    DESCRIPTION: ClassVar[str]
    AUTHOR: ClassVar[str]
    OPERATION_WEIGHTS: ClassVar[Mapping[str, int]]
    DATA: ClassVar[Dataset]
    SETTINGS: type[_Seeded]  # a class attribute (a ClassVar cannot be generic)

    settings: _Seeded  # set by initialize
    _instances: ClassVar[Iterator[int]]

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls._instances = itertools.count()  # numbers the class's instances, for their streams

    def __init__(
        self,
        operations: Mapping[str, Callable[[AsyncConnection, _State], Awaitable[None]]],
        *,
        read_state: Callable[[AsyncConnection], Awaitable[_State]],
        counters: Iterable[str] = (),
    ) -> None:
        self.rng = random.Random()  # noqa: S311 - benchmark data, not secrets
        self.operations: Operations[_State] = Operations(
            self.NAME, operations, read_state=read_state
        )
        self.counters = Counters(*counters)

    def initialize(self, config: Mapping[str, object]) -> None:
        self.settings = read_settings(self.SETTINGS, config, workload=self.NAME)
        self.rng = seeded_random(self.settings.seed, next(self._instances))

    def get_info(self) -> dict[str, object]:
        return {
            "name": self.NAME,
            "version": self.VERSION,
            "description": self.DESCRIPTION,
            "author": self.AUTHOR,
            "tables": list(self.DATA.tables),
            "operation_types": self.get_operation_types(),
        }

    def get_operation_types(self) -> dict[str, int]:
        return dict(self.OPERATION_WEIGHTS)

    def get_metrics(self) -> dict[str, object]:
        return {**self.operations.metrics(), **self.counters}

    async def execute_operation(self, db: AsyncConnection, operation_type: str) -> None:
        await self.operations.run(db, operation_type)

    async def cleanup(self, db: AsyncConnection) -> None:
        await self.DATA.drop(db)
        self.operations.state = None
