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

import random
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from tether.hosts.workload import AsyncConnection, Workload, settings_keys, skewed

from . import imdb_data as data

_PAGE = 20
_SAMPLE = 500
_MIN_VOTES = 3


@dataclass(frozen=True, slots=True)
class Settings:
    """The plugin_config, as the manifest checks it (sizes and ranges there)."""

    movies: int
    actors: int
    ratings_per_movie: int
    data_file: str | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        path = self.path
        if path is None:
            return
        if not path.is_file():
            raise ValueError(f"data_file {path} does not exist or is not a file")
        try:
            data.read_csv_header(path)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"data_file: {exc}") from None

    @property
    def path(self) -> Path | None:
        """``data_file`` as a path (``~`` expanded), or ``None``: generate the movies."""
        return Path(self.data_file).expanduser() if self.data_file else None

    def signature(self) -> dict[str, object]:
        """What the loaded data depends on: a different signature means a new load."""
        source: object = None
        path = self.path
        if path is not None:
            stat = path.stat()
            source = [str(path.resolve()), stat.st_size, stat.st_mtime_ns]
        return {
            "data_file": source,
            "movies": None if path is not None else self.movies,
            "actors": self.actors,
            "ratings_per_movie": self.ratings_per_movie,
            "seed": self.seed,
        }


CONFIG_KEYS = settings_keys(Settings)


@dataclass(frozen=True, slots=True)
class _State:
    """What operations draw from, read once from the loaded tables."""

    movies: int
    actors: int
    genres: tuple[str, ...]
    years: tuple[int, int]
    titles: tuple[str, ...]
    names: tuple[str, ...]


def _prefix(text: str, rng: random.Random) -> str:
    """A lower-case LIKE prefix pattern of 3 to 8 characters of ``text``."""
    cut = text[: rng.randint(3, 8)].lower()
    return cut.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class ImdbWorkload(Workload[Settings, _State]):
    """The ``imdb`` workload plugin (see the module docstring)."""

    NAME = "imdb"
    VERSION = "1.0.0"
    DESCRIPTION = "Movie database: title and actor searches, ratings, reviews, analytics."
    AUTHOR = "tether"
    OPERATION_WEIGHTS: ClassVar = {
        "movie_search": 40,
        "actor_search": 30,
        "rating_insert": 20,
        "review_insert": 10,
        "top_rated": 0,
        "actor_filmography": 0,
    }
    DATA = data.DATA
    SETTINGS = Settings

    def __init__(self) -> None:
        super().__init__(
            {
                "movie_search": self._movie_search,
                "actor_search": self._actor_search,
                "rating_insert": self._rating_insert,
                "review_insert": self._review_insert,
                "top_rated": self._top_rated,
                "actor_filmography": self._actor_filmography,
            },
            read_state=self._read_state,
            counters=("ratings_inserted", "reviews_inserted", "rows_returned", "empty_results"),
        )

    # ------------------------------------------------------------------ contract

    async def setup(self, db: AsyncConnection) -> None:
        settings = self.settings

        async def fill() -> int:
            # The data depends on the seed only, never on the instance: same seed, same rows.
            return await data.load(
                db,
                random.Random(settings.seed),  # noqa: S311
                data_file=settings.path,
                movies=settings.movies,
                actors=settings.actors,
                ratings_per_movie=settings.ratings_per_movie,
            )

        signature = settings.signature()
        self.counters.loaded(await data.DATA.load(db, signature, schema=data.SCHEMA, fill=fill))
        await self.operations.prepare(db)

    # ------------------------------------------------------------------ state

    async def _read_state(self, db: AsyncConnection) -> _State:
        movies = await db.fetchval("SELECT coalesce(max(movie_id), 0) FROM imdb_movies")
        actors = await db.fetchval("SELECT coalesce(max(actor_id), 0) FROM imdb_actors")
        if not movies or not actors:
            raise RuntimeError(
                f"workload '{self.NAME}': the imdb tables are empty; run setup() before operations"
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
        self.counters["rows_returned"] += len(rows)
        if not rows:
            self.counters["empty_results"] += 1

    # ------------------------------------------------------------------ operations

    async def _movie_search(self, db: AsyncConnection, state: _State) -> None:
        rng = self.rng
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

    async def _actor_search(self, db: AsyncConnection, state: _State) -> None:
        rows = await db.fetch(
            "SELECT a.actor_id, a.name, count(ma.movie_id) AS films "
            "FROM imdb_actors a LEFT JOIN imdb_movie_actors ma ON ma.actor_id = a.actor_id "
            "WHERE lower(a.name) LIKE $1 GROUP BY a.actor_id, a.name ORDER BY a.name LIMIT $2",
            _prefix(self.rng.choice(state.names), self.rng) + "%",
            _PAGE,
        )
        self._returned(rows)

    async def _rating_insert(self, db: AsyncConnection, state: _State) -> None:
        rng = self.rng
        await db.execute(
            "INSERT INTO imdb_ratings (movie_id, user_id, score) VALUES ($1, $2, $3)",
            skewed(rng, state.movies),
            rng.randint(1, data.USERS),
            data.score(rng),
        )
        self.counters["ratings_inserted"] += 1

    async def _review_insert(self, db: AsyncConnection, state: _State) -> None:
        rng = self.rng
        headline, body = data.review_text(rng)
        await db.execute(
            "INSERT INTO imdb_reviews (movie_id, user_id, score, headline, body) "
            "VALUES ($1, $2, $3, $4, $5)",
            skewed(rng, state.movies),
            rng.randint(1, data.USERS),
            data.score(rng),
            headline,
            body,
        )
        self.counters["reviews_inserted"] += 1

    async def _top_rated(self, db: AsyncConnection, state: _State) -> None:
        rows = await db.fetch(
            "SELECT m.movie_id, m.title, round(avg(r.score), 2) AS average, count(*) AS votes "
            "FROM imdb_ratings r JOIN imdb_movies m ON m.movie_id = r.movie_id "
            "WHERE m.genre = $1 GROUP BY m.movie_id, m.title HAVING count(*) >= $2 "
            "ORDER BY average DESC, votes DESC LIMIT 10",
            self.rng.choice(state.genres),
            _MIN_VOTES,
        )
        self._returned(rows)

    async def _actor_filmography(self, db: AsyncConnection, state: _State) -> None:
        decade = self.rng.randint(state.years[0], state.years[1]) // 10 * 10
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
