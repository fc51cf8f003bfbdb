"""Retrieval quality on SQuAD v1.1: every article is indexed through the normal ingest path.

A hit is a retrieved chunk whose character span covers a gold answer where the dataset places
it (not merely the same words elsewhere). Offsets are mapped by finding each paragraph in the
stored article text.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import string
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrieval.errors import CitebotError


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    key: str  # the article's ingest key
    gold: list[tuple[int, int]]  # offsets into the article text as the dataset places them
    answers: list[str]


_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, articles or extra spaces."""
    text = text.lower()
    text = text.translate(_PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def f1(prediction: str, gold: str) -> float:
    pred, ref = normalize(prediction).split(), normalize(gold).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def load_squad(path: Path) -> list[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
    except FileNotFoundError:
        raise CitebotError(f"{path} does not exist: give the path of a SQuAD v1.1 JSON file") from None
    except (ValueError, KeyError, TypeError) as error:
        raise CitebotError(f"{path} is not a SQuAD v1.1 file ({error}): it needs a top-level 'data' list") from None
    return data


def write_articles(articles: list[dict], folder: Path) -> Path:
    """One JSON line per SQuAD article (paragraphs joined by blank lines), ready for `ingest`."""
    path = folder / "squad.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for article in articles:
            text = "\n\n".join(p["context"].strip() for p in article["paragraphs"])
            record = {"id": f"squad:{article['title']}", "title": article["title"].replace("_", " "), "text": text}
            handle.write(json.dumps(record) + "\n")
    return path


def questions_for(articles: list[dict], texts: dict[str, str]) -> tuple[list[Question], int]:
    """Questions with gold offsets into the stored texts; also how many could not be placed."""
    questions, unplaced = [], 0
    for article in articles:
        key = f"squad:{article['title']}"
        text = texts.get(key, "")
        cursor = 0
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            stripped = context.strip()
            at = text.find(stripped, cursor)
            if at < 0:
                unplaced += len(paragraph["qas"])
                continue
            cursor = at + len(stripped)
            shift = at - (len(context) - len(context.lstrip()))
            for qa in paragraph["qas"]:
                gold = [(shift + a["answer_start"], shift + a["answer_start"] + len(a["text"])) for a in qa["answers"]]
                questions.append(Question(qa["id"], qa["question"], key, gold, [a["text"] for a in qa["answers"]]))
    return questions, unplaced


def _covers(hit, key_of: dict[str, str], question: Question) -> bool:
    if key_of.get(hit.doc_id) != question.key:
        return False
    return any(hit.start <= s and e <= hit.end for s, e in question.gold)


def evaluate(answerer, questions: list[Question], *, progress=None) -> dict:
    """Ask every question; recall@k, MRR@10, answer-in-citations, span metrics and latency."""
    key_of = {row.doc_id: row.key for row in answerer.sources()}
    ranks, in_citations, in_sentence, em, f1s, latencies, found, top_scores = [], 0, 0, 0.0, 0.0, [], 0, []
    top_mixed: list[float] = []
    top_support: list[float] = []
    for i, question in enumerate(questions):
        started = time.perf_counter()
        scored = answerer.rank(question.text, k=10)
        answer = answerer.compose(question.text, scored)
        latencies.append((time.perf_counter() - started) * 1000)
        top_scores.append(max((s.sentence_score for s in scored), default=-1.0))
        top_mixed.append(max((s.rank_score for s in scored), default=-1.0))
        top_support.append(max((s.support for s in scored if s.support is not None), default=-100.0))
        rank = next((r for r, s in enumerate(scored[:10], start=1) if _covers(s.hit, key_of, question)), None)
        ranks.append(rank)
        gold = [normalize(a) for a in question.answers]
        if answer.found:
            found += 1
            if any(g in normalize(p.text) for p in answer.passages for g in gold):
                in_citations += 1
            if answer.answer and any(g in normalize(answer.answer.text) for g in gold):
                in_sentence += 1
            shown = answer.phrase or answer.answer  # the phrase where one was found, else the sentence
            phrase = shown.text if shown else ""
            em += max(float(normalize(phrase) == g) for g in gold)
            f1s += max(f1(phrase, a) for a in question.answers)
        if progress:
            progress(i + 1, len(questions))
    n = max(len(questions), 1)
    return {
        "questions": len(questions),
        "recall@1": round(sum(r is not None and r <= 1 for r in ranks) / n, 4),
        "recall@5": round(sum(r is not None and r <= 5 for r in ranks) / n, 4),
        "recall@10": round(sum(r is not None and r <= 10 for r in ranks) / n, 4),
        "mrr@10": round(sum(1 / r for r in ranks if r is not None) / n, 4),
        "answer_in_citations": round(in_citations / n, 4),
        "sentence_contains_answer": round(in_sentence / n, 4),
        "span_em": round(em / n, 4),
        "span_f1": round(f1s / n, 4),
        "answered": round(found / n, 4),
        "p50_ms": round(float(np.percentile(latencies, 50)), 1) if latencies else 0.0,
        "p95_ms": round(float(np.percentile(latencies, 95)), 1) if latencies else 0.0,
        "_top_scores": top_scores,
        "_top_mixed": top_mixed,
        "_top_support": top_support,
    }


def _bar(err, label: str, total: int | None, quiet: bool):
    """Progress on stderr: `with _bar(...) as update: update(done)`.

    On a terminal, a transient bar (none with --json). Anywhere else (a pipe, a log file), a plain
    line at each tenth of the work with the time left, --json or not: stdout holds the figures,
    and a run of 25 minutes must not look hung.
    """
    from contextlib import contextmanager

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    @contextmanager
    def bar():
        with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=err, transient=True, disable=quiet) as progress:
            task = progress.add_task(label, total=total)
            yield lambda done, total=total, *_: progress.update(task, completed=done, total=total)

    if err.is_terminal:
        return bar()
    return _lines(err, label, total)


class _lines:
    """`label 496/4961 (10%), about 12 min left` at each tenth, on a stream that is not a terminal."""

    def __init__(self, err, label: str, total: int | None):
        self.err, self.label, self.total = err, label, total
        self.started, self.shown = time.perf_counter(), 0

    def __enter__(self):
        return self.update

    def __exit__(self, *exc) -> None:
        return None

    def update(self, done: int, total: int | None = None, *_) -> None:
        total = total or self.total
        if not total or done * 10 < (self.shown + 1) * total:
            return
        self.shown = done * 10 // total
        elapsed = time.perf_counter() - self.started
        left = elapsed * (total - done) / done if done else 0.0
        when = f"about {left / 60:.0f} min left" if left >= 90 else f"about {left:.0f} s left"
        self.err.print(f"{self.label} {done}/{total} ({100 * done // total}%), "
                       f"{when if done < total else f'done in {elapsed:.0f} s'}", markup=False, highlight=False)


@contextlib.contextmanager
def _scratch_index(settings, articles: list[dict], folder: Path, err, quiet: bool):
    """(answerer, stored texts) over a scratch index of `articles`, destroyed when the block ends: a folder in
    the temporary one, or in a database (index.url) a schema of its own."""
    from retrieval.pipeline import Answerer

    scratch = {"dir": folder / "index", "collection": f"eval_{os.getpid()}_{folder.name[-8:].lower()}"}
    answerer = Answerer.from_settings(settings.model_copy(update={"index": settings.index.model_copy(
        update=scratch if settings.index.url is not None else {"dir": scratch["dir"]})}))
    try:
        with _bar(err, "indexing", None, quiet) as update:
            report = answerer.ingest([write_articles(articles, folder)], progress=update)
        if report.failed:
            raise CitebotError(f"{report.failed} SQuAD articles failed to index: {report.errors[0]}")
        texts = {key: answerer.store.document_text(doc) for key, doc in answerer.store.doc_ids_by_key().items()}
        yield answerer, texts
    finally:
        answerer.store.destroy()


def _ask_all(answerer, questions, err, quiet: bool) -> dict:
    with _bar(err, "asking", len(questions), quiet) as update:
        return evaluate(answerer, questions, progress=update)


def run_squad(args, settings, *, out, err) -> int:
    """`citebot eval squad FILE [--limit N] [--json] [--abstention]`."""
    articles = load_squad(args.file)
    if args.limit is not None and args.limit < 1:
        raise CitebotError(f"--limit must be at least 1, not {args.limit}")
    with tempfile.TemporaryDirectory(prefix="citebot-eval-") as tmp:
        if args.abstention:
            figures = _abstention(settings, articles, Path(tmp), args, err)
        else:
            with _scratch_index(settings, articles, Path(tmp), err, args.json) as (answerer, texts):
                questions, unplaced = questions_for(articles, texts)
                if unplaced:
                    err.print(f"{unplaced} questions skipped: their paragraph was not found in the stored text")
                questions = sample(questions, args.limit)
                figures = _ask_all(answerer, questions, err, args.json)
            for key in ("_top_scores", "_top_mixed", "_top_support"):
                figures.pop(key)
    if args.json:
        print(json.dumps(figures))
    else:
        for name, value in figures.items():
            out.print(f"{name:>26}  {value}", markup=False)
    return 0


def sample(questions: list, limit: int | None, seed: int = 0) -> list:
    """`limit` questions drawn evenly from the whole list with a fixed seed, in their order.

    The first N questions all come from the first article or two, which says little about the
    file; a seeded sample spreads over every article and gives the same set each run.
    """
    if not limit or limit >= len(questions):
        return questions
    chosen = sorted(random.Random(seed).sample(range(len(questions)), limit))
    return [questions[i] for i in chosen]


def _abstention(settings, articles: list[dict], folder: Path, args, err) -> dict:
    """Index the even-numbered articles; ask their questions and the odd-numbered articles' ones."""
    indexed, held_out = articles[0::2], articles[1::2]
    with _scratch_index(settings, indexed, folder, err, args.json) as (answerer, texts):
        answerable, _ = questions_for(indexed, texts)
        unanswerable, _ = questions_for(held_out, {f"squad:{a['title']}": "\n\n".join(
            p["context"].strip() for p in a["paragraphs"]) for a in held_out})
        answerable, unanswerable = sample(answerable, args.limit), sample(unanswerable, args.limit)
        inside = _ask_all(answerer, answerable, err, args.json)
        outside = _ask_all(answerer, unanswerable, err, args.json)
    supported = answerer.supporting
    signals = [("sentence", "_top_scores", "best sentence similarity", settings.answer.min_score)]
    if answerer.mixing:
        signals.insert(0, ("mixed", "_top_mixed", "mixed rescoring score", settings.answer.min_mixed_score))
    if supported:
        signals.insert(0, ("support", "_top_support", "support score", settings.answer.min_support))
    _, key, signal, threshold = signals[0]  # the one that decides
    scores_in, scores_out = np.array(inside[key]), np.array(outside[key])
    rates = (0.01, 0.02, 0.03, 0.05, 0.10)
    return {
        "answerable": len(scores_in),
        "unanswerable": len(scores_out),
        "signal": signal,
        "threshold": threshold,
        "abstained_unanswerable": round(float(np.mean(scores_out < threshold)), 4),
        "false_abstention": round(float(np.mean(scores_in < threshold)), 4),
        "suggested_threshold": suggest_threshold(scores_in),
        # What either signal would give at a few rates of false abstention, to compare them.
        "by_false_abstention": {
            name: {str(rate): _at_false_rate(inside[k], outside[k], rate) for rate in rates}
            for name, k, _, _ in signals
        },
    }


def _at_false_rate(answerable, unanswerable, rate: float = 0.05) -> dict:
    threshold = suggest_threshold(answerable, rate)
    return {"threshold": threshold,
            "abstained_unanswerable": round(float(np.mean(np.asarray(unanswerable) < threshold)), 4)}


def suggest_threshold(answerable_scores, max_false_abstention: float = 0.05) -> float:
    """The highest threshold that turns away at most `max_false_abstention` of answerable questions."""
    return round(float(np.quantile(np.asarray(answerable_scores), max_false_abstention)), 3)
