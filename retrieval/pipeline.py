"""The Answerer: wires ingest, chunking, embedding, index, store, search and answer together.

Both doors (the CLI and the Discord bot) hold one Answerer and call `answer(question)`.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retrieval import ingest as ingest_files
from retrieval.answer import ScoredHit, build_answer, not_found
from retrieval.chunk import chunk_text, split_sentences
from retrieval.embed import Embedder, SentenceTransformerEmbedder
from retrieval.errors import IndexBusyError, IndexMismatchError, IngestError, QuestionError, SettingsError
from retrieval.index import FaissIndex
from retrieval.models import Answer, Hit
from retrieval.search import Bm25, Ranked, dense_search, fuse
from retrieval.settings import Settings
from retrieval.store import SourceRow, Store

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]

# Articles embedded before they are committed together: a kill loses at most one batch of work.
BATCH_ARTICLES = 64
# Sentences scored against the question in this many of the best fused candidates.
RESCORE_CANDIDATES = 20


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

    def __init__(self, settings: Settings, embedder: Embedder, *, rescore: bool = True):
        self.settings = settings
        self.embedder = embedder
        self.rescore = rescore and settings.reranker.enabled
        self.dir = settings.index.dir
        self.store = Store(self.dir / "citebot.sqlite")
        self._generation = -1
        self._vectors: FaissIndex | None = None
        self._bm25: Bm25 | None = None
        self._load_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, *, embedder: Embedder | None = None) -> Answerer:
        return cls(settings, embedder or SentenceTransformerEmbedder(settings.embedding))

    # -- loading --------------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Load the model and the index now rather than on the first question."""
        self.embedder.embed_queries(["warm up"])
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
            self._bm25 = Bm25(*self.store.all_chunk_texts())
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
        self._refresh()
        vectors = self._vectors
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
        for old in self.dir.glob("vectors-*.faiss"):
            match = re.fullmatch(r"vectors-(\d+)\.faiss", old.name)
            # Keep the previous generation for readers that have not moved on yet.
            if match and int(match.group(1)) < generation - 1:
                old.unlink(missing_ok=True)
        self._generation = -1  # the BM25 index and vectors reload from the new generation
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

    def retrieve(self, question: str, *, candidates: int | None = None) -> list[Ranked]:
        """Ranked chunk ids for a question, by the configured search mode."""
        self._refresh()
        n = candidates or self.settings.search.candidates
        mode = self.settings.search.mode
        runs = []
        if mode in ("hybrid", "dense"):
            runs.append(dense_search(self._vectors, self.embedder.embed_queries([question])[0], n))
        if mode in ("hybrid", "bm25"):
            runs.append(self._bm25.search(question, n))
        return runs[0] if len(runs) == 1 else fuse(runs, rrf_k=self.settings.search.rrf_k)

    def answer(self, question: str, *, k: int | None = None, context: list[str] | None = None) -> Answer:
        """Answer a question from the index, citing the passages it rests on."""
        question = self.check_question(question)
        k = k or self.settings.search.k
        self._refresh()
        if self.is_empty():
            return not_found(question, "The index is empty: add articles with `citebot ingest PATH`.")
        # Follow-ups are searched with the conversation so far; the answer is scored on the question.
        query = " ".join([*(context or [])[-2:], question])
        ranked = self.retrieve(query)[: max(RESCORE_CANDIDATES, k)]
        stored = self.store.chunks(r.id for r in ranked)
        hits = [
            Hit(
                chunk_id=stored[r.id].chunk_id, doc_id=stored[r.id].source.doc_id, start=stored[r.id].start,
                end=stored[r.id].end, text=stored[r.id].text, score=r.score, source=stored[r.id].source,
            )
            for r in ranked
            if r.id in stored
        ]
        scored = self._score_sentences(query, hits)
        return build_answer(
            question, scored, k=k, min_score=self.settings.answer.min_score,
            duplicate_threshold=self.settings.answer.duplicate_threshold,
        )

    def _score_sentences(self, question: str, hits: list[Hit]) -> list[ScoredHit]:
        """Score each hit by its best sentence's similarity to the question."""
        spans = [split_sentences(hit.text) or [(0, len(hit.text))] for hit in hits]
        sentences = [hit.text[s:e] for hit, hit_spans in zip(hits, spans) for s, e in hit_spans]
        vectors = self.embedder.embed_queries([question, *sentences])
        similarity = vectors[1:] @ vectors[0]
        scored, i = [], 0
        for hit, hit_spans in zip(hits, spans):
            sims = similarity[i : i + len(hit_spans)]
            i += len(hit_spans)
            best = int(np.argmax(sims))
            scored.append(ScoredHit(hit=hit, sentence=hit_spans[best], sentence_score=float(sims[best])))
        if self.rescore:
            scored.sort(key=lambda s: s.sentence_score, reverse=True)
        return scored
