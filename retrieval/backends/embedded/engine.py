"""The embedded engine behind `IndexStore` (retrieval/backends/base.py): one folder on one disk.

- `citebot.sqlite` (store.py) is the source of truth: documents, chunks, their vectors, words, stories.
- `seg-….faiss` and their twins `seg-….lex` (segments.py, postings.py) hold each commit's vectors and
  word postings; a reader loads only the segments it has not seen, and merges keep them few.
- `write.lock` lets one process write at a time; others wait up to index.lock_wait_seconds.

A commit writes its new segment files before the SQLite transaction that names them commits; if the
writer dies in between, no commit names them and the next writer's sweep deletes them.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import math
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from retrieval.backends.base import Hits, SourceRow, StoredChunk
from retrieval.backends.embedded import postings as lexical
from retrieval.backends.embedded.segments import (
    SegmentInfo, SegmentSet, auto_factory, build_index, load_postings, plan_merge, save_index, segment_name,
)
from retrieval.backends.embedded.store import Store
from retrieval.backends.embedded.transaction import Transaction
from retrieval.errors import IndexBusyError
from retrieval.models import Article
from retrieval.settings import IndexSettings
from retrieval.text import question_terms

log = logging.getLogger(__name__)

STORE_FILE = "citebot.sqlite"
LOCK_FILE = "write.lock"
# A retired segment file is deleted once it has been unused this long: readers that loaded the
# generation naming it have long moved on (and a reader that finds it gone rebuilds it from the store).
RETIRE_AFTER_S = 600.0
# A filter letting through less than 1/MAX_FILTER_DEPTH of the chunks is given to FAISS as an ID
# selector; a wider one searches deeper by the inverse share and drops the rest afterwards.
MAX_FILTER_DEPTH = 8


def has_index(folder: Path) -> bool:
    """Whether `folder` holds an embedded index (a collection's folder may hold only its feeds)."""
    return (folder / STORE_FILE).is_file()


class EmbeddedIndex:
    """SQLite + FAISS segment files + BM25 postings files in `folder`, for one embedding model."""

    def __init__(self, folder: Path, settings: IndexSettings, *, model: str, store_file: str = STORE_FILE):
        self.folder = Path(folder)
        self.settings = settings
        self.model = model
        self.sqlite = Store(self.folder / store_file)
        self._segments: SegmentSet | None = None
        self._load_lock = threading.Lock()
        self._among = threading.local()  # the last filter's sorted ids: dense and lexical search share them

    @property
    def location(self) -> str:
        return str(self.folder)

    def close(self) -> None:
        self.sqlite.close()

    # -- the write side -------------------------------------------------------------------------
    @contextmanager
    def lock(self, *, alone: bool = True) -> Iterator[None]:
        """One writer at a time: the folder's write.lock (`alone` is always so here)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / LOCK_FILE, "w") as handle:
            take_lock(handle, self.folder, self.settings.lock_wait_seconds)
            self._sweep()
            yield

    @contextmanager
    def write(self, *, copies_threshold: float | None = None) -> Iterator[Transaction]:
        with self.sqlite.write(copies_threshold=copies_threshold) as batch:
            yield batch
            if batch.added:  # both files before the commit that names them
                write_segment(self.folder, batch)

    def maintain(self) -> int:
        """Merge segments until the layout is fine (segments.plan_merge); returns the merges made."""
        merges = 0
        while True:
            infos = [SegmentInfo(s.id, s.vectors, s.dead) for s in self.sqlite.segments()]
            chosen = plan_merge(infos)
            if not chosen:
                return merges
            self._merge(chosen)
            merges += 1

    def _merge(self, chosen: list[int]) -> None:
        store = self.sqlite
        dim = int(store.get_meta("dim"))
        parts = [store.segment_vectors(s, dim) for s in chosen]
        ids = np.concatenate([p[0] for p in parts])
        vectors = np.vstack([p[1] for p in parts]) if parts else np.zeros((0, dim), np.float32)
        factory = self._factory(len(ids))
        started = time.perf_counter()
        with store.write() as writer:
            file = segment_name(writer.generation)
            if len(ids):
                rows = {row.id: row for row in store.segments()}
                words = lexical.merge(
                    (load_postings(self.folder, store, rows[s]),
                     np.array([i for _, i in store.tombstones(segment=s)], dtype=np.int64))
                    for s in chosen
                )
                if not np.array_equal(words.ids, np.sort(ids)):  # the store is the truth: never a twin out of step
                    raise RuntimeError(f"postings of segments {chosen} hold other chunks than the store")
                # Both files before the commit that names them: if we die in between, no commit does.
                lexical.save(words, self.folder / lexical.lexical_name(file))
                save_index(build_index(ids, vectors, factory), self.folder / file)
                writer.replace_segments(chosen, file, factory, len(ids))
            else:
                writer.drop_segments(chosen)
        log.info("merged %d segments into one of %d vectors (%s) in %.1f s", len(chosen), len(ids), factory,
                 time.perf_counter() - started)

    def _factory(self, vectors: int) -> str:
        if vectors < self.settings.ann_min_chunks:
            return "Flat"
        if self.settings.factory == "auto":
            return auto_factory(vectors, self.settings.ann_min_chunks)
        return self.settings.factory

    def _sweep(self) -> None:
        """Delete what no commit names: a crashed writer's temporary and orphan files, long-retired segments."""
        for stale in self.folder.glob(".seg-*.tmp"):
            stale.unlink(missing_ok=True)
        named = {row.file for row in self.sqlite.segments()}
        retired = self.sqlite.retired()
        for pattern in ("seg-*.faiss", "seg-*.lex"):
            for path in self.folder.glob(pattern):
                vectors = path.with_suffix(".faiss").name
                if vectors not in named and vectors not in retired:
                    path.unlink(missing_ok=True)  # written by a writer killed before its commit
        old = [f for f, since in retired.items() if time.time() - since > RETIRE_AFTER_S]
        if old:
            for name in old:
                (self.folder / name).unlink(missing_ok=True)
                (self.folder / lexical.lexical_name(name)).unlink(missing_ok=True)
            with self.sqlite.write() as writer:
                writer.forget_retired(old)

    # -- the read side --------------------------------------------------------------------------
    def snapshot(self):
        return self.sqlite.snapshot()

    @property
    def generation(self) -> int:
        return self.sqlite.generation

    def refresh(self) -> None:
        self.loaded()

    def loaded(self) -> SegmentSet | None:
        """The segments of the store's newest generation, loading what is new (call inside a snapshot);
        None before the first vector."""
        generation = self.sqlite.generation
        segments = self._segments
        if segments is not None and segments.generation == generation:
            return segments
        with self._load_lock:
            self.sqlite.check_model(self.model)
            dim = self.sqlite.get_meta("dim")
            if dim is None:
                return None
            if self._segments is None or self._segments.dim != int(dim):
                self._segments = SegmentSet(self.folder, int(dim), nprobe=self.settings.nprobe)
            self._segments.sync(self.sqlite, generation)
            return self._segments

    def dense(self, vector: np.ndarray, k: int, allowed: set[int] | None = None) -> Hits | None:
        segments = self.loaded()
        if segments is None:
            return None
        if allowed is None:
            return segments.search(vector, k)
        # Filtering after retrieval would starve a rare outlet: search as deep as its share requires,
        # or, for a share under 1/MAX_FILTER_DEPTH, let FAISS skip the rest.
        total = max(self.sqlite.count_chunks(), 1)
        depth = min(total, k * math.ceil(total / max(len(allowed), 1)))
        if depth > MAX_FILTER_DEPTH * k:
            return segments.search(vector, k, self._sorted(allowed))
        return [(i, s) for i, s in segments.search(vector, depth) if i in allowed][:k]

    def lexical(self, question: str, k: int, allowed: set[int] | None = None) -> Hits | None:
        segments = self.loaded()
        if segments is None:
            return None
        among = None if allowed is None else self._sorted(allowed)
        return segments.lexical_search(question_terms(question), k, among)

    def _sorted(self, allowed: set[int]) -> np.ndarray:
        """`allowed` as a sorted int64 array, made once per filter set (a question's two searches share it)."""
        last = getattr(self._among, "last", None)
        if last is not None and last[0] is allowed:
            return last[1]
        ids = np.sort(np.fromiter(allowed, dtype=np.int64, count=len(allowed)))
        self._among.last = (allowed, ids)
        return ids

    def matching(self, outlet: str | None = None, since: dt.date | None = None,
                 until: dt.date | None = None) -> set[int]:
        return self.sqlite.chunk_ids_matching(outlet, since, until)

    def chunks(self, ids: Iterable[int]) -> dict[int, StoredChunk]:
        return self.sqlite.chunks(ids)

    def chunk_texts(self, ids: Iterable[int]) -> dict[int, str]:
        return self.sqlite.chunk_texts(ids)

    def vectors(self, ids: Iterable[int]) -> dict[int, np.ndarray]:
        return self.sqlite.vectors(ids)

    def stories_of(self, ids: Iterable[int]) -> dict[int, tuple[int, int]]:
        return self.sqlite.stories_of(ids)

    def document_frequencies(self, stems: Iterable[str]) -> dict[str, int]:
        return self.sqlite.document_frequencies(stems)

    # -- documents ------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        return self.sqlite.get_meta(key)

    def check_model(self, model: str) -> None:
        self.sqlite.check_model(model)

    def count_documents(self) -> int:
        return self.sqlite.count_documents()

    def count_chunks(self) -> int:
        return self.sqlite.count_chunks()

    def count_copies(self) -> int:
        return self.sqlite.count_copies()

    def doc_id_of(self, key: str) -> str | None:
        return self.sqlite.doc_id_of(key)

    def doc_ids_by_key(self) -> dict[str, str]:
        return self.sqlite.doc_ids_by_key()

    def find_documents(self, ref: str) -> list[str]:
        return self.sqlite.find_documents(ref)

    def documents_under(self, root: str) -> list[tuple[str, str]]:
        return self.sqlite.documents_under(root)

    def keys_older_than(self, day: dt.date, limit: int = 10_000) -> list[str]:
        return self.sqlite.keys_older_than(day, limit)

    def outlets(self) -> dict[str, int]:
        return self.sqlite.outlets()

    def document_text(self, doc_id: str) -> str | None:
        return self.sqlite.document_text(doc_id)

    def sources(self) -> list[SourceRow]:
        return self.sqlite.sources()

    def articles(self, after: int = 0, limit: int = 100) -> list[tuple[int, Article, list[int]]]:
        return self.sqlite.articles(after, limit)

    # -- health ---------------------------------------------------------------------------------
    def check(self) -> list[str]:
        from retrieval.backends.embedded.check import check

        return check(self.sqlite, self.folder)

    def destroy(self) -> None:
        self.close()
        self._segments = None
        for path in [self.sqlite.path, *self.folder.glob("seg-*"), self.folder / LOCK_FILE]:
            path.unlink(missing_ok=True)
        for suffix in ("-wal", "-shm"):
            Path(f"{self.sqlite.path}{suffix}").unlink(missing_ok=True)

    def figures(self) -> dict[str, int]:
        with self.sqlite.snapshot():
            return {"documents": self.sqlite.count_documents(), "chunks": self.sqlite.count_chunks(),
                    "segments": len(self.sqlite.segments()), "generation": self.sqlite.generation}


def take_lock(handle, folder: Path, wait_s: float = 0.0, on_wait=None) -> None:
    """Take the write lock, waiting up to `wait_s` for another writer (a cron job, the feed poller) to finish."""
    deadline = time.monotonic() + wait_s
    told = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                break
        if not told:
            told = True
            message = f"another citebot process is writing to {folder}: waiting up to {wait_s:g} s for it"
            (on_wait or log.info)(message)
        time.sleep(0.1)
    if wait_s <= 0:
        raise IndexBusyError(f"another citebot process is writing to {folder}: wait for it to finish and try again")
    raise IndexBusyError(f"another citebot process has been writing to {folder} for {wait_s:g} s: try again when "
                         "it is done, or raise index.lock_wait_seconds")


def check_not_busy(folder: Path, wait_s: float = 0.0, on_wait=None) -> None:
    """Raise IndexBusyError now if another process holds the write lock for longer than `wait_s`, before
    any model loads.

    Only a check: the lock is taken for real by each write, and released here at once.
    """
    if not (folder / LOCK_FILE).exists():  # whoever holds the lock created the file
        return
    with open(folder / LOCK_FILE, "a") as handle:
        take_lock(handle, folder, wait_s, on_wait)


def write_segment(folder: Path, batch: Transaction) -> None:
    """A commit's new segment files, vectors and postings, written before the commit that names them.

    If the writer dies in between, no commit names them, and the next writer's sweep deletes them.
    """
    ids, vectors = batch.added_vectors()
    file = batch.segment[1]
    lexical.save(lexical.build(ids, [batch.added_texts[int(i)] for i in ids]), folder / lexical.lexical_name(file))
    save_index(build_index(ids, vectors, "Flat"), folder / file)
