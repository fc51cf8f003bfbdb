"""What citebot needs of storage, declared once.

The write side (retrieval/writer.py) and the read side (retrieval/reader.py) reach an index only through
`IndexStore`, and change it only through the `WriteBatch` one `IndexStore.write` block gives. The feed
book, the Discord history and the server rules are state of their own, each with its small interface
below. An engine implements these and nothing else: embedded/ (SQLite + FAISS segment files + BM25
postings files in one folder) is the default.

Ids: a chunk's integer id is given by the engine when the chunk is added, is never given out twice, and
is what dense and lexical search return. Every read inside one `snapshot()` block sees one committed
generation, whatever a writer commits meanwhile; a `write()` block commits whole when it ends, or not
at all.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from retrieval.models import Article, Chunk, Source


@dataclass(frozen=True)
class SourceRow:
    """One indexed document, as `citebot sources` lists it."""

    doc_id: str
    key: str
    title: str | None
    outlet: str | None
    published: dt.date | None
    chunks: int
    location: str | None
    label: str


@dataclass(frozen=True)
class StoredChunk:
    """A chunk as the read side needs it: its text, its article's citation, its sentences and their vectors."""

    id: int
    chunk_id: str
    start: int
    end: int
    text: str
    source: Source
    sentences: list[tuple[int, int]]
    sentence_vectors: np.ndarray  # float16 (sentences, dim)


Hits = list[tuple[int, float]]  # (chunk id, score), best first


@runtime_checkable
class WriteBatch(Protocol):
    """One write transaction: its adds and removals commit together when the `write()` block ends."""

    def clear(self) -> None:
        """Remove every document (a rebuild's first batch)."""

    def set_model(self, name: str, dim: int) -> None:
        """Record the embedding model and dimension the vectors were made with."""

    def set_meta(self, key: str, value: str) -> None:
        """Record a fact about the index (e.g. how its sentence vectors were made)."""

    def remove(self, key: str) -> bool:
        """Take out the document with this key, its chunks, vectors, words and story membership."""

    def add(self, article: Article, chunks: Sequence[Chunk], vectors: np.ndarray,
            sentences: Sequence[Sequence[tuple[int, int]]], sentence_vectors: Sequence[np.ndarray]) -> None:
        """Add (or replace, by key) one article with its chunks, their unit vectors, each chunk's sentence spans
        and sentence vectors; the engine also keeps its words, its outlet and its wire-copy story."""


@runtime_checkable
class IndexStore(Protocol):
    """An index: documents, chunks, vectors, words, stories and outlets, read in snapshots, written in batches."""

    @property
    def location(self) -> str:
        """Where the index is, for messages (a folder; a database named without its password)."""

    def close(self) -> None: ...

    # -- the write side ---------------------------------------------------------------------------
    def lock(self, *, alone: bool = False) -> AbstractContextManager[None]:
        """Hold the right to write for the block (IndexBusyError past index.lock_wait_seconds). An engine many
        processes share lets writers hold it together unless one asks to be `alone` (a rebuild, a migration);
        the embedded engine always has one writer."""

    def write(self, *, copies_threshold: float | None = None) -> AbstractContextManager[WriteBatch]:
        """One batch, committed whole when the block ends; `copies_threshold` groups wire copies (None: off)."""

    def maintain(self) -> int:
        """Housekeeping after commits (the embedded engine merges small segments); returns the steps taken."""

    # -- the read side ----------------------------------------------------------------------------
    def snapshot(self) -> AbstractContextManager[None]:
        """Every read inside the block sees one committed generation."""

    @property
    def generation(self) -> int:
        """Moves with every commit: a reader compares it to know the index changed."""

    def refresh(self) -> None:
        """Follow the newest commit now, loading what a search needs (IndexMismatchError if the index was built
        with another embedding model); a search does this itself, this does it ahead of the first question."""

    def dense(self, vector: np.ndarray, k: int, allowed: set[int] | None = None) -> Hits | None:
        """The k chunks nearest `vector` (inner product), among `allowed` if given; None before any vector."""

    def lexical(self, question: str, k: int, allowed: set[int] | None = None) -> Hits | None:
        """The k chunks best for the question's terms by BM25 (retrieval/text.py's tokens); None before any."""

    def matching(self, outlet: str | None = None, since: dt.date | None = None,
                 until: dt.date | None = None) -> set[int]:
        """Chunk ids of the documents from `outlet` (any case) published within [since, until]."""

    def chunks(self, ids: Iterable[int]) -> dict[int, StoredChunk]: ...

    def chunk_texts(self, ids: Iterable[int]) -> dict[int, str]: ...

    def vectors(self, ids: Iterable[int]) -> dict[int, np.ndarray]: ...

    def stories_of(self, ids: Iterable[int]) -> dict[int, tuple[int, int]]:
        """(story, document) of each chunk whose document belongs to a wire-copy story."""

    def document_frequencies(self, stems: Iterable[str]) -> dict[str, int]:
        """How many chunks hold each content stem (the rescoring's IDF)."""

    # -- documents --------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None: ...

    def check_model(self, model: str) -> None:
        """IndexMismatchError if the index was built with another embedding model."""

    def count_documents(self) -> int: ...

    def count_chunks(self) -> int: ...

    def count_copies(self) -> int: ...

    def doc_id_of(self, key: str) -> str | None: ...

    def doc_ids_by_key(self) -> dict[str, str]:
        """Every document's key and doc id: for evaluations, never on a question's path."""

    def find_documents(self, ref: str) -> list[str]:
        """Keys of documents whose key, path, url or doc id (or a hex prefix of 6+ digits) is `ref`."""

    def documents_under(self, root: str) -> list[tuple[str, str]]:
        """(key, path) of the documents read from `root` or below it."""

    def keys_older_than(self, day: dt.date, limit: int = 10_000) -> list[str]: ...

    def outlets(self) -> dict[str, int]:
        """Each outlet and its documents, at the cost of the outlets, not of the documents."""

    def document_text(self, doc_id: str) -> str | None: ...

    def sources(self) -> list[SourceRow]: ...

    def articles(self, after: int = 0, limit: int = 100) -> list[tuple[int, Article, list[int]]]:
        """Documents in the order they were added, after position `after` (0: from the first): each its
        position, the Article as ingested, and its chunk ids in order. What `citebot migrate --to` copies."""

    # -- health -----------------------------------------------------------------------------------
    def check(self) -> list[str]:
        """Problems where the engine's parts disagree, one line each; [] when the index is whole."""

    def figures(self) -> dict[str, int]:
        """What `citebot check` reports beside the problems: documents, chunks, generation, and the engine's own."""

    def destroy(self) -> None:
        """Delete the whole index (an evaluation's scratch index when it ends), and close it."""


