"""Storage engines behind one set of interfaces (base.py). The embedded engine (SQLite + FAISS segment files +
BM25 postings files in one folder, embedded/) is the default and, for now, the only one."""

from __future__ import annotations

from pathlib import Path

from retrieval.backends.base import IndexStore
from retrieval.settings import Settings


def open_index(settings: Settings) -> IndexStore:
    """The index the settings name: today the embedded engine in `index.dir`."""
    from retrieval.backends.embedded.engine import EmbeddedIndex

    return EmbeddedIndex(settings.index.dir, settings.index, model=settings.embedding.model)


def has_index(settings: Settings, folder: Path | None = None) -> bool:
    """Whether an index exists where the settings (or `folder`, a collection's) say, without creating one."""
    from retrieval.backends.embedded.engine import has_index as embedded

    return embedded(folder or settings.index.dir)


def check_not_busy(settings: Settings, on_wait=None) -> None:
    """IndexBusyError now, before any model loads, if another process holds the right to write for longer
    than index.lock_wait_seconds."""
    from retrieval.backends.embedded.engine import check_not_busy as embedded

    embedded(settings.index.dir, settings.index.lock_wait_seconds, on_wait)
