"""The read side: question -> candidates -> rescored sentences -> Answer, from one committed generation.

Per question the cost follows the question, not the corpus: the vector segments are searched
(new segments are loaded incrementally when a commit lands), BM25 reads the postings of the
question's own terms from the segments' postings files (retrieval/backends/embedded/postings.py), the word statistics are looked up for the question's own words, and the candidates' sentence
vectors are read as stored at ingest. Only the word-piece matching needs the model, and only for
the few best sentences (`reranker.token_chunks` x `reranker.token_sentences`).
"""

from __future__ import annotations

import datetime as dt
import math
import sys
import threading
from collections import OrderedDict
from dataclasses import replace

import numpy as np

from retrieval.answer import ScoredHit, build_answer, near_duplicate, not_found, trigrams
from retrieval.embed import Embedder
from retrieval.errors import QuestionError
from retrieval.features import (
    FEATURES,
    SECOND_STAGE,
    Vocabulary,
    _token_matches,
    chunk_features,
    chunk_profiles,
    content_stems,
    question_profile,
)
from retrieval.models import Answer, Hit, Preferred
from retrieval.rerank import Reranker, overlap
from retrieval.fusion import Ranked, dense_run, fuse, lexical_run
from retrieval.settings import Settings
from retrieval.spans import NoPhrase, PhraseFinder
from retrieval.timewords import TimeFocus, time_focus
from retrieval.backends.base import IndexStore, StoredChunk

# Chunks whose word profiles, and sentences whose word-piece vectors, stay in memory between questions.
PROFILE_CACHE = 5_000
TOKEN_CACHE = 4_000
# How much deeper than `search.candidates` a question searches when wire copies crowd its candidates.
MAX_DEPTH = 8
_SECOND_STAGE = [FEATURES.index(name) for name in SECOND_STAGE]


class _Lru:
    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


