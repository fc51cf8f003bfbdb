"""Storage engines behind one set of interfaces (base.py). The embedded engine (SQLite + FAISS segment files +
BM25 postings files in one folder, embedded/) is the default; `index.url` names a PostgreSQL database
(postgres/, pgvector) instead."""

from __future__ import annotations

from pathlib import Path

from retrieval.backends.base import IndexStore
from retrieval.errors import CitebotError
from retrieval.settings import Settings


def open_index(settings: Settings) -> IndexStore:
    """The index the settings name: the database in `index.url`, else the embedded engine in `index.dir`."""
    if settings.index.url is not None:
        try:
            from retrieval.backends.postgres.engine import PostgresIndex
        except ModuleNotFoundError as error:
            if error.name not in ("psycopg", "psycopg_binary"):
                raise
            raise CitebotError("index.url names a PostgreSQL database, which needs psycopg: "
                               "pip install 'citebot[postgres]'") from None
        return PostgresIndex(settings.index.url.get_secret_value(), settings.index, model=settings.embedding.model)
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
