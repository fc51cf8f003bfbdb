"""The PostgreSQL engine behind `IndexStore` (retrieval/backends/base.py): one database many processes can share.

Selected by `index.url` (postgresql://user@host/db). Everything lives in the database: documents, chunks
with their vectors (pgvector, an HNSW or IVFFlat index on inner product), BM25 postings, word counts,
stories and outlets. A write batch is one transaction; a reader's snapshot is one REPEATABLE READ
transaction. BM25 is the embedded engine's (SQLite FTS5's): the same tokens (retrieval/text.py), k1, b
and IDF floor, summed in the reader from the packed postings rows of the question's own terms
(postgres/postings.py); `maintain()` merges those rows' segments as the embedded engine merges its files.

Many writers at once, on any number of machines: each reads, chunks and embeds on its own, and only its
commits take turns (an advisory transaction lock, `COMMIT_KEY`, held from a batch's first statement to its
COMMIT), so commits get their generations in the order they become visible, a batch sees every commit before
it (the same article from two writers stays one document; two wire copies join one story), and a merge never
interleaves with a commit. A rebuild or a migration holds the right to write alone (`lock(alone=True)`).
The feed book, the bot's history and server rules live in the same schema (postgres/state.py), so nothing of
a collection is kept in `index.dir`.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
import re
import select
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np
import psycopg

from retrieval import stories
from retrieval.backends.base import Hits, SourceRow, StoredChunk
from retrieval.backends.common import (
    ARTICLE_COLUMNS, CHUNK_COLUMNS, MetaCounters, id_prefix, source_row, stored_articles, stored_chunk,
)
from retrieval.backends.embedded.segments import SegmentInfo, plan_merge
from retrieval.backends.postgres import postings as words
from retrieval.backends.postgres.schema import (
    BUILD_MEMORY, OUTLET_COUNTS, REBUILD_GROWTH, SCHEMA_VERSION, TABLES, VECTOR_INDEXES, shown,
)
from retrieval.errors import (
    CitebotError, IndexBusyError, IndexSchemaError, IndexUnavailableError,
)
from retrieval.features import content_stems
from retrieval.models import Article, Chunk
from retrieval.settings import IndexSettings
from retrieval.text import STOPWORDS, question_terms, tokens

log = logging.getLogger(__name__)

LOCK_KEY = 0x63697465626F74  # "citebot": held shared by every writer's call, alone by a rebuild or migration
COMMIT_KEY = LOCK_KEY + 1  # held by one commit (or merge) at a time, to its COMMIT
MAINTAIN_KEY = LOCK_KEY + 2  # held by the one process merging or building the vector index
SETUP_KEY = LOCK_KEY + 3  # held while the extension, the schema and its tables are made
MERGE_PAGE = 5000  # postings rows a merge reads at a time


def _reconnecting(method):
    """A lost connection (the server restarted or went away) becomes one IndexUnavailableError; the thread's
    connection is dropped, so the next call connects afresh."""

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (psycopg.OperationalError, psycopg.InterfaceError) as error:
            raise self._unavailable(error) from None

    return run


def _reconnecting_all(cls):
    for name, member in list(vars(cls).items()):
        if name.startswith("_") or name == "location":
            continue
        if isinstance(member, property):
            setattr(cls, name, property(_reconnecting(member.fget)))
        elif callable(member) and not isinstance(member, (staticmethod, classmethod)):
            setattr(cls, name, _reconnecting(member))
    return cls


def schema_name(collection: str) -> str:
    """Each collection is a schema of its own: the default one `citebot`, another `citebot_NAME`."""
    return "citebot" if collection == "default" else f"citebot_{collection}"


def connect(url: str, *, setting: str = "index.url") -> psycopg.Connection:
    """An autocommit connection, or the one line saying the database cannot be reached (never its password)."""
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as error:
        raise IndexUnavailableError(f"cannot reach the database {shown(url)} ({_first_line(error)}): check "
                                    f"{setting} and that the server is running") from None


def schema_exists(url: str, collection: str) -> bool:
    """Whether the collection's index is in the database, without creating anything; an unreachable
    database is IndexUnavailableError."""
    with connect(url) as db:
        name = f'"{schema_name(collection)}".citebot_meta'
        return db.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


def stored_collections(url: str) -> set[str]:
    """The collections whose schema is in the database (the default one's is `citebot`)."""
    with connect(url) as db:
        rows = db.execute(r"SELECT substr(nspname, 9) FROM pg_namespace WHERE nspname LIKE 'citebot\_%'")
        return {row[0] for row in rows}


@_reconnecting_all
class PostgresIndex(MetaCounters):
    """An index in a PostgreSQL database with pgvector."""

    def __init__(self, url: str, settings: IndexSettings, *, model: str, read_url: str | None = None):
        self.url = url
        self.read_url = read_url  # a streaming replica questions read from (index.read_url); writes go to `url`
        self.settings = settings
        self.model = model
        self._local = threading.local()
        self._reached = False
        self._dead_lock = threading.Lock()
        self._dead_seen = (0, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))  # generation, ids, theirs
        self.schema = schema_name(settings.collection)
        db = self._db
        version = db.execute("SELECT to_regclass('citebot_meta') IS NOT NULL").fetchone()[0] and db.execute(
            "SELECT value FROM citebot_meta WHERE key = 'schema'").fetchone()
        if not version:
            with db.transaction():
                db.execute("SELECT pg_advisory_xact_lock(%s)", (SETUP_KEY,))
                db.execute(TABLES)
                db.execute("INSERT INTO citebot_meta (key, value) VALUES ('schema', %s) ON CONFLICT DO NOTHING",
                           (str(SCHEMA_VERSION),))
        elif int(version[0]) != SCHEMA_VERSION:
            raise IndexSchemaError(self.location, int(version[0]), SCHEMA_VERSION)

    @property
    def location(self) -> str:
        return shown(self.url)

    def where(self) -> str:
        return self.location

    @property
    def _db(self):
        """One connection per thread, autocommit outside snapshots and batches: to the primary, or inside a
        snapshot of a reader given index.read_url, to the replica."""
        if getattr(self._local, "reading", False):
            db = getattr(self._local, "rdb", None)
            if db is None or db.closed or _gone(db):
                db = self._local.rdb = self._connect(self.read_url, replica=True)
            return db
        db = getattr(self._local, "db", None)
        if db is None or db.closed or _gone(db):
            db = self._local.db = self._connect(self.url)
        return db

    def _connect(self, url: str, *, replica: bool = False):
        where = shown(url)
        try:
            db = connect(url, setting="index.read_url" if replica else "index.url")
        except IndexUnavailableError as error:
            if self._reached:  # it worked before: the server is away for now
                raise self._unavailable(error.__context__ or error) from None
            raise
        self._reached = True
        ready = db.execute("SELECT to_regnamespace(%s) IS NOT NULL AND EXISTS (SELECT 1 FROM pg_extension WHERE"
                           " extname = 'vector')", (self.schema,)).fetchone()[0]
        if not ready and replica:
            db.close()
            raise IndexUnavailableError(f"the replica {where} holds no index of this collection yet: it has not "
                                        "replayed the primary's first commit (check its replication), or index.read_url "
                                        "names another database")
        if not ready:  # made once, by whichever process comes first ("IF NOT EXISTS" alone races)
            try:
                with db.transaction():
                    db.execute("SELECT pg_advisory_xact_lock(%s)", (SETUP_KEY,))
                    db.execute("CREATE EXTENSION IF NOT EXISTS vector SCHEMA public")
                    db.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            except psycopg.Error as error:
                db.close()
                raise CitebotError(f"{where}: pgvector is not available ({_first_line(error)}): install "
                                   "the vector extension in that database") from None
        db.execute(f'SET search_path = "{self.schema}", public')
        return db

    def close(self) -> None:
        for name in ("db", "rdb"):
            db = getattr(self._local, name, None)
            if db is not None:
                try:
                    db.close()
                finally:
                    setattr(self._local, name, None)

    def _unavailable(self, error: BaseException) -> IndexUnavailableError:
        try:
            self.close()
        except psycopg.Error:
            self._local.db = self._local.rdb = None
        return IndexUnavailableError(f"the database {self.location} cannot be reached now ({_first_line(error)}): "
                                     "nothing was changed; try again once it is back")

    # -- the write side -------------------------------------------------------------------------
    @contextmanager
    def lock(self, *, alone: bool = False) -> Iterator[None]:
        """The right to write for the block: shared by any number of writers (their commits take turns in
        `write`), or held `alone` (a rebuild, a migration), waiting up to index.lock_wait_seconds."""
        db = self._db
        wait_s = self.settings.lock_wait_seconds
        deadline = time.monotonic() + wait_s
        kind = "" if alone else "_shared"
        while not self._try_lock(db, kind):
            if time.monotonic() >= deadline:
                doing = "writing to" if alone else "rebuilding or migrating"
                raise IndexBusyError(f"another citebot process has been {doing} {self.location} for {wait_s:g} s: "
                                     "try again when it is done, or raise index.lock_wait_seconds")
            time.sleep(0.1)
        try:
            yield
        finally:
            try:
                db.execute(f"SELECT pg_advisory_unlock{kind}(%s)", (LOCK_KEY,))
            except (psycopg.OperationalError, psycopg.InterfaceError):
                pass  # a lost session holds no lock

    def _try_lock(self, db, kind: str = "", key: int = LOCK_KEY) -> bool:
        try:
            return db.execute(f"SELECT pg_try_advisory_lock{kind}(%s)", (key,)).fetchone()[0]
        except (psycopg.OperationalError, psycopg.InterfaceError) as error:
            raise self._unavailable(error) from None

    def _take_turn(self, db) -> None:
        """Inside a transaction: wait (up to index.lock_wait_seconds) for the commits of other writers ahead."""
        wait_s = self.settings.lock_wait_seconds
        db.execute(f"SET LOCAL lock_timeout = '{max(int(wait_s * 1000), 1)}ms'")
        try:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (COMMIT_KEY,))
        except psycopg.errors.LockNotAvailable:
            raise IndexBusyError(f"another citebot process has been committing to {self.location} for {wait_s:g} s: "
                                 "try again when it is done, or raise index.lock_wait_seconds") from None
        db.execute("SET LOCAL lock_timeout = 0")

    @contextmanager
    def write(self, *, copies_threshold: float | None = None) -> Iterator[Batch]:
        db = self._db
        try:
            with db.transaction():
                self._take_turn(db)  # from here to COMMIT no other commit: generations follow commit order
                generation = int(db.execute("SELECT coalesce((SELECT value::bigint FROM citebot_meta WHERE key ="
                                            " 'generation'), 0)").fetchone()[0])
                batch = Batch(db, generation + 1, copies_threshold=copies_threshold)
                yield batch
                batch.finish()
        except (psycopg.OperationalError, psycopg.InterfaceError) as error:
            raise self._unavailable(error) from None

    def maintain(self) -> int:
        """Merge postings segments until their layout is fine (as the embedded engine merges its files), then
        build the approximate vector index once the collection holds index.ann_min_chunks chunks; returns the
        steps taken.

        PostgreSQL keeps the vector index current from then on, and autovacuum reclaims what removals leave.
        A build cut short leaves an invalid index, dropped and built again here."""
        db = self._db
        if not self._try_lock(db, key=MAINTAIN_KEY):
            return 0  # another process is at it; what it leaves undone, the next maintain does
        try:
            steps = 0
            while chosen := plan_merge([SegmentInfo(*row) for row in db.execute(
                    "SELECT id, chunks, dead FROM segments WHERE merged_into IS NULL ORDER BY id")]):
                self._merge(chosen)
                steps += 1
            return steps + self._build_vector_index()
        finally:
            try:
                db.execute("SELECT pg_advisory_unlock(%s)", (MAINTAIN_KEY,))
            except (psycopg.OperationalError, psycopg.InterfaceError):
                pass

    def _merge(self, chosen: list[int]) -> None:
        """Segments `chosen` become one: each term's rows joined into one, without the dead chunks."""
        db = self._db
        started = time.monotonic()
        with db.transaction():
            self._take_turn(db)  # no commit meanwhile: a removal's dead row always names where its postings are
            # chunks without a single term (all stop words) are in no row: the segments count them still
            total, gone = db.execute("SELECT coalesce(sum(chunks), 0), coalesce(sum(dead), 0) FROM segments"
                                     " WHERE id = ANY(%s)", (chosen,)).fetchone()
            if total == gone:  # nothing left alive: the segments go, with their rows
                db.execute("DELETE FROM postings WHERE segment = ANY(%s)", (chosen,))
                db.execute("DELETE FROM dead WHERE segment = ANY(%s)", (chosen,))
                db.execute("DELETE FROM segments WHERE id = ANY(%s)", (chosen,))
                return
            into = db.execute("INSERT INTO segments (chunks) VALUES (%s) RETURNING id",
                              (int(total - gone),)).fetchone()[0]
            dead = np.array(sorted(row[0] for row in db.execute("SELECT chunk FROM dead WHERE segment = ANY(%s)",
                                                                 (chosen,))), dtype=np.int64)
            # read a page, write what it completed: one connection cannot fetch while it copies
            with db.cursor(name="citebot_merge") as rows:
                rows.execute("SELECT term, chunks, tfs, lengths FROM postings WHERE segment = ANY(%s)"
                             " ORDER BY term", (chosen,))
                term, parts = None, []
                while True:
                    page = rows.fetchmany(MERGE_PAGE)
                    out = []
                    for name, a, f, n in page or [(None, None, None, None)]:
                        if name != term and parts:
                            ids, tfs, lengths = (np.concatenate(x) for x in zip(*parts, strict=True))
                            keep = ~words.members(ids, dead)
                            if keep.any():
                                out.append((term, into, *words.pack(ids[keep], tfs[keep], lengths[keep])))
                            parts = []
                        if name is not None:
                            term = name
                            parts.append(words.unpack(a, f, n))
                    if out:
                        with db.cursor() as cursor, cursor.copy(
                                "COPY postings (term, segment, chunks, tfs, lengths) FROM STDIN") as copy:
                            for row in out:
                                copy.write_row(row)
                    if not page:
                        break
            db.execute("DELETE FROM postings WHERE segment = ANY(%s)", (chosen,))
            db.execute("DELETE FROM dead WHERE segment = ANY(%s)", (chosen,))
            db.execute("UPDATE segments SET merged_into = %s, chunks = 0, dead = 0 WHERE id = ANY(%s)",
                       (into, chosen))
        log.info("merged %d postings segments of %s into one of %d chunks in %.1f s", len(chosen), self.location,
                 int(total - gone), time.monotonic() - started)

    def _build_vector_index(self) -> int:
        dim = self._dim()
        count = self.count_chunks()
        if dim is None or count < self.settings.ann_min_chunks:
            return 0
        db = self._db
        valid = {name: ok for name, ok in db.execute(
            "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace"
            " n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname IN ('chunks_vector', 'chunks_vector_next')",
            (self.schema,))}
        if "chunks_vector_next" in valid:  # a rebuild cut short: made again
            db.execute("DROP INDEX CONCURRENTLY IF EXISTS chunks_vector_next")
        kind, size = self.vector_index_kind(count)
        built = (self.get_meta("vector_index") or "").split()  # kind, size, chunks when built
        name = "chunks_vector"
        if valid.get("chunks_vector"):
            if len(built) != 3:  # made before citebot kept this: as if built now
                built = [self.vector_index() or kind, str(size), str(count)]
                self._set_index_meta(built[0], size, count)
            auto = self.settings.factory.lower() == "auto"
            if built[0] == kind and (not auto or count < REBUILD_GROWTH * int(built[2])):
                return 0
            name = "chunks_vector_next"  # the old one serves until the new one is whole
        elif "chunks_vector" in valid:  # a first build cut short
            db.execute("DROP INDEX CONCURRENTLY IF EXISTS chunks_vector")
        log.info("building the %s vector index of %s (%d chunks, %s %d)", kind, self.location, count,
                 "lists" if kind == "ivfflat" else "m", size)
        db.execute(f"SET maintenance_work_mem = '{BUILD_MEMORY}'")
        try:
            db.execute(VECTOR_INDEXES[kind].format(name=name, dim=dim, lists=size, m=size))
        finally:
            db.execute("RESET maintenance_work_mem")
        if name == "chunks_vector_next":
            db.execute("DROP INDEX CONCURRENTLY IF EXISTS chunks_vector")
            db.execute("ALTER INDEX chunks_vector_next RENAME TO chunks_vector")
        self._set_index_meta(kind, size, count)
        # After a bulk load (a copy, a first big ingest): statistics for the planner. Autovacuum keeps them
        # current from here.
        db.execute("VACUUM (ANALYZE) postings, chunks, documents, terms")
        return 1

    def _set_index_meta(self, kind: str, size: int, count: int) -> None:
        self._db.execute("INSERT INTO citebot_meta (key, value) VALUES ('vector_index', %s) ON CONFLICT (key) DO"
                         " UPDATE SET value = excluded.value", (f"{kind} {size} {count}",))

    def vector_index_kind(self, count: int | None = None) -> tuple[str, int]:
        """What index.factory asks of PostgreSQL for `count` chunks: ("ivfflat", lists) for "auto" (about 2·√n
        lists, a power of two, at least 50 chunks each: 2048 at 1M) or "IVF<lists>…"; ("hnsw", m) for "HNSW<m>…" (16 when not given)."""
        factory = self.settings.factory.upper()
        if factory.startswith("HNSW"):
            m = re.match(r"HNSW(\d+)", factory)
            return "hnsw", int(m.group(1)) if m else 16
        if (fixed := re.match(r"IVF(\d+)", factory)) is not None:
            return "ivfflat", int(fixed.group(1))
        n = max(count if count is not None else self.count_chunks(), 1)
        lists = min(32768, 2 ** round(math.log2(2 * math.sqrt(n))))
        while lists > 1 and 50 * lists > n:  # k-means wants points: at least 50 a list
            lists //= 2
        return "ivfflat", lists

    def vector_index(self) -> str | None:
        """The approximate vector index in use ("hnsw", "ivfflat"), or None: dense search is exact."""
        row = self._db.execute("SELECT am.amname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                               " JOIN pg_am am ON am.oid = c.relam JOIN pg_namespace n ON n.oid = c.relnamespace"
                               " WHERE n.nspname = %s AND c.relname = 'chunks_vector' AND i.indisvalid",
                               (self.schema,)).fetchone()
        return row[0] if row else None

    # -- the read side --------------------------------------------------------------------------
    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """One committed state for the block's reads (REPEATABLE READ), on the replica when index.read_url is set
        (unless this thread is inside a write: a writer reads what it writes)."""
        if getattr(self._local, "reading", False):  # nested in a replica snapshot: that one holds
            yield
            return
        primary = getattr(self._local, "db", None)
        writing = primary is not None and not primary.closed and primary.info.transaction_status != 0
        if self.read_url and not writing:
            self._local.reading = True
            try:
                with self._snapshot():
                    yield
            finally:
                self._local.reading = False
            return
        with self._snapshot():
            yield

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        db = self._db
        if db.info.transaction_status != 0:  # nested (0 is idle): the outer snapshot holds
            yield
            return
        try:  # a connection the server closed while it sat idle was replaced by `_db` (_gone)
            db.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        except (psycopg.OperationalError, psycopg.InterfaceError) as error:
            raise self._unavailable(error) from None
        self._local.meta = {}  # one snapshot sees one meta table: read it once (get_meta)
        try:
            yield
        finally:
            self._local.meta = None
            if not db.closed:  # closed: a lost connection, already reported
                try:
                    db.execute("COMMIT")
                except (psycopg.OperationalError, psycopg.InterfaceError) as error:
                    raise self._unavailable(error) from None

    def refresh(self) -> None:
        self.check_model(self.model)

    def _dim(self) -> int | None:
        dim = self.get_meta("dim")
        return int(dim) if dim is not None else None

    def dense(self, vector: np.ndarray, k: int, allowed: set[int] | None = None) -> Hits | None:
        dim = self._dim()
        if dim is None:
            return None
        self.check_model(self.model)
        query = _vector_literal(vector)
        db = self._db
        if allowed is not None:  # a filter: exact over the allowed chunks (their ids by primary key)
            rows = db.execute(
                f"SELECT id, -(vector::vector({dim}) <#> %s::vector({dim})) AS score FROM chunks"
                " WHERE id = ANY(%s) ORDER BY score DESC, id LIMIT %s", (query, list(allowed), k)).fetchall()
        else:
            with db.transaction() if db.info.transaction_status == 0 else _nothing():
                db.execute(f"SET LOCAL hnsw.ef_search = {max(self.settings.ef_search, 2 * k)}")
                db.execute(f"SET LOCAL ivfflat.probes = {self.settings.nprobe}")
                rows = db.execute(
                    f"SELECT id, -(vector::vector({dim}) <#> %s::vector({dim})) AS score FROM chunks"
                    f" ORDER BY vector::vector({dim}) <#> %s::vector({dim}) LIMIT %s", (query, query, k)).fetchall()
        return [(int(i), float(s)) for i, s in rows]

    def lexical(self, question: str, k: int, allowed: set[int] | None = None) -> Hits | None:
        if self._dim() is None:
            return None
        terms = question_terms(question)
        total = self.count_chunks()
        if not terms or total == 0 or k <= 0:
            return []
        db = self._db
        average = int(self.get_meta("tokens") or 0) / total
        found = dict(db.execute("SELECT term, df FROM terms WHERE term = ANY(%s)", (terms,)).fetchall())
        idf = {t: max(math.log((total - found.get(t, 0) + 0.5) / (found.get(t, 0) + 0.5)), words.IDF_FLOOR)
               for t in terms}
        rows = db.execute("SELECT term, chunks, tfs, lengths FROM postings WHERE term = ANY(%s)",
                          ([t for t in terms if t in found],), binary=True).fetchall()  # bytes as they are, no hex
        parts = [(*words.unpack(a, f, n), idf[term]) for term, a, f, n in rows]
        among = None if allowed is None else np.sort(np.fromiter(allowed, dtype=np.int64, count=len(allowed)))
        return words.score(parts, average, k, dead=self._dead(), allowed=among)

    def _dead(self) -> np.ndarray:
        """The removed chunks still in postings rows, as this snapshot sees them (sorted). Kept per process:
        each question fetches only what commits since the last one removed (`dead.generation`)."""
        generation = self.generation
        with self._dead_lock:
            known, ids, generations = self._dead_seen
            if generation > known:
                rows = self._db.execute("SELECT chunk, generation FROM dead WHERE generation > %s", (known,)).fetchall()
                if rows:
                    new = np.array(rows, dtype=np.int64).reshape(-1, 2)
                    ids, generations = np.concatenate([ids, new[:, 0]]), np.concatenate([generations, new[:, 1]])
                    order = np.argsort(ids, kind="stable")
                    ids, generations = ids[order], generations[order]
                self._dead_seen = (generation, ids, generations)
        return ids if generation >= known else ids[generations <= generation]

    def matching(self, outlet: str | None = None, since: dt.date | None = None,
                 until: dt.date | None = None) -> set[int]:
        where, values = [], []
        if outlet is not None:
            wanted = outlet.strip().casefold()
            names = [name for name in self.outlets() if name.casefold() == wanted]
            if not names:
                return set()
            where.append("btrim(d.outlet) = ANY(%s)")
            values.append(names)
        if since is not None:
            where.append("d.published >= %s")
            values.append(since)
        if until is not None:
            where.append("d.published <= %s")
            values.append(until)
        rows = self._db.execute("SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document"
                                + (" WHERE " + " AND ".join(where) if where else ""), values)
        return {row[0] for row in rows}

    def chunks(self, ids: Iterable[int]) -> dict[int, StoredChunk]:
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        columns = CHUNK_COLUMNS.format(start="c.start_at", end="c.end_at", head="left(d.text, 200)")
        rows = self._db.execute(f"SELECT {columns} FROM chunks c JOIN documents d ON d.id = c.document"
                                " WHERE c.id = ANY(%s)", (ids,))
        return {row[0]: stored_chunk(row, row[8]) for row in rows}

    def chunk_texts(self, ids: Iterable[int]) -> dict[int, str]:
        ids = [int(i) for i in ids]
        return dict(self._db.execute("SELECT id, text FROM chunks WHERE id = ANY(%s)", (ids,)).fetchall()) if ids else {}

    def vectors(self, ids: Iterable[int]) -> dict[int, np.ndarray]:
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        rows = self._db.execute("SELECT id, vector::text FROM chunks WHERE id = ANY(%s)", (ids,))
        return {i: np.array(text.strip("[]").split(","), dtype=np.float32) for i, text in rows}

    def stories_of(self, ids: Iterable[int]) -> dict[int, tuple[int, int]]:
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        rows = self._db.execute("SELECT c.id, s.story, c.document FROM chunks c JOIN stories s ON s.document ="
                                " c.document WHERE c.id = ANY(%s)", (ids,))
        return {row[0]: (int(row[1]), int(row[2])) for row in rows}

    def document_frequencies(self, stems: Iterable[str]) -> dict[str, int]:
        stems = list(dict.fromkeys(stems))
        if not stems:
            return {}
        return dict(self._db.execute("SELECT stem, df FROM stems WHERE stem = ANY(%s)", (stems,)).fetchall())

    # -- documents ------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        meta = getattr(self._local, "meta", None)
        if meta is None:  # outside a snapshot: it may change between two reads
            row = self._db.execute("SELECT value FROM citebot_meta WHERE key = %s", (key,)).fetchone()
            return row[0] if row else None
        if not meta:  # a question reads the model, dimension, counters and generation: one query for all
            meta.update(self._db.execute("SELECT key, value FROM citebot_meta").fetchall())
            meta.setdefault("", "")  # read, even when the table is empty
        return meta.get(key)

    def doc_id_of(self, key: str) -> str | None:
        row = self._db.execute("SELECT doc_id FROM documents WHERE key = %s", (key,)).fetchone()
        return row[0] if row else None

    def doc_ids_by_key(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, doc_id FROM documents").fetchall())

    def find_documents(self, ref: str) -> list[str]:
        rows = self._db.execute("SELECT key FROM documents WHERE key = %s OR path = %s OR url = %s OR doc_id = %s",
                                (ref, ref, ref, ref)).fetchall()
        if not rows and (prefix := id_prefix(ref)):
            rows = self._db.execute("SELECT key FROM documents WHERE doc_id >= %s AND doc_id < %s",
                                    (prefix, prefix + "g")).fetchall()
        return [row[0] for row in rows]

    def documents_under(self, root: str) -> list[tuple[str, str]]:
        rows = self._db.execute("SELECT key, path FROM documents WHERE path = %s OR (path >= %s AND path < %s)",
                                (root, root + "/", root + "0"))
        return [(key, path) for key, path in rows]

    def keys_older_than(self, day: dt.date, limit: int = 10_000) -> list[str]:
        rows = self._db.execute(
            "SELECT key FROM documents WHERE coalesce(published, (ingested_at AT TIME ZONE 'UTC')::date) < %s"
            " ORDER BY coalesce(published, (ingested_at AT TIME ZONE 'UTC')::date) LIMIT %s", (day, limit))
        return [row[0] for row in rows]

    def outlets(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT name, documents FROM outlets").fetchall())

    def document_text(self, doc_id: str) -> str | None:
        row = self._db.execute("SELECT text FROM documents WHERE doc_id = %s LIMIT 1", (doc_id,)).fetchone()
        return row[0] if row else None

    def articles(self, after: int = 0, limit: int = 100) -> list[tuple[int, Article, list[int]]]:
        rows = self._db.execute(f"SELECT {ARTICLE_COLUMNS} FROM documents WHERE id > %s ORDER BY id LIMIT %s",
                                (after, limit)).fetchall()
        ids = [row[0] for row in rows]
        chunk_rows = self._db.execute("SELECT document, id FROM chunks WHERE document = ANY(%s) ORDER BY document,"
                                      " ordinal", (ids,)).fetchall() if ids else []
        return stored_articles(rows, chunk_rows)

    def sources(self) -> list[SourceRow]:
        rows = self._db.execute(
            "SELECT d.doc_id, d.key, d.title, d.outlet, d.published, d.url, d.path, left(d.text, 200),"
            " (SELECT count(*) FROM chunks c WHERE c.document = d.id)"
            " FROM documents d ORDER BY d.published DESC NULLS LAST, d.key")
        return [source_row(*row) for row in rows]

    # -- health ---------------------------------------------------------------------------------
    def check(self) -> list[str]:
        """Counters, BM25 document frequencies, word counts, stories and outlets against what the rows hold."""
        problems: list[str] = []
        with self.snapshot():
            db = self._db
            documents, chunks, tokens_ = db.execute(
                "SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM chunks),"
                " (SELECT coalesce(sum(tokens), 0) FROM chunks)").fetchone()
            if (self.count_documents(), self.count_chunks()) != (documents, chunks):
                problems.append(f"counters say {self.count_documents()} documents and {self.count_chunks()} chunks; "
                                f"the database holds {documents} and {chunks}")
            if int(self.get_meta("tokens") or 0) != tokens_:
                problems.append(f"the token counter says {self.get_meta('tokens')}; the chunks hold {tokens_}")
            problems += self._check_postings(db)
            df: Counter[str] = Counter()
            terms: Counter[str] = Counter()
            for (text,) in db.execute("SELECT text FROM chunks"):
                df.update(set(content_stems(text)))
                terms.update(_terms_of(tokens(text)).keys())
            if (kept := dict(db.execute("SELECT term, df FROM terms").fetchall())) != dict(terms):
                sample = sorted(set(kept.items()) ^ set(terms.items()))[:1]
                problems.append(f"BM25 term counts differ from the chunks' words, e.g. {sample}")
            kept = dict(db.execute("SELECT stem, df FROM stems").fetchall())
            if kept != dict(df):
                sample = sorted(set(kept.items()) ^ set(df.items()))[:1]
                problems.append(f"word counts differ from the chunks, e.g. {sample}")
            counted = dict(db.execute(OUTLET_COUNTS).fetchall())
            if self.outlets() != counted:
                problems.append(f"the outlets table lists {len(self.outlets())} outlets; the documents have "
                                f"{len(counted)}")
            members, distinct = db.execute("SELECT count(*), count(DISTINCT story) FROM stories").fetchone()
            if self.count_copies() != members - distinct:
                problems.append(f"the copies counter says {self.count_copies()}; the stories hold "
                                f"{members - distinct}")
        return problems

    def _check_postings(self, db) -> list[str]:
        """Each term's live postings against its count, every live posting against the chunks, the segments'
        counts against their rows."""
        problems = []
        dead = np.array(sorted(r[0] for r in db.execute("SELECT chunk FROM dead")), dtype=np.int64)
        chunk_ids = np.array(sorted(r[0] for r in db.execute("SELECT id FROM chunks")), dtype=np.int64)
        counted: Counter[str] = Counter()
        strays = torn = 0
        with db.cursor(name="citebot_check") as rows:
            rows.itersize = 2000
            rows.execute("SELECT p.term, p.chunks, p.tfs, p.lengths FROM postings p JOIN segments s ON s.id = p.segment"
                         " AND s.merged_into IS NULL")
            for term, a, f, n in rows:
                try:
                    ids = words.unpack(a, f, n)[0]
                except ValueError:
                    torn += 1
                    continue
                ids = ids[~words.members(ids, dead)]
                if len(ids):
                    counted[term] += len(ids)
                strays += int((~words.members(ids, chunk_ids)).sum())
        if torn:
            problems.append(f"{torn} postings rows are torn (their arrays differ in length)")
        if strays:
            problems.append(f"{strays} postings name chunks that are not in the database")
        kept = dict(db.execute("SELECT term, df FROM terms").fetchall())
        if kept != dict(counted):
            sample = sorted(set(kept.items()) ^ set(counted.items()))[:1]
            problems.append(f"{len(set(kept.items()) ^ set(counted.items()))} terms' chunk counts differ from "
                            f"their postings, e.g. {sample}")
        live, listed = db.execute("SELECT coalesce(sum(chunks - dead), 0), coalesce(sum(dead), 0) FROM segments"
                                  " WHERE merged_into IS NULL").fetchone()
        if live != len(chunk_ids) or listed != len(dead):
            problems.append(f"the postings segments count {live} live and {listed} removed chunks; the database "
                            f"holds {len(chunk_ids)} chunks and lists {len(dead)} removed")
        return problems

    def figures(self) -> dict[str, int]:
        with self.snapshot():
            return {"documents": self.count_documents(), "chunks": self.count_chunks(),
                    "generation": self.generation}

    def destroy(self) -> None:
        self._db.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        self.close()

    def server(self) -> dict[str, str | float | None]:
        """What `citebot doctor` reports: the server's and pgvector's versions, the schema, the vector index;
        whether index.url is itself a streaming replica; and with index.read_url, the replica's lag behind the
        primary: WAL bytes not yet replayed, and seconds since the last commit it replayed (0 when it has
        replayed everything the primary wrote)."""
        db = self._db
        replica = db.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        about = {"postgres": db.execute("SHOW server_version").fetchone()[0],
                 "pgvector": db.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0],
                 "schema": self.get_meta("schema") or "?", "vector_index": self.vector_index() or "exact",
                 "replica": bool(replica), "lag_s": None, "lag_bytes": None, "read_from": None}
        if replica:
            about["lag_s"] = self._replay_age(db)
        if self.read_url:
            about["read_from"] = shown(self.read_url)
            written = db.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0] if not replica else None
            self._local.reading = True
            try:
                rdb = self._db
                behind, age = rdb.execute("SELECT pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn()),"
                                          " extract(epoch FROM now() - pg_last_xact_replay_timestamp())",
                                          (written or "0/0",)).fetchone()
            finally:
                self._local.reading = False
            if written is not None and behind is not None:
                about["lag_bytes"] = max(int(behind), 0)
                about["lag_s"] = 0.0 if about["lag_bytes"] == 0 else (None if age is None else float(age))
        return about

    @staticmethod
    def _replay_age(db) -> float | None:
        age = db.execute("SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp())").fetchone()[0]
        return None if age is None else float(age)