class Reader:
    """Answers questions from the store and the vector segments. Thread-safe."""

    def __init__(
        self,
        settings: Settings,
        embedder: Embedder,
        store: IndexStore,
        *,
        rescore: bool = True,
        phrases: PhraseFinder | None = None,
        reranker: Reranker | None = None,
    ):
        self.settings = settings
        self.embedder = embedder
        self.store = store
        self.phrases = phrases or NoPhrase()
        self.rescore = rescore and settings.reranker.enabled
        self.reranker = reranker if self.rescore else None
        self._profiles = _Lru(PROFILE_CACHE)
        self._tokens = _Lru(TOKEN_CACHE)
        weights = settings.reranker.weights
        self._weights = np.array([weights.get(name, 0.0) for name in FEATURES])
        first = settings.reranker.first_stage_weights or {n: w for n, w in weights.items() if not n.startswith("token")}
        self._first_weights = np.array([first.get(name, 0.0) for name in FEATURES])
        support = settings.reranker.support_weights
        on = support and settings.reranker.support and self.mixing
        self._support_weights = np.array([support.get(n, 0.0) for n in FEATURES]) if on else None

    @property
    def mixing(self) -> bool:
        """True when candidates are ordered by the mixed rescoring score (the default)."""
        return self.rescore and self.reranker is None

    @property
    def supporting(self) -> bool:
        """True when "not found" rests on the support score (reranker.support_weights, the default)."""
        return self._support_weights is not None

    # -- the generation -------------------------------------------------------------------------
    def refresh(self) -> None:
        """Follow the index to its newest commit now (inside a snapshot, so both sides name one generation)."""
        self.store.refresh()

    def is_empty(self) -> bool:
        return self.store.count_documents() == 0

    # -- asking ---------------------------------------------------------------------------------
    def check_question(self, question: str) -> str:
        question = " ".join(question.split())
        if not question:
            raise QuestionError("the question is empty: ask something, e.g. “where are the new battlegroups?”")
        if any("\ud800" <= c <= "\udfff" for c in question):
            raise QuestionError("the question holds half a character (a lone UTF-16 surrogate, not valid text): "
                                "type it again")
        limit = self.settings.answer.max_question_chars
        if len(question) > limit:
            raise QuestionError(
                f"the question is {len(question)} characters long; the limit is {limit}: ask it more briefly"
            )
        return question

    def answer(
        self,
        question: str,
        *,
        k: int | None = None,
        context: list[str] | None = None,
        outlet: str | None = None,
        since: dt.date | None = None,
        until: dt.date | None = None,
    ) -> Answer:
        """Answer a question from the last committed generation, citing the passages it rests on."""
        question = self.check_question(question)
        self._prefetch_phrases(question)
        with self.store.snapshot():
            self.refresh()
            if self.is_empty():
                return not_found(question, "The index is empty: add articles with `citebot ingest PATH`.")
            allowed = self.allowed(outlet, since, until)
            if allowed is not None and not allowed:
                return not_found(question, f"No indexed article {_describe_filters(outlet, since, until)}: "
                                 "`citebot sources` lists the outlets and dates.")
            scored = self._rank(question, context=context, k=k, allowed=allowed)
        return self.compose(question, scored, k=k)

    def _prefetch_phrases(self, question: str) -> None:
        """Load the phrase model while the question is searched, unless this process may still import torch.

        spaCy loads with torch hidden (retrieval/spans.py); a thread importing torch meanwhile
        would find it missing. The ONNX question encoder never imports torch.
        """
        prefetch = getattr(self.phrases, "prefetch", None)
        if prefetch is not None and ("torch" in sys.modules or not getattr(self.embedder, "uses_torch", True)):
            prefetch(question)

    def rank(self, question: str, *, context: list[str] | None = None, k: int | None = None,
             outlet: str | None = None, since: dt.date | None = None, until: dt.date | None = None
             ) -> list[ScoredHit]:
        """The candidates for a (checked) question, best first, each with its best sentence."""
        with self.store.snapshot():
            self.refresh()
            return self._rank(question, context=context, k=k, allowed=self.allowed(outlet, since, until))

    def compose(self, question: str, scored: list[ScoredHit], *, k: int | None = None) -> Answer:
        # "Not found" rests on the support score where its weights are set, else on the mixed score
        # where it orders the candidates, else on the best sentence's similarity; each has its own
        # threshold, calibrated in config/default.toml.
        answer = self.settings.answer
        if not self.mixing:
            support, threshold = "sentence", answer.min_score
        elif self.supporting:
            support, threshold = "support", answer.min_support
        else:
            support, threshold = "rank", answer.min_mixed_score
        built = build_answer(
            question, scored, k=k or self.settings.search.k, min_score=threshold, support=support,
            duplicate_threshold=answer.duplicate_threshold, phrases=self.phrases,
        )
        focus = self.time_focus(question) if self.mixing else None
        if focus is not None and built.found and any(item.hit.source.published for item in scored):
            built = built.model_copy(update={"preferred": Preferred(words=focus.words, start=focus.start,
                                                                     end=focus.end)})
        return built

    def allowed(self, outlet: str | None, since: dt.date | None, until: dt.date | None) -> set[int] | None:
        """Chunk ids of the articles the filters let through; None when there are no filters."""
        if since is not None and until is not None and since > until:
            raise QuestionError(
                f"since ({since.isoformat()}) is after until ({until.isoformat()}): swap them or drop one"
            )
        if outlet is None and since is None and until is None:
            return None
        return self.store.matching(outlet, since, until)

    def time_focus(self, question: str) -> TimeFocus | None:
        """The days the question's time words point at (search.time_words), counted from search.now or today."""
        search = self.settings.search
        if not search.time_words:
            return None
        return time_focus(question, search.now or dt.datetime.now(dt.timezone.utc).date())

    def retrieve(self, question: str, *, candidates: int | None = None, vector: np.ndarray | None = None,
                 allowed: set[int] | None = None) -> list[Ranked]:
        """Ranked chunk ids for a question, by the configured search mode."""
        with self.store.snapshot():
            if vector is None:
                vector = self.embedder.embed_queries([question])[0]
            n = candidates or self.settings.search.candidates
            mode = self.settings.search.mode
            runs = []
            if mode in ("hybrid", "dense") and (found := self.store.dense(vector, n, allowed)) is not None:
                runs.append(dense_run(found))
            if mode in ("hybrid", "bm25") and (found := self.store.lexical(question, n, allowed)) is not None:
                runs.append(lexical_run(found))
        if not runs:
            return []
        return runs[0] if len(runs) == 1 else fuse(runs, rrf_k=self.settings.search.rrf_k)

    def _rank(self, question: str, *, context: list[str] | None, k: int | None,
              allowed: set[int] | None) -> list[ScoredHit]:
        # Follow-ups are searched with the conversation so far.
        query = " ".join([*(context or [])[-2:], question])
        if allowed is not None and not allowed:
            return []
        if self.mixing:
            vectors, tokens = self.embedder.embed_with_tokens([query])
            vector, question_tokens = vectors[0], tokens[0]
        else:
            vector, question_tokens = self.embedder.embed_queries([query])[0], None
        wanted = max(self.settings.reranker.rescore, k or self.settings.search.k)
        # Wire copies of one passage count once: when the index holds copies, keep one chunk of
        # each set (the rest ride along with it, see _collapse), searching deeper while copies
        # leave fewer than `wanted` candidates, down to MAX_DEPTH times the usual depth.
        depth = self.settings.search.candidates
        while True:
            found = self.retrieve(query, candidates=depth, vector=vector, allowed=allowed)
            ranked_list, copies = self._collapse(found, wanted)
            if not copies or len(ranked_list) >= wanted or len(found) < depth \
                    or depth >= MAX_DEPTH * self.settings.search.candidates:
                break
            depth *= 2
        ids = [r.id for r in ranked_list]
        if allowed is not None and len(allowed) <= wanted:
            ids += sorted(allowed.difference(ids, *copies.values()))  # a small matching set is scored whole
        ranked = {r.id: r for r in ranked_list}
        stored = self.store.chunks(ids + [c for cs in copies.values() for c in cs])
        ids = [i for i in ids if i in stored]
        if self.mixing:
            scored = self._rescore(query, vector, question_tokens, ids, ranked, stored)
        else:
            scored = [self._best_sentence(query, vector, stored[i], ranked) for i in ids]
            if self.reranker is not None:
                order = self.reranker.score(query, [item.hit.text for item in scored])
                rescored = [replace(item, rank_score=score) for item, score in zip(scored, order)]
                scored = sorted(rescored, key=lambda item: item.rank_score, reverse=True)
        half_life = self.settings.search.recency_half_life_days
        focus = self.time_focus(question)
        if focus is not None and self.mixing:
            scored = _by_time_focus(scored, focus)
        elif half_life and self.mixing:
            scored = _by_recency(scored, half_life)
        if not copies:
            return scored
        row_of = {stored[i].chunk_id: i for i in copies if i in stored}
        return [_with_copies(item, copies.get(row_of.get(item.hit.chunk_id), ()), stored, ranked) for item in scored]

    def _collapse(self, ranked: list[Ranked], wanted: int) -> tuple[list[Ranked], dict[int, list[int]]]:
        """The best `wanted` candidates with each set of wire copies as one: its best-ranked chunk.

        Chunks of two documents of one story (grouped at ingest, retrieval/stories.py) are copies
        when their texts nearly match (answer.duplicate_threshold). Returns the kept candidates and,
        for each kept chunk with copies, the chunk ids of its copies.
        """
        if not self.store.count_copies():
            return ranked[:wanted], {}
        story_of = self.store.stories_of(r.id for r in ranked)
        counts: dict[int, set[int]] = {}
        for story, document in story_of.values():
            counts.setdefault(story, set()).add(document)
        shared = [r.id for r in ranked if r.id in story_of and len(counts[story_of[r.id][0]]) > 1]
        if not shared:
            return ranked[:wanted], {}
        texts = self.store.chunk_texts(shared)
        threshold = self.settings.answer.duplicate_threshold
        leaders: dict[int, list[int]] = {}  # story -> kept chunk ids
        copies: dict[int, list[int]] = {}
        kept = []
        for r in ranked:
            if r.id in texts:
                story, document = story_of[r.id]
                leader = next((lead for lead in leaders.get(story, ())
                               if story_of[lead][1] != document and near_duplicate(texts[r.id], texts[lead], threshold)),
                              None)
                if leader is not None:
                    if all(story_of[c][1] != document for c in copies.get(leader, ())):
                        copies.setdefault(leader, []).append(r.id)
                    continue
                leaders.setdefault(story, []).append(r.id)
            if len(kept) < wanted:
                kept.append(r)
        kept_ids = {r.id for r in kept}
        return kept, {lead: ids for lead, ids in copies.items() if lead in kept_ids}

    def _rescore(self, query: str, vector: np.ndarray, question_tokens: np.ndarray, ids: list[int],
                 ranked: dict[int, Ranked], stored: dict[int, StoredChunk]) -> list[ScoredHit]:
        """Score every sentence of every candidate by the weighted features (retrieval/features.py).

        Two stages: every sentence first without word-piece matching; then the best
        `token_sentences` sentences of the best `token_chunks` chunks with it. A chunk scores as
        its best sentence, which is the one highlighted.
        """
        missing = [i for i in ids if i not in ranked or ranked[i].dense is None]
        dense_of = {i: float(v @ vector) for i, v in self.store.vectors(missing).items()}
        dense_of.update({i: ranked[i].dense for i in ids if i in ranked and ranked[i].dense is not None})
        top_lexical = max([ranked[i].lexical or 0.0 for i in ids if i in ranked] + [0.0]) or 1.0
        top_fused = max([ranked[i].score for i in ids if i in ranked] + [0.0]) or 1.0
        profile = question_profile(query, self._vocabulary(query))
        rows, cosines_of = {}, {}
        for i in ids:
            chunk = stored[i]
            profiles, stems = self._profile(chunk)
            cosines = chunk.sentence_vectors.astype(np.float32) @ vector
            found = ranked.get(i)
            rows[i] = chunk_features(
                profile, profiles, stems, cosines, dense_of.get(i, 0.0),
                (found.lexical or 0.0) / top_lexical if found else 0.0, found.score / top_fused if found else 0.0,
            )
            cosines_of[i] = cosines
        first = {i: rows[i] @ self._first_weights for i in ids}
        chunks_n, sentences_n = self.settings.reranker.token_chunks, self.settings.reranker.token_sentences
        chosen = sorted(ids, key=lambda i: -first[i].max())[: chunks_n or len(ids)]
        picks = {i: np.argsort(-first[i], kind="stable")[: sentences_n or len(first[i])] for i in chosen}
        self._add_second_stage(rows, picks, stored, vector, question_tokens)
        full = {i: rows[i][picks[i]] @ self._weights for i in chosen}
        floor = min((float(full[i].min()) for i in chosen), default=0.0)
        bests = {i: int(picks[i][int(np.argmax(full[i]))]) if i in full else int(np.argmax(first[i])) for i in ids}
        supports = self._supports(rows, bests, full)
        full_scored, rest = [], []
        for i in ids:
            chunk = stored[i]
            if i in full:
                score = float(full[i].max())
            else:  # below every chunk scored in full, in first-stage order
                score = min(float(first[i].max()), floor)
            item = ScoredHit(hit=_hit(chunk, ranked), sentence=chunk.sentences[bests[i]],
                             sentence_score=float(cosines_of[i].max()), rank_score=score, support=supports.get(i),
                             features=rows[i][bests[i]])
            (full_scored if i in full else rest).append((item, float(first[i].max())))
        full_scored.sort(key=lambda pair: -pair[0].rank_score)
        rest.sort(key=lambda pair: -pair[1])
        scored = [item for item, _ in full_scored + rest]
        return scored

    def _supports(self, rows, bests: dict[int, int], full: dict) -> dict[int, float]:
        """Each candidate's support: its best sentence's features by the support weights.

        A chunk left out of the second stage has no word-piece features; like its rank score, its
        support is capped at the lowest of the chunks scored in full.
        """
        if self._support_weights is None:
            return {}
        supports = {i: float(rows[i][best] @ self._support_weights) for i, best in bests.items()}
        floor = min((supports[i] for i in full), default=0.0)
        return {i: s if i in full else min(s, floor) for i, s in supports.items()}

    def _add_second_stage(self, rows, picks, stored, vector, question_tokens) -> None:
        """The SECOND_STAGE features of the picked sentences: each embedded alone, in one batch (cached)."""
        if question_tokens is None:
            return
        keys = [(i, int(j)) for i, js in picks.items() for j in js]
        alone = {key: self._tokens.get((stored[key[0]].chunk_id, key[1])) for key in keys}
        todo = [key for key in keys if alone[key] is None]
        if todo:
            texts = [stored[i].text[slice(*stored[i].sentences[j])] for i, j in todo]
            vectors, tokens = self.embedder.embed_with_tokens(texts)
            for key, own, pieces in zip(todo, vectors, tokens):
                alone[key] = (own, pieces)
                self._tokens.put((stored[key[0]].chunk_id, key[1]), alone[key])
        for i, js in picks.items():
            matches = _token_matches(question_tokens, [alone[(i, int(j))][1] for j in js], len(js))
            cosines = [float(alone[(i, int(j))][0] @ vector) for j in js]
            rows[i][np.asarray(js)[:, None], _SECOND_STAGE] = np.column_stack([np.array(matches), cosines])

    def _vocabulary(self, query: str) -> Vocabulary:
        return Vocabulary(self.store.count_chunks(), self.store.document_frequencies(content_stems(query)))

    def _profile(self, chunk: StoredChunk):
        cached = self._profiles.get(chunk.chunk_id)
        if cached is None:
            cached = chunk_profiles([chunk.text[s:e] for s, e in chunk.sentences])
            self._profiles.put(chunk.chunk_id, cached)
        return cached

    def _best_sentence(self, question: str, query: np.ndarray, chunk: StoredChunk,
                       ranked: dict[int, Ranked]) -> ScoredHit:
        """The chunk's answering sentence, and its best sentence similarity to the question.

        The similarity alone decides "not found" (it is what the threshold was calibrated on); the
        sentence highlighted also weighs the question's words in it (benchmarks/tune_sentence.py).
        """
        similarity = chunk.sentence_vectors.astype(np.float32) @ query
        weight = self.settings.answer.sentence_overlap_weight
        choice = similarity + weight * np.array([overlap(question, chunk.text[s:e]) for s, e in chunk.sentences]) \
            if weight else similarity
        best = int(np.argmax(choice))
        return ScoredHit(hit=_hit(chunk, ranked), sentence=chunk.sentences[best],
                         sentence_score=float(similarity.max()))


