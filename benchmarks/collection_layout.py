"""A collection as its own index against one shared store with a collection column: question time, side by side.

usage: python benchmarks/collection_layout.py [--size 100000] [--share 15] [--questions 60]
                                             [--dir /tmp/citebot-collections] [--reuse] [--build-only] [--json] [-v]

Two layouts of one server's collection among many, built with benchmarks/scale.py's articles
(real sentences, MiniLM vectors of a pool of sentences, perturbed):
- shared: one index of SIZE chunks holding every collection, each article tagged with its
  collection. Here the tag is the article's outlet, one of 15, so a collection is about 1/15 of
  the store. A question asks with the filter, as a collection column would have to;
- own: an index holding only a collection of the same size, SIZE/SHARE chunks, as citebot keeps them
  (retrieval/collection.py).
Each question is asked of both in turn (interleaved), with every cache emptied before it, by the real
question path (the ONNX question encoder, the rescoring, the phrase model). Printed: p50 and p95 of each,
and their ratio.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import scale  # noqa: E402

KEYS = ("shared_chunks", "own_chunks", "questions", "shared_p50_ms", "shared_p95_ms", "own_p50_ms", "own_p95_ms",
        "p50_ratio")


def _built(folder: Path, size: int, pool, embedder, reuse: bool) -> Path:
    import shutil

    from retrieval.settings import load_settings

    index = folder / "index"
    marker = folder / "build.json"
    if reuse and marker.exists() and json.loads(marker.read_text()).get("size") == size:
        return index
    if folder.exists():
        shutil.rmtree(folder)
    index.mkdir(parents=True)
    report = scale.build(index, size, pool, embedder, load_settings(index={"dir": str(index)}))
    marker.write_text(json.dumps(report))
    return index


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000, help="chunks in the shared store")
    parser.add_argument("--share", type=int, default=len(scale.OUTLETS),
                        help="the own index holds SIZE/SHARE chunks (default: one outlet's share)")
    parser.add_argument("--questions", type=int, default=60)
    parser.add_argument("--dir", default="/tmp/citebot-collections")
    parser.add_argument("--reuse", action="store_true", help="keep indexes of these sizes built there before")
    parser.add_argument("--build-only", action="store_true",
                        help="build (or keep) both indexes and stop: measure later with --reuse on a quiet machine")
    parser.add_argument("--squad", type=Path, default=scale.SQUAD)
    parser.add_argument("--json", action="store_true", help="one JSON line")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    logging.getLogger("faiss").setLevel(logging.WARNING)

    from retrieval.pipeline import Answerer
    from retrieval.settings import load_settings

    root = Path(args.dir)
    settings = load_settings()
    pool = scale.load_pool(root, args.squad, settings.embedding, "model")
    embedder = scale.PoolEmbedder(pool, name=settings.embedding.model)
    shared_dir = _built(root / "shared", args.size, pool, embedder, args.reuse)
    own_dir = _built(root / "own", args.size // args.share, pool, embedder, args.reuse)
    if args.build_only:
        return 0
    shared = Answerer.from_settings(load_settings(index={"dir": str(shared_dir)}))
    own = Answerer.from_settings(load_settings(index={"dir": str(own_dir)}))
    outlet = scale.OUTLETS[0]
    rng = random.Random(scale.SEED)
    questions = [q for q, _ in rng.sample(pool["questions"], args.questions)]
    for answerer in (shared, own):
        answerer.warm_up()
        answerer.answer("What was the weather like?")  # first-question costs (lazy imports) stay out
    times = {"shared": [], "own": []}
    for question in questions:
        for name, answerer, filters in (("shared", shared, {"outlet": outlet}), ("own", own, {})):
            scale._forget(answerer)
            clock = time.perf_counter()
            answerer.answer(question, **filters)
            times[name].append((time.perf_counter() - clock) * 1000)
    figures = {"shared_chunks": shared.store.count_chunks(), "own_chunks": own.store.count_chunks(),
               "questions": len(questions)}
    for name in ("shared", "own"):
        figures[f"{name}_p50_ms"] = round(statistics.median(times[name]), 1)
        figures[f"{name}_p95_ms"] = round(_percentile(times[name], 0.95), 1)
    figures["p50_ratio"] = round(figures["shared_p50_ms"] / figures["own_p50_ms"], 2)
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"shared store of {figures['shared_chunks']:,} chunks, filtered to one collection: "
              f"p50 {figures['shared_p50_ms']} ms, p95 {figures['shared_p95_ms']} ms")
        print(f"the collection's own index of {figures['own_chunks']:,} chunks: "
              f"p50 {figures['own_p50_ms']} ms, p95 {figures['own_p95_ms']} ms  (shared/own {figures['p50_ratio']}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
