"""The write side: files -> articles -> chunks, sentences, vectors -> one commit per batch.

Engine-neutral: it reads and chunks articles, embeds them in batches and hands each batch to the
index's `write()` (retrieval/backends/base.py) as one transaction, holding the index's write lock
for each call. What a commit costs and how it is made durable is the engine's (the embedded engine:
one small segment per commit, merged a few at a time afterwards, so no commit copies the corpus).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retrieval import ingest as ingest_files
from retrieval.budget import TimeBudget
from retrieval.chunk import chunk_text, sentence_spans
from retrieval.embed import Embedder, embed_sentences, embed_with_sentences
from retrieval.errors import IngestError, QuestionError, SettingsError
from retrieval.models import Article, Chunk
from retrieval.settings import Settings
from retrieval.backends.base import IndexStore

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]

# Articles embedded together and committed together: a kill loses at most one batch of work.
BATCH_ARTICLES = 64
BATCH_CHUNKS = 512


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


@dataclass
class _Pending:
    """Articles read but not yet embedded; the last article read with a key wins."""

    articles: dict[str, tuple[Article, list[Chunk]]] = field(default_factory=dict)
    chunks: int = 0

    def add(self, article: Article, chunks: list[Chunk]) -> None:
        previous = self.articles.pop(article.key, None)
        self.chunks += len(chunks) - (len(previous[1]) if previous else 0)
        self.articles[article.key] = (article, chunks)


@dataclass
class _Run:
    """One ingest call's progress: its report, the batch being filled, the keys taken so far."""

    report: IngestReport
    rebuild: bool = False
    pending: _Pending = field(default_factory=_Pending)
    seen: dict[str, str] = field(default_factory=dict)  # key -> doc id, for this run
    first: bool = False  # the first commit of a rebuild replaces everything
    read: set[str] = field(default_factory=set)  # every key read, taken or not (for --sync)
    unreadable: set[str] = field(default_factory=set)  # files that failed as a whole: their documents stay
    removals: list[str] = field(default_factory=list)  # keys to take out in this run's last commit

    def __post_init__(self):
        self.first = self.rebuild


def _resolved(path: str) -> str:
    try:
        return str(Path(path).resolve())
    except RuntimeError:  # a symlink loop: it names no indexed file
        return path


class _ArticleError(Exception):
    """One article cannot be indexed; the message says why and what to do."""


def _read_file(path: Path, settings: Settings, budget: TimeBudget | None = None) -> list[Article | IngestError]:
    corpus = settings.corpus
    return ingest_files.read_articles(path, max_bytes=int(corpus.max_file_mb * 2**20),
                                      budget=budget or TimeBudget(corpus.max_file_seconds))


def _last_records(files: list[Path], settings: Settings) -> dict[str, tuple[int, int]]:
    """Where the last record of each key read from JSON files is: (file number from 1, record number).

    Two records with one key (two feeds carrying one story) are one document, the last one read;
    knowing it before the first commit means an older copy is never committed on the way.
    Other files are keyed by their own path, so they cannot repeat a key.
    """
    last: dict[str, tuple[int, int]] = {}
    for done, path in enumerate(files, start=1):
        if path.suffix.lower() not in (".json", ".jsonl"):
            continue
        try:
            items = _read_file(path, settings)
        except Exception:  # noqa: BLE001 - the main pass reads it again and reports the failure
            continue
        for number, item in enumerate(items):
            if isinstance(item, Article):
                last[item.key] = (done, number)
    return last