def _by_time_focus(scored: list[ScoredHit], focus: TimeFocus) -> list[ScoredHit]:
    """`scored` reordered with each article's weight halved per `focus.half_life_days` days between its date and
    the window of days `focus` names (nothing inside it).

    The rescoring score is a softmax logit (benchmarks/train_ranker.py), so halving a weight is subtracting
    ln 2. An undated article counts as far from the window as the farthest dated candidate; with no dated
    candidate, nothing changes. The scores themselves, which decide "not found", are left as they are.
    """
    distances = {id(item): focus.distance(item.hit.source.published) for item in scored
                 if item.hit.source.published is not None}
    if not distances:
        return scored
    farthest = max(distances.values())

    def weighed(item: ScoredHit) -> float:
        return item.rank_score - math.log(2) * distances.get(id(item), farthest) / focus.half_life_days

    return sorted(scored, key=weighed, reverse=True)


def _by_recency(scored: list[ScoredHit], half_life: float) -> list[ScoredHit]:
    """`scored` reordered with each article's weight halved per `half_life` days of age (search.recency_half_life_days):
    a window of the newest dated candidate's day alone, so an age counts from it and an undated article as the
    oldest."""
    dates = [item.hit.source.published for item in scored if item.hit.source.published is not None]
    if not dates:
        return scored
    return _by_time_focus(scored, TimeFocus(max(dates), max(dates), half_life, ""))


