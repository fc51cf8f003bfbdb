"""Fit the sentence scorer's weights on SQuAD dev, with held-out figures, from dump_candidates.py's file.

usage: python benchmarks/train_ranker.py [--data FILE.pkl] [--candidates N] [--ablation] [--errors]
                                        [--sentence-vectors stored|separate]
Every sentence of every candidate chunk gets the features of retrieval/features.py; a linear
listwise model (softmax over a question's sentences, the gold being any sentence holding a
gold answer) is fitted on half the articles and measured on the other half, both ways round,
then fitted on all of them for the weights to ship. A chunk scores as its best sentence.
Prints recall@1/@5, MRR@10 and "sentence contains answer" held out and fitted, and the weights
for config/default.toml; --ablation also prints the held-out figures of growing groups of features,
--errors where the held-out choice of sentence goes wrong (the runner-up, a neighbour, another chunk).
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from retrieval.evaluate import normalize  # noqa: E402
from retrieval.features import (  # noqa: E402
    FEATURES,
    SECOND_STAGE,
    Vocabulary,
    chunk_features,
    chunk_profiles,
    question_profile,
)


def build(data: dict, candidates: int):
    """Rows of features for every (question, candidate chunk, sentence), with labels and groups."""
    vocabulary = Vocabulary.from_texts(data["corpus_texts"])
    chunks = data["chunks"]
    sentence_texts = {cid: [c["text"][s:e] for s, e in c["spans"]] for cid, c in chunks.items()}
    profiles = {cid: chunk_profiles(texts) for cid, texts in sentence_texts.items()}
    normalized = {cid: [normalize(t) for t in texts] for cid, texts in sentence_texts.items()}
    rows, question_of, chunk_label, sentence_label, chunk_of, article_of = [], [], [], [], [], []
    for qi, (record, qvector, qtokens) in enumerate(
        zip(data["records"], data["question_vectors"], data["question_tokens"])
    ):
        profile = question_profile(record["question"], vocabulary)
        gold = [normalize(a) for a in record["answers"]]
        found = record["candidates"][:candidates]
        top_lexical = max([c[3] for c in found] + [1e-9])
        top_rrf = max([c[1] for c in found] + [1e-9])
        for rank, (cid, rrf, dense, lexical, covers) in enumerate(found):
            cosines = chunks[cid]["vectors"].astype(np.float32) @ qvector
            alone = chunks[cid]["separate_vectors"].astype(np.float32) @ qvector
            rows.append(chunk_features(profile, *profiles[cid], cosines, dense, lexical / top_lexical, rrf / top_rrf,
                                       qtokens, chunks[cid]["tokens"], alone))
            for text in normalized[cid]:
                question_of.append(qi)
                chunk_of.append(qi * 1000 + rank)
                chunk_label.append(covers)
                sentence_label.append(any(g in text for g in gold))
                article_of.append(record["key"])
    return (np.vstack(rows), np.array(question_of), np.array(chunk_of),
            np.array(chunk_label), np.array(sentence_label), np.array(article_of))


def listwise(w, x, y, starts, l2):
    """Softmax loss over each question's rows, gold = rows with y; and its gradient."""
    s = x @ w
    loss, grad = 0.0, np.zeros_like(w)
    m = np.maximum.reduceat(s, starts)
    counts = np.diff(np.append(starts, len(s)))
    e = np.exp(s - np.repeat(m, counts))
    z = np.add.reduceat(e, starts)
    zy = np.add.reduceat(e * y, starts)
    keep = zy > 0
    loss = float(np.sum((np.log(z) - np.log(np.where(keep, zy, 1)))[keep]))
    p = e / np.repeat(z, counts)
    q = np.where(y, e / np.repeat(np.where(keep, zy, 1), counts), 0.0)
    active = np.repeat(keep, counts)
    grad = ((p - q) * active) @ x
    return loss / keep.sum() + l2 * w @ w, grad / keep.sum() + 2 * l2 * w


