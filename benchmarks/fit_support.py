"""Fit the support weights "not found" rests on: answerable against unanswerable questions.

usage: python benchmarks/fit_support.py SQUAD_FILE [--half odd|even] [--l2 10] [--limit N] [--json]

The rescoring weights (benchmarks/train_ranker.py) order one question's candidates: a softmax over
them, so a score says "better than the others", not "answers the question". The support score asks
the second thing. This script indexes one half of the SQuAD articles (the odd-numbered ones by
default, so that `citebot eval squad FILE --abstention`, which indexes the even-numbered ones, is
held out), asks that half's questions (answerable) and the other half's (unanswerable: their
articles are not indexed), and fits a logistic regression (L2, on standardised features) of
"answerable" on the features of each question's top candidate's best sentence. It prints the
weights as a [reranker.support_weights] table for config/default.toml, in the features' own units
(the intercept left out: answer.min_support absorbs it), and what they give on the fitted half at
2%, 3% and 5% false abstention.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RATES = (0.02, 0.03, 0.05)


def collect(path: Path, half: str, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Feature rows of each question's top candidate and 1 (answerable) or 0 (unanswerable)."""
    from rich.console import Console

    from retrieval.evaluate import _bar, _scratch_index, load_squad, questions_for, sample
    from retrieval.settings import load_settings

    articles = load_squad(path)
    first = 1 if half == "odd" else 0
    indexed, held_out = articles[first::2], articles[1 - first :: 2]
    err = Console(stderr=True)
    rows, labels = [], []
    with tempfile.TemporaryDirectory(prefix="citebot-support-") as tmp, \
            _scratch_index(load_settings(), indexed, Path(tmp), err, False) as (answerer, texts):
        if not answerer.mixing:
            raise SystemExit("fit_support.py: the support score needs the feature rescoring (reranker.enabled)")
        answerable, _ = questions_for(indexed, texts)
        unanswerable, _ = questions_for(held_out, {f"squad:{a['title']}": "\n\n".join(
            p["context"].strip() for p in a["paragraphs"]) for a in held_out})
        for label, questions in ((1, sample(answerable, limit)), (0, sample(unanswerable, limit))):
            with _bar(err, "answerable" if label else "unanswerable", len(questions), False) as update:
                for n, question in enumerate(questions, start=1):
                    scored = [s for s in answerer.rank(question.text, k=10) if s.features is not None]
                    if scored:
                        rows.append(max(scored, key=lambda s: s.rank_score).features)
                        labels.append(label)
                    update(n, len(questions))
    return np.asarray(rows, dtype=np.float64), np.asarray(labels, dtype=np.float64)


def fit(rows: np.ndarray, labels: np.ndarray, l2: float, iterations: int = 50) -> tuple[np.ndarray, float]:
    """Logistic regression by Newton's method on standardised columns; weights and intercept in raw units."""
    mean, scale = rows.mean(axis=0), rows.std(axis=0)
    scale[scale < 1e-9] = 1.0  # a constant column gets no weight from the penalty, and none is needed
    design = np.column_stack([np.ones(len(rows)), (rows - mean) / scale])
    penalty = l2 * np.diag(np.r_[0.0, np.ones(rows.shape[1])])
    beta = np.zeros(design.shape[1])
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-design @ beta))
        step = np.linalg.solve((design * (p * (1 - p))[:, None]).T @ design + penalty,
                               design.T @ (p - labels) + penalty @ beta)
        beta -= step
        if np.abs(step).max() < 1e-10:
            break
    weights = beta[1:] / scale
    return weights, float(beta[0] - weights @ mean)


def rates(scores: np.ndarray, labels: np.ndarray) -> dict:
    """What `scores` give at each of RATES false abstention, as `citebot eval --abstention` reports it."""
    from retrieval.evaluate import _at_false_rate

    return {str(rate): _at_false_rate(scores[labels == 1], scores[labels == 0], rate) for rate in RATES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("squad", type=Path, help="a SQuAD v1.1 file")
    parser.add_argument("--half", choices=("odd", "even"), default="odd",
                        help="the articles indexed (default odd: `citebot eval --abstention` indexes the even ones)")
    parser.add_argument("--l2", type=float, default=10.0, help="the penalty on standardised weights (default 10)")
    parser.add_argument("--limit", type=int, default=None, help="at most N questions of each kind (a quick run)")
    parser.add_argument("--json", action="store_true", help="one JSON line: weights and figures")
    args = parser.parse_args(argv)

    from retrieval.features import FEATURES
    from retrieval.settings import load_settings

    rows, labels = collect(args.squad, args.half, args.limit)
    if len(set(labels.tolist())) < 2:
        raise SystemExit("fit_support.py: need both answerable and unanswerable questions")
    weights, intercept = fit(rows, labels, args.l2)
    support = rows @ weights
    current = load_settings().reranker.weights
    mixed = rows @ np.array([current.get(name, 0.0) for name in FEATURES])
    figures = {"half": args.half, "answerable": int(labels.sum()), "unanswerable": int((1 - labels).sum()),
               "l2": args.l2, "intercept": round(intercept, 4),
               "weights": {name: round(float(w), 4) for name, w in zip(FEATURES, weights)},
               "support": rates(support, labels), "mixed": rates(mixed, labels)}
    if args.json:
        print(json.dumps(figures))
        return 0
    print("[reranker.support_weights]")
    for name, value in figures["weights"].items():
        print(f"{name} = {value}")
    print(f"\n# fitted on the {args.half} half: {figures['answerable']} answerable, "
          f"{figures['unanswerable']} unanswerable; intercept {figures['intercept']}")
    for rate in RATES:
        s, m = figures["support"][str(rate)], figures["mixed"][str(rate)]
        print(f"# at {rate:.0%} false abstention: support {s['abstained_unanswerable']:.1%} not found "
              f"(threshold {s['threshold']}), the rescoring score {m['abstained_unanswerable']:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