def _with_copies(item: ScoredHit, copy_ids, stored: dict[int, StoredChunk], ranked: dict[int, Ranked]) -> ScoredHit:
    """`item` with its wire copies, each at the sentence that best matches the item's answering sentence."""
    if not copy_ids:
        return item
    start, end = item.sentence
    sentence = trigrams(item.hit.text[start:end])
    copies = []
    for i in copy_ids:
        chunk = stored.get(i)
        if chunk is None:
            continue
        spans = chunk.sentences
        best = max(range(len(spans)), key=lambda j: len(sentence & trigrams(chunk.text[slice(*spans[j])])))
        copies.append(ScoredHit(hit=_hit(chunk, ranked), sentence=spans[best], sentence_score=item.sentence_score,
                                rank_score=item.rank_score, support=item.support))
    return replace(item, copies=tuple(copies))


def _hit(chunk: StoredChunk, ranked: dict[int, Ranked]) -> Hit:
    return Hit(chunk_id=chunk.chunk_id, doc_id=chunk.source.doc_id, start=chunk.start, end=chunk.end,
               text=chunk.text, score=ranked[chunk.id].score if chunk.id in ranked else 0.0, source=chunk.source)


def _describe_filters(outlet: str | None, since: dt.date | None, until: dt.date | None) -> str:
    """`is from 'Newsmax' and was published on or after 2022-03-01`, naming only the filters given."""
    parts = []
    if outlet is not None:
        parts.append(f"is from {outlet!r}")
    if since is not None and until is not None:
        parts.append(f"was published from {since.isoformat()} to {until.isoformat()}")
    elif since is not None:
        parts.append(f"was published on or after {since.isoformat()}")
    elif until is not None:
        parts.append(f"was published on or before {until.isoformat()}")
    return " and ".join(parts)
