"""The IMDB workload: searches, ratings and reviews over a movie database.

``db`` is an asyncpg connection (one per client). Setup creates the ``imdb_*``
tables and loads them once per data signature (sizes, seed, data file); a second
setup with the same config keeps the data. Operations:

- ``movie_search``: a case-insensitive title prefix, or a genre within a decade;
- ``actor_search``: a name prefix with each actor's film count;
- ``rating_insert`` / ``review_insert``: one new rating / review of a popular movie;
- ``top_rated`` (weight 0): the best-rated movies of a genre, aggregated over ratings;
- ``actor_filmography`` (weight 0): the actors with the most films in a decade.

The two analytical operations scan the ratings and cast tables, so they are off
by default (they would dominate the latency of the reference mix); give them a
weight in ``operation_weights`` to run them.
"""

from __future__ import annotations

import asyncio
import difflib
import itertools
import json
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tether.errors import ConfigError

from . import imdb_data as data
from .imdb_data import Connection

NAME = "imdb"
VERSION = "1.0.0"
DESCRIPTION = "Movie database: title and actor searches, ratings, reviews, analytics."
CONFIG_KEYS = frozenset(
    {"operation_weights", "data_file", "movies", "actors", "ratings_per_movie", "seed"}
)
OPERATION_WEIGHTS = {
    "movie_search": 40,
    "actor_search": 30,
    "rating_insert": 20,
    "review_insert": 10,
    "top_rated": 0,
    "actor_filmography": 0,
}
_PAGE = 20
_SAMPLE = 500
_MIN_VOTES = 3
_instances = itertools.count()


@dataclass(frozen=True, slots=True)
class Settings:
    data_file: Path | None
    movies: int
    actors: int
    ratings_per_movie: int
    seed: int | None

    def signature(self) -> dict[str, object]:
        """What the loaded data depends on: a different signature means a new load."""
        source: object = None
        if self.data_file is not None:
            stat = self.data_file.stat()
            source = [str(self.data_file.resolve()), stat.st_size, stat.st_mtime_ns]
        movies = None if self.data_file is not None else self.movies
        return {
            "data_file": source,
            "movies": movies,
            "actors": self.actors,
            "ratings_per_movie": self.ratings_per_movie,
            "seed": self.seed,
        }


@dataclass(frozen=True, slots=True)
class _State:
    """What operations draw from, read once from the loaded tables."""

    movies: int
    actors: int
    genres: tuple[str, ...]
    years: tuple[int, int]
    titles: tuple[str, ...]
    names: tuple[str, ...]


def _fail(message: str) -> ConfigError:
    return ConfigError(
        f"invalid configuration for workload '{NAME}': {message}",
        plugin=NAME,
        hint="see the `config` section of the imdb workload's plugin.yaml",
    )


def _integer(config: Mapping[str, object], key: str, *, minimum: int) -> int:
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(f"'{key}' must be an integer, got {value!r}")
    if value < minimum:
        raise _fail(f"'{key}' must be at least {minimum}, got {value}")
    return value


def _check_keys(config: Mapping[str, object]) -> None:
    for key in config:
        if key not in CONFIG_KEYS:
            close = difflib.get_close_matches(key, sorted(CONFIG_KEYS), n=1)
            suggestion = f" (did you mean '{close[0]}'?)" if close else ""
            raise _fail(f"unknown key '{key}'{suggestion}")


def parse_settings(config: Mapping[str, object]) -> Settings:
    _check_keys(config)
    data_file = config.get("data_file")
    path: Path | None = None
    if data_file not in (None, ""):
        path = Path(str(data_file)).expanduser()
        if not path.is_file():
            raise _fail(f"data_file {path} does not exist or is not a file")
        try:
            data.read_csv_header(path)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise _fail(f"data_file: {exc}") from None
    seed = config.get("seed")
    return Settings(
        data_file=path,
        movies=_integer(config, "movies", minimum=1),
        actors=_integer(config, "actors", minimum=1),
        ratings_per_movie=_integer(config, "ratings_per_movie", minimum=0),
        seed=None if seed is None else _integer(config, "seed", minimum=-(2**63)),
    )


