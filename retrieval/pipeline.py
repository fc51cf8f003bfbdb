"""The Answerer: one object for both doors, joining the write side and the read side over one store.

The CLI and the Discord bot hold one Answerer and call `answer(question)`; `ingest` and
`remove` go to retrieval/writer.py, questions to retrieval/reader.py. Questions are embedded
by the ONNX export of the model where one exists (no torch needed to answer); documents too, on
the CPU, once the export exists (the first ingest uses sentence-transformers and makes the export).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from retrieval.embed import Embedder, SentenceTransformerEmbedder
from retrieval.reader import Reader
from retrieval.rerank import CrossEncoderReranker, Reranker
from retrieval.settings import Settings
from retrieval.spans import PhraseFinder, SpacyPhraseFinder
from retrieval.backends import open_index
from retrieval.backends.base import IndexStore, SourceRow
from retrieval.writer import IngestReport, Progress, Writer

log = logging.getLogger(__name__)

__all__ = ["Answerer", "IngestReport"]


class Answerer:
    """Holds the models, the store and the vector segments; answers questions and ingests articles."""

    def __init__(
        self,
        settings: Settings,
        embedder: Embedder,
        *,
        questions: Embedder | None = None,
        rescore: bool = True,
        phrases: PhraseFinder | None = None,
        reranker: Reranker | None = None,
    ):
        self.settings = settings
        self.embedder = embedder
        self.dir = settings.index.dir
        self.store: IndexStore = open_index(settings)
        self.writer = Writer(settings, embedder, self.store)
        self.reader = Reader(settings, questions or embedder, self.store, rescore=rescore, phrases=phrases,
                             reranker=reranker)
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
        questions = None
        if embedder is None:
            from retrieval.onnx_embed import load_question_embedder

            questions = load_question_embedder(settings.embedding)
            if questions is not None and settings.embedding.device == "cpu":
                # The export gives the same vectors and embeds an ingest's texts 1.46 times as fast
                # on this machine (benchmarks/ingest_backends.py), with no torch to import.
                embedder = questions
        return cls(settings, embedder or SentenceTransformerEmbedder(settings.embedding), questions=questions,
                   phrases=phrases, reranker=reranker)

    def sibling(self, settings: Settings) -> Answerer:
        """An Answerer over another index (a collection, retrieval/collection.py) sharing this one's models."""
        if settings.index.dir == self.dir:
            return self
        return Answerer(settings, self.embedder, questions=self.reader.embedder, rescore=self.reader.rescore,
                        phrases=self.reader.phrases, reranker=self.reader.reranker)

    # -- the read side --------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Load the question model, the phrase model and the vectors now rather than on the first question."""
        self.reader.embedder.embed_queries(["warm up"])
        if hasattr(self.reader.phrases, "warm_up"):
            self.reader.phrases.warm_up()
        with self.store.snapshot():
            self.reader.refresh()

    def answer(self, question: str, **kwargs):
        """Answer a question from the last commit, citing the passages it rests on (see Reader.answer)."""
        return self.reader.answer(question, **kwargs)

    def rank(self, question: str, **kwargs):
        return self.reader.rank(question, **kwargs)

    def compose(self, question: str, scored, *, k: int | None = None):
        return self.reader.compose(question, scored, k=k)

    def retrieve(self, question: str, **kwargs):
        return self.reader.retrieve(question, **kwargs)

    def check_question(self, question: str) -> str:
        return self.reader.check_question(question)

    @property
    def mixing(self) -> bool:
        return self.reader.mixing

    @property
    def supporting(self) -> bool:
        return self.reader.supporting

    def check(self) -> list[str]:
        """Problems where the index's parts disagree (the store and the vector segments); [] when it is whole."""
        return self.store.check()

    def sources(self) -> list[SourceRow]:
        return self.store.sources()

    def is_empty(self) -> bool:
        return self.store.count_documents() == 0

    # -- the write side -------------------------------------------------------------------------
    def ingest(self, paths: Sequence[Path], *, progress: Progress | None = None, rebuild: bool = False,
               sync: bool = False) -> IngestReport:
        """Add new and changed articles under `paths`; unchanged ones are left alone (see Writer.ingest)."""
        report = self.writer.ingest(paths, progress=progress, rebuild=rebuild, sync=sync)
        self._export_question_model()
        return report

    def ingest_articles(self, items) -> IngestReport:
        """Add articles made elsewhere (fetched pages, feed entries); see Writer.ingest_articles."""
        report = self.writer.ingest_articles(items)
        self._export_question_model()
        return report

    def forget_under(self, paths: Sequence[Path]) -> int:
        """Remove the documents of deleted files or folders (see Writer.forget_under)."""
        return self.writer.forget_under(paths)

    def remove(self, refs: Sequence[str], *, all_matching: bool = False) -> list[str]:
        """Take documents out by key, path, url or doc id (prefix); returns the keys removed (see Writer.remove)."""
        return self.writer.remove(refs, all_matching=all_matching)

    def _export_question_model(self) -> None:
        """After an ingest (torch is loaded by then), export the ONNX question encoder once, if missing."""
        if not isinstance(self.embedder, SentenceTransformerEmbedder) or self.embedder._model is None:
            return
        from retrieval.onnx_embed import default_onnx_dir, export_onnx

        folder = default_onnx_dir(self.settings.embedding)
        if folder.exists():
            return
        try:
            log.info("exporting the question encoder to %s (once)", folder)
            model = self.embedder.model  # loaded by the ingest: exported as it is, not loaded again
            export_onnx(self.settings.embedding, folder, model=model if model.device.type == "cpu" else None)
        except Exception:  # noqa: BLE001 - questions then use sentence-transformers, only slower to start
            log.warning("could not export the ONNX question encoder; questions use sentence-transformers",
                        exc_info=True)


_BLAS_LIMIT = None


def _single_threaded_blas() -> None:
    """Keep numpy's BLAS to one thread for this process.

    The rescoring multiplies many small matrices. Threaded OpenBLAS then leaves its threads
    spinning, and they starve the model's threads encoding the next question: a question over
    cached chunks took 105 ms instead of 19 ms on the 2-core machine.
    """
    global _BLAS_LIMIT
    if _BLAS_LIMIT is None:
        from threadpoolctl import threadpool_limits

        _BLAS_LIMIT = threadpool_limits(limits=1, user_api="blas")
