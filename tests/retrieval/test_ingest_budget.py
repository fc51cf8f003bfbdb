"""Budgets on ingest: only regular files are opened, and a file's reading and chunking has a time budget.

A named pipe blocks whoever opens it for reading until a writer comes, so each FIFO test runs
the code in a child process with a timeout: a regression fails the test instead of hanging the suite.
"""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from retrieval.budget import OverBudget, TimeBudget
from retrieval.chunk import chunk_text, split_sentences
from retrieval.errors import IngestError
from retrieval.ingest import discover, read_articles
from tests.conftest import ROOT, SEEDS

ARTICLE = (SEEDS / "000_13573c5537cf727e.txt").read_text()


def run_child(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run `code` in a child process; one that has not ended after `timeout` seconds is killed and fails the test."""
    try:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {timeout} s: killed")


@pytest.fixture
def corpus_with_pipe(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "good.txt").write_text(ARTICLE)
    os.mkfifo(corpus / "pipe.txt")
    return corpus


def test_a_pipe_in_a_folder_is_one_line_and_the_rest_is_indexed(tmp_path, corpus_with_pipe):
    result = run_child(f"""
        from pathlib import Path
        from retrieval.pipeline import Answerer
        from retrieval.settings import load_settings
        from tests.fakes import FakeEmbedder

        settings = load_settings(index={{"dir": {str(tmp_path / "index")!r}}}, embedding={{"model": "fake"}},
                                 chunking={{"max_tokens": 40}})
        report = Answerer(settings, FakeEmbedder()).ingest([Path({str(corpus_with_pipe)!r})])
        print(report.added, report.failed)
        print(*report.errors, sep="\\n")
    """)
    assert result.returncode == 0, result.stderr
    counts, *errors = result.stdout.splitlines()
    assert counts == "1 1"
    assert len(errors) == 1 and "pipe.txt" in errors[0] and "not a regular file" in errors[0]


def test_a_pipe_named_on_the_command_line_or_read_directly_is_refused_unopened(corpus_with_pipe):
    pipe = corpus_with_pipe / "pipe.txt"
    files, errors = discover([pipe])
    assert files == [] and "not a regular file" in errors[0].reason
    result = run_child(f"""
        from retrieval.ingest import read_articles
        (error,) = read_articles({str(pipe)!r})
        print(error.reason)
    """, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "not a regular file" in result.stdout


def test_a_symlink_to_a_pipe_inside_a_folder_is_refused(tmp_path, corpus_with_pipe):
    (corpus_with_pipe / "link.txt").symlink_to(corpus_with_pipe / "pipe.txt")
    files, errors = discover([corpus_with_pipe])
    assert [f.name for f in files] == ["good.txt"]
    assert sorted(e.path.rsplit("/", 1)[1] for e in errors) == ["link.txt", "pipe.txt"]


class Ticking:
    """A clock that moves `step` seconds each time it is read: the budget is spent after a known number of checks."""

    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_a_file_over_its_budget_is_one_error_naming_the_setting(tmp_path):
    feed = tmp_path / "feed.jsonl"
    feed.write_text("".join(f'{{"title": "T{n}", "text": "Story number {n}."}}\n' for n in range(1000)))
    (error,) = read_articles(feed, budget=TimeBudget(10, clock=Ticking(0.1)))  # passes after ~100 records
    assert isinstance(error, IngestError) and "corpus.max_file_seconds" in error.reason
    assert "time budget of 10 s" in error.reason
    long_text = tmp_path / "long.txt"
    long_text.write_text("A line of text.\n" * 1000)
    (error,) = read_articles(long_text, budget=TimeBudget(10, clock=Ticking(0.1)))
    assert isinstance(error, IngestError) and "corpus.max_file_seconds" in error.reason


def test_a_file_within_its_budget_reads_as_without_one(tmp_path):
    article = tmp_path / "a.txt"
    article.write_text(ARTICLE)
    assert read_articles(article, budget=TimeBudget(60)) == read_articles(article)


def words(text: str) -> int:
    return len(text.split())


def test_chunking_stops_soon_after_the_budget_is_spent_on_5_mb_of_punctuation():
    """The issue's input: one 5 MB line of punctuation. Unbudgeted, sentence splitting alone takes tens of seconds."""
    text = ("?!.,;:'\"-()[]" * 410_000)[:5 * 2**20]
    started = time.perf_counter()
    with pytest.raises(OverBudget, match="corpus.max_file_seconds"):
        chunk_text("doc", text, count_tokens=words, max_tokens=200, max_chars=2400, budget=TimeBudget(0.5))
    assert time.perf_counter() - started < 2.0


def test_chunking_within_the_budget_is_unchanged():
    budgeted = chunk_text("doc", ARTICLE, count_tokens=words, max_tokens=40, budget=TimeBudget(60))
    assert budgeted == chunk_text("doc", ARTICLE, count_tokens=words, max_tokens=40)
    assert split_sentences(ARTICLE, TimeBudget(60)) == split_sentences(ARTICLE)


def test_a_budget_must_be_positive():
    with pytest.raises(ValueError, match="more than 0 seconds"):
        TimeBudget(0)


class Manual:
    """A clock that moves only when told."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_only_time_spent_reading_and_chunking_counts():
    """The writer embeds and commits between a file's articles: that time is not the file's."""
    clock = Manual()
    budget = TimeBudget(1.0, clock=clock)
    with budget.running():
        clock.now += 0.6
        with budget.running():  # nested: counted once
            clock.now += 0.1
    clock.now += 100  # embedding a batch
    with budget.running():
        clock.now += 0.2
        budget.check()
        clock.now += 0.2
        with pytest.raises(OverBudget):
            budget.check()
    assert budget.spent() == pytest.approx(1.1)


def test_an_ingest_fails_a_slow_file_alone_and_goes_on(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a-slow.txt").write_text(("?!.,;:'\"-()[]" * 160_000)[:2_000_000])  # ~15 s of sentence splitting
    (corpus / "b-good.txt").write_text(ARTICLE)
    result = run_child(f"""
        import time
        from pathlib import Path
        from retrieval.pipeline import Answerer
        from retrieval.settings import load_settings
        from tests.fakes import FakeEmbedder

        settings = load_settings(index={{"dir": {str(tmp_path / "index")!r}}}, embedding={{"model": "fake"}},
                                 chunking={{"max_tokens": 40}},
                                 corpus={{"max_file_seconds": 0.5, "max_article_chars": 3_000_000}})
        started = time.perf_counter()
        report = Answerer(settings, FakeEmbedder()).ingest([Path({str(corpus)!r})])
        print(report.added, report.failed, round(time.perf_counter() - started, 1))
        print(*report.errors, sep="\\n")
    """, timeout=10)
    counts, *errors = result.stdout.splitlines()
    added, failed, seconds = counts.split()
    assert (added, failed) == ("1", "1") and float(seconds) < 5
    assert "a-slow.txt" in errors[0] and "corpus.max_file_seconds" in errors[0]


def test_a_file_of_many_records_is_timed_per_record(settings_for, tmp_path, monkeypatch):
    """A JSONL archive of ordinary records must not fail for the sum of their times (3,773 news records
    failed 2,380 of them once the file's 60 s were spent); one record over its own budget still fails alone."""
    from retrieval import writer as writer_module
    from retrieval.budget import running
    from retrieval.pipeline import Answerer
    from tests.fakes import FakeEmbedder

    real_chunk_text = writer_module.chunk_text

    def slow_chunk_text(doc_id, text, *, budget=None, **kwargs):
        with running(budget):  # each record costs 0.05 s of its budget, the slow one 0.6 s
            time.sleep(0.6 if "Zqslow" in text else 0.05)
            if budget is not None:
                budget.check()
        return real_chunk_text(doc_id, text, budget=budget, **kwargs)

    monkeypatch.setattr(writer_module, "chunk_text", slow_chunk_text)
    archive = tmp_path / "archive.jsonl"
    records = [{"title": f"Story {n}", "text": f"Zqrecord{n} happened in the harbour on Monday."} for n in range(40)]
    records.insert(20, {"title": "Slow", "text": "Zqslow took its time."})
    archive.write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "one.txt").write_text("Zqslow one article in one file. " * 2)
    settings = settings_for(embedding={"model": "fake"}, chunking={"max_tokens": 40}, corpus={"max_file_seconds": 0.5})
    report = Answerer(settings, FakeEmbedder()).ingest([archive, tmp_path / "one.txt"])
    assert (report.added, report.failed) == (40, 2), report.errors  # 41 records x 0.05 s = 2 s: over a file's 0.5
    assert all("over its time budget of 0.5 s" in e for e in report.errors)
    assert any(e.startswith(f"{archive.resolve()}#21:") for e in report.errors)
    assert any(e.startswith(str((tmp_path / "one.txt").resolve())) for e in report.errors)
