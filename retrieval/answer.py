"""Scored hits -> an Answer: the answering sentence, numbered passages, grouped sources. Pure."""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

from retrieval.models import Answer, Hit, Passage, Span, Version
from retrieval.spans import NoPhrase, PhraseFinder, normalise

if TYPE_CHECKING:
    import numpy as np

NOT_FOUND = "Not found: nothing in the indexed articles answers this question."
# An article's phrase is compared with the others' only when its sentence scores within this much
# of the best sentence and has at least this share of the question's nouns and verbs near the phrase
# (Phrase.coverage): a passage about something else may name a place or a person without answering
# what was asked.
VERSION_MARGIN = 0.15
MIN_COVERAGE = 0.66


@dataclass(frozen=True)
class ScoredHit:
    """A hit with its best sentence (offsets into hit.text) and that sentence's score."""

    hit: Hit
    sentence: tuple[int, int]
    sentence_score: float
    rank_score: float = 0.0  # what the candidates were ordered by (see pipeline rescoring)
    # How well the passage supports an answer at all, across questions (reranker.support_weights):
    # "not found" rests on it when set. None: on rank_score.
    support: float | None = None
    # The best sentence's feature row (retrieval/features.py FEATURES), where rescoring computed one:
    # what benchmarks/fit_support.py fits the support weights on.
    features: np.ndarray | None = field(default=None, compare=False, repr=False)
    # Wire copies of this passage in other documents of its story, searched once with it
    # (Reader._collapse): cited beside it, and quoted instead when newer.
    copies: tuple[ScoredHit, ...] = ()


def not_found(question: str, message: str = NOT_FOUND) -> Answer:
    return Answer(question=question, found=False, message=message)


