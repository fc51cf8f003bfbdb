"""Scored hits -> an Answer: the answering sentence, numbered passages, grouped sources. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

from retrieval.models import Answer, Hit, Passage, Source, Span

NOT_FOUND = "Not found: nothing in the indexed articles answers this question."


@dataclass(frozen=True)
class ScoredHit:
    """A hit with its best sentence (offsets into hit.text) and that sentence's score."""

    hit: Hit
    sentence: tuple[int, int]
    sentence_score: float


def not_found(question: str, message: str = NOT_FOUND) -> Answer:
    return Answer(question=question, found=False, message=message)


def _shingles(text: str, n: int = 3) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def near_duplicate(a: str, b: str, threshold: float) -> bool:
    """True when most word trigrams of the shorter text also occur in the longer one."""
    sa, sb = _shingles(a), _shingles(b)
    if not sa or not sb:
        return False
    return len(sa & sb) / min(len(sa), len(sb)) >= threshold


def _overlaps(a: Hit, b: Hit) -> bool:
    return a.doc_id == b.doc_id and a.start < b.end and b.start < a.end


def build_answer(
    question: str,
    scored: list[ScoredHit],
    *,
    k: int,
    min_score: float,
    duplicate_threshold: float = 0.8,
) -> Answer:
    """Cite up to k passages whose best sentence scores at least `min_score`, best first.

    A hit whose text nearly duplicates a passage already cited (the same quote or wire copy in
    another outlet) adds its source to that passage instead of taking a number of its own; a hit
    overlapping a cited passage of the same article is dropped.
    """
    supported = [s for s in scored if s.sentence_score >= min_score]
    if not supported:
        return not_found(question)

    groups: list[tuple[ScoredHit, list[Source], list[str], list[Hit]]] = []
    for item in supported:
        group = next(
            (
                g for g in groups
                if any(_overlaps(item.hit, h) for h in g[3])
                or near_duplicate(item.hit.text, g[0].hit.text, duplicate_threshold)
            ),
            None,
        )
        if group is not None:
            if all(s.doc_id != item.hit.doc_id for s in group[1]):
                group[1].append(item.hit.source)
                group[2].append(item.hit.chunk_id)
                group[3].append(item.hit)
            continue
        if len(groups) < k:
            groups.append((item, [item.hit.source], [item.hit.chunk_id], [item.hit]))

    passages = []
    for n, (item, sources, chunk_ids, _) in enumerate(groups, start=1):
        hit = item.hit
        start, end = item.sentence
        highlight = Span(
            text=hit.text[start:end], passage=n, start=start, end=end,
            doc_start=hit.start + start, doc_end=hit.start + end,
        )
        passages.append(
            Passage(
                n=n, text=hit.text, score=round(item.sentence_score, 4), sources=sources,
                chunk_ids=chunk_ids, doc_start=hit.start, doc_end=hit.end, highlight=highlight,
            )
        )
    return Answer(question=question, found=True, answer=passages[0].highlight, passages=passages)
