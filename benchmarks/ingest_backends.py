"""Ingest's model work: torch against the ONNX export, sentences embedded again against the chunk's own pass.

usage: python benchmarks/ingest_backends.py [--articles 60] [--rounds 3] [--json] [-v]

The texts are what `citebot ingest` embeds for the articles `benchmarks/peers.py --make-corpus N`
cuts from SQuAD: every chunk (the real chunker, 200 word pieces at most) with its sentence spans.
Each way embeds them as the writer does (retrieval.embed.embed_with_sentences): "separate" runs
the model over every chunk and then over every distinct sentence (the previous releases);
"chunk-pass" runs it once per chunk and takes each sentence's vector from that pass (this
release's default). Four ways: sentence-transformers (torch) and ONNX, each both ways, alternating
within each round. Printed per way: seconds per round (median), chunks per second, the speed-up
over sentence-transformers separate. Also the smallest cosine between the two backends' vectors
of one text (chunks and chunk-pass sentences): the export must give torch's vectors.
The model loads and the ONNX export are made before the clock starts.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import peers  # noqa: E402
from retrieval.chunk import chunk_text, sentence_spans  # noqa: E402
from retrieval.embed import SentenceTransformerEmbedder, embed_with_sentences  # noqa: E402
from retrieval.onnx_embed import OnnxEmbedder, default_onnx_dir, export_onnx  # noqa: E402
from retrieval.settings import load_settings  # noqa: E402


WAYS = ["st-separate", "st-chunk-pass", "onnx-separate", "onnx-chunk-pass"]


def ingest_texts(articles, embedder, settings) -> tuple[list[str], list[list[tuple[int, int]]]]:
    """The chunk texts the writer embeds for `articles`, and each chunk's sentence spans."""
    chunking = settings.chunking
    chunks = []
    for article in articles:
        chunks += chunk_text(article.title, article.text(), count_tokens=embedder.count_tokens,
                             max_tokens=chunking.max_tokens, overlap=chunking.overlap_sentences,
                             max_chars=chunking.max_chars)
    return [c.text for c in chunks], [sentence_spans(c) for c in chunks]


def timed(embedder, texts: list[str], spans, chunk_pass: bool) -> tuple[float, np.ndarray, list[np.ndarray]]:
    started = time.perf_counter()
    vectors, sentences = embed_with_sentences(embedder, texts, spans, chunk_pass=chunk_pass)
    return time.perf_counter() - started, vectors, sentences


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float32), b.astype(np.float32)
    return float(((a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--articles", type=int, default=60, help="SQuAD-made articles (default 60)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--squad", type=Path, default=peers.SQUAD, help="SQuAD v1.1 file")
    parser.add_argument("--json", action="store_true", help="one JSON line")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)

    settings = load_settings()
    torch_side = SentenceTransformerEmbedder(settings.embedding)
    folder = default_onnx_dir(settings.embedding)
    if not (folder / "model.onnx").exists():
        export_onnx(settings.embedding, folder, model=torch_side.model)
    onnx_side = OnnxEmbedder(folder, name=settings.embedding.model, batch_size=settings.embedding.batch_size)
    squad = json.loads(args.squad.read_text(encoding="utf-8"))
    articles = peers.news_articles(squad)[: args.articles]
    texts, spans = ingest_texts(articles, torch_side, settings)
    distinct = len({text[a:b] for text, ss in zip(texts, spans) for a, b in ss})
    for side in (torch_side, onnx_side):
        side.embed_documents(["The model is loaded before the clock starts."])

    sides = {"st": torch_side, "onnx": onnx_side}
    times: dict[str, list[float]] = {way: [] for way in WAYS}
    cosine = 1.0
    for n in range(args.rounds):
        order = WAYS if n % 2 == 0 else WAYS[::-1]
        got = {}
        for way in order:
            backend, mode = way.split("-", 1)
            seconds, vectors, sentences = timed(sides[backend], texts, spans, mode == "chunk-pass")
            times[way].append(seconds)
            got[way] = (vectors, np.vstack(sentences))
            if not args.json:
                print(f"round {n + 1}: {way} {seconds:.2f} s", file=sys.stderr, flush=True)
        for mode in ("separate", "chunk-pass"):
            for x, y in zip(got[f"st-{mode}"], got[f"onnx-{mode}"]):
                cosine = min(cosine, _min_cosine(x, y))
    seconds = {way: statistics.median(times[way]) for way in WAYS}
    figures = {
        "articles": len(articles), "chunks": len(texts), "sentences": distinct, "rounds": args.rounds,
        "seconds": {way: round(s, 3) for way, s in seconds.items()},
        "chunks_per_s": {way: round(len(texts) / s, 2) for way, s in seconds.items()},
        "speedup": {way: round(seconds["st-separate"] / s, 3) for way, s in seconds.items()},
        "min_cosine": round(cosine, 7),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"{figures['chunks']} chunks and {distinct} distinct sentences of {figures['articles']} articles, "
              f"median of {args.rounds} interleaved rounds")
        for way in WAYS:
            print(f"  {way:16} {seconds[way]:7.2f} s  {figures['chunks_per_s'][way]:6.2f} chunks/s  "
                  f"{figures['speedup'][way]:.2f}x")
        print(f"  smallest cosine between the two backends' vectors: {cosine:.7f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
