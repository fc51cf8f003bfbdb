"""Question -> ranked chunk ids: dense (FAISS segments), lexical (SQLite FTS5 BM25) and their fusion."""

from __future__ import annotations

import re
from dataclasses import dataclass

# bm25s's English stop words, which the lexical side has always left out of a question.
STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these "
    "they this to was will with".split()
)
_TOKEN = re.compile(r"(?u)\b\w\w+\b")


@dataclass(frozen=True)
class Ranked:
    """A chunk id with the scores each retriever gave it (None where it did not find it)."""

    id: int
    score: float
    dense: float | None = None
    lexical: float | None = None


def fts_query(question: str) -> str:
    """An FTS5 query matching any of the question's words (two letters or more, no stop words)."""
    words = dict.fromkeys(
        w for w in _TOKEN.findall(question.lower()) if w not in STOPWORDS and "_" not in w
    )
    # Each word quoted: FTS5 then reads it as a plain term, never as an operator (AND, NEAR, column:).
    return " OR ".join(f'"{w}"' for w in words)


def dense_run(found: list[tuple[int, float]]) -> list[Ranked]:
    return [Ranked(i, s, dense=s) for i, s in found]


def lexical_run(found: list[tuple[int, float]]) -> list[Ranked]:
    return [Ranked(i, s, lexical=s) for i, s in found if s > 0]


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
