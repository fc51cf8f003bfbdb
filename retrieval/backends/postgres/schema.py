"""The PostgreSQL engine's schema (pgvector for the vectors, a postings table for BM25), its version, and
how a database is named in messages (never with its password)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

SCHEMA_VERSION = 2  # 2: postings packed per term and segment (postgres/postings.py)

# The vector column has no dimension: the first commit's model fixes it, and then the approximate index
# is made on the column cast to it (VECTOR_INDEX), which dense search names in its ORDER BY.
TABLES = """
CREATE TABLE IF NOT EXISTS citebot_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id bigserial PRIMARY KEY,
    doc_id text NOT NULL,
    key text NOT NULL UNIQUE,
    title text, outlet text, published date, author text, url text, path text,
    text text NOT NULL,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    via text
);
CREATE INDEX IF NOT EXISTS documents_doc_id ON documents (doc_id);
CREATE INDEX IF NOT EXISTS documents_published ON documents (published);
CREATE INDEX IF NOT EXISTS documents_path ON documents (path text_pattern_ops);
CREATE INDEX IF NOT EXISTS documents_outlet ON documents (btrim(outlet));
CREATE INDEX IF NOT EXISTS documents_age ON documents (coalesce(published, (ingested_at AT TIME ZONE 'UTC')::date));
-- A chunk id is given once (a sequence never goes back) and is what dense and lexical search return.
CREATE TABLE IF NOT EXISTS chunks (
    id bigserial PRIMARY KEY,
    chunk_id text NOT NULL,
    document bigint NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    ordinal integer NOT NULL,
    start_at integer NOT NULL,
    end_at integer NOT NULL,
    text text NOT NULL,
    tokens integer NOT NULL,             -- FTS5-style tokens in the text: BM25's document length
    vector vector NOT NULL,              -- unit length
    sentences bytea NOT NULL,            -- int32 (start, end) pairs into text
    sentence_vectors bytea NOT NULL,     -- float16, one unit row per sentence
    segment bigint NOT NULL              -- the commit that wrote it: its postings' segment (never updated)
);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks (document);
-- BM25 (postgres/postings.py): per term and segment, the chunks holding the term, packed. A segment is what
-- one commit wrote; merges rewrite a few into one (`merged_into` then leads a chunk's `segment` to where its
-- postings are now). A removed chunk is listed in `dead` until the merge of its segment drops it.
CREATE TABLE IF NOT EXISTS segments (
    id bigserial PRIMARY KEY,
    chunks integer NOT NULL,             -- in its rows, dead ones included
    dead integer NOT NULL DEFAULT 0,
    merged_into bigint
);
CREATE TABLE IF NOT EXISTS postings (
    term text NOT NULL,
    segment bigint NOT NULL,
    chunks bytea NOT NULL,               -- int64 chunk ids, ascending (big-endian, as int8send writes)
    tfs bytea NOT NULL,                  -- uint16 occurrences of the term in each
    lengths bytea NOT NULL,              -- int32 FTS5-style tokens of each chunk: BM25's document length
    PRIMARY KEY (term, segment)
);
ALTER TABLE postings ALTER chunks SET STORAGE EXTERNAL, ALTER tfs SET STORAGE EXTERNAL,
    ALTER lengths SET STORAGE EXTERNAL;  -- read whole by every question: not compressed
CREATE INDEX IF NOT EXISTS postings_segment ON postings (segment);
CREATE TABLE IF NOT EXISTS dead (
    chunk bigint PRIMARY KEY,
    segment bigint NOT NULL,
    generation bigint NOT NULL           -- the commit that removed it: readers fetch only what is new
);
CREATE INDEX IF NOT EXISTS dead_segment ON dead (segment);
CREATE INDEX IF NOT EXISTS dead_generation ON dead (generation);
CREATE TABLE IF NOT EXISTS terms (term text PRIMARY KEY, df integer NOT NULL);
CREATE TABLE IF NOT EXISTS stems (stem text PRIMARY KEY, df integer NOT NULL);
CREATE TABLE IF NOT EXISTS stories (
    document bigint PRIMARY KEY REFERENCES documents (id) ON DELETE CASCADE,
    story bigint NOT NULL,
    signature bytea NOT NULL,
    shingles integer NOT NULL
);
CREATE INDEX IF NOT EXISTS stories_story ON stories (story);
CREATE TABLE IF NOT EXISTS story_bands (
    band integer NOT NULL,
    hash bigint NOT NULL,
    document bigint NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    PRIMARY KEY (band, hash, document)
);
CREATE INDEX IF NOT EXISTS story_bands_document ON story_bands (document);
CREATE TABLE IF NOT EXISTS outlets (name text PRIMARY KEY, documents integer NOT NULL);
"""

# The approximate vector index, built by `maintain()` once a collection holds index.ann_min_chunks chunks
# (below that, dense search is an exact scan). CONCURRENTLY: questions and commits go on while it is built.
# `auto` is IVFFlat with about 2·sqrt(n) lists, searched in index.nprobe of them (at 1M chunks 2048 lists and
# 32 probes gave recall@40 0.997 where HNSW stayed near 0.95: docs/postgresql.md), built again under another
# name and swapped in once the collection has grown REBUILD_GROWTH times since, as its lists were fitted then.
VECTOR_INDEXES = {
    "hnsw": "CREATE INDEX CONCURRENTLY {name} ON chunks USING hnsw ((vector::vector({dim})) vector_ip_ops)"
            " WITH (m = {m})",
    "ivfflat": "CREATE INDEX CONCURRENTLY {name} ON chunks USING ivfflat ((vector::vector({dim})) vector_ip_ops)"
               " WITH (lists = {lists})",
}
REBUILD_GROWTH = 4
BUILD_MEMORY = "4GB"  # maintenance_work_mem for that build: an HNSW graph that fits is built many times faster

OUTLET_COUNTS = ("SELECT btrim(outlet), count(*) FROM documents WHERE btrim(coalesce(outlet, '')) <> ''"
                 " GROUP BY btrim(outlet)")


def shown(url: str) -> str:
    """The database's address without its password, for messages and logs."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            user, _, host = netloc.rpartition("@")
            netloc = f"{user.split(':', 1)[0]}@{host}"
        query = re.sub(r"(?i)(password=)[^&]*", r"\1***", parts.query)
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        return "the database in index.url"
