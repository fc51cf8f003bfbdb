"""Tune which sentence is highlighted as the answer, on SQuAD dev.

usage: python benchmarks/tune_sentence.py SQUAD_FILE [--every N] [--features FILE.npz]
For every N-th question, the sentences of the best five rescored passages are scored by
cosine + a * question-word overlap + b * (the passage's rescoring score); the highlighted one is
the best. Prints the share of questions whose highlighted sentence contains a gold answer for
the current choice (best cosine in the top passage) and for the best weights, in one process.
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

PASSAGES = 5


def dump(path: Path, every: int, out: Path) -> None:
    from retrieval.evaluate import _scratch_index, load_squad, normalize, questions_for
    from retrieval.rerank import overlap
    from rich.console import Console

    from retrieval.settings import load_settings

    articles = load_squad(path)
    with tempfile.TemporaryDirectory() as tmp, \
            _scratch_index(load_settings(), articles, Path(tmp), Console(stderr=True), False) as (answerer, texts):
        questions, _ = questions_for(articles, texts)
        from collections import Counter

        from retrieval.rerank import content_words

        chunk_texts = answerer.store.sqlite.all_chunk_texts()[1]
        df = Counter(w for t in chunk_texts for w in content_words(t))
        idf = lambda w: np.log((len(chunk_texts) + 1) / (df.get(w, 0) + 0.5))  # noqa: E731
        rows = []
        for qi, question in enumerate(questions[::every]):
            vector = answerer.reader.embedder.embed_queries([question.text])[0]
            gold = [normalize(a) for a in question.answers]
            ranked = answerer.rank(question.text)[:PASSAGES]
            by_chunk = {c.chunk_id: c for c in answerer.store.chunks(
                r.id for r in answerer.retrieve(question.text, vector=vector)).values()}
            for rank, item in enumerate(ranked):
                stored = by_chunk.get(item.hit.chunk_id)
                if stored is None:
                    continue
                spans, vectors = stored.sentences, stored.sentence_vectors.astype(np.float32)
                for (s, e), cosine in zip(spans, vectors @ vector):
                    sentence = item.hit.text[s:e]
                    label = any(g in normalize(sentence) for g in gold)
                    wanted = content_words(question.text)
                    weighted = sum(idf(w) for w in wanted & content_words(sentence)) / max(
                        sum(idf(w) for w in wanted), 1e-9)
                    rows.append([qi, rank, float(cosine), overlap(question.text, sentence), item.rank_score, label,
                                 weighted])
    np.save(out, np.array(rows, dtype=np.float64))


def accuracy(rows: np.ndarray, a: float, b: float, top_only: bool, column: int = 3) -> float:
    keep = rows[rows[:, 1] == 0] if top_only else rows
    score = keep[:, 2] + a * keep[:, column] + b * keep[:, 4]
    order = np.lexsort((-score, keep[:, 0]))  # by question, best score first
    first = np.ones(len(order), dtype=bool)
    first[1:] = keep[order[1:], 0] != keep[order[:-1], 0]
    return float(keep[order[first], 5].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--every", type=int, default=2)
    parser.add_argument("--features", type=Path, default=Path("/tmp/citebot-sentence-features-2.npy"))
    args = parser.parse_args()
    if not args.features.exists():
        dump(args.file, args.every, args.features)
    rows = np.load(args.features)
    print(f"{int(rows[:, 0].max()) + 1} questions")
    print(f"best cosine in the top passage: {accuracy(rows, 0, 0, True):.4f}")
    grid = [0.0, 0.1, 0.25, 0.5, 0.75, 1.0]
    for top_only in (True, False):
        best = max((accuracy(rows, a, b, top_only), a, b) for a, b in itertools.product(grid, grid))
        where = "top passage" if top_only else f"top {PASSAGES} passages"
        print(f"best in the {where}: {best[0]:.4f} with overlap weight {best[1]}, passage weight {best[2]}")
        best = max((accuracy(rows, a, b, top_only, 6), a, b) for a, b in itertools.product(grid + [1.5, 2], grid))
        print(f"  with idf-weighted overlap: {best[0]:.4f} with weight {best[1]}, passage weight {best[2]}")


if __name__ == "__main__":
    main()
