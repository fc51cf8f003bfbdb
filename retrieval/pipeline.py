"""The Answerer: wires ingest, chunking, embedding, index, store, search and answer together.

Both doors (the CLI and the Discord bot) hold one Answerer and call `answer(question)`.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from retrieval import ingest as ingest_files
from retrieval.answer import ScoredHit, build_answer, not_found
from retrieval.chunk import chunk_text, split_sentences
from retrieval.embed import Embedder, SentenceTransformerEmbedder
from retrieval.errors import IndexBusyError, IndexMismatchError, IngestError, QuestionError, SettingsError
from retrieval.index import FaissIndex
from retrieval.features import FEATURES, SentenceProfile, Vocabulary, chunk_features, chunk_profiles, question_profile
from retrieval.rerank import CrossEncoderReranker, Reranker, overlap
from retrieval.models import Answer, Hit
from retrieval.search import Bm25, Ranked, dense_search, fuse
from retrieval.settings import Settings
from retrieval.spans import NoPhrase, PhraseFinder, SpacyPhraseFinder
from retrieval.store import SourceRow, Store

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]

# Articles embedded before they are committed together: a kill loses at most one batch of work.
BATCH_ARTICLES = 64
# Chunks whose sentence and word-piece vectors are kept in memory between questions: about 160 KB
# each for a full 200-piece chunk, so at most about 320 MB.
SENTENCE_CACHE = 2_000


class _Sentences(NamedTuple):
    spans: list[tuple[int, int]]
    vectors: np.ndarray
    profiles: list[SentenceProfile]
    stems: frozenset[str]
    tokens: list[np.ndarray]  # each sentence's word-piece vectors


@dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0


class Answerer:
    """Holds the models and the index; answers questions and ingests articles. Thread-safe for readers."""

    def __init__(
        self,
        settings: Settings,
        embedder: Embedder,
        *,
        rescore: bool = True,
        phrases: PhraseFinder | None = None,
        reranker: Reranker | None = None,
    ):
        self.settings = settings
        self.embedder = embedder
        # No phrase unless one is given: from_settings gives the spaCy one when answer.phrases is on.
        self.phrases = phrases or NoPhrase()
        self.rescore = rescore and settings.reranker.enabled
        self.reranker = reranker if self.rescore else None
        self.dir = settings.index.dir
        self.store = Store(self.dir / "citebot.sqlite")
        self._generation = -1
        self._vectors: FaissIndex | None = None
        self._bm25: Bm25 | None = None
        self._vocabulary: Vocabulary | None = None
        self._load_lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._sentence_cache: dict[str, _Sentences] = {}
        self._weights = np.array([settings.reranker.weights.get(name, 0.0) for name in FEATURES])
        _single_threaded_blas()

    @classmethod
    def from_settings(
        cls, settings: Settings, *, embedder: Embedder | None = None, phrases: PhraseFinder | None = None
    ) -> Answerer:
        if phrases is None and settings.answer.phrases:
            phrases = SpacyPhraseFinder()
        reranker = None
        if settings.reranker.cross_encoder is not None:
            reranker = CrossEncoderReranker(settings.reranker.cross_encoder, device=settings.embedding.device)
        return cls(settings, embedder or SentenceTransformerEmbedder(settings.embedding), phrases=phrases,
                   reranker=reranker)

    # -- loading --------------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Load the model and the index now rather than on the first question."""
        self.embedder.embed_queries(["warm up"])
        if hasattr(self.phrases, "warm_up"):
            self.phrases.warm_up()
        self._refresh()

    def _check_model(self) -> None:
        built_with = self.store.get_meta("model")
        if built_with is not None and built_with != self.settings.embedding.model:
            raise IndexMismatchError(
                f"the index in {self.dir} was built with embedding model {built_with!r} "
                f"(dim {self.store.get_meta('dim')}), not {self.settings.embedding.model!r}: "
                "re-ingest with `citebot ingest --rebuild PATH…` or set embedding.model back"
            )

    def _vector_path(self, generation: int) -> Path:
        return self.dir / f"vectors-{generation}.faiss"

    def _refresh(self) -> None:
        """Load the vectors and BM25 of the store's current generation, if not loaded already."""
        generation = self.store.generation
        if generation == self._generation:
            return
        with self._load_lock:
            if generation == self._generation:
                return
            self._check_model()
            dim = int(self.store.get_meta("dim") or self.embedder.dim)
            path = self._vector_path(generation)
            vectors = None
            if path.exists():
                try:
                    vectors = FaissIndex.load(path)
                except Exception:
                    log.warning("vector file %s unreadable; rebuilding it from the store", path)
            if vectors is None or vectors.dim != dim or len(vectors) != self.store.count_chunks():
                # The store is the truth: a missing or stale vector file is rebuilt from it.
                vectors = FaissIndex(dim)
                vectors.add(*self.store.all_vectors(dim))
            self._vectors = vectors
            ids, texts = self.store.all_chunk_texts()
            self._bm25 = Bm25(ids, texts)
            self._vocabulary = Vocabulary(texts)
            self._generation = generation

    # -- writing --------------------------------------------------------------------------------
    @contextmanager
    def _write_lock(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "write.lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise IndexBusyError(
                    f"another citebot process is writing to {self.dir}: wait for it to finish and try again"
                ) from None
            for stale in self.dir.glob(".vectors-*.tmp"):
                stale.unlink(missing_ok=True)
            yield

    def _commit(self, batch: list, removals: Sequence[str] = (), *, replace_all: bool = False) -> int:
        """Write one batch of (article, chunks, vectors) and removals as one new generation."""
        if not replace_all:
            self._refresh()
        # Readers may be searching the loaded vectors in other threads: change a copy.
        vectors = self._vectors.copy() if not replace_all else None
        with self.store.write() as writer:
            if replace_all:
                for key in self.store.doc_ids_by_key():
                    writer.remove(key)
                vectors = FaissIndex(self.embedder.dim)
            writer.set_model(self.settings.embedding.model, vectors.dim)
            removed = sum(writer.remove(key) for key in removals)
            for article, chunks, chunk_vectors in batch:
                writer.add(article, chunks, chunk_vectors)
            vectors.remove(np.array(writer.removed_ids, dtype=np.int64))
            if writer.added_vectors:
                vectors.add(np.array(writer.added_ids, dtype=np.int64), np.vstack(writer.added_vectors))
            # Written before the commit: if we die in between, the store still names the old file.
            vectors.save(self._vector_path(writer.generation))
            generation = writer.generation
        self._generation = -1  # the next question loads the new generation
        for old in self.dir.glob("vectors-*.faiss"):
            match = re.fullmatch(r"vectors-(\d+)\.faiss", old.name)
            # Keep the previous generation for readers that have not moved on yet.
            if match and int(match.group(1)) < generation - 1:
                old.unlink(missing_ok=True)
        return removed

    def ingest(self, paths: Sequence[Path], *, progress: Progress | None = None, rebuild: bool = False) -> IngestReport:
        """Add new and changed articles under `paths`; unchanged ones are left alone."""
        report = IngestReport()
        files, errors = ingest_files.discover(paths)
        for error in errors:
            report.failed += 1
            report.errors.append(str(error))
        max_tokens = self.settings.chunking.max_tokens
        if max_tokens > self.embedder.max_tokens:
            raise SettingsError(
                f"setting 'chunking.max_tokens' is {max_tokens}, more than the model reads "
                f"({self.embedder.max_tokens}): lower it so nothing is truncated"
            )
        with self._write_lock():
            if not rebuild:
                self._check_model()
            known = {} if rebuild else self.store.doc_ids_by_key()
            batch: list = []
            first_batch = rebuild
            for done, path in enumerate(files, start=1):
                for item in ingest_files.read_articles(path):
                    if isinstance(item, IngestError):
                        report.failed += 1
                        report.errors.append(str(item))
                        continue
                    if known.get(item.key) == item.doc_id:
                        report.unchanged += 1
                        continue
                    chunks = chunk_text(
                        item.doc_id, item.text, count_tokens=self.embedder.count_tokens,
                        max_tokens=max_tokens, overlap=self.settings.chunking.overlap_sentences,
                    )
                    if not chunks:
                        report.failed += 1
                        report.errors.append(f"{item.key}: empty: no article text")
                        continue
                    embedded = self.embedder.embed_documents([c.text for c in chunks])
                    batch.append((item, chunks, embedded))
                    if item.key in known:
                        report.updated += 1
                    else:
                        report.added += 1
                    known[item.key] = item.doc_id
                if len(batch) >= BATCH_ARTICLES:
                    self._commit(batch, replace_all=first_batch)
                    batch, first_batch = [], False
                if progress:
                    progress(done, len(files), str(path))
            if batch or first_batch:
                self._commit(batch, replace_all=first_batch)
        return report

    def remove(self, refs: Sequence[str]) -> list[str]:
        """Take documents out by key, path, url or doc id (prefix); returns the keys removed."""
        with self._write_lock():
            keys = []
            for ref in refs:
                path = os.path.abspath(os.path.expanduser(ref))
                found = self.store.find_documents(ref) or self.store.find_documents(path)
                if not found:
                    raise QuestionError(f"no indexed document matches {ref!r}: `citebot sources` lists them")
                keys += found
            if keys:
                self._commit([], removals=keys)
            return keys

    def sources(self) -> list[SourceRow]:
        return self.store.sources()

    def is_empty(self) -> bool:
        return self.store.count_documents() == 0

    # -- answering ------------------------------------------------------------------------------
    def check_question(self, question: str) -> str:
        question = " ".join(question.split())
        if not question:
            raise QuestionError("the question is empty: ask something, e.g. “where are the new battlegroups?”")
        limit = self.settings.answer.max_question_chars
        if len(question) > limit:
            raise QuestionError(
                f"the question is {len(question)} characters long; the limit is {limit}: ask it more briefly"
            )
        return question

    def retrieve(self, question: str, *, candidates: int | None = None, vector: np.ndarray | None = None) -> list[Ranked]:
        """Ranked chunk ids for a question, by the configured search mode."""
        self._refresh()
        if vector is None:
            vector = self.embedder.embed_queries([question])[0]
        n = candidates or self.settings.search.candidates
        mode = self.settings.search.mode
        runs = []
        if mode in ("hybrid", "dense"):
            runs.append(dense_search(self._vectors, vector, n))
        if mode in ("hybrid", "bm25"):
            runs.append(self._bm25.search(question, n))
        return runs[0] if len(runs) == 1 else fuse(runs, rrf_k=self.settings.search.rrf_k)

    def rank(
        self,
        question: str,
        *,
        context: list[str] | None = None,
        k: int | None = None,
        outlet: str | None = None,
        since: dt.date | None = None,
        until: dt.date | None = None,
    ) -> list[ScoredHit]:
        """The candidates for a (checked) question, best first, each with its best sentence.

        With `outlet`, `since` or `until`, only chunks of matching articles are candidates.
        """
        return self._rank(question, context=context, k=k, allowed=self._allowed(outlet, since, until))

    def _allowed(self, outlet: str | None, since: dt.date | None, until: dt.date | None) -> set[int] | None:
        """Chunk ids of the articles the filters let through; None when there are no filters."""
        if since is not None and until is not None and since > until:
            raise QuestionError(
                f"since ({since.isoformat()}) is after until ({until.isoformat()}): swap them or drop one"
            )
        if outlet is None and since is None and until is None:
            return None
        return self.store.chunk_ids_matching(outlet, since, until)

    def _rank(
        self, question: str, *, context: list[str] | None, k: int | None, allowed: set[int] | None
    ) -> list[ScoredHit]:
        # Follow-ups are searched with the conversation so far.
        query = " ".join([*(context or [])[-2:], question])
        if self.mixing:
            vectors, tokens = self.embedder.embed_with_tokens([query])
            vector, question_tokens = vectors[0], tokens[0]
        else:
            vector, question_tokens = self.embedder.embed_queries([query])[0], None
        wanted = max(self.settings.reranker.candidates, k or self.settings.search.k)
        ids, ranked = self._candidates(query, vector, wanted, allowed)
        stored = self.store.chunks(ids)
        ids = [i for i in ids if i in stored]
        hits = [
            Hit(
                chunk_id=stored[i].chunk_id, doc_id=stored[i].source.doc_id, start=stored[i].start,
                end=stored[i].end, text=stored[i].text, score=ranked[i].score if i in ranked else 0.0,
                source=stored[i].source,
            )
            for i in ids
        ]
        if self.mixing:
            rescored = self._rescore(query, vector, question_tokens, ids, ranked, hits)
            return sorted(rescored, key=lambda item: item.rank_score, reverse=True)
        scored = [self._best_sentence(query, vector, hit) for hit in hits]
        if self.reranker is None:
            return scored
        order = self.reranker.score(query, [hit.text for hit in hits])
        rescored = [replace(item, rank_score=score) for item, score in zip(scored, order)]
        return sorted(rescored, key=lambda item: item.rank_score, reverse=True)

    def _rescore(
        self, query: str, vector: np.ndarray, question_tokens: np.ndarray, ids: list[int],
        ranked: dict[int, Ranked], hits: list[Hit],
    ) -> list[ScoredHit]:
        """Score every sentence of every candidate by the weighted features (retrieval/features.py).

        A chunk scores as its best sentence, which is the one highlighted.
        """
        missing = [i for i in ids if i not in ranked or ranked[i].dense is None]
        dense_of = {i: float(v @ vector) for i, v in self.store.vectors(missing).items()}
        dense_of.update({i: ranked[i].dense for i in ids if i in ranked and ranked[i].dense is not None})
        top_lexical = max([ranked[i].lexical or 0.0 for i in ids if i in ranked] + [0.0]) or 1.0
        top_fused = max([ranked[i].score for i in ids if i in ranked] + [0.0]) or 1.0
        profile = question_profile(query, self._vocabulary)
        scored = []
        for i, hit in zip(ids, hits):
            sentences = self._sentences(hit)
            cosines = sentences.vectors @ vector
            found = ranked.get(i)
            features = chunk_features(
                profile, sentences.profiles, sentences.stems, cosines, dense_of.get(i, 0.0),
                (found.lexical or 0.0) / top_lexical if found else 0.0, found.score / top_fused if found else 0.0,
                question_tokens, sentences.tokens,
            )
            scores = features @ self._weights
            best = int(np.argmax(scores))
            scored.append(ScoredHit(hit=hit, sentence=sentences.spans[best], sentence_score=float(cosines.max()),
                                    rank_score=float(scores[best])))
        return scored

    def _candidates(
        self, query: str, vector: np.ndarray, wanted: int, allowed: set[int] | None
    ) -> tuple[list[int], dict[int, Ranked]]:
        """The chunk ids to score, best first, with what each retriever scored them.

        Filtering after retrieval would starve a rare outlet, so with filters the search goes deeper
        (as deep as the share of matching chunks requires), and a small matching set is scored whole.
        """
        if allowed is None:
            ranked = self.retrieve(query, vector=vector)[:wanted]
            return [r.id for r in ranked], {r.id: r for r in ranked}
        if not allowed:
            return [], {}
        total = max(self.store.count_chunks(), 1)
        depth = min(total, self.settings.search.candidates * math.ceil(total / len(allowed)))
        ranked = [r for r in self.retrieve(query, candidates=depth, vector=vector) if r.id in allowed][:wanted]
        ids = [r.id for r in ranked]
        if len(allowed) <= wanted:
            ids += sorted(allowed.difference(ids))
        return ids, {r.id: r for r in ranked}

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
        """Answer a question from the index, citing the passages it rests on.

        Args:
            question: what to answer; checked for length first.
            k: how many passages to cite (default from settings).
            context: earlier questions of a conversation, to search follow-ups with.
            outlet: only articles from this outlet (exact name, any case).
            since: only articles published on or after this date; undated articles are left out.
            until: only articles published on or before this date; undated articles are left out.
        """
        question = self.check_question(question)
        self._refresh()
        if self.is_empty():
            return not_found(question, "The index is empty: add articles with `citebot ingest PATH`.")
        allowed = self._allowed(outlet, since, until)
        if allowed is not None and not allowed:
            return not_found(question, f"No indexed article {_describe_filters(outlet, since, until)}: "
                             "`citebot sources` lists the outlets and dates.")
        return self.compose(question, self._rank(question, context=context, k=k, allowed=allowed), k=k)

    @property
    def mixing(self) -> bool:
        """True when candidates are ordered by the mixed rescoring score (the default)."""
        return self.rescore and self.reranker is None

    def compose(self, question: str, scored: list[ScoredHit], *, k: int | None = None) -> Answer:
        # "Not found" rests on the mixed score where it orders the candidates, else on the best
        # sentence's similarity; each has its own threshold, calibrated in config/default.toml.
        answer = self.settings.answer
        return build_answer(
            question, scored, k=k or self.settings.search.k,
            min_score=answer.min_mixed_score if self.mixing else answer.min_score,
            support="rank" if self.mixing else "sentence",
            duplicate_threshold=answer.duplicate_threshold, phrases=self.phrases,
        )

    def _sentences(self, hit: Hit) -> _Sentences:
        """A chunk's sentence spans, vectors and word profiles, cached: chunks recur across questions."""
        with self._cache_lock:
            cached = self._sentence_cache.pop(hit.chunk_id, None)  # re-inserted below: least recently used go first
        if cached is None:
            spans = split_sentences(hit.text) or [(0, len(hit.text))]
            texts = [hit.text[s:e] for s, e in spans]
            profiles, stems = chunk_profiles(texts)
            vectors, tokens = self.embedder.embed_with_tokens(texts)
            cached = _Sentences(spans, vectors, profiles, stems, tokens)
        with self._cache_lock:
            while len(self._sentence_cache) >= SENTENCE_CACHE:
                self._sentence_cache.pop(next(iter(self._sentence_cache)))
            self._sentence_cache[hit.chunk_id] = cached
        return cached

    def _best_sentence(self, question: str, query: np.ndarray, hit: Hit) -> ScoredHit:
        """The hit's answering sentence, and its best sentence similarity to the question.

        The similarity alone decides "not found" (it is what the threshold was calibrated on); the
        sentence highlighted also weighs the question's words in it, which picks the sentence holding
        the answer more often (benchmarks/tune_sentence.py).
        """
        spans, vectors = self._sentences(hit)[:2]
        similarity = vectors @ query
        weight = self.settings.answer.sentence_overlap_weight
        choice = similarity + weight * np.array([overlap(question, hit.text[s:e]) for s, e in spans]) \
            if weight else similarity
        best = int(np.argmax(choice))
        return ScoredHit(hit=hit, sentence=spans[best], sentence_score=float(similarity.max()))


_BLAS_LIMIT = None


def _single_threaded_blas() -> None:
    """Keep numpy's BLAS to one thread for this process.

    The rescoring multiplies many small matrices. Threaded OpenBLAS then leaves its threads
    spinning, and they starve torch's threads encoding the next question: a question over cached
    chunks took 105 ms instead of 19 ms on the 2-core machine.
    """
    global _BLAS_LIMIT
    if _BLAS_LIMIT is None:
        from threadpoolctl import threadpool_limits

        _BLAS_LIMIT = threadpool_limits(limits=1, user_api="blas")


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