def runs(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end rows of each run of equal values (rows are grouped by question, or by chunk)."""
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    return starts, np.append(starts[1:], len(groups))


def fit(x, y, groups, l2=1e-3):
    starts, _ = runs(groups)
    result = minimize(listwise, np.zeros(x.shape[1]), args=(x, y, starts, l2), jac=True, method="L-BFGS-B")
    return result.x


def measure(scores, question_of, chunk_of, chunk_label, sentence_label):
    """recall@1/@5, MRR@10 with chunks scored by their best sentence; and the best sentence's label."""
    r1 = r5 = mrr = sentence = 0.0
    starts, ends = runs(question_of)
    for a, b in zip(starts, ends):
        s, c = scores[a:b], chunk_of[a:b]
        sentence += sentence_label[a + int(np.argmax(s))]
        best = {}
        for i in range(b - a):
            if c[i] not in best or s[i] > s[best[c[i]]]:
                best[c[i]] = i
        order = sorted(best.values(), key=lambda i: -s[i])
        first = next((r for r, i in enumerate(order[:10], 1) if chunk_label[a + i]), None)
        r1 += first == 1
        r5 += first is not None and first <= 5
        mrr += 1 / first if first else 0
    n = len(starts)
    return {"recall@1": r1 / n, "recall@5": r5 / n, "mrr@10": mrr / n, "sentence": sentence / n}


GROUPS = {
    "similarity (sentence, chunk)": ["cosine", "chunk_best_cosine", "dense", "cosine_below_best"],
    "+ BM25, fusion and question words": ["bm25", "rrf", "overlap", "idf_overlap", "bigram_overlap",
                                          "window_idf_overlap", "chunk_idf_overlap", "previous_idf_overlap",
                                          "next_idf_overlap", "pronoun_after_match", "rarest_word", "novelty",
                                          "log_words"],
    "+ the kind of answer asked for": ["number_for_number", "number_for_date", "date_for_date", "name_for_person",
                                       "name_for_place", "name_for_other", "number_for_other"],
    "+ word-piece matching (all)": ["token_match", "token_match_strong"],
    "+ each sentence embedded alone": ["alone_cosine"],
}


def held_out(z, label, question_of, article_of, l2):
    """Scores of every row from a model fitted on the other half of the articles."""
    articles = sorted(set(article_of))
    fold = np.isin(article_of, articles[0::2])
    scores = np.zeros(len(z))
    for train in (fold, ~fold):
        w = fit(z[train], label[train], question_of[train], l2)
        scores[~train] = z[~train] @ w
    return scores


def errors(data: dict, scores, question_of, sentence_label, candidates: int) -> dict:
    """Where the right sentence was when the best-scoring one does not hold a gold answer."""
    chunks = data["chunks"]
    rows = [(cid, j) for record in data["records"] for cid, *_ in record["candidates"][:candidates]
            for j in range(len(chunks[cid]["spans"]))]
    sentence = lambda cid, j: chunks[cid]["text"][slice(*chunks[cid]["spans"][j])]  # noqa: E731
    counts = dict.fromkeys(["right", "no gold sentence among the candidates", "wrong: the gold is the runner-up",
                            "wrong: the gold is the next or previous sentence", "wrong: elsewhere in the same chunk",
                            "wrong: in another chunk"], 0)
    for a, b in zip(*runs(question_of)):
        chosen = a + int(np.argmax(scores[a:b]))
        gold = [r for r in range(a, b) if sentence_label[r]]
        if sentence_label[chosen] or not gold:
            counts["right" if gold else "no gold sentence among the candidates"] += 1
            continue
        best_gold = max(gold, key=lambda r: scores[r])
        counts["wrong: the gold is the runner-up"] += int((scores[a:b] > scores[best_gold]).sum()) == 1
        cid, j = rows[chosen]
        text = sentence(*rows[best_gold])
        at = [k for k in range(len(chunks[cid]["spans"])) if sentence(cid, k) == text]
        key = ("wrong: in another chunk" if not at else "wrong: the gold is the next or previous sentence"
               if abs(at[0] - j) == 1 else "wrong: elsewhere in the same chunk")
        counts[key] += 1
    return counts


def two_stage(z, label, question_of, chunk_of, article_of, l2, chunks: int, sentences: int):
    """Held-out scores when word-piece matching is computed only for the best few sentences.

    Stage 1 scores every sentence without the word-piece features (weights fitted for that);
    the `chunks` best chunks by stage 1, `sentences` best sentences each, get the full score.
    The others keep their stage-1 order below them. Returns per-row scores to `measure`.
    """
    cheap = [i for i, name in enumerate(FEATURES) if name not in SECOND_STAGE]
    first = held_out(z[:, cheap], label, question_of, article_of, l2)
    full = held_out(z, label, question_of, article_of, l2)
    scores = np.empty(len(z))
    for a, b in zip(*runs(question_of)):
        s1, c = first[a:b], chunk_of[a:b]
        best: dict[int, float] = {}
        for i in range(b - a):
            best[c[i]] = max(best.get(c[i], -np.inf), s1[i])
        chosen = set(sorted(best, key=lambda x: -best[x])[:chunks])
        picked = np.zeros(b - a, dtype=bool)
        for cid in chosen:
            rows = np.flatnonzero(c == cid)
            picked[rows[np.argsort(-s1[rows])[:sentences]]] = True
        floor = full[a:b][picked].min() if picked.any() else 0.0
        # Unpicked rows sit below every picked one, in stage-1 order.
        scores[a:b] = np.where(picked, full[a:b], floor - 1000.0 + (s1 - s1.max()))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/citebot-candidates.pkl"))
    parser.add_argument("--candidates", type=int, default=40)
    parser.add_argument("--l2", type=float, default=1e-3)
    parser.add_argument("--target", choices=["sentence", "chunk", "both"], default="sentence")
    parser.add_argument("--ablation", action="store_true", help="also fit growing groups of features")
    parser.add_argument("--errors", action="store_true", help="also say where the held-out choice goes wrong")
    parser.add_argument("--two-stage", metavar="C,S", action="append", default=[],
                        help="also measure word-piece matching on the best C chunks' best S sentences only")
    parser.add_argument("--sentence-vectors", choices=["stored", "separate"], default="stored",
                        help="stored: the sentence vectors the ingest kept (embedding.sentence_vectors); "
                        "separate: each sentence embedded on its own, as dump_candidates.py also keeps them")
    args = parser.parse_args()
    with args.data.open("rb") as handle:
        data = pickle.load(handle)
    if args.sentence_vectors == "separate":
        for chunk in data["chunks"].values():
            chunk["vectors"] = chunk["separate_vectors"]
    started = time.perf_counter()
    x, question_of, chunk_of, chunk_label, sentence_label, article_of = build(data, args.candidates)
    print(f"{len(data['records'])} questions, {len(x)} sentences, features in {time.perf_counter() - started:.0f} s")
    label = {"sentence": sentence_label, "chunk": chunk_label, "both": sentence_label & chunk_label}[args.target]
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = (x - mean) / std
    figures = lambda scores: {k: round(float(v), 4) for k, v in  # noqa: E731
                              measure(scores, question_of, chunk_of, chunk_label, sentence_label).items()}
    if args.ablation:
        assert sorted(sum(GROUPS.values(), [])) == sorted(FEATURES), "every feature belongs to one group"
        columns: list[int] = []
        for group, names in GROUPS.items():
            columns += [FEATURES.index(n) for n in names]
            print(f"held out, {group}:", figures(held_out(z[:, columns], label, question_of, article_of, args.l2)))
    for spec in args.two_stage:
        c, s_ = (int(v) for v in spec.split(","))
        print(f"held out, word pieces for the best {c} chunks x {s_} sentences:",
              figures(two_stage(z, label, question_of, chunk_of, article_of, args.l2, c, s_)))
    scores = held_out(z, label, question_of, article_of, args.l2)
    print("held out (2 folds by article):", figures(scores))
    if args.errors:
        print("held-out choice of sentence:", errors(data, scores, question_of, sentence_label, args.candidates))
    w = fit(z, label, question_of, args.l2)
    print("fitted on all:", figures(z @ w))
    if args.two_stage:
        cheap = [i for i, name in enumerate(FEATURES) if name not in SECOND_STAGE]
        w1 = fit(z[:, cheap], label, question_of, args.l2)
        print("[reranker.first_stage_weights]  # without word-piece matching, for config/default.toml")
        for i, value in zip(cheap, w1 / std[cheap]):
            print(f"{FEATURES[i]} = {value:.4f}")
    raw = w / std
    print("[reranker.weights]  # for config/default.toml")
    for name, value in zip(FEATURES, raw):
        print(f"{name} = {value:.4f}")


if __name__ == "__main__":
    main()
