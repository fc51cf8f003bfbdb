"""Tune the rescoring mix on SQuAD dev: dump candidate features once, then grid-search the weights.

usage: python benchmarks/tune_rerank.py SQUAD_FILE [--limit N] [--features FILE.npz]
Prints recall@1/@5 and MRR@10 for each component alone and for the best mix found, all on the
same candidates in one process, so the ratios compare like with like.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CANDIDATES = 20
FEATURES = ["sentence", "dense", "bm25", "rrf", "overlap"]
def dump(path: Path, limit: int | None, out: Path) -> None:
    from retrieval.rerank import content_words as words
    from retrieval.chunk import split_sentences
    from retrieval.evaluate import _covers, _index, load_squad, questions_for
    from retrieval.settings import load_settings

    articles = load_squad(path)
    settings = load_settings()
    with tempfile.TemporaryDirectory() as tmp:
        answerer, texts = _index(settings, articles, Path(tmp), None, True)
        questions, _ = questions_for(articles, texts)
        questions = questions[:limit] if limit else questions
        key_of = {row.doc_id: row.key for row in answerer.sources()}
        dim = answerer.embedder.dim
        rows, labels, groups = [], [], []
        for qi, question in enumerate(questions):
            vector = answerer.embedder.embed_queries([question.text])[0]
            ranked = answerer.retrieve(question.text, vector=vector)[:CANDIDATES]
            stored = answerer.store.chunks(r.id for r in ranked)
            qwords = words(question.text)
            top_lex = max([r.lexical or 0.0 for r in ranked] + [1e-9])
            top_rrf = max([r.score for r in ranked] + [1e-9])
            for r in ranked:
                chunk = stored[r.id]
                spans = split_sentences(chunk.text) or [(0, len(chunk.text))]
                cache = answerer._sentence_cache.get(chunk.chunk_id)
                if cache is None:
                    sv = answerer.embedder.embed_documents([chunk.text[s:e] for s, e in spans])
                    answerer._sentence_cache[chunk.chunk_id] = (spans, sv)
                else:
                    spans, sv = cache
                sims = sv @ vector
                best = int(np.argmax(sims))
                s, e = spans[best]
                dense = r.dense
                if dense is None:
                    row = answerer.store._db.execute("SELECT vector FROM chunks WHERE id = ?", (r.id,)).fetchone()
                    dense = float(np.frombuffer(row[0], dtype=np.float32).reshape(dim) @ vector)
                overlap = len(qwords & words(chunk.text[s:e])) / max(len(qwords), 1)
                rows.append([float(sims[best]), dense, (r.lexical or 0.0) / top_lex, r.score / top_rrf, overlap])
                hit = type("H", (), {"doc_id": chunk.source.doc_id, "start": chunk.start, "end": chunk.end})
                labels.append(_covers(hit, key_of, question))
                groups.append(qi)
            if qi % 500 == 0:
                print(f"{qi}/{len(questions)}", file=sys.stderr)
    np.savez(out, x=np.array(rows, dtype=np.float32), y=np.array(labels), g=np.array(groups))


def padded(values: np.ndarray, g: np.ndarray, n_questions: int, fill) -> np.ndarray:
    """Rows grouped by question -> an (n_questions, CANDIDATES) matrix."""
    out = np.full((n_questions, CANDIDATES), fill, dtype=np.float64)
    position = np.zeros(len(g), dtype=int)
    starts = np.searchsorted(g, np.arange(n_questions))
    position = np.arange(len(g)) - starts[g]
    out[g, position] = values
    return out


def metrics(scores: np.ndarray, y: np.ndarray, g: np.ndarray, n_questions: int) -> tuple[float, float, float]:
    s = padded(scores, g, n_questions, -np.inf)
    labels = padded(y.astype(float), g, n_questions, 0.0)
    order = np.argsort(-s, axis=1, kind="stable")
    ranked = np.take_along_axis(labels, order, axis=1)
    first = np.where(ranked.any(axis=1), ranked.argmax(axis=1) + 1, 10**6)
    return float(np.mean(first <= 1)), float(np.mean(first <= 5)), float(np.mean(np.where(first <= 10, 1 / first, 0)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--features", type=Path, default=Path("/tmp/citebot-rerank-features.npz"))
    args = parser.parse_args()
    if not args.features.exists():
        dump(args.file, args.limit, args.features)
    data = np.load(args.features)
    x, y, g = data["x"], data["y"], data["g"]
    n = int(g.max()) + 1
    print(f"{n} questions, {len(x)} candidates")
    for i, name in enumerate(FEATURES):
        print(f"{name:>10} alone: r@1 {metrics(x[:, i], y, g, n)[0]:.4f}  r@5 {metrics(x[:, i], y, g, n)[1]:.4f}")
    best = None
    grid = [0.0, 0.25, 0.5, 1.0]
    for w in itertools.product([1.0], grid, grid, grid, grid):
        r1, r5, mrr = metrics(x @ np.array(w), y, g, n)
        if best is None or mrr > best[0][2]:
            best = ((r1, r5, mrr), w)
    (r1, r5, mrr), w = best
    print("best mix", dict(zip(FEATURES, w)), f"r@1 {r1:.4f} r@5 {r5:.4f} mrr@10 {mrr:.4f}")


if __name__ == "__main__":
    main()
