"""The words: BM25 over per-segment postings arrays, scored with numpy.

Every vector segment (`seg-….faiss`) has a lexical twin (`seg-….lex`) holding the same chunks'
postings: for each term of the segment, the chunks that hold it and how often. A question reads
the postings of its own few terms and nothing else, so its cost follows how many chunks hold
those terms, not how many chunks there are; the file is memory-mapped, so a reader holds only
the pages its questions touched. The twin is written, merged, tombstoned and retired together
with its vector segment (retrieval/backends/embedded/segments.py, retrieval/writer.py).

The scores are SQLite FTS5's `bm25()` (k1 = 1.2, b = 0.75, the same IDF with its 1e-6 floor),
over the tokens of FTS5's `unicode61 remove_diacritics 2` tokenizer: runs of letters and
digits, lower-cased, without diacritics. Document lengths count every token; only terms of two
characters or more that are not stop words get postings, since no question searches the others.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from retrieval.text import STOPWORDS, tokens

K1 = 1.2
B = 0.75
IDF_FLOOR = 1e-6

_MAGIC = b"CBLEX001"
_ARRAYS = (("ids", np.int64), ("lengths", np.int32), ("terms", np.uint64), ("starts", np.int64),
           ("docs", np.int32), ("tfs", np.uint16))


@lru_cache(maxsize=1 << 18)
def term_hash(term: str) -> int:
    """A stable 64-bit key for a term (collisions are about 1 in 10^12 for a million-term vocabulary)."""
    return int.from_bytes(hashlib.blake2b(term.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


@dataclass
class Postings:
    """One segment's postings, sorted by chunk id; `docs` are positions into `ids`."""

    ids: np.ndarray      # int64 chunk ids, ascending
    lengths: np.ndarray  # int32 tokens per chunk
    terms: np.ndarray    # uint64 term hashes, ascending
    starts: np.ndarray   # int64, len(terms) + 1: term t's postings are docs[starts[t]:starts[t + 1]]
    docs: np.ndarray     # int32
    tfs: np.ndarray      # uint16

    def __len__(self) -> int:
        return len(self.ids)


