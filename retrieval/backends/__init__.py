"""Storage engines behind one set of interfaces (base.py). The embedded engine (SQLite + FAISS segment files +
BM25 postings files in one folder, embedded/) is the default; `index.url` names a PostgreSQL database
(postgres/, pgvector) instead."""

from __future__ import annotations

from pathlib import Path

from retrieval.backends.base import IndexStore, StateDB
from retrieval.errors import CitebotError
from retrieval.settings import IndexSettings, Settings


def _postgres(module: str):
    """retrieval.backends.postgres.MODULE, or one line saying what to install."""
    import importlib

    try:
        return importlib.import_module(f"retrieval.backends.postgres.{module}")
    except ModuleNotFoundError as error:
        if error.name not in ("psycopg", "psycopg_binary", "psycopg_pool"):
            raise
        raise CitebotError("index.url names a PostgreSQL database, which needs psycopg: "
                           "pip install 'citebot[postgres]'") from None


def open_index(settings: Settings) -> IndexStore:
    """The index the settings name: the database in `index.url`, else the embedded engine in `index.dir`."""
    if settings.index.url is not None:
        read_url = settings.index.read_url
        return _postgres("engine").PostgresIndex(settings.index.url.get_secret_value(), settings.index,
                                                 model=settings.embedding.model,
                                                 read_url=read_url.get_secret_value() if read_url else None)
    from retrieval.backends.embedded.engine import EmbeddedIndex

    return EmbeddedIndex(settings.index.dir, settings.index, model=settings.embedding.model)


def has_index(settings: Settings, folder: Path | None = None) -> bool:
    """Whether an index exists where the settings (or `folder`, a collection's) say, without creating one."""
    if settings.index.url is not None and folder is None:
        from retrieval.backends.postgres.engine import schema_exists

        return schema_exists(settings.index.url.get_secret_value(), settings.index.collection)
    from retrieval.backends.embedded.engine import has_index as embedded

    return embedded(folder or settings.index.dir)


def check_not_busy(settings: Settings, on_wait=None) -> None:
    """IndexBusyError now, before any model loads, if another process holds the right to write for longer
    than index.lock_wait_seconds."""
    if settings.index.url is not None:
        return  # the database's writer lock is waited for when the write begins
    from retrieval.backends.embedded.engine import check_not_busy as embedded

    embedded(settings.index.dir, settings.index.lock_wait_seconds, on_wait)


def open_state(index: IndexSettings, *, file: str, ddl: dict[str, str], table: str, upgrade=None) -> StateDB:
    """A small state store (feed book, bot history, server rules) where the index is: the SQLite file `file` in
    `index.dir`, or the collection's schema in the `index.url` database. `ddl` holds its tables for each engine
    ("sqlite", "postgres"); `table` is one of them; `upgrade` adds what an older SQLite file lacks."""
    if index.url is not None:
        schema = _postgres("engine").schema_name(index.collection)
        return _postgres("state").PostgresState(index.url.get_secret_value(), schema, ddl["postgres"], table=table)
    from retrieval.backends.embedded.state import SqliteState

    return SqliteState(Path(index.dir) / file, ddl["sqlite"], upgrade=upgrade)


def stored_collections(settings: Settings) -> set[str]:
    """The collections with an index or feeds stored: folders under `index.dir/collections`, or the
    database's `citebot_NAME` schemas."""
    if settings.index.url is not None:
        return _postgres("engine").stored_collections(settings.index.url.get_secret_value())
    from retrieval.backends.embedded.engine import has_index as embedded

    root = Path(settings.index.dir) / "collections"
    if not root.is_dir():
        return set()
    return {p.name for p in root.iterdir() if embedded(p) or (p / "feeds.sqlite").is_file()}


def schema_of(settings: Settings) -> str:
    """The PostgreSQL schema that holds the settings' collection (index.url set)."""
    return _postgres("engine").schema_name(settings.index.collection)
