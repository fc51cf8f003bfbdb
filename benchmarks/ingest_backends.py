"""Ingest's model work, sentence-transformers (torch) against the ONNX Runtime export, side by side.

usage: python benchmarks/ingest_backends.py [--articles 60] [--rounds 3] [--json] [-v]

The texts are what `citebot ingest` embeds for the articles `benchmarks/peers.py --make-corpus N`
cuts from SQuAD: every chunk (the real chunker, 200 word pieces at most) and then every distinct
sentence of those chunks, in the writer's two passes. Both backends embed the same texts with the
same batch size, alternating within each round; printed per backend: seconds per round (median),
chunks per second, and the ratio. Also the smallest cosine between the two backends' vectors of
one text, over every text: the export must give the same vectors to be a drop-in replacement.
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
from retrieval.chunk import chunk_text, split_sentences  # noqa: E402
from retrieval.embed import SentenceTransformerEmbedder  # noqa: E402
from retrieval.onnx_embed import OnnxEmbedder, default_onnx_dir, export_onnx  # noqa: E402
from retrieval.settings import load_settings  # noqa: E402


def ingest_texts(articles, embedder, settings) -> tuple[list[str], list[str]]:
    """The chunk texts and the distinct sentence texts the writer embeds for `articles`."""
    chunking = settings.chunking
    chunks = []
    for article in articles:
        chunks += chunk_text(article.title, article.text(), count_tokens=embedder.count_tokens,
                             max_tokens=chunking.max_tokens, overlap=chunking.overlap_sentences,
                             max_chars=chunking.max_chars)
    sentences = [c.text[s:e] for c in chunks for s, e in (list(c.sentences) or split_sentences(c.text))]
    return [c.text for c in chunks], list(dict.fromkeys(sentences))


def timed(embedder, chunks: list[str], sentences: list[str]) -> tuple[float, np.ndarray, np.ndarray]:
    started = time.perf_counter()
    a = embedder.embed_documents(chunks)
    b = embedder.embed_documents(sentences)
    return time.perf_counter() - started, a, b


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
    chunks, sentences = ingest_texts(articles, torch_side, settings)
    for side in (torch_side, onnx_side):
        side.embed_documents(["The model is loaded before the clock starts."])

    times: dict[str, list[float]] = {"sentence-transformers": [], "onnx": []}
    cosine = 1.0
    for n in range(args.rounds):
        order = [("sentence-transformers", torch_side), ("onnx", onnx_side)]
        if n % 2:
            order.reverse()
        vectors = {}
        for name, side in order:
            seconds, a, b = timed(side, chunks, sentences)
            times[name].append(seconds)
            vectors[name] = (a, b)
            if not args.json:
                print(f"round {n + 1}: {name} {seconds:.2f} s", file=sys.stderr, flush=True)
        for x, y in zip(vectors["sentence-transformers"], vectors["onnx"]):
            cosine = min(cosine, float((x * y).sum(axis=1).min()))
    st, ox = statistics.median(times["sentence-transformers"]), statistics.median(times["onnx"])
    figures = {
        "articles": len(articles), "chunks": len(chunks), "sentences": len(sentences), "rounds": args.rounds,
        "st_s": round(st, 3), "onnx_s": round(ox, 3),
        "st_chunks_per_s": round(len(chunks) / st, 2), "onnx_chunks_per_s": round(len(chunks) / ox, 2),
        "onnx_speedup": round(st / ox, 3), "min_cosine": round(cosine, 7),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"{figures['chunks']} chunks and {figures['sentences']} sentences of {figures['articles']} articles, "
              f"median of {args.rounds} interleaved rounds")
        print(f"  sentence-transformers  {st:7.2f} s  {figures['st_chunks_per_s']:6.2f} chunks/s")
        print(f"  onnx                   {ox:7.2f} s  {figures['onnx_chunks_per_s']:6.2f} chunks/s")
        print(f"  onnx is {figures['onnx_speedup']:.2f}x; smallest cosine between the two: {cosine:.7f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