class StateSession(Protocol):
    """One connection inside one transaction. SQL is written once for both engines: `?` placeholders, and what
    SQLite and PostgreSQL both understand (ON CONFLICT upserts, RETURNING, IS NOT DISTINCT FROM)."""

    def execute(self, sql: str, parameters: Sequence = ()):
        """A cursor: fetchone(), fetchall(), rowcount, iteration."""

    def executemany(self, sql: str, rows: Iterable[Sequence]) -> None: ...


class StateDB(Protocol):
    """Where one small state store (the feed book, the bot's history, its server rules) keeps its tables: a
    SQLite file in the index folder (embedded/state.py) or the collection's schema in PostgreSQL
    (postgres/state.py). Each store gives its tables' DDL for both, by `dialect`."""

    dialect: str  # "sqlite" or "postgres"
    location: str  # for messages: the file, or the database (without its password) and schema

    def exists(self) -> bool:
        """Whether the store was ever written (its file, or its tables), without creating it."""

    def session(self, *, exclusive: bool = False) -> AbstractContextManager[StateSession]:
        """A transaction, committed when the block ends (rolled back on an exception). `exclusive`: one such
        transaction at a time across every process sharing the store."""

    def close(self) -> None: ...


class FeedState(Protocol):
    """The followed feeds, each poll's outcome, the entries taken and the articles held for the next poll
    (retrieval/feeds.py's FeedBook, through a StateDB: `feeds.sqlite` beside the index, or the collection's
    PostgreSQL schema). The Discord bot's history and
    server rules have their interfaces in bot/state.py: retrieval/ knows nothing of Discord."""

    def add(self, url: str, *, outlet: str | None = None, every_s: float | None = None) -> bool:
        """Follow a feed; False if it was followed already (its outlet and interval are updated)."""

    def remove(self, url: str) -> bool: ...

    def added(self) -> list: ...

    def status(self, feed): ...

    def validators(self, url: str) -> tuple[str | None, str | None]:
        """The ETag and Last-Modified of the feed's last answer, for a conditional GET."""

    def seen(self, url: str, entries: Iterable[str]) -> set[str]:
        """Which of these entries were taken before."""

    def record(self, feed, result, *, every_s: float, etag: str | None = None, modified: str | None = None,
               taken: Iterable[str] = (), retry_s: float | None = None) -> None:
        """A poll's outcome, the entries it took and when the feed is due again, in one transaction."""

    def hold(self, url: str, articles: dict[str, Article]) -> None:
        """Articles fetched but not committed (a busy index), for the next poll."""

    def held(self, url: str) -> dict[str, Article]: ...

    def due(self, feed, now: float | None = None) -> bool: ...

    def close(self) -> None: ...