class Batch:
    """One write transaction on PostgreSQL: the rows, postings and counters of a commit."""

    def __init__(self, db, generation: int, *, copies_threshold: float | None = None):
        self._db = db
        self.generation = generation
        self.copies_threshold = copies_threshold
        self._stems: Counter[str] = Counter()
        self._terms: Counter[str] = Counter()
        self._documents = self._chunks = self._copies = self._tokens = 0
        self._chunk_rows: list[tuple] = []  # written by COPY before anything reads them (_flush)
        self._segment: int | None = None  # this batch's postings segment, made at its first chunk
        self._postings: dict[str, list[tuple[int, int, int]]] = {}  # term -> (chunk, tf, tokens), rows at finish
        self._gone: set[int] = set()  # chunks this batch wrote and then removed
        self._written = 0  # chunks this batch wrote

    def _flush(self) -> None:
        """The batch's chunks so far, by COPY (ids were taken from the sequence when added)."""
        if self._chunk_rows:
            with self._db.cursor() as cursor, cursor.copy(
                    "COPY chunks (id, chunk_id, document, ordinal, start_at, end_at, text, tokens, vector, sentences,"
                    " sentence_vectors, segment) FROM STDIN") as copy:
                for row in self._chunk_rows:
                    copy.write_row(row)
        self._chunk_rows = []

    def _write_postings(self) -> None:
        """One packed row per term of this batch's chunks (postgres/postings.py), and the segment's size."""
        if self._segment is None:
            return
        with self._db.cursor() as cursor, cursor.copy(
                "COPY postings (term, segment, chunks, tfs, lengths) FROM STDIN") as copy:
            for term, rows in self._postings.items():
                if self._gone:
                    rows = [row for row in rows if row[0] not in self._gone]
                if rows:
                    a = np.array(rows, dtype=np.int64).reshape(-1, 3)
                    copy.write_row((term, self._segment, *words.pack(a[:, 0], a[:, 1], a[:, 2])))
        self._db.execute("UPDATE segments SET chunks = %s WHERE id = %s",
                         (self._written - len(self._gone), self._segment))
        self._postings = {}

    def set_model(self, name: str, dim: int) -> None:
        self.set_meta("model", name)
        self.set_meta("dim", str(dim))

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT INTO citebot_meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE"
                         " SET value = excluded.value", (key, value))

    def remove(self, key: str) -> bool:
        self._flush()  # an article added earlier in this batch is in the tables before it is looked for
        db = self._db
        row = db.execute("SELECT id, btrim(outlet) FROM documents WHERE key = %s", (key,)).fetchone()
        if row is None:
            return False
        document, outlet = row
        self._count_outlet(outlet, -1)
        chunks = db.execute("SELECT id, segment, text, tokens FROM chunks WHERE document = %s", (document,)).fetchall()
        dead: list[tuple[int, int, int]] = []
        now: dict[int, int] = {}  # a chunk's commit segment -> where its postings are now (one lookup each)
        for chunk, segment, text, n in chunks:
            self._terms.subtract(_terms_of(tokens(text)).keys())
            self._stems.subtract(set(content_stems(text)))
            self._tokens -= n
            if segment == self._segment:  # written by this batch: its postings are not in the table yet
                self._gone.add(chunk)
            else:
                if segment not in now:
                    now[segment] = self._current_segment(segment)
                dead.append((chunk, now[segment], self.generation))
        if dead:  # their postings rows stay until a merge of the segment drops them (postgres/postings.py)
            with db.cursor() as cursor:
                cursor.executemany("INSERT INTO dead (chunk, segment, generation) VALUES (%s, %s, %s)", dead)
                cursor.executemany("UPDATE segments SET dead = dead + %s WHERE id = %s",
                                   [(n, s) for s, n in Counter(s for _, s, _ in dead).items()])
        self._leave_story(document)
        db.execute("DELETE FROM documents WHERE id = %s", (document,))  # its chunks cascade
        self._documents -= 1
        self._chunks -= len(chunks)
        return True

    def _current_segment(self, segment: int) -> int:
        """Where a chunk's postings are now: its commit's segment, or the merge that took that segment in."""
        while (into := self._db.execute("SELECT merged_into FROM segments WHERE id = %s",
                                        (segment,)).fetchone()) and into[0] is not None:
            segment = into[0]
        return segment

    def add(self, article: Article, chunks: list[Chunk], vectors: np.ndarray,
            sentences: list[list[tuple[int, int]]], sentence_vectors: list[np.ndarray]) -> None:
        db = self._db
        self._flush()  # an article added earlier in this batch is in the tables before it is looked for
        existing = db.execute("SELECT doc_id FROM documents WHERE key = %s", (article.key,)).fetchone()
        if existing is not None:
            if existing[0] == article.doc_id:
                return  # another writer committed this very article since this one looked: one copy stays
            self.remove(article.key)
        document = db.execute(
            "INSERT INTO documents (doc_id, key, title, outlet, published, author, url, path, text, via)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (article.doc_id, article.key, article.title, article.outlet, article.published, article.author,
             article.url, article.path, article.text, article.via)).fetchone()[0]
        self._count_outlet((article.outlet or "").strip(), +1)
        if self.copies_threshold is not None:
            self.join_story(document, article.text)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self._segment is None:
            self._segment = db.execute("INSERT INTO segments (chunks) VALUES (0) RETURNING id").fetchone()[0]
        ids = [row[0] for row in db.execute("SELECT nextval('chunks_id_seq') FROM generate_series(1, %s)",
                                            (len(chunks),))]
        self._written += len(ids)
        for chunk_id, chunk, vector, spans, svectors in zip(ids, chunks, vectors, sentences, sentence_vectors,
                                                            strict=True):
            words = tokens(chunk.text)
            self._chunk_rows.append(
                (chunk_id, chunk.chunk_id, document, chunk.ordinal, chunk.start, chunk.end, chunk.text, len(words),
                 _vector_literal(vector), np.asarray(spans, dtype=np.int32).reshape(-1, 2).tobytes(),
                 np.ascontiguousarray(svectors, dtype=np.float16).tobytes(), self._segment))
            counts = _terms_of(words)
            for term, n in counts.items():
                self._postings.setdefault(term, []).append((chunk_id, n, len(words)))
            self._terms.update(counts.keys())
            self._stems.update(set(content_stems(chunk.text)))
            self._tokens += len(words)
        self._documents += 1
        self._chunks += len(chunks)

    def join_story(self, document: int, text: str) -> int | None:
        """Put a new document into the story of its most similar indexed document, or a story of its own."""
        signature = stories.signature(text)
        if signature is None:
            return None
        bands = signature.bands()
        db = self._db
        found = db.execute(
            "SELECT DISTINCT s.document, s.story, s.signature, s.shingles FROM unnest(%s::int[], %s::bigint[])"
            " AS w(band, hash) JOIN story_bands b ON b.band = w.band AND b.hash = w.hash"
            " JOIN stories s ON s.document = b.document",
            ([band for band, _ in bands], [_signed(value) for _, value in bands])).fetchall()
        candidates = {doc: stories.Signature.from_bytes(bytes(blob), n) for doc, _, blob, n in found}
        best = stories.best_match(signature, candidates, self.copies_threshold or 1.0)
        if best is not None:
            story = next(story for doc, story, _, _ in found if doc == best)
            self._copies += 1
        else:
            story = int(db.execute("SELECT coalesce((SELECT value::bigint FROM citebot_meta WHERE key = 'next_story'),"
                                   " 1)").fetchone()[0])
            self.set_meta("next_story", str(story + 1))
        db.execute("INSERT INTO stories (document, story, signature, shingles) VALUES (%s, %s, %s, %s)",
                   (document, story, signature.to_bytes(), signature.size))
        with db.cursor() as cursor:
            cursor.executemany("INSERT INTO story_bands (band, hash, document) VALUES (%s, %s, %s)"
                               " ON CONFLICT DO NOTHING", [(band, _signed(value), document) for band, value in bands])
        return story

    def _leave_story(self, document: int) -> None:
        row = self._db.execute("SELECT story FROM stories WHERE document = %s", (document,)).fetchone()
        if row is None:
            return
        self._db.execute("DELETE FROM stories WHERE document = %s", (document,))  # bands cascade with the document
        if self._db.execute("SELECT 1 FROM stories WHERE story = %s LIMIT 1", (row[0],)).fetchone():
            self._copies -= 1

    def _count_outlet(self, name: str | None, delta: int) -> None:
        if not name:
            return
        self._db.execute("INSERT INTO outlets (name, documents) VALUES (%s, %s) ON CONFLICT (name) DO UPDATE"
                         " SET documents = outlets.documents + excluded.documents", (name, delta))
        if delta < 0:
            self._db.execute("DELETE FROM outlets WHERE name = %s AND documents <= 0", (name,))

    def clear(self) -> None:
        self._chunk_rows, self._postings, self._segment, self._gone, self._written = [], {}, None, set(), 0
        db = self._db
        db.execute("TRUNCATE documents, chunks, postings, segments, dead, terms, stems, stories, story_bands, outlets")
        db.execute("DELETE FROM citebot_meta WHERE key IN ('documents', 'chunks', 'copies', 'tokens')")
        self._stems.clear()
        self._terms.clear()
        self._documents = self._chunks = self._copies = self._tokens = 0

    def finish(self) -> None:
        """Before COMMIT: the chunks and postings, word and term counts, counters, the generation."""
        self._flush()
        self._write_postings()
        db = self._db
        with db.cursor() as cursor:
            for table, column, counts in (("stems", "stem", self._stems), ("terms", "term", self._terms)):
                up = [(name, n) for name, n in counts.items() if n > 0]
                down = [(-n, name) for name, n in counts.items() if n < 0]
                if up:
                    cursor.executemany(f"INSERT INTO {table} ({column}, df) VALUES (%s, %s) ON CONFLICT ({column})"
                                       f" DO UPDATE SET df = {table}.df + excluded.df", up)
                if down:
                    cursor.executemany(f"UPDATE {table} SET df = df - %s WHERE {column} = %s", down)
                    cursor.executemany(f"DELETE FROM {table} WHERE {column} = %s AND df <= 0",
                                       [(name,) for _, name in down])
        for key, delta in (("documents", self._documents), ("chunks", self._chunks), ("copies", self._copies),
                           ("tokens", self._tokens)):
            db.execute("INSERT INTO citebot_meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE"
                       " SET value = (citebot_meta.value::bigint + %s)::text", (key, str(max(delta, 0)), delta))
        self.set_meta("generation", str(self.generation))