def build(ids: Sequence[int], texts: Sequence[str]) -> Postings:
    """The postings of chunks `ids` with their `texts`."""
    ids = np.asarray(ids, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    lengths = np.zeros(len(ids), dtype=np.int32)
    keys: list[int] = []
    docs: list[int] = []
    tfs: list[int] = []
    for position, original in enumerate(order):
        words = tokens(texts[original])
        lengths[position] = len(words)
        counts = Counter(w for w in words if len(w) > 1 and w not in STOPWORDS)
        keys += [term_hash(w) for w in counts]
        tfs += [min(n, 65535) for n in counts.values()]
        docs += [position] * len(counts)
    return _from_triples(ids[order], lengths, np.array(keys, dtype=np.uint64), np.array(docs, dtype=np.int32),
                         np.array(tfs, dtype=np.uint16))


def _from_triples(ids, lengths, keys, docs, tfs) -> Postings:
    order = np.lexsort((docs, keys))
    keys, docs, tfs = keys[order], docs[order], tfs[order]
    terms, first = np.unique(keys, return_index=True)
    starts = np.append(first, len(keys)).astype(np.int64)
    return Postings(ids, lengths, terms.astype(np.uint64), starts, docs.astype(np.int32), tfs.astype(np.uint16))


def merge(parts: Iterable[tuple[Postings, np.ndarray]]) -> Postings:
    """One segment's postings from several, each with the chunk ids of it that are dead (dropped)."""
    ids, lengths, keys, docs, tfs = [], [], [], [], []
    offset = 0
    for postings, dead in parts:
        live = ~np.isin(postings.ids, dead) if len(dead) else np.ones(len(postings.ids), dtype=bool)
        renumber = np.cumsum(live) - 1 + offset  # old position -> position in the concatenation
        counts = np.diff(postings.starts)
        keep = live[postings.docs]
        ids.append(postings.ids[live])
        lengths.append(postings.lengths[live])
        keys.append(np.repeat(postings.terms, counts)[keep])
        docs.append(renumber[postings.docs[keep]].astype(np.int32))
        tfs.append(np.asarray(postings.tfs)[keep])
        offset += int(live.sum())
    if not ids:
        return build([], [])
    all_ids = np.concatenate(ids)
    order = np.argsort(all_ids, kind="stable")
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    return _from_triples(all_ids[order], np.concatenate(lengths)[order], np.concatenate(keys),
                         position[np.concatenate(docs)].astype(np.int32), np.concatenate(tfs))


# -- files ----------------------------------------------------------------------------------------
def lexical_name(segment_file: str) -> str:
    """`seg-….faiss` -> `seg-….lex`: the twin of a vector segment file."""
    return segment_file.rsplit(".", 1)[0] + ".lex"


def save(postings: Postings, path: Path) -> None:
    """Write atomically (temporary file, fsync, rename): a reader sees the whole file or none."""
    header, blobs, at = {}, [], 0
    for name, dtype in _ARRAYS:
        array = np.ascontiguousarray(getattr(postings, name), dtype=dtype)
        header[name] = [at, len(array)]
        blobs.append(array)
        at += -(-array.nbytes // 8) * 8
    head = json.dumps(header).encode()
    head += b" " * (-(len(_MAGIC) + 8 + len(head)) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(_MAGIC + len(head).to_bytes(8, "little") + head)
            for array in blobs:
                out.write(array.tobytes())
                out.write(b"\0" * (-array.nbytes % 8))
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load(path: Path) -> Postings:
    """Memory-map a postings file; ValueError if it is not one, or torn."""
    raw = np.memmap(path, dtype=np.uint8, mode="r") if path.stat().st_size else np.zeros(0, np.uint8)
    if len(raw) < 16 or bytes(raw[:8]) != _MAGIC:
        raise ValueError(f"{path.name} is not a postings file")
    size = int.from_bytes(bytes(raw[8:16]), "little")
    header = json.loads(bytes(raw[16 : 16 + size]))
    base = 16 + size
    arrays = {}
    for name, dtype in _ARRAYS:
        at, count = header[name]
        end = base + at + count * np.dtype(dtype).itemsize
        if end > len(raw):
            raise ValueError(f"{path.name} is torn")
        arrays[name] = raw[base + at : end].view(dtype)
    return Postings(**arrays)


# -- searching ------------------------------------------------------------------------------------
class LexicalSegment:
    """One segment's postings as a reader searches them, with its dead chunks masked."""

    def __init__(self, postings: Postings):
        self.postings = postings
        self._dead: np.ndarray | None = None  # bool per position
        self.live = len(postings)
        self.live_tokens = int(postings.lengths.sum(dtype=np.int64))

    def kill(self, chunk_ids: Iterable[int]) -> None:
        ids = self.postings.ids
        wanted = np.fromiter(chunk_ids, dtype=np.int64)
        if not len(wanted) or not len(ids):
            return
        at = np.minimum(np.searchsorted(ids, wanted), len(ids) - 1)
        at = at[ids[at] == wanted]
        if self._dead is None:
            self._dead = np.zeros(len(ids), dtype=bool)
        at = at[~self._dead[at]]
        self._dead[at] = True
        self.live -= len(at)
        self.live_tokens -= int(self.postings.lengths[at].sum(dtype=np.int64))

    def find(self, key: int) -> tuple[np.ndarray, np.ndarray]:
        """(positions, term frequencies) of the live chunks holding the term with hash `key`."""
        p = self.postings
        t = int(np.searchsorted(p.terms, np.uint64(key)))
        if t >= len(p.terms) or int(p.terms[t]) != key:
            return _EMPTY
        docs, tfs = p.docs[p.starts[t] : p.starts[t + 1]], p.tfs[p.starts[t] : p.starts[t + 1]]
        if self._dead is not None:
            keep = ~self._dead[docs]
            docs, tfs = docs[keep], tfs[keep]
        return docs, tfs


_EMPTY = (np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.uint16))


def search(segments: Sequence[LexicalSegment], terms: Sequence[str], k: int,
           allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
    """The k best (chunk id, BM25) over the segments for the question's terms, best first.

    `allowed`, if given, is a sorted int64 array of the chunk ids that may be returned.
    """
    total = sum(s.live for s in segments)
    if not terms or total == 0 or k <= 0:
        return []
    average = sum(s.live_tokens for s in segments) / total
    found = [[s.find(term_hash(t)) for s in segments] for t in terms]
    weights = []
    for per_segment in found:
        n = sum(len(docs) for docs, _ in per_segment)
        weights.append(max(math.log((total - n + 0.5) / (n + 0.5)), IDF_FLOOR))
    best_scores, best_ids = [], []
    for s, segment in enumerate(segments):
        parts = [(found[t][s], weights[t]) for t in range(len(terms)) if len(found[t][s][0])]
        if not parts:
            continue
        docs = np.concatenate([d for (d, _), _ in parts])
        tf = np.concatenate([f for (_, f), _ in parts]).astype(np.float64)
        idf = np.concatenate([np.full(len(d), w) for (d, _), w in parts])
        contribution = contributions(tf, segment.postings.lengths[docs], average, idf)
        if len(parts) == 1:
            positions, scores = docs, contribution
        elif 8 * len(docs) > len(segment.postings):  # dense: one pass over the segment beats a sort
            summed = np.bincount(docs, weights=contribution, minlength=len(segment.postings))
            positions = np.flatnonzero(summed)  # every contribution is > 0
            scores = summed[positions]
        else:
            positions, inverse = np.unique(docs, return_inverse=True)
            scores = np.bincount(inverse, weights=contribution)
        ids = segment.postings.ids[positions]
        if allowed is not None:
            keep = members(ids, allowed)
            ids, scores = ids[keep], scores[keep]
        ids, scores = top_k(ids, scores, k)
        best_ids.append(ids)
        best_scores.append(scores)
    if not best_ids:
        return []
    return ranked(np.concatenate(best_ids), np.concatenate(best_scores), k)


def contributions(tf: np.ndarray, length: np.ndarray, average: float, idf) -> np.ndarray:
    """Each posting's part of its chunk's BM25 score: FTS5's formula, for both engines."""
    return idf * (tf * (K1 + 1)) / (tf + K1 * (1 - B + B * length / average))


def top_k(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best (ids, scores), unordered, with every id tied with the k-th kept (ties go to the older chunk)."""
    if len(ids) <= k:
        return ids, scores
    top = scores >= -np.partition(-scores, k - 1)[k - 1]
    return ids[top], scores[top]


def ranked(ids: np.ndarray, scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The k best (id, score), best first; ties: the older (smaller) id first."""
    ids, scores = top_k(ids, scores, k)
    order = np.lexsort((ids, -scores))[:k]
    return [(int(ids[i]), float(scores[i])) for i in order]


def members(ids: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """A bool per id: whether it is in `sorted_set` (a sorted int64 array)."""
    if not len(sorted_set):
        return np.zeros(len(ids), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_set, ids), len(sorted_set) - 1)
    return sorted_set[at] == ids
