"""SQLite: documents, chunks, their vectors and word statistics; the source of truth.

Everything a question needs besides the segment files lives here and changes in the same
transaction as the chunks, so no part can drift from another:
- `stems`, how many chunks hold each word stem (the rescoring's IDF), kept by the writer;
- each chunk's sentence spans and float16 sentence vectors, computed once at ingest;
- `segments` and `tombstones`: which segment files (vectors in `seg-….faiss`, word postings in its
  twin `seg-….lex`, retrieval/backends/embedded/segments.py and retrieval/backends/embedded/postings.py) hold which live chunks.

The database runs in WAL mode: readers answer from the last commit while one writer ingests.
Each write batch is one transaction that bumps `generation`; a kill at any moment leaves the
last committed generation whole.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrieval.backends.base import SourceRow, StoredChunk
from retrieval.backends.common import (
    ARTICLE_COLUMNS, CHUNK_COLUMNS, MetaCounters, id_prefix, source_row, stored_articles, stored_chunk,
)
from retrieval.models import Article
from retrieval.backends.embedded.schema import (
    OUTLET_INDEX, SCHEMA, SCHEMA_VERSION, STORIES_SCHEMA, connect, schema_of,
)
from retrieval.backends.embedded.transaction import Transaction
from retrieval.errors import IndexSchemaError

@dataclass(frozen=True)
class SegmentRow:
    id: int
    file: str
    vectors: int
    dead: int
    factory: str
    generation: int


def _date(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


class Store(MetaCounters):
    """The SQLite file. Readers get a consistent snapshot per question (`snapshot`); one writer at a time."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        db = self._db
        version = schema_of(db)
        if version is None:
            db.executescript(SCHEMA + STORIES_SCHEMA)
            db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif version != SCHEMA_VERSION:
            raise IndexSchemaError(path.parent, version, SCHEMA_VERSION)

    @property
    def _db(self) -> sqlite3.Connection:
        """One connection per thread: each thread's snapshot is its own read transaction."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = connect(self.path)
        return db

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every read inside the block sees the same committed generation, whatever a writer does meanwhile."""
        db = self._db
        if db.in_transaction:  # nested: the outer snapshot holds
            yield
            return
        db.execute("BEGIN")
        try:
            yield
        finally:
            db.execute("COMMIT")

    # -- meta -----------------------------------------------------------------------------------
    def where(self) -> str:
        return str(self.path.parent)

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def retired(self) -> dict[str, float]:
        """Segment files no commit names any more, with the time each was retired."""
        return dict(self._db.execute("SELECT file, since FROM retired"))

    # -- writing --------------------------------------------------------------------------------
    @contextmanager
    def write(self, *, copies_threshold: float | None = None) -> Iterator[Transaction]:
        """One write transaction. Leaving the block commits; an exception (or a kill) rolls back.

        `copies_threshold`: added documents join the story of an indexed one at least this
        similar (retrieval/stories.py); None groups nothing.
        """
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(OUTLET_INDEX)
            writer = Transaction(db, self.generation + 1, copies_threshold=copies_threshold)
            yield writer
            writer.finish()
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # -- reading: documents ---------------------------------------------------------------------
    def doc_id_of(self, key: str) -> str | None:
        row = self._db.execute("SELECT doc_id FROM documents WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def doc_ids_by_key(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, doc_id FROM documents"))

    def find_documents(self, ref: str) -> list[str]:
        """Keys of documents whose key, path, url or doc id (or a hex id prefix of 6+ digits) is `ref`."""
        rows = self._db.execute(
            "SELECT key FROM documents WHERE key = ? OR path = ? OR url = ? OR doc_id = ?", (ref, ref, ref, ref)
        ).fetchall()
        if not rows and (prefix := id_prefix(ref)):
            # A prefix match by range, not LIKE: no character of `ref` can act as a wildcard.
            rows = self._db.execute(
                "SELECT key FROM documents WHERE doc_id >= ? AND doc_id < ?", (prefix, prefix + "g")
            ).fetchall()
        return [row[0] for row in rows]

    def documents_under(self, root: str) -> list[tuple[str, str]]:
        """(key, path) of the documents read from `root` or from anywhere below it (by index, not LIKE)."""
        rows = self._db.execute("SELECT key, path FROM documents WHERE path = ? OR (path >= ? AND path < ?)",
                                (root, root + "/", root + "0"))  # "0" sorts right after "/"
        return [(key, path) for key, path in rows]

    def keys_older_than(self, day: dt.date, limit: int = 10_000) -> list[str]:
        """Keys of documents published (or, without a date, ingested) before `day`, oldest first."""
        rows = self._db.execute(
            "SELECT key FROM documents WHERE coalesce(published, substr(ingested_at, 1, 10)) < ?"
            " ORDER BY coalesce(published, substr(ingested_at, 1, 10)) LIMIT ?", (day.isoformat(), limit))
        return [row[0] for row in rows]

    def outlets(self) -> dict[str, int]:
        """Each outlet (trimmed, as stored) and its documents; costs what the outlets are, not the documents."""
        return dict(self._db.execute("SELECT name, documents FROM outlets"))

    def document_text(self, doc_id: str) -> str | None:
        row = self._db.execute("SELECT text FROM documents WHERE doc_id = ? LIMIT 1", (doc_id,)).fetchone()
        return row[0] if row else None

    def articles(self, after: int = 0, limit: int = 100) -> list[tuple[int, Article, list[int]]]:
        rows = self._db.execute(f"SELECT {ARTICLE_COLUMNS} FROM documents WHERE id > ? ORDER BY id LIMIT ?",
                                (after, limit)).fetchall()
        rows = [(*row[:4], _date(row[4]), *row[5:]) for row in rows]
        ids = [row[0] for row in rows]
        chunk_rows = self._db.execute(f"SELECT document, id FROM chunks WHERE document IN ({','.join('?' * len(ids))})"
                                      " ORDER BY document, ordinal", ids).fetchall() if ids else []
        return stored_articles(rows, chunk_rows)

    def sources(self) -> list[SourceRow]:
        rows = self._db.execute(
            "SELECT d.doc_id, d.key, d.title, d.outlet, d.published, d.url, d.path, substr(d.text, 1, 200),"
            " (SELECT count(*) FROM chunks c WHERE c.document = d.id)"
            " FROM documents d ORDER BY d.published DESC, d.key"
        )
        return [source_row(doc_id, key, title, outlet, _date(published), url, path, head, count)
                for doc_id, key, title, outlet, published, url, path, head, count in rows]

    # -- reading: chunks ------------------------------------------------------------------------
    def chunks(self, ids: Iterable[int]) -> dict[int, StoredChunk]:
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        columns = CHUNK_COLUMNS.format(start="c.start", end="c.end", head="substr(d.text, 1, 200)")
        rows = self._db.execute(
            f"SELECT {columns} FROM chunks c JOIN documents d ON d.id = c.document WHERE c.id IN ({marks})", ids)
        return {row[0]: stored_chunk(row, _date(row[8])) for row in rows}

    def stories_of(self, ids: Iterable[int]) -> dict[int, tuple[int, int]]:
        """(story, document) of each chunk in `ids` whose document belongs to a story."""
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        rows = self._db.execute(
            f"SELECT c.id, s.story, c.document FROM chunks c JOIN stories s ON s.document = c.document"
            f" WHERE c.id IN ({','.join('?' * len(ids))})", ids)
        return {row[0]: (row[1], row[2]) for row in rows}

    def chunk_texts(self, ids: Iterable[int]) -> dict[int, str]:
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        rows = self._db.execute(f"SELECT id, text FROM chunks WHERE id IN ({','.join('?' * len(ids))})", ids)
        return dict(rows)

    def vectors(self, ids: Iterable[int]) -> dict[int, np.ndarray]:
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        rows = self._db.execute(f"SELECT id, vector FROM chunks WHERE id IN ({','.join('?' * len(ids))})", ids)
        return {row[0]: np.frombuffer(row[1], dtype=np.float32) for row in rows}

    def all_chunk_texts(self) -> tuple[list[int], list[str]]:
        """Every chunk's id and text: for checks and benchmarks, never on a question's path."""
        rows = self._db.execute("SELECT id, text FROM chunks ORDER BY id").fetchall()
        return [row[0] for row in rows], [row[1] for row in rows]

    def segment_texts(self, segment: int) -> tuple[list[int], list[str]]:
        """The live (ids, texts) of one segment, from the store: to rebuild a lost postings file."""
        rows = self._db.execute("SELECT id, text FROM chunks WHERE segment = ? ORDER BY id", (segment,)).fetchall()
        return [row[0] for row in rows], [row[1] for row in rows]

    def segment_vectors(self, segment: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """The live (ids, vectors) of one segment, from the store: to rebuild a lost segment file."""
        rows = self._db.execute("SELECT id, vector FROM chunks WHERE segment = ? ORDER BY id", (segment,)).fetchall()
        ids = np.array([row[0] for row in rows], dtype=np.int64)
        vectors = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32).reshape(len(rows), dim)
        return ids, vectors

    def chunk_ids_matching(
        self, outlet: str | None = None, since: dt.date | None = None, until: dt.date | None = None
    ) -> set[int]:
        """Chunk ids of the documents from `outlet` (any case) published within [since, until].

        A document without a date matches no date bound; one without an outlet matches no outlet.
        The outlet is looked up in the outlets table (any case), then its documents by their index:
        the cost is the outlets and the matching chunks, not the documents.
        """
        where, values = [], []
        if outlet is not None:
            wanted = outlet.strip().casefold()
            names = [name for name in self.outlets() if name.casefold() == wanted]
            if not names:
                return set()
            where.append(f"trim(d.outlet) IN ({','.join('?' * len(names))})")
            values += names
        if since is not None:
            where.append("d.published >= ?")
            values.append(since.isoformat())
        if until is not None:
            where.append("d.published <= ?")
            values.append(until.isoformat())
        rows = self._db.execute(
            "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document"
            + (" WHERE " + " AND ".join(where) if where else ""),
            values,
        )
        return {row[0] for row in rows}

    # -- reading: words -------------------------------------------------------------------------
    def document_frequencies(self, stems: Iterable[str]) -> dict[str, int]:
        stems = list(dict.fromkeys(stems))
        if not stems:
            return {}
        rows = self._db.execute(f"SELECT stem, df FROM stems WHERE stem IN ({','.join('?' * len(stems))})", stems)
        return dict(rows)

    # -- reading: segments ----------------------------------------------------------------------
    def segments(self) -> list[SegmentRow]:
        rows = self._db.execute("SELECT id, file, vectors, dead, factory, generation FROM segments ORDER BY id")
        return [SegmentRow(*row) for row in rows]

    def tombstones(self, *, after_generation: int | None = None, segment: int | None = None) -> list[tuple[int, int]]:
        """(segment, chunk id) of dead vectors: those a commit after `after_generation` made, or one segment's."""
        if segment is not None:
            rows = self._db.execute("SELECT segment, id FROM tombstones WHERE segment = ?", (segment,))
        else:
            rows = self._db.execute("SELECT segment, id FROM tombstones WHERE generation > ?", (after_generation,))
        return [(int(s), int(i)) for s, i in rows]
