"""The segments: append-only FAISS vector files and their BM25 twins, searched together, with tombstones.

Each commit that adds chunks writes one new segment file holding only that commit's vectors, so
the cost of a commit follows its size, not the corpus's. A removed chunk's vector stays in its file
and is masked at search time (a tombstone in the store) until a merge rewrites the segment.
Segments of about the same size are merged a few at a time (`plan_merge`), so a corpus of N vectors
lives in O(log N) files and each vector is rewritten O(log N) times. A merged segment of at least
`ann_min` vectors is built with an approximate index (IVF by default, any FAISS factory string by
setting); smaller ones are exact (Flat). FAISS holds vectors and ids only; the store holds the rest.
Each vector file `seg-….faiss` has a twin `seg-….lex` with the same chunks' word postings
(retrieval/backends/embedded/postings.py), written, loaded, tombstoned and merged with it.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrieval.backends.embedded import postings as lexical

log = logging.getLogger(__name__)

# Segments whose live sizes are within one power of this share a tier; this many in a tier merge.
MERGE_FACTOR = 8
# A segment whose share of dead vectors passes this is rewritten without them.
MAX_DEAD_SHARE = 0.3


def auto_factory(vectors: int, ann_min: int) -> str:
    """Flat below `ann_min` vectors; beyond, IVF with about 4·√n lists (a power of two)."""
    if vectors < ann_min:
        return "Flat"
    lists = 2 ** round(math.log2(4 * math.sqrt(vectors)))
    return f"IVF{max(lists, 64)},Flat"


@contextmanager
def _threads(n: int):
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def single_threaded_search() -> None:
    """One OpenMP thread for FAISS in this process: a question searches one vector at a time.

    With FAISS's default threads, searching a 20-vector segment took 9.4 ms instead of 0.06 ms
    on the 2-core machine (thread start-up per call), and a reader searches every segment.
    Building a merged segment takes every core again (`build_index`).
    """
    import faiss

    faiss.omp_set_num_threads(1)


def build_index(ids: np.ndarray, vectors: np.ndarray, factory: str, *, seed: int = 1):
    """A FAISS inner-product index over `vectors` with external int64 `ids`, built on every core."""
    with _threads(os.cpu_count() or 1):
        return _build(ids, vectors, factory, seed)


def _build(ids: np.ndarray, vectors: np.ndarray, factory: str, seed: int):
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    dim = vectors.shape[1]
    if factory == "Flat":
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    else:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        if not index.is_trained:
            # About 50 training points per list is plenty for k-means and keeps a merge bounded.
            lists = getattr(faiss.extract_index_ivf(index), "nlist", 256) if "IVF" in factory else 256
            sample = min(len(vectors), 50 * lists)
            rng = np.random.default_rng(seed)
            chosen = vectors if sample == len(vectors) else vectors[rng.choice(len(vectors), sample, replace=False)]
            index.train(chosen)
        if "IVF" not in factory:  # HNSW, PQ and friends keep no ids of their own
            index = faiss.IndexIDMap2(index)
    if len(ids):
        index.add_with_ids(vectors, ids)
    return index


def save_index(index, path: Path) -> None:
    """Write atomically (temporary file, fsync, rename): a reader sees the whole file or none."""
    import faiss

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        faiss.write_index(index, tmp)
        os.chmod(tmp, 0o644)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_index(path: Path):
    import faiss

    return faiss.read_index(str(path))


def segment_name(generation: int) -> str:
    """Unique even across a crashed writer's leftovers: `seg-<generation>-<random>.faiss`."""
    return f"seg-{generation:08d}-{secrets.token_hex(4)}.faiss"


@dataclass(frozen=True)
class SegmentInfo:
    id: int
    vectors: int  # in the file
    dead: int


def plan_merge(segments: list[SegmentInfo]) -> list[int]:
    """The ids of the segments to merge next, or [] when the layout is fine.

    Lowest tier first: `MERGE_FACTOR` segments of about the same live size become one; a segment
    with too many dead vectors is rewritten on its own.
    """
    for s in segments:
        if s.vectors >= 64 and s.dead > MAX_DEAD_SHARE * s.vectors:
            return [s.id]
    tiers: dict[int, list[SegmentInfo]] = {}
    for s in segments:
        live = max(s.vectors - s.dead, 1)
        tiers.setdefault(int(math.log(live, MERGE_FACTOR) + 1e-9), []).append(s)
    for tier in sorted(tiers):
        if len(tiers[tier]) >= MERGE_FACTOR:
            return [s.id for s in tiers[tier]]
    # Segments left empty by deletions are dropped without waiting for company.
    return [s.id for s in segments if s.vectors == s.dead][:MERGE_FACTOR]


