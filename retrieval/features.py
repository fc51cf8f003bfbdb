"""Evidence that a sentence answers a question: the features the rescoring weights (config [reranker]).

Each candidate sentence is described by its similarity to the question, how much of the question's
rarer words it shares (IDF-weighted, on light stems), whether it shares the question's word pairs,
and whether it holds the kind of thing the question asks for (a number for "how many", a year or
month for "when", a name the question does not already give for "who" and "where"). A linear mix
of these, fitted on SQuAD dev by benchmarks/train_ranker.py, scores every sentence of every
candidate chunk; a chunk scores as its best sentence.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from retrieval.text import QUESTION_STOPWORDS as _STOP

FEATURES = [
    "cosine",
    "chunk_best_cosine",
    "dense",
    "bm25",
    "rrf",
    "overlap",
    "idf_overlap",
    "bigram_overlap",
    "window_idf_overlap",
    "chunk_idf_overlap",
    "number_for_number",
    "number_for_date",
    "date_for_date",
    "name_for_person",
    "name_for_place",
    "name_for_other",
    "number_for_other",
    "novelty",
    "log_words",
    "previous_idf_overlap",
    "next_idf_overlap",
    "pronoun_after_match",
    "cosine_below_best",
    "rarest_word",
    "token_match",
    "token_match_strong",
    "alone_cosine",
]
# Computed for the few sentences the second stage scores, from one model pass over each of them
# alone: its word pieces (late interaction) and its own vector. The stored sentence vectors come
# from the chunk's pass and carry the chunk's context; a sentence alone says only what it says.
SECOND_STAGE = ["token_match", "token_match_strong", "alone_cosine"]
# A question word piece "strongly" matches a sentence when its contextual vectors meet one this close.
STRONG_MATCH = 0.8

_WORD = re.compile(r"\w+")
_MONTHS = frozenset(
    "january february march april may june july august september october november december".split()
)
_YEAR = re.compile(r"(1[0-9]{3}|20[0-9]{2})s?")
_NUMBER_WORDS = frozenset("one two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty "
                          "hundred thousand million billion dozen half".split())


_BACK = frozenset("it he she they this these its his her their there such those".split())


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """A light suffix strip, so "founded" meets "founding" and "cities" meets "city"."""
    for suffix, replacement in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", ""), ("ly", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: len(word) - len(suffix)] + replacement
    return word


def content_stems(text: str) -> list[str]:
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP]


class Vocabulary:
    """Inverse document frequencies of stems: `n` chunks, `df` chunks holding each stem.

    The reader fills `df` from the store's running counts, for the question's stems only.
    """

    def __init__(self, n: int, df: dict[str, int]):
        self.n = n
        self.df = df

    @classmethod
    def from_texts(cls, texts: list[str]) -> Vocabulary:
        return cls(len(texts), Counter(s for text in texts for s in set(content_stems(text))))

    def idf(self, word: str) -> float:
        return math.log((self.n + 1) / (self.df.get(word, 0) + 0.5))


@dataclass(frozen=True)
class QuestionProfile:
    words: frozenset[str]  # content words, lower case, unstemmed
    stems: dict[str, float]  # content stems -> idf
    total_idf: float
    bigrams: frozenset[tuple[str, str]]
    kind: str  # number, date, person, place or other
    surface: frozenset[str]  # every word of the question, lower case


def expected_kind(question: str) -> str:
    """What sort of thing the question asks for, from its wh-word."""
    q = question.lower()
    if re.search(r"\bhow (many|much|long|old|far|large|big|tall|high|often)\b|\bwhat (percentage|percent|number|"
                 r"amount|proportion)\b", q):
        return "number"
    if re.search(r"\bwhen\b|\b(what|which) (year|century|decade|date|day|month|time|era|period)\b|\bwhat time\b", q):
        return "date"
    if re.search(r"\b(who|whom|whose)\b", q):
        return "person"
    if re.search(r"\bwhere\b|\b(what|which) (country|city|state|place|region|location|town|continent|nation)\b", q):
        return "place"
    return "other"


def question_profile(question: str, vocabulary: Vocabulary) -> QuestionProfile:
    stems = content_stems(question)
    weights = {s: vocabulary.idf(s) for s in stems}
    return QuestionProfile(
        words=frozenset(w for w in _WORD.findall(question.lower()) if w not in _STOP),
        stems=weights,
        total_idf=sum(weights.values()) or 1.0,
        bigrams=frozenset(zip(stems, stems[1:])),
        kind=expected_kind(question),
        surface=frozenset(_WORD.findall(question.lower())),
    )


@dataclass(frozen=True)
class SentenceProfile:
    """What the features need of one sentence, computed once per chunk and cached with it."""

    lower: frozenset[str]
    stems: frozenset[str]
    bigrams: frozenset[tuple[str, str]]
    window: frozenset[str]  # stems of the sentence and its neighbours
    numbers: frozenset[str]
    dates: frozenset[str]
    names: frozenset[str]  # lower-cased capitalised words after the first
    content: tuple[str, ...]
    log_words: float
    previous: frozenset[str]  # stems of the sentence before, if any
    following: frozenset[str]
    pronoun: bool  # opens with a word that refers back ("It", "He", "This"...)


def chunk_profiles(sentences: list[str]) -> tuple[list[SentenceProfile], frozenset[str]]:
    """Profiles of a chunk's sentences, and the stems of the whole chunk."""
    tokens = [_WORD.findall(s) for s in sentences]
    lowers = [[t.lower() for t in ts] for ts in tokens]
    stems = [[stem(w) for w in ls if w not in _STOP] for ls in lowers]
    profiles = []
    # "battle groups" also counts as "battlegroups", "cease-fire" as "ceasefire"
    joined = [[stem(a + b) for a, b in zip(ls, ls[1:]) if a not in _STOP and b not in _STOP] for ls in lowers]
    plain, stems = stems, [ss + js for ss, js in zip(stems, joined)]
    for i, (ts, ls, ss) in enumerate(zip(tokens, lowers, stems)):
        window = set(ss)
        for n in (i - 1, i + 1):
            if 0 <= n < len(sentences):
                window.update(stems[n])
        profiles.append(SentenceProfile(
            lower=frozenset(ls),
            stems=frozenset(ss),
            bigrams=frozenset(zip(plain[i], plain[i][1:])),
            window=frozenset(window),
            numbers=frozenset(w for w in ls if w.isdigit() or w in _NUMBER_WORDS),
            dates=frozenset(w for w in ls if w in _MONTHS or _YEAR.fullmatch(w)),
            names=frozenset(t.lower() for t in ts[1:] if t[0].isupper() and t.lower() not in _STOP),
            content=tuple(w for w in ls if w not in _STOP),
            log_words=math.log1p(len(ts)),
            previous=frozenset(stems[i - 1]) if i > 0 else frozenset(),
            following=frozenset(stems[i + 1]) if i + 1 < len(sentences) else frozenset(),
            pronoun=bool(ls) and ls[0] in _BACK,
        ))
    return profiles, frozenset(s for ss in stems for s in ss)


