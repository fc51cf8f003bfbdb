"""Fusion of ranked lists: the dense (vector) and lexical (BM25) runs of a question, each a list of chunk ids with
scores, merged by reciprocal rank fusion. The searches themselves are the engines' (retrieval/backends/)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Ranked:
    """A chunk id with the scores each retriever gave it (None where it did not find it)."""

    id: int
    score: float
    dense: float | None = None
    lexical: float | None = None


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
