"""BM25 on PostgreSQL: each term's postings packed into a few rows, summed with numpy in the reader.

A table row per posting (term, chunk, tf) was measured at 1M chunks: a question's common words reach
about 330,000 postings, and PostgreSQL's grouping of them by chunk cost 140 of the query's 210 ms
warm (and 400 ms cold). So the postings are kept as the embedded engine keeps them: per term and
*segment* (the chunks one commit wrote), one row of three packed arrays (chunk ids, term
frequencies, chunk lengths), read by the question's terms and summed here, as
retrieval/backends/embedded/postings.py does, with the same k1, b and IDF floor (SQLite FTS5's
`bm25()`).

Removing a chunk does not rewrite its rows: its id goes into `dead` (with its segment and the
commit's generation) and is masked at search time; `PostgresIndex.maintain()` merges segments as the
embedded engine merges its files (`plan_merge`), dropping the dead ids from the rows it rewrites.
Arrays are big-endian, as PostgreSQL's own `int8send` writes them, so SQL can read and write them too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from retrieval.backends.embedded.postings import IDF_FLOOR, contributions, members, ranked

ID, TF, LENGTH = np.dtype(">i8"), np.dtype(">u2"), np.dtype(">i4")
# A term with at most this many postings gives a lower bound of the k-th best score (its own k-th best
# contribution), so that only chunks above it are gathered; a longer one would cost more than it saves.
FLOOR_POSTINGS = 20_000

__all__ = ["IDF_FLOOR", "members", "pack", "score", "unpack"]


def pack(ids: np.ndarray, tfs: np.ndarray, lengths: np.ndarray) -> tuple[bytes, bytes, bytes]:
    """One row's arrays, sorted by chunk id."""
    order = np.argsort(ids, kind="stable")
    return (np.asarray(ids, dtype=np.int64)[order].astype(ID).tobytes(),
            np.minimum(np.asarray(tfs)[order], 65535).astype(TF).tobytes(),
            np.asarray(lengths, dtype=np.int64)[order].astype(LENGTH).tobytes())


def unpack(ids: bytes, tfs: bytes, lengths: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(chunk ids int64, term frequencies, chunk lengths) of one row; raises ValueError on a torn row."""
    a, f, n = (np.frombuffer(ids, dtype=ID), np.frombuffer(tfs, dtype=TF), np.frombuffer(lengths, dtype=LENGTH))
    if not len(a) == len(f) == len(n):
        raise ValueError(f"a postings row holds {len(a)} ids, {len(f)} frequencies and {len(n)} lengths")
    return a.astype(np.int64), f.astype(np.float64), n.astype(np.float64)


def score(parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, float]], average: float, k: int, *,
          dead: np.ndarray, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
    """The k best (chunk id, BM25) from (ids, tfs, lengths, idf) rows, best first, ties to the older chunk.

    `dead` (sorted) are removed chunks still in the rows; `allowed` (sorted), if given, the ids that may be
    returned. A chunk lives in one segment, so its postings for one term are in one row."""
    if k <= 0:
        return []
    id_parts, shares = [], []
    floor = 0.0  # no chunk below it can be in the top k (below)
    for ids, tf, length, idf in parts:
        keep = None if not len(dead) else ~members(ids, dead)
        if allowed is not None:
            keep = members(ids, allowed) if keep is None else keep & members(ids, allowed)
        if keep is not None:
            ids, tf, length = ids[keep], tf[keep], length[keep]
        if not len(ids):
            continue
        contribution = contributions(tf, length, average, idf)
        id_parts.append(ids)
        shares.append(contribution)
        if k <= len(ids) <= FLOOR_POSTINGS:  # k chunks score at least this from this term alone
            floor = max(floor, float(np.partition(contribution, len(ids) - k)[len(ids) - k]))
    if not id_parts:
        return []
    ids = np.concatenate(id_parts)
    contribution = np.concatenate(shares)
    if len(id_parts) == 1:
        found, scores = ids, contribution
    else:
        low = int(ids.min())
        span = int(ids.max()) - low + 1
        if span <= 16 * len(ids):  # dense: one pass over the id range beats a sort
            summed = np.bincount(ids - low, weights=contribution, minlength=span)
            found = np.flatnonzero(summed >= floor if floor > 0 else summed)  # every contribution is > 0
            scores = summed[found]
            found = found + low
        else:
            found, inverse = np.unique(ids, return_inverse=True)
            scores = np.bincount(inverse, weights=contribution)
    return ranked(found, scores, k)