def _terms_of(tokens_: list[str]) -> Counter[str]:
    """The terms a chunk has postings for, with their counts: words of two characters or more, no stop words."""
    return Counter(w for w in tokens_ if len(w) > 1 and w not in STOPWORDS)


def _vector_literal(vector) -> str:
    return "[" + ",".join(map(repr, np.asarray(vector, dtype=np.float32).tolist())) + "]"


def _signed(value: int) -> int:
    """A uint64 band hash as PostgreSQL's signed bigint (the same 64 bits)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _gone(db) -> bool:
    """Whether an idle connection was closed by the server meanwhile (a restart, an idle timeout): its socket is
    readable with nothing asked. Then it is closed here, so the caller connects afresh instead of failing once.
    One select() with no wait; a connection inside a transaction is never swapped."""
    if db.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        return False
    try:
        readable = select.select([db.fileno()], [], [], 0)[0]
    except (OSError, ValueError, psycopg.Error):
        readable = True
    if not readable:
        return False
    try:
        db.execute("SELECT 1")  # a notice or a notification also makes it readable: then it is alive
        return False
    except (psycopg.OperationalError, psycopg.InterfaceError):
        try:
            db.close()
        except psycopg.Error:
            pass
        return True


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


@contextmanager
def _nothing():
    yield