class Writer:
    """Ingests, removes and merges. Holds the write lock for the length of each call."""

    def __init__(self, settings: Settings, embedder: Embedder, store: IndexStore):
        self.settings = settings
        self.embedder = embedder
        self.store = store

    def lock(self, *, alone: bool = False):
        return self.store.lock(alone=alone)

    # -- ingest ---------------------------------------------------------------------------------
    def ingest(self, paths: Sequence[Path], *, progress: Progress | None = None, rebuild: bool = False,
               sync: bool = False) -> IngestReport:
        """Add new and changed articles under `paths`; unchanged ones are left alone.

        With `sync`, documents indexed from under `paths` that are no longer there (a deleted file, a
        record gone from its feed file) are removed in the same run; a file that cannot be read at all
        keeps its documents.
        """
        report = IngestReport()
        files, errors = ingest_files.discover(paths)
        for error in errors:
            report.failed += 1
            report.errors.append(str(error))
        self._check_chunking()
        with self.lock(alone=rebuild):  # a rebuild replaces everything: no other writer meanwhile
            if not rebuild:
                self.store.check_model(self.settings.embedding.model)
            last = _last_records(files, self.settings)
            run = _Run(report, rebuild=rebuild)
            seconds = self.settings.corpus.max_file_seconds
            for done, path in enumerate(files, start=1):
                budget = TimeBudget(seconds)  # for reading this file, and chunking it if it is one article
                records = path.suffix.lower() in (".json", ".jsonl")  # each record is chunked on its own budget
                for number, item in enumerate(self._read(path, budget)):
                    if isinstance(item, Article):
                        run.read.add(item.key)
                        if last.get(item.key, (done, number)) != (done, number):
                            continue  # a later record with this key wins: this one is never indexed
                    elif item.path == str(path):
                        run.unreadable.add(str(path))
                    self._take(item, run, TimeBudget(seconds) if records else budget)
                if progress:
                    progress(done, len(files), str(path))
            if sync:
                run.removals += self._gone(paths, files, run)
            self._finish(run)
        return report

    def _gone(self, paths: Sequence[Path], files: list[Path], run: _Run) -> list[str]:
        """Keys indexed from under `paths` whose file or record was not there in this run."""
        kept = {str(f) for f in files} - run.unreadable
        gone = []
        for root in dict.fromkeys(_resolved(str(p)) for p in paths):
            for key, path in self.store.documents_under(root):
                if key in run.read or path in run.unreadable:
                    continue
                if path not in kept or key not in run.read:
                    gone.append(key)
        return list(dict.fromkeys(gone))

    def ingest_articles(self, items: Sequence[Article | IngestError]) -> IngestReport:
        """Add articles made elsewhere (fetched pages, feed entries) as `ingest` adds files' articles.

        The last article with a key wins; an IngestError in `items` is reported as a failure.
        """
        report = IngestReport()
        last = {item.key: n for n, item in enumerate(items) if isinstance(item, Article)}
        self._check_chunking()
        with self.lock():
            self.store.check_model(self.settings.embedding.model)
            run = _Run(report)
            for n, item in enumerate(items):
                if isinstance(item, Article) and last[item.key] != n:
                    continue
                self._take(item, run)
            self._finish(run)
        return report

    def _check_chunking(self) -> None:
        max_tokens = self.settings.chunking.max_tokens
        if max_tokens > self.embedder.max_tokens:
            raise SettingsError(
                f"setting 'chunking.max_tokens' is {max_tokens}, more than the model reads "
                f"({self.embedder.max_tokens}): lower it so nothing is truncated"
            )

    def _take(self, item: Article | IngestError, run: _Run, budget: TimeBudget | None = None) -> None:
        """One article into the pending batch (unless unchanged or broken); commit when the batch is full."""
        report = run.report
        if isinstance(item, IngestError):
            report.failed += 1
            report.errors.append(str(item))
            return
        try:  # never abort the batch for one article
            known = run.seen.get(item.key) if item.key in run.seen else (
                None if run.rebuild else self.store.doc_id_of(item.key))
            if known == item.doc_id:
                if item.key not in run.seen:
                    report.unchanged += 1
                return
            chunks = self._chunk(item, budget)
        except _ArticleError as error:
            report.failed += 1
            report.errors.append(f"{item.key}: {error}")
            return
        except Exception as error:  # noqa: BLE001 - a bug on odd input costs that article only
            log.debug("article %s failed", item.key, exc_info=True)
            report.failed += 1
            report.errors.append(f"{item.key}: cannot be indexed ({type(error).__name__}: {error}): "
                                 "run with -vv for the details")
            return
        if not chunks:
            report.failed += 1
            report.errors.append(f"{item.key}: empty: no article text")
            return
        cutoff = self._cutoff()
        if cutoff is not None and item.published is not None and item.published < cutoff:
            report.failed += 1
            report.errors.append(f"{item.key}: published {item.published.isoformat()}, more than "
                                 f"retention.max_age_days ({self.settings.retention.max_age_days}) ago: not indexed")
            return
        if item.key not in run.seen:
            if known is None:
                report.added += 1
            else:
                report.updated += 1
        run.seen[item.key] = item.doc_id
        run.pending.add(item, chunks)
        if len(run.pending.articles) >= BATCH_ARTICLES or run.pending.chunks >= BATCH_CHUNKS:
            self._commit(run.pending, replace_all=run.first)
            run.pending, run.first = _Pending(), False

    def _finish(self, run: _Run) -> None:
        removals = [k for k in dict.fromkeys(run.removals + self._expired()) if k not in run.seen]
        if run.pending.articles or run.first or removals:
            run.report.removed += self._commit(run.pending, removals, replace_all=run.first)
        self.merge()

    def _cutoff(self) -> dt.date | None:
        days = self.settings.retention.max_age_days
        if days is None:
            return None
        return dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=days)

    def _expired(self) -> list[str]:
        """Keys older than retention.max_age_days (by publication date, or ingestion date without one)."""
        cutoff = self._cutoff()
        return [] if cutoff is None else self.store.keys_older_than(cutoff)

    def _read(self, path: Path, budget: TimeBudget) -> list:
        """The file's articles and errors; whatever goes wrong reading it costs this file only."""
        try:
            return _read_file(path, self.settings, budget)
        except Exception as error:  # noqa: BLE001 - read_articles reports bad input itself; this is a bug's net
            log.debug("reading %s failed", path, exc_info=True)
            return [IngestError(str(path), f"cannot be read ({type(error).__name__}: {error}): "
                                           "run with -vv for the details")]

    def _chunk(self, article: Article, budget: TimeBudget | None = None) -> list[Chunk]:
        limit = self.settings.corpus.max_article_chars
        if len(article.text) > limit:
            raise _ArticleError(f"{len(article.text):,} characters, more than the limit of {limit:,}: "
                                "split it or raise corpus.max_article_chars")
        chunking = self.settings.chunking
        try:
            return chunk_text(
                article.doc_id, article.text, count_tokens=self.embedder.count_tokens,
                max_tokens=chunking.max_tokens, overlap=chunking.overlap_sentences, max_chars=chunking.max_chars,
                budget=budget,
            )
        except ValueError as error:
            raise _ArticleError(f"cannot be cut into chunks: {error}") from None

    def _embed(self, pending: _Pending, vectors: np.ndarray | None = None):
        """Chunk vectors and sentence spans and vectors for every pending article, batched.

        By default (`embedding.sentence_vectors = "chunk-pass"`) one model pass over the chunks gives
        both. `vectors`, if given, are the chunks' vectors already (a migration keeps them): with the
        chunk pass it still runs, for the sentences; otherwise the sentences are embedded on their own.
        """
        items = list(pending.articles.values())
        chunks = [c for _, cs in items for c in cs]
        texts = [c.text for c in chunks]
        spans = [sentence_spans(c) for c in chunks]
        chunk_pass = self.settings.embedding.sentence_vectors == "chunk-pass"
        if vectors is None or chunk_pass:
            embedded, sentence_vectors = embed_with_sentences(self.embedder, texts, spans, chunk_pass=chunk_pass)
            vectors = embedded if vectors is None else vectors
        else:
            sentence_vectors = embed_sentences(self.embedder, texts, spans)
        out, at = [], 0
        for article, article_chunks in items:
            n = len(article_chunks)
            part = slice(at, at + n)
            out.append((article, article_chunks, vectors[part], spans[part], sentence_vectors[part]))
            at += n
        return out

    def _sentence_kind(self, replace_all: bool) -> str:
        """How the index's sentence vectors were made once this commit is in: the setting's way, or "mixed".

        An index from before the key was kept holds sentences embedded alone ("separate").
        """
        made = self.settings.embedding.sentence_vectors
        if replace_all or self.store.count_chunks() == 0:
            return made
        before = self.store.get_meta("sentence_vectors") or "separate"
        return made if before == made else "mixed"

    def _commit(self, pending: _Pending, removals: Sequence[str] = (), *, replace_all: bool = False,
                vectors: np.ndarray | None = None) -> int:
        """One batch of articles and removals as one new generation: a new segment, one transaction."""
        batch = self._embed(pending, vectors) if pending.articles else []
        copies = self.settings.copies
        with self.store.write(copies_threshold=copies.threshold if copies.enabled else None) as writer:
            if replace_all:
                writer.clear()
            writer.set_model(self.settings.embedding.model, self.embedder.dim)
            if batch:
                writer.set_meta("sentence_vectors", self._sentence_kind(replace_all))
            removed = sum(writer.remove(key) for key in removals)
            for article, chunks, vectors, spans, sentence_vectors in batch:
                writer.add(article, chunks, vectors, spans, sentence_vectors)
        return removed

    def remove(self, refs: Sequence[str], *, all_matching: bool = False) -> list[str]:
        """Take documents out by key, path, url or doc id (prefix); returns the keys removed.

        Every reference is looked up before anything is removed: one that matches nothing, or
        more than one document without `all_matching`, is an error and nothing is removed.
        """
        with self.lock():
            keys = []
            for ref in refs:
                path = os.path.abspath(os.path.expanduser(ref))
                # Ingest keys files by their resolved path: a path through a symlink finds them too.
                found = (self.store.find_documents(ref) or self.store.find_documents(path)
                         or self.store.find_documents(_resolved(path)))
                if not found:
                    raise QuestionError(f"no indexed document matches {ref!r}: `citebot sources` lists them")
                if len(found) > 1 and not all_matching:
                    shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
                    raise QuestionError(
                        f"{ref!r} matches {len(found)} documents ({shown}); nothing was removed: "
                        "give a longer id, or add --all-matching to remove them all"
                    )
                keys += [key for key in found if key not in keys]
            if keys:
                self._commit(_Pending(), removals=keys)
                self.merge()
            return keys

    def forget_under(self, paths: Sequence[Path]) -> int:
        """Remove the documents read from `paths` or from below them (deleted files or folders); returns how many."""
        with self.lock():
            keys = list(dict.fromkeys(key for p in paths for key, _ in self.store.documents_under(_resolved(str(p)))))
            removed = self._commit(_Pending(), removals=keys) if keys else 0
            if keys:
                self.merge()
            return removed

    def merge(self) -> int:
        """The engine's housekeeping after commits (the embedded engine merges segments); returns its steps."""
        return self.store.maintain()