class Segment:
    """One loaded segment (its vectors and its postings) and the ids in it that are dead."""

    def __init__(self, id: int, file: str, index, words: lexical.LexicalSegment | None = None):
        self.id = id
        self.file = file
        self.index = index
        self.words = words or lexical.LexicalSegment(lexical.build([], []))
        self.dead: set[int] = set()
        self._selector = None

    def kill(self, ids) -> None:
        ids = [int(i) for i in ids]
        self.dead.update(ids)
        self.words.kill(ids)
        self._selector = None

    def _params(self, nprobe: int, among=None):
        """FAISS search parameters: the IVF lists to visit, and a selector that skips dead vectors
        (and, with `among`, an `IDSelectorBatch` of the allowed ids, every vector not in it)."""
        import faiss

        ivf = "IVF" in type(self.index).__name__ or hasattr(self.index, "nprobe")
        if not self.dead and not ivf and among is None:
            return None
        if self.dead and self._selector is None:
            batch = faiss.IDSelectorBatch(np.fromiter(self.dead, dtype=np.int64, count=len(self.dead)))
            self._selector = (batch, faiss.IDSelectorNot(batch))  # keep `batch` alive beside its wrapper
        selector = self._selector[1] if self.dead else None
        if among is not None:  # the caller keeps `among` alive, and self._selector the tombstones' one
            selector = among if selector is None else faiss.IDSelectorAnd(among, selector)
        params = faiss.SearchParametersIVF(nprobe=nprobe) if ivf else faiss.SearchParameters()
        if selector is not None:
            params.sel = selector
            params.citebot_sel = selector  # params.sel holds no Python reference: keep the wrapper alive
        return params

    def search(self, queries: np.ndarray, k: int, nprobe: int, among=None) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest live vectors; with `among` (a faiss.IDSelector), only those it lets through."""
        if self.index.ntotal == 0:
            n = len(queries)
            return np.zeros((n, 0), dtype=np.float32), np.zeros((n, 0), dtype=np.int64)
        params = self._params(nprobe, among)
        k = min(k, self.index.ntotal)  # places beyond the live vectors come back as id -1
        if params is None:
            return self.index.search(queries, k)
        return self.index.search(queries, k, params=params)


class SegmentSet:
    """What a reader searches: the segments of one generation, loaded incrementally.

    `sync` takes the store's segment rows and the tombstones made since the last sync; only new
    segment files are read, so a reader follows an ingest at the cost of what the ingest added.
    """

    def __init__(self, folder: Path, dim: int, *, nprobe: int = 32):
        self.folder = folder
        self.dim = dim
        self.nprobe = nprobe
        self.segments: dict[int, Segment] = {}
        self.generation = -1
        self._lock = threading.Lock()
        single_threaded_search()

    def __len__(self) -> int:
        return sum(s.index.ntotal - len(s.dead) for s in self.segments.values())

    def sync(self, store, generation: int) -> None:
        """Bring the loaded segments to the store's `generation` (call inside a store snapshot)."""
        if generation == self.generation:
            return
        with self._lock:
            if generation == self.generation:
                return
            rows = {row.id: row for row in store.segments()}
            segments = {i: s for i, s in self.segments.items() if i in rows}
            fresh = []
            for row in rows.values():
                if row.id not in segments:
                    segments[row.id] = Segment(row.id, row.file, self._open(store, row), self._words(store, row))
                    fresh.append(row.id)
            for segment_id in fresh:
                segments[segment_id].kill(i for _, i in store.tombstones(segment=segment_id))
            if self.generation >= 0:
                for segment_id, chunk_id in store.tombstones(after_generation=self.generation):
                    if segment_id in segments and segment_id not in fresh:
                        segments[segment_id].kill([chunk_id])
            self.segments = segments
            self.generation = generation

    def _open(self, store, row):
        path = self.folder / row.file
        try:
            index = load_index(path)
            if index.d == self.dim and index.ntotal == row.vectors:
                return index
        except Exception:  # noqa: BLE001 - a missing or torn file is rebuilt below
            pass
        # The store is the truth: a missing or damaged segment file is rebuilt in memory from it.
        log.warning("segment file %s missing or unreadable; rebuilt from the store", path)
        ids, vectors = store.segment_vectors(row.id, self.dim)
        return build_index(ids, vectors, "Flat")

    def _words(self, store, row) -> lexical.LexicalSegment:
        return lexical.LexicalSegment(load_postings(self.folder, store, row))

    def search(self, vector: np.ndarray, k: int, among: np.ndarray | None = None) -> list[tuple[int, float]]:
        """The k best live (chunk id, inner product) over every segment, best first.

        `among`, if given, is an int64 array of the chunk ids that may be returned: FAISS skips
        every other vector as it searches, so a rare outlet needs no deeper search.
        """
        import faiss

        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
        selector = None if among is None else faiss.IDSelectorBatch(among)
        found: list[tuple[float, int]] = []
        for segment in list(self.segments.values()):
            scores, ids = segment.search(query, k, self.nprobe, selector)
            found += [(float(s), int(i)) for s, i in zip(scores[0], ids[0]) if i >= 0]
        found.sort(key=lambda pair: -pair[0])
        return [(i, s) for s, i in found[:k]]

    def lexical_search(self, terms: list[str], k: int, among: np.ndarray | None = None) -> list[tuple[int, float]]:
        """The k best live (chunk id, BM25) over every segment's postings, best first.

        `among`, if given, is a sorted int64 array of the chunk ids that may be returned.
        """
        return lexical.search([s.words for s in list(self.segments.values())], terms, k, among)


def load_postings(folder: Path, store, row) -> lexical.Postings:
    """A segment's postings from its file; rebuilt from the store's chunk texts if the file is lost or torn."""
    path = folder / lexical.lexical_name(row.file)
    try:
        return lexical.load(path)
    except (OSError, ValueError, KeyError) as error:
        log.warning("postings file %s missing or unreadable (%s); rebuilt from the store", path, error)
    ids, texts = store.segment_texts(row.id)
    return lexical.build(ids, texts)
