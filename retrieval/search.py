"""Question -> ranked chunk ids: dense (FAISS), lexical (BM25) and their reciprocal-rank fusion."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from retrieval.index import VectorIndex

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ranked:
    """A chunk id with the scores each retriever gave it (None where it did not find it)."""

    id: int
    score: float
    dense: float | None = None
    lexical: float | None = None


def dense_search(index: VectorIndex, query_vector: np.ndarray, k: int) -> list[Ranked]:
    scores, ids = index.search(query_vector.reshape(1, -1), k)
    return [Ranked(int(i), float(s), dense=float(s)) for s, i in zip(scores[0], ids[0]) if i >= 0]


class Bm25:
    """BM25 over chunk texts (bm25s), rebuilt from the store whenever the index generation changes."""

    def __init__(self, ids: list[int], texts: list[str]):
        import bm25s

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets DEBUG on import
        self._ids = np.array(ids, dtype=np.int64)
        self._retriever = None
        if ids:
            self._retriever = bm25s.BM25()
            self._retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)

    def search(self, query: str, k: int) -> list[Ranked]:
        import bm25s

        if self._retriever is None:
            return []
        tokens = bm25s.tokenize([query], stopwords="en", show_progress=False)
        if not tokens.vocab:
            return []
        k = min(k, len(self._ids))
        docs, scores = self._retriever.retrieve(tokens, k=k, show_progress=False)
        return [
            Ranked(int(self._ids[d]), float(s), lexical=float(s)) for d, s in zip(docs[0], scores[0]) if s > 0
        ]


def fuse(runs: list[list[Ranked]], *, rrf_k: int = 60) -> list[Ranked]:
    """Reciprocal rank fusion: each run adds 1 / (rrf_k + rank); scores of each kind are kept."""
    fused: dict[int, dict] = {}
    for run in runs:
        for rank, hit in enumerate(run, start=1):
            entry = fused.setdefault(hit.id, {"score": 0.0, "dense": None, "lexical": None})
            entry["score"] += 1.0 / (rrf_k + rank)
            if hit.dense is not None:
                entry["dense"] = hit.dense
            if hit.lexical is not None:
                entry["lexical"] = hit.lexical
    ranked = [Ranked(i, e["score"], e["dense"], e["lexical"]) for i, e in fused.items()]
    ranked.sort(key=lambda r: r.score, reverse=True)
    return ranked
