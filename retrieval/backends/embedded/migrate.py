"""`citebot migrate`: upgrade an index written by an older citebot in place, keeping every article.

Schema 2 kept BM25 in an FTS5 table. The upgrade to 3 writes each segment's postings file from
the store's chunk texts (no model needed), then drops the FTS5 table and adds `documents.via`
in one transaction; a kill
before that commit leaves the schema-2 index as it was (the postings files are rewritten by the
next attempt).

Schema 1 kept one FAISS file per generation and no sentence data. The upgrade builds a schema-2
store in a new file beside the old one, from the old store's documents, chunks and chunk vectors
(only the sentence vectors are computed anew), then renames it over the old file. Until that rename the
old index is untouched and answers as before; a kill leaves either the old index or the new one.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sqlite3
from pathlib import Path

import numpy as np

from retrieval.backends.embedded import postings as lexical
from retrieval.backends.embedded.check import check
from retrieval.embed import Embedder
from retrieval.errors import CitebotError
from retrieval.models import Article, Chunk
from retrieval.settings import Settings
from retrieval.backends.embedded.schema import SCHEMA_VERSION, connect, schema_of
from retrieval.backends.embedded.engine import STORE_FILE, EmbeddedIndex, take_lock
from retrieval.writer import BATCH_ARTICLES, Writer, _Pending

log = logging.getLogger(__name__)


def schema_version(folder: Path) -> int | None:
    """The schema of the index in `folder`; None if there is none."""
    path = Path(folder) / STORE_FILE
    if not path.exists():
        return None
    db = sqlite3.connect(path)
    try:
        return schema_of(db)
    finally:
        db.close()


def migrate(settings: Settings, embedder: Embedder, *, progress=None) -> int:
    """Upgrade the index in settings.index.dir to the current schema; returns the documents carried over."""
    folder = settings.index.dir
    path = folder / STORE_FILE
    version = schema_version(folder)
    if version is None or version == SCHEMA_VERSION:
        return 0
    if version == 2:
        _from_2(settings, progress=progress)
        return _from_3(settings, progress=progress)
    if version == 3:
        return _from_3(settings, progress=progress)
    if version != 1:
        raise CitebotError(f"the index in {folder} has schema {version}, which this citebot cannot upgrade: "
                           "rebuild it with `citebot ingest --rebuild PATH…`")
    old = sqlite3.connect(path, timeout=30.0)
    new_path = folder / f"{STORE_FILE}.migrating"
    for leftover in (new_path, Path(f"{new_path}-wal"), Path(f"{new_path}-shm")):
        leftover.unlink(missing_ok=True)
    index = EmbeddedIndex(folder, settings.index, model=settings.embedding.model, store_file=new_path.name)
    store = index.sqlite
    writer = Writer(settings, embedder, index)
    carried = 0
    with writer.lock():
        model = old.execute("SELECT value FROM meta WHERE key = 'model'").fetchone()
        if model is not None and model[0] != settings.embedding.model:
            raise CitebotError(f"the index in {folder} was built with embedding model {model[0]!r}: set "
                               "embedding.model to it to migrate, or rebuild with `citebot ingest --rebuild PATH…`")
        dim = int((old.execute("SELECT value FROM meta WHERE key = 'dim'").fetchone() or [embedder.dim])[0])
        total = old.execute("SELECT count(*) FROM documents").fetchone()[0]
        documents = old.execute(
            "SELECT id, key, text, title, outlet, published, author, url, path FROM documents ORDER BY id"
        )
        pending, vectors = _Pending(), []
        for number, (doc, key, text, title, outlet, published, author, url, where) in enumerate(documents, 1):
            article = Article(key=key, text=text, title=title, outlet=outlet, author=author, url=url, path=where,
                              published=dt.date.fromisoformat(published) if published else None)
            rows = old.execute("SELECT ordinal, start, end, text, vector FROM chunks WHERE document = ? ORDER BY "
                               "ordinal", (doc,)).fetchall()
            chunks = [Chunk(doc_id=article.doc_id, ordinal=o, start=s, end=e, text=t) for o, s, e, t, _ in rows]
            pending.add(article, chunks)
            vectors += [np.frombuffer(v, dtype=np.float32).reshape(dim) for *_, v in rows]
            carried += 1
            if len(pending.articles) >= BATCH_ARTICLES:
                writer._commit(pending, vectors=np.vstack(vectors))
                pending, vectors = _Pending(), []
            if progress:
                progress(number, total, key)
        if pending.articles:
            writer._commit(pending, vectors=np.vstack(vectors))
        writer.merge()
        problems = check(store, folder)
        if problems:
            raise CitebotError(f"the upgraded index failed its check ({problems[0]}): the old index is kept; "
                               "rebuild with `citebot ingest --rebuild PATH…`")
        store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        store._db.execute("PRAGMA journal_mode=DELETE")
        store.close()
        # The old store's WAL must not be replayed onto the new file: fold it in and drop it first.
        old.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        old.execute("PRAGMA journal_mode=DELETE")
        old.close()
        os.replace(new_path, path)
        for stale in folder.glob("vectors-*.faiss"):
            stale.unlink(missing_ok=True)
    log.info("migrated %d documents in %s to schema %d", carried, folder, SCHEMA_VERSION)
    return carried


def _from_2(settings: Settings, *, progress=None) -> int:
    """Schema 2 -> 3: postings files for every segment, then the FTS5 table goes, in one transaction."""
    folder = settings.index.dir
    db = sqlite3.connect(folder / STORE_FILE, timeout=30.0, isolation_level=None)
    try:
        with open(folder / "write.lock", "w") as lock:
            take_lock(lock, folder)
            segments = db.execute("SELECT id, file FROM segments ORDER BY id").fetchall()
            for number, (segment, file) in enumerate(segments, start=1):
                rows = db.execute("SELECT id, text FROM chunks WHERE segment = ? ORDER BY id", (segment,)).fetchall()
                postings = lexical.build([r[0] for r in rows], [r[1] for r in rows])
                lexical.save(postings, folder / lexical.lexical_name(file))
                if progress:
                    progress(number, len(segments), file)
            db.execute("BEGIN IMMEDIATE")
            db.execute("DROP TRIGGER IF EXISTS chunks_fts_insert")
            db.execute("DROP TRIGGER IF EXISTS chunks_fts_delete")
            db.execute("DROP TABLE IF EXISTS chunks_fts")
            db.execute("ALTER TABLE documents ADD COLUMN via TEXT")
            db.execute("CREATE INDEX IF NOT EXISTS documents_path ON documents(path)")
            db.execute("CREATE INDEX IF NOT EXISTS documents_age ON documents("
                       "coalesce(published, substr(ingested_at, 1, 10)))")
            db.execute("UPDATE meta SET value = '3' WHERE key = 'schema'")
            db.execute("COMMIT")
            documents = db.execute("SELECT count(*) FROM documents").fetchone()[0]
    finally:
        db.close()
    log.info("migrated %d documents in %s from schema 2 to 3", documents, folder)
    return documents


def _from_3(settings: Settings, *, progress=None) -> int:
    """Schema 3 -> 4: every document grouped into its story, in the order they were added, and the
    outlets counted, in one transaction.

    Needs no model: the MinHash of each stored text (retrieval/stories.py). A kill before the
    commit leaves schema 3.
    """
    from retrieval.backends.embedded.schema import OUTLET_COUNTS, STORIES_SCHEMA
    from retrieval.backends.embedded.transaction import Transaction as StoreWriter

    folder = settings.index.dir
    db = connect(folder / STORE_FILE)
    copies = settings.copies
    try:
        with open(folder / "write.lock", "w") as lock:
            take_lock(lock, folder)
            total = db.execute("SELECT count(*) FROM documents").fetchone()[0]
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in STORIES_SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                writer = StoreWriter(db, 0, copies_threshold=copies.threshold)
                last, done = 0, 0
                while copies.enabled:  # grouping off: no text needs reading
                    rows = db.execute("SELECT id, text FROM documents WHERE id > ? ORDER BY id LIMIT 500",
                                      (last,)).fetchall()
                    if not rows:
                        break
                    for document, text in rows:
                        writer.join_story(document, text)
                        done += 1
                        if progress:
                            progress(done, total, str(document))
                    last = rows[-1][0]
                db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('copies', ?)", (str(writer.copies),))
                db.execute(f"INSERT INTO outlets(name, documents) {OUTLET_COUNTS}")
                db.execute("UPDATE meta SET value = '4' WHERE key = 'schema'")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
    finally:
        db.close()
    log.info("migrated %d documents in %s from schema 3 to 4 (%d wire copies grouped)", total, folder, writer.copies)
    return total