def _prefix(text: str, rng: random.Random) -> str:
    """A lower-case LIKE prefix pattern of 3 to 8 characters of ``text``."""
    cut = text[: rng.randint(3, 8)].lower()
    return cut.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class ImdbWorkload:
    """The ``imdb`` workload plugin (see the module docstring)."""

    def __init__(self) -> None:
        self.settings: Settings | None = None
        self._rng = random.Random()  # noqa: S311 - benchmark data, not secrets
        self._state: _State | None = None
        self._state_lock = asyncio.Lock()
        self._operations: dict[str, Callable[[Connection, _State], Awaitable[None]]] = {
            "movie_search": self._movie_search,
            "actor_search": self._actor_search,
            "rating_insert": self._rating_insert,
            "review_insert": self._review_insert,
            "top_rated": self._top_rated,
            "actor_filmography": self._actor_filmography,
        }
        self._counts = dict.fromkeys(self._operations, 0)
        self._metrics = {
            "rows_loaded": 0,
            "data_loads": 0,
            "setups_reused": 0,
            "ratings_inserted": 0,
            "reviews_inserted": 0,
            "rows_returned": 0,
            "empty_results": 0,
        }

    # ------------------------------------------------------------------ contract

    def initialize(self, config: dict[str, object]) -> None:
        self.settings = parse_settings(config)
        seed = self.settings.seed
        instance = next(_instances)
        self._rng = random.Random(None if seed is None else f"{seed}:{instance}")  # noqa: S311

    def get_info(self) -> dict[str, object]:
        return {
            "name": NAME,
            "version": VERSION,
            "description": DESCRIPTION,
            "author": "tether",
            "tables": list(data.TABLES),
            "operation_types": self.get_operation_types(),
        }

    def get_operation_types(self) -> dict[str, int]:
        return dict(OPERATION_WEIGHTS)

    def get_metrics(self) -> dict[str, object]:
        # Flat counters, so the metrics of several worker processes add up.
        operations = {f"operations_{op}": n for op, n in self._counts.items()}
        return {**operations, **self._metrics}

    async def setup(self, db: Connection) -> None:
        settings = self._settings()
        signature = settings.signature()
        if await self._loaded_signature(db) == signature:
            self._metrics["setups_reused"] += 1
        else:
            await data.drop_tables(db)
            await db.execute(data.SCHEMA)
            # The data depends on the seed only, never on the instance: same seed, same rows.
            rng = random.Random(settings.seed)  # noqa: S311
            async with db.transaction():
                rows = await data.load(
                    db,
                    rng,
                    data_file=settings.data_file,
                    movies=settings.movies,
                    actors=settings.actors,
                    ratings_per_movie=settings.ratings_per_movie,
                )
                await db.execute(
                    "INSERT INTO imdb_meta (id, signature, rows_loaded) VALUES (1, $1::jsonb, $2)",
                    json.dumps(signature),
                    rows,
                )
            await db.execute(f"ANALYZE {', '.join(data.TABLES)}")
            self._metrics["rows_loaded"] += rows
            self._metrics["data_loads"] += 1
        self._state = await self._read_state(db)

    async def cleanup(self, db: Connection) -> None:
        await data.drop_tables(db)
        self._state = None

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

    async def _loaded_signature(self, db: Connection) -> object:
        exists = await db.fetchval("SELECT to_regclass('imdb_meta') IS NOT NULL")
        if not exists:
            return None
        text = await db.fetchval("SELECT signature::text FROM imdb_meta WHERE id = 1")
        return None if text is None else json.loads(text)

    async def _ready(self, db: Connection) -> _State:
        if self._state is None:
            async with self._state_lock:
                if self._state is None:
                    self._state = await self._read_state(db)
        return self._state

    async def _read_state(self, db: Connection) -> _State:
        movies = await db.fetchval("SELECT coalesce(max(movie_id), 0) FROM imdb_movies")
        actors = await db.fetchval("SELECT coalesce(max(actor_id), 0) FROM imdb_actors")
        if not movies or not actors:
            raise RuntimeError(
                f"workload '{NAME}': the imdb tables are empty; run setup() before operations"
            )
        genres = await db.fetch("SELECT DISTINCT genre FROM imdb_movies ORDER BY genre")
        years = await db.fetchrow("SELECT min(year), max(year) FROM imdb_movies")
        titles = await db.fetch("SELECT title FROM imdb_movies LIMIT $1", _SAMPLE)
        names = await db.fetch("SELECT name FROM imdb_actors LIMIT $1", _SAMPLE)
        return _State(
            movies=movies,
            actors=actors,
            genres=tuple(r[0] for r in genres),
            years=(years[0], years[1]),
            titles=tuple(r[0] for r in titles),
            names=tuple(r[0] for r in names),
        )

    def _returned(self, rows: list[object]) -> None:
        self._metrics["rows_returned"] += len(rows)
        if not rows:
            self._metrics["empty_results"] += 1

    # ------------------------------------------------------------------ operations

    async def _movie_search(self, db: Connection, state: _State) -> None:
        rng = self._rng
        if rng.random() < 0.5:  # noqa: PLR2004 - half by title, half by genre and decade
            rows = await db.fetch(
                "SELECT movie_id, title, year, genre FROM imdb_movies "
                "WHERE lower(title) LIKE $1 ORDER BY title LIMIT $2",
                _prefix(rng.choice(state.titles), rng) + "%",
                _PAGE,
            )
        else:
            start = rng.randint(state.years[0], state.years[1])
            rows = await db.fetch(
                "SELECT movie_id, title, year, genre FROM imdb_movies "
                "WHERE genre = $1 AND year BETWEEN $2 AND $3 "
                "ORDER BY year DESC, movie_id LIMIT $4",
                rng.choice(state.genres),
                start,
                start + 9,
                _PAGE,
            )
        self._returned(rows)

    async def _actor_search(self, db: Connection, state: _State) -> None:
        rows = await db.fetch(
            "SELECT a.actor_id, a.name, count(ma.movie_id) AS films "
            "FROM imdb_actors a LEFT JOIN imdb_movie_actors ma ON ma.actor_id = a.actor_id "
            "WHERE lower(a.name) LIKE $1 GROUP BY a.actor_id, a.name ORDER BY a.name LIMIT $2",
            _prefix(self._rng.choice(state.names), self._rng) + "%",
            _PAGE,
        )
        self._returned(rows)

    async def _rating_insert(self, db: Connection, state: _State) -> None:
        rng = self._rng
        await db.execute(
            "INSERT INTO imdb_ratings (movie_id, user_id, score) VALUES ($1, $2, $3)",
            data.skewed(rng, state.movies),
            rng.randint(1, data.USERS),
            data.score(rng),
        )
        self._metrics["ratings_inserted"] += 1

    async def _review_insert(self, db: Connection, state: _State) -> None:
        rng = self._rng
        headline, body = data.review_text(rng)
        await db.execute(
            "INSERT INTO imdb_reviews (movie_id, user_id, score, headline, body) "
            "VALUES ($1, $2, $3, $4, $5)",
            data.skewed(rng, state.movies),
            rng.randint(1, data.USERS),
            data.score(rng),
            headline,
            body,
        )
        self._metrics["reviews_inserted"] += 1

    async def _top_rated(self, db: Connection, state: _State) -> None:
        rows = await db.fetch(
            "SELECT m.movie_id, m.title, round(avg(r.score), 2) AS average, count(*) AS votes "
            "FROM imdb_ratings r JOIN imdb_movies m ON m.movie_id = r.movie_id "
            "WHERE m.genre = $1 GROUP BY m.movie_id, m.title HAVING count(*) >= $2 "
            "ORDER BY average DESC, votes DESC LIMIT 10",
            self._rng.choice(state.genres),
            _MIN_VOTES,
        )
        self._returned(rows)

    async def _actor_filmography(self, db: Connection, state: _State) -> None:
        decade = self._rng.randint(state.years[0], state.years[1]) // 10 * 10
        rows = await db.fetch(
            "SELECT a.actor_id, a.name, count(*) AS films, min(m.year), max(m.year) "
            "FROM imdb_movie_actors ma "
            "JOIN imdb_movies m ON m.movie_id = ma.movie_id "
            "JOIN imdb_actors a ON a.actor_id = ma.actor_id "
            "WHERE m.year BETWEEN $1 AND $2 "
            "GROUP BY a.actor_id, a.name ORDER BY films DESC, a.actor_id LIMIT 10",
            decade,
            decade + 9,
        )
        self._returned(rows)