@lru_cache(maxsize=512)  # a question compares each candidate with several others: each text is cut once
def trigrams(text: str, n: int = 3) -> frozenset[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    if len(words) < n:
        return frozenset({tuple(words)}) if words else frozenset()
    return frozenset(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def near_duplicate(a: str, b: str, threshold: float) -> bool:
    """True when most word trigrams of the shorter text also occur in the longer one."""
    sa, sb = trigrams(a), trigrams(b)
    if not sa or not sb:
        return False
    return len(sa & sb) / min(len(sa), len(sb)) >= threshold


def _support(item: ScoredHit, kind: str) -> float:
    if kind == "support":
        return item.support if item.support is not None else -math.inf
    return item.rank_score if kind == "rank" else item.sentence_score


def _overlaps(a: Hit, b: Hit) -> bool:
    return a.doc_id == b.doc_id and a.start < b.end and b.start < a.end


def build_answer(
    question: str,
    scored: list[ScoredHit],
    *,
    k: int,
    min_score: float,
    duplicate_threshold: float = 0.8,
    phrases: PhraseFinder | None = None,
    support: Literal["sentence", "rank", "support"] = "sentence",
) -> Answer:
    """Cite up to k passages whose support scores at least `min_score`, best first.

    The support is the best sentence's similarity; with `support="rank"` the rescoring score
    (sentence plus chunk, BM25 and word evidence); with `support="support"` the support score fitted
    to tell answerable from unanswerable questions (ScoredHit.support). Each has its own calibrated
    threshold.

    A hit whose text nearly duplicates a passage already cited (the same quote or wire copy in
    another outlet) adds its source to that passage instead of taking a number of its own; a hit
    overlapping a cited passage of the same article is dropped. Inside a passage the sources are
    listed newest first, and the passage quotes the newest of them.

    Args:
        phrases: finds the exact phrase the question asks for inside each answering sentence;
            the first passage's becomes `Answer.phrase`, and the phrases of different articles are
            compared to tell when the sources differ (see VERSION_MARGIN). None finds no phrase.
    """
    finder = phrases or NoPhrase()
    supported = [s for s in scored if _support(s, support) >= min_score]
    if not supported:
        return not_found(question)

    groups: list[list[ScoredHit]] = []
    for item in supported:
        group = next(
            (
                g for g in groups
                if any(_overlaps(item.hit, member.hit) for member in g)
                or near_duplicate(item.hit.text, g[0].hit.text, duplicate_threshold)
            ),
            None,
        )
        if group is not None:
            if all(member.hit.doc_id != item.hit.doc_id for member in group):
                group.append(item)
            continue
        if len(groups) < k:
            groups.append([item])
    for group in groups:
        for item in list(group):
            for copy in item.copies:
                if all(member.hit.doc_id != copy.hit.doc_id for member in group):
                    group.append(copy)

    passages: list[Passage] = []
    claims: list[_Claim] = []
    phrase: Span | None = None
    for n, group in enumerate(groups, start=1):
        members = _newest_first(group)
        lead = members[0]
        passages.append(
            Passage(
                n=n, text=lead.hit.text, score=round(group[0].sentence_score, 4),
                sources=[m.hit.source for m in members], chunk_ids=[m.hit.chunk_id for m in members],
                doc_start=lead.hit.start, doc_end=lead.hit.end, highlight=_span(lead, n, *lead.sentence),
            )
        )
        for member in members:
            start, end = member.sentence
            found = finder.find(question, member.hit.text[start:end])
            if found is None:
                continue
            claims.append(_Claim(n, member, start + found.start, start + found.end, found.values, found.coverage))
            if n == 1 and member is lead:
                phrase = _span(lead, n, start + found.start, start + found.end)

    first = passages[0]
    best_score = groups[0][0].sentence_score
    versions = _versions([
        c for c in claims if c.item.sentence_score >= best_score - VERSION_MARGIN and c.coverage >= MIN_COVERAGE
    ])
    # "As of" is the date of the report the answer is quoted from, not the newest of all those cited:
    # an older report's figure must not pass for the latest one.
    return Answer(
        question=question, found=True, answer=first.highlight, passages=passages, phrase=phrase,
        versions=versions, disagreement=bool(versions), as_of=first.sources[0].published,
    )


@dataclass(frozen=True)
class _Claim:
    """What one cited article's answering sentence names: a phrase (offsets into the hit text) and its values."""

    passage: int
    item: ScoredHit
    start: int
    end: int
    values: tuple[str, ...]
    coverage: float

    @property
    def key(self) -> frozenset[str]:
        return frozenset(normalise(v) for v in self.values) - {""}


def _versions(claims: list[_Claim]) -> list[Version]:
    """One version per different set of values, when articles differ; [] when they agree.

    Each article speaks once, by its best passage's phrase, so two passages of one article never
    make a disagreement. Sets are compared as normalised sets: order, "and" and commas do not count.
    """
    spoken: dict[str, _Claim] = {}
    for claim in claims:
        if claim.key:
            spoken.setdefault(claim.item.hit.doc_id, claim)
    sides: dict[frozenset[str], list[_Claim]] = {}
    for claim in spoken.values():
        sides.setdefault(claim.key, []).append(claim)
    if len(sides) < 2:
        return []
    versions = []
    for side in sides.values():
        head = side[0]
        versions.append(
            Version(
                text=head.item.hit.text[head.start : head.end], values=list(head.values), passage=head.passage,
                sources=[c.item.hit.source for c in _newest_first(side, key=lambda c: c.item.hit.source)],
            )
        )
    # The latest report first. It is called the latest only when it is newer than every other, each
    # dated: beside a report of unknown date, no one can say which came later.
    versions = _newest_first(versions, key=lambda v: v.sources[0])
    dates = [v.sources[0].published for v in versions]
    if dates[0] is not None and all(d is not None and d < dates[0] for d in dates[1:]):
        versions[0] = versions[0].model_copy(update={"newest": True})
    return versions


def _span(item: ScoredHit, n: int, start: int, end: int) -> Span:
    hit = item.hit
    return Span(
        text=hit.text[start:end], passage=n, start=start, end=end,
        doc_start=hit.start + start, doc_end=hit.start + end,
    )


def _newest_first(items: list, key=lambda item: item.hit.source) -> list:
    """Items ordered by their source's publication date, newest first; undated ones last, order kept."""
    return sorted(items, key=lambda item: -(key(item).published or dt.date.min).toordinal())
