"""Rerankers: an optional second opinion on the order of the candidates.

No cross-encoder ships its weights on PyPI, so by default citebot ranks candidates by their best
sentence (see pipeline.py). Users with a sentence-transformers CrossEncoder on disk can set
`reranker.cross_encoder` to its folder; it then orders the candidates, while the "not found"
decision stays with the calibrated sentence score.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Protocol, runtime_checkable

from retrieval.errors import ModelLoadError, SettingsError
from retrieval.text import QUESTION_STOPWORDS as _STOP

log = logging.getLogger(__name__)


@runtime_checkable
class Reranker(Protocol):
    def score(self, question: str, passages: list[str]) -> list[float]:
        """One relevance score per passage; higher is better."""
        ...


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder loaded from a local folder, on first use."""

    def __init__(self, path: Path, *, device: str = "cpu"):
        if not Path(path).is_dir():
            raise SettingsError(
                f"setting 'reranker.cross_encoder' names {path}, which is not a folder: "
                "give the folder of a sentence-transformers CrossEncoder, or remove the setting"
            )
        self.path = Path(path)
        self.device = device
        self._model = None
        self._lock = threading.Lock()

    def _load(self):
        from retrieval.embed import _offline

        _offline()
        try:
            from sentence_transformers import CrossEncoder

            return CrossEncoder(str(self.path), device=self.device, local_files_only=True)
        except Exception as error:
            log.debug("cross-encoder load failed", exc_info=True)
            raise ModelLoadError(
                f"the cross-encoder in {self.path} could not be loaded ({type(error).__name__}: {error}): "
                "check the folder holds a sentence-transformers CrossEncoder, or remove reranker.cross_encoder"
            ) from None

    def score(self, question: str, passages: list[str]) -> list[float]:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        if not passages:
            return []
        return [float(s) for s in self._model.predict([(question, p) for p in passages], show_progress_bar=False)]




def content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"\w+", text.lower()) if w not in _STOP}


def overlap(question: str, sentence: str) -> float:
    """The share of the question's content words that the sentence contains."""
    wanted = content_words(question)
    return len(wanted & content_words(sentence)) / len(wanted) if wanted else 0.0

