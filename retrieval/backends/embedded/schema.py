"""The embedded store's SQLite schema, its version, and how spans are packed into its rows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

# 3: BM25 postings in segment files beside the vectors instead of an FTS5 table; documents.via.
# 4: stories and story_bands, the wire copies found at ingest (retrieval/stories.py); outlets.
SCHEMA_VERSION = 4

# The outlet filter's index. An index made before it existed gets it at its next write (Store.write):
# one pass over the documents, once; until then the filter reads every document, as it used to.
OUTLET_INDEX = "CREATE INDEX IF NOT EXISTS documents_outlet ON documents(trim(outlet))"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY,
    doc_id TEXT NOT NULL,
    key TEXT NOT NULL UNIQUE,
    title TEXT, outlet TEXT, published TEXT, author TEXT, url TEXT, path TEXT,
    text TEXT NOT NULL,
    ingested_at TEXT NOT NULL,
    via TEXT                         -- e.g. a feed's summary, when the article page could not be had
);
CREATE INDEX IF NOT EXISTS documents_doc_id ON documents(doc_id);
CREATE INDEX IF NOT EXISTS documents_published ON documents(published);
CREATE INDEX IF NOT EXISTS documents_path ON documents(path);
CREATE INDEX IF NOT EXISTS documents_age ON documents(coalesce(published, substr(ingested_at, 1, 10)));
-- AUTOINCREMENT: a chunk id (which is also its FAISS id) is never given out twice.
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    chunk_id TEXT NOT NULL,
    document INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    text TEXT NOT NULL,
    vector BLOB NOT NULL,            -- float32, unit length
    sentences BLOB NOT NULL,         -- int32 (start, end) pairs into text
    sentence_vectors BLOB NOT NULL,  -- float16, one unit row per sentence
    segment INTEGER NOT NULL         -- the segment holding its vector and its postings
);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks(document);
CREATE INDEX IF NOT EXISTS chunks_segment ON chunks(segment);
CREATE TABLE IF NOT EXISTS stems (stem TEXT PRIMARY KEY, df INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    file TEXT NOT NULL UNIQUE,
    vectors INTEGER NOT NULL,        -- vectors in the file, live or not
    dead INTEGER NOT NULL DEFAULT 0, -- of which tombstoned
    factory TEXT NOT NULL,
    generation INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tombstones (
    id INTEGER NOT NULL,             -- a chunk id whose vector is still in the segment's file
    segment INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    PRIMARY KEY (segment, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tombstones_generation ON tombstones(generation);
-- Segment files no commit names any more; deleted by a later writer once no reader can want them.
CREATE TABLE IF NOT EXISTS retired (file TEXT PRIMARY KEY, since REAL NOT NULL) WITHOUT ROWID;
""" + OUTLET_INDEX + ";\n"

# Wire copies (retrieval/stories.py): the story each document was grouped into when it arrived,
# its MinHash, and the band hashes through which a later copy finds it. A document without a
# word has no row and is a story of its own.
STORIES_SCHEMA = """
CREATE TABLE IF NOT EXISTS stories (
    document INTEGER PRIMARY KEY REFERENCES documents(id) ON DELETE CASCADE,
    story INTEGER NOT NULL,
    signature BLOB NOT NULL,         -- uint32 MinHash values
    shingles INTEGER NOT NULL        -- how many word 5-grams the text has
);
CREATE INDEX IF NOT EXISTS stories_story ON stories(story);
CREATE TABLE IF NOT EXISTS story_bands (
    band INTEGER NOT NULL,
    hash INTEGER NOT NULL,
    document INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    PRIMARY KEY (band, hash, document)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS story_bands_document ON story_bands(document);
-- The outlets (trimmed, as stored) and how many documents each has: for listing them without a scan.
CREATE TABLE IF NOT EXISTS outlets (name TEXT PRIMARY KEY, documents INTEGER NOT NULL) WITHOUT ROWID;
"""

# Each outlet's documents counted from the documents themselves: what the outlets table must hold
# (filled this way by `citebot migrate`, compared this way by `citebot check`).
OUTLET_COUNTS = ("SELECT trim(outlet), count(*) FROM documents WHERE trim(coalesce(outlet, '')) != ''"
                 " GROUP BY trim(outlet)")


def pack_spans(spans: list[tuple[int, int]]) -> bytes:
    return np.asarray(spans, dtype=np.int32).reshape(-1, 2).tobytes()


def unpack_spans(blob: bytes) -> list[tuple[int, int]]:
    pairs = np.frombuffer(blob, dtype=np.int32).reshape(-1, 2)
    return [(int(a), int(b)) for a, b in pairs]


def _casefold(value: str | None) -> str | None:
    return value.casefold() if value is not None else None


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("PRAGMA synchronous=NORMAL")
    # SQLite's own lower() and NOCASE fold ASCII only: "SÜDDEUTSCHE" must match "Süddeutsche".
    db.create_function("casefold", 1, _casefold, deterministic=True)
    return db


def schema_of(db: sqlite3.Connection) -> int | None:
    """The schema version of an existing store, or None for a new, empty file."""
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "meta" not in tables:
        return None
    row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    if row is None:
        # citebot 0.1 wrote its schema version only with its first commit.
        return 1 if "documents" in tables else None
    try:
        return int(row[0])
    except ValueError:
        return -1