def _idf_share(profile: QuestionProfile, stems: frozenset[str]) -> float:
    return sum(w for s, w in profile.stems.items() if s in stems) / profile.total_idf


def chunk_features(
    question: QuestionProfile,
    sentences: list[SentenceProfile],
    chunk_stems: frozenset[str],
    cosines: np.ndarray,
    dense: float,
    bm25: float,
    rrf: float,
    question_tokens: np.ndarray | None = None,
    sentence_tokens: list[np.ndarray] | None = None,
    alone: np.ndarray | None = None,
) -> np.ndarray:
    """The FEATURES of each sentence of one chunk: a (sentences, features) matrix.

    With the question's and the sentences' word-piece vectors (Embedder.embed_with_tokens), each
    question piece is matched to its closest piece in the sentence (late interaction, as in ColBERT):
    token_match is the mean of those similarities, token_match_strong the share above STRONG_MATCH.
    `alone` is each sentence's cosine to the question with the sentence embedded on its own
    (alone_cosine); without it, and without the word pieces, the SECOND_STAGE features are 0.
    """
    matches = _token_matches(question_tokens, sentence_tokens, len(sentences))
    alone = np.zeros(len(sentences)) if alone is None else alone
    best = float(cosines.max())
    in_chunk = _idf_share(question, chunk_stems)
    kind, surface = question.kind, question.surface
    rows = []
    for (cosine, s), match, by_itself in zip(zip(cosines, sentences), matches, alone):
        has_number = bool(s.numbers - surface)
        has_date = bool(s.dates - surface)
        has_name = bool(s.names - surface)
        rows.append([
            float(cosine),
            best,
            dense,
            bm25,
            rrf,
            len(question.words & s.lower) / max(len(question.words), 1),
            _idf_share(question, s.stems),
            len(question.bigrams & s.bigrams) / max(len(question.bigrams), 1),
            _idf_share(question, s.window),
            in_chunk,
            float(kind == "number" and has_number),
            float(kind == "date" and has_number),
            float(kind == "date" and has_date),
            float(kind == "person" and has_name),
            float(kind == "place" and has_name),
            float(kind == "other" and has_name),
            float(kind == "other" and has_number),
            sum(1 for w in s.content if w not in question.words) / max(len(s.content), 1),
            s.log_words,
            previous := _idf_share(question, s.previous),
            _idf_share(question, s.following),
            previous if s.pronoun else 0.0,
            float(cosine) - best,
            max((w for w in question.stems.values()), default=0.0) > 0 and float(
                max(question.stems, key=question.stems.get) in s.stems),
            *match,
            float(by_itself),
        ])
    return np.array(rows, dtype=np.float64).reshape(len(sentences), len(FEATURES))


def _token_matches(
    question: np.ndarray | None, sentences: list[np.ndarray] | None, count: int
) -> list[tuple[float, float]]:
    if question is None or sentences is None or len(question) == 0:
        return [(0.0, 0.0)] * count
    dim = question.shape[1]
    sentences = [t if len(t) else np.zeros((1, dim), dtype=question.dtype) for t in sentences]
    lengths = [len(t) for t in sentences]
    similarity = question.astype(np.float32) @ np.vstack(sentences).astype(np.float32).T
    best = np.maximum.reduceat(similarity, np.cumsum([0, *lengths[:-1]]), axis=1)  # (question pieces, sentences)
    return [(float(best[:, i].mean()), float((best[:, i] > STRONG_MATCH).mean())) for i in range(count)]
