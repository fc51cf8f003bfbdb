"""SQLite: documents, chunks and their vectors; the source of truth for text and metadata.

The database runs in WAL mode, so readers (a bot answering questions) go on while one writer
ingests. Each write batch is one transaction that also bumps `generation`; the vector index file
on disk is named after the generation it matches, so a reader never pairs vectors with the
wrong chunks, and an ingest killed part-way leaves the last committed generation whole.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrieval.models import Article, Chunk, Source

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY,
    doc_id TEXT NOT NULL,
    key TEXT NOT NULL UNIQUE,
    title TEXT, outlet TEXT, published TEXT, author TEXT, url TEXT, path TEXT,
    text TEXT NOT NULL,
    ingested_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS documents_doc_id ON documents(doc_id);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    chunk_id TEXT NOT NULL,
    document INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    text TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks(document);
"""


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
    id: int
    chunk_id: str
    start: int
    end: int
    text: str
    source: Source


def _lead(text: str, words: int = 12) -> str:
    head = text.split()[:words]
    return " ".join(head) + ("…" if len(text.split()) > words else "")


def _date(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


class Store:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # -- meta -----------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    @property
    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    # -- writing --------------------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[Writer]:
        """One write transaction. Leaving the block commits; an exception (or a kill) rolls back."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            writer = Writer(self._db, self.generation + 1)
            yield writer
            self._set_meta("generation", str(writer.generation))
            self._set_meta("schema", SCHEMA_VERSION)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    # -- reading --------------------------------------------------------------------------------
    def doc_ids_by_key(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, doc_id FROM documents"))

    def find_documents(self, ref: str) -> list[str]:
        """Keys of documents whose key, path, url or doc id (or an id prefix of 6+ digits) is `ref`."""
        rows = self._db.execute(
            "SELECT key FROM documents WHERE key = ? OR path = ? OR url = ? OR doc_id = ?"
            " OR (length(?) >= 6 AND doc_id LIKE ? || '%')",
            (ref, ref, ref, ref, ref, ref),
        )
        return [row[0] for row in rows]

    def all_vectors(self, dim: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self._db.execute("SELECT id, vector FROM chunks ORDER BY id").fetchall()
        ids = np.array([row[0] for row in rows], dtype=np.int64)
        vectors = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32).reshape(len(rows), dim)
        return ids, vectors

    def vectors(self, ids: Iterable[int]) -> dict[int, np.ndarray]:
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        rows = self._db.execute(f"SELECT id, vector FROM chunks WHERE id IN ({','.join('?' * len(ids))})", ids)
        return {row[0]: np.frombuffer(row[1], dtype=np.float32) for row in rows}

    def all_chunk_texts(self) -> tuple[list[int], list[str]]:
        rows = self._db.execute("SELECT id, text FROM chunks ORDER BY id").fetchall()
        return [row[0] for row in rows], [row[1] for row in rows]

    def chunks(self, ids: Iterable[int]) -> dict[int, StoredChunk]:
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._db.execute(
            f"SELECT c.id, c.chunk_id, c.start, c.end, c.text, d.doc_id, d.title, d.outlet, d.published,"
            f" d.author, d.url, d.path, substr(d.text, 1, 200)"
            f" FROM chunks c JOIN documents d ON d.id = c.document WHERE c.id IN ({marks})",
            ids,
        )
        found = {}
        for row in rows:
            source = Source(
                doc_id=row[5], title=row[6], outlet=row[7], published=_date(row[8]),
                author=row[9], url=row[10], path=row[11], lead=_lead(row[12]),
            )
            found[row[0]] = StoredChunk(row[0], row[1], row[2], row[3], row[4], source)
        return found

    def chunk_ids_matching(
        self, outlet: str | None = None, since: dt.date | None = None, until: dt.date | None = None
    ) -> set[int]:
        """Chunk ids of the documents from `outlet` (any case) published within [since, until].

        A document without a date matches no date bound; one without an outlet matches no outlet.
        """
        # SQLite's own lower() and NOCASE fold ASCII only: "SÜDDEUTSCHE" must match "Süddeutsche".
        self._db.create_function("casefold", 1, lambda s: s.casefold() if s is not None else None, deterministic=True)
        where, values = [], []
        if outlet is not None:
            where.append("casefold(trim(d.outlet)) = ?")
            values.append(outlet.strip().casefold())
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

    def document_text(self, doc_id: str) -> str | None:
        row = self._db.execute("SELECT text FROM documents WHERE doc_id = ? LIMIT 1", (doc_id,)).fetchone()
        return row[0] if row else None

    def sources(self) -> list[SourceRow]:
        rows = self._db.execute(
            "SELECT d.doc_id, d.key, d.title, d.outlet, d.published, d.url, d.path, substr(d.text, 1, 200),"
            " (SELECT count(*) FROM chunks c WHERE c.document = d.id)"
            " FROM documents d ORDER BY d.published DESC, d.key"
        )
        result = []
        for doc_id, key, title, outlet, published, url, path, head, count in rows:
            label = Source(doc_id=doc_id, title=title, lead=_lead(head)).label
            result.append(SourceRow(doc_id, key, title, outlet, _date(published), count, url or path, label))
        return result

    def count_chunks(self) -> int:
        return self._db.execute("SELECT count(*) FROM chunks").fetchone()[0]

    def count_documents(self) -> int:
        return self._db.execute("SELECT count(*) FROM documents").fetchone()[0]


class Writer:
    """The write side of one transaction; see Store.write."""

    def __init__(self, db: sqlite3.Connection, generation: int):
        self._db = db
        self.generation = generation
        self.removed_ids: list[int] = []
        self.added_ids: list[int] = []
        self.added_vectors: list[np.ndarray] = []

    def set_model(self, name: str, dim: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('model', ?)", (name,))
        self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('dim', ?)", (str(dim),))

    def remove(self, key: str) -> bool:
        row = self._db.execute("SELECT id FROM documents WHERE key = ?", (key,)).fetchone()
        if row is None:
            return False
        self.removed_ids += [r[0] for r in self._db.execute("SELECT id FROM chunks WHERE document = ?", (row[0],))]
        self._db.execute("DELETE FROM documents WHERE id = ?", (row[0],))
        return True

    def add(self, article: Article, chunks: list[Chunk], vectors: np.ndarray) -> None:
        """Add an article (replacing any with the same key) with its chunks and their vectors."""
        self.remove(article.key)
        cursor = self._db.execute(
            "INSERT INTO documents(doc_id, key, title, outlet, published, author, url, path, text, ingested_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                article.doc_id, article.key, article.title, article.outlet,
                article.published.isoformat() if article.published else None,
                article.author, article.url, article.path, article.text,
                dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            ),
        )
        document = cursor.lastrowid
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        for chunk, vector in zip(chunks, vectors, strict=True):
            cursor = self._db.execute(
                "INSERT INTO chunks(chunk_id, document, ordinal, start, end, text, vector) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (chunk.chunk_id, document, chunk.ordinal, chunk.start, chunk.end, chunk.text, vector.tobytes()),
            )
            self.added_ids.append(cursor.lastrowid)
        if len(vectors):
            self.added_vectors.append(vectors)
