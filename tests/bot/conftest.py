"""Fixtures for the Discord tests: a fake answerer with a configurable delay, and awkward answers."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from retrieval.errors import QuestionError
from retrieval.models import Answer, Passage, Source, Span
from retrieval.writer import IngestReport

MENTIONS = "Breaking: @everyone and @here were told by <@123> in <#456> about <@&789>."
MARKDOWN = "**bold** __underline__ ~~strike~~ `code` ||spoiler|| [click me](https://evil.example/x) # not a heading"


def make_source(n: int, **overrides) -> Source:
    values = dict(
        doc_id=f"doc{n}",
        title=f"Article {n}",
        outlet="Reuters",
        published=dt.date(2022, 3, 23),
        url=f"https://www.reuters.com/world/article-{n}",
        lead="NATO will set up",
    )
    values.update(overrides)
    return Source(**values)


def make_passage(n: int, text: str, *, sources: Sequence[Source] | None = None, highlight: tuple[int, int] | None = None) -> Passage:
    span = None
    if highlight is not None:
        start, end = highlight
        span = Span(text=text[start:end], passage=n, start=start, end=end, doc_start=start, doc_end=end)
    return Passage(
        n=n,
        text=text,
        score=1.0 / n,
        sources=list(sources) if sources is not None else [make_source(n)],
        chunk_ids=[f"chunk{n}"],
        doc_start=0,
        doc_end=len(text),
        highlight=span,
    )


def make_answer(question: str, passages: Sequence[Passage] | None = None) -> Answer:
    if passages is None:
        text = "NATO will set up four new battlegroups in Slovakia, Hungary, Romania and Bulgaria."
        passages = [
            make_passage(1, text, highlight=(42, 81)),
            make_passage(2, MENTIONS),
            make_passage(3, MARKDOWN, sources=[make_source(3, title="Markdown *title* _x_", outlet=None, published=None, url=None)]),
        ]
    first = passages[0]
    span = first.highlight or Span(text=first.text[:40], passage=first.n, start=0, end=min(40, len(first.text)), doc_start=0, doc_end=40)
    return Answer(question=question, found=True, answer=span, passages=list(passages))


def huge_answer(question: str = "q" * 600) -> Answer:
    """Everything too long at once: question, titles, outlets, passages, and more passages than fields."""
    long_text = ("The minister said the plan is *bold* and @everyone agrees. " * 400).strip()
    passages = [
        make_passage(
            n,
            long_text,
            sources=[make_source(n, title="T" * 700, outlet="O" * 300), make_source(n + 100)],
            highlight=(0, 3000),
        )
        for n in range(1, 31)
    ]
    return make_answer(question, passages)


def not_found(question: str) -> Answer:
    return Answer(question=question, found=False, message="No passage in the index answers that question.")


@dataclass
class FakeSourceRow:
    doc_id: str
    title: str | None
    outlet: str | None
    published: dt.date | None
    chunks: int
    location: str | None
    label: str


@dataclass
class Call:
    question: str
    context: list[str] | None
    k: int | None
    thread: str
    started: float
    filters: dict | None = None


class FakeAnswerer:
    """Answers every question from canned passages; some questions are slow, fail or find nothing.

    `delays` maps a word in the question to seconds of blocking work (time.sleep, as a model would
    block), so a bot that answered on the event loop would stall everyone else.
    """

    def __init__(self, *, delays: dict[str, float] | None = None, ingest_delay: float = 0.0):
        self.delays = delays or {}
        self.ingest_delay = ingest_delay
        self.calls: list[Call] = []
        self.ingested: list[list[Path]] = []
        self.warmed = False
        self.warmed_at: float | None = None
        self.lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings, *, embedder=None) -> FakeAnswerer:
        return cls()

    def warm_up(self) -> None:
        self.warmed = True
        self.warmed_at = time.monotonic()

    def answer(self, question: str, *, k: int | None = None, context: list[str] | None = None, **filters) -> Answer:
        with self.lock:
            self.calls.append(Call(question, context, k, threading.current_thread().name, time.monotonic(), filters))
        for word, seconds in self.delays.items():
            if word in question:
                time.sleep(seconds)
        if "explode" in question:
            raise RuntimeError("index file is corrupt (test)")
        if "toolong" in question:
            raise QuestionError("the question is too long: ask it in at most 500 characters")
        if "unknown" in question:
            return not_found(question)
        if "huge" in question:
            return huge_answer(question)
        answer = make_answer(question)
        if k is not None:
            answer = answer.model_copy(update={"passages": answer.passages[:k]})
        return answer

    def ingest(self, paths: Sequence[Path], *, progress: Callable[[int, int, str], None] | None = None) -> IngestReport:
        self.ingested.append(list(paths))
        files = [f"{path}/article-{i}.html" for path in paths for i in range(3)]
        for done, name in enumerate(files, start=1):
            time.sleep(self.ingest_delay)
            if progress is not None:
                progress(done, len(files), name)
        return IngestReport(added=len(files) - 1, failed=1, errors=[f"{files[-1]}: not an article (test)"])

    def sources(self) -> list[FakeSourceRow]:
        return [
            FakeSourceRow(f"doc{i}", f"Article {i}", "Reuters", dt.date(2022, 3, i % 28 + 1), 4, f"https://reuters.com/{i}", f"Article {i}")
            for i in range(1, 4)
        ]


@pytest.fixture
def answerer() -> FakeAnswerer:
    return FakeAnswerer()


def add_documents(path: Path, outlets: Sequence[str | None]) -> Path:
    """Documents from these outlets in the real store at `path` (made if need be), as one new generation.

    Written through the store's own writer, which keeps the outlets table the autocomplete reads.
    """
    import numpy as np

    from retrieval.models import Article
    from retrieval.backends.embedded.store import Store

    store = Store(path)
    first = store.count_documents()
    with store.write() as writer:
        for n, outlet in enumerate(outlets, start=first):
            writer.add(Article(key=f"key{n}", title=f"Article {n}", outlet=outlet, text=f"Some text {n}."), [],
                       np.zeros((0, 4), dtype=np.float32), [], [])
    store.close()
    return path


def pytest_configure(config):
    config.addinivalue_line("markers", "discord_settings(**values): [discord] settings for the bot under test")
    config.addinivalue_line("markers", "client(**options): keyword arguments for the CitebotClient under test")
    config.addinivalue_line("markers", "real: the bot under test answers from a real index (tests/bot/test_discord_admin.py)")
