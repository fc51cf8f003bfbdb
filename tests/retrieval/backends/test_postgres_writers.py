"""Many writers on one PostgreSQL database (issue 24): their commits take turns, in the order readers see them.

Writers here are separate Answerers (each its own connections, as separate processes have) and, in the last
test, separate processes. The embedded engine keeps its single writer (tests in embedded/ and test_pipeline.py).
"""

import datetime as dt
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from retrieval.errors import IndexBusyError
from retrieval.models import Article
from retrieval.pipeline import Answerer
from tests.fakes import FakeEmbedder

ROOT = Path(__file__).resolve().parents[3]
WORKER = ROOT / "tests" / "retrieval" / "ingest_worker.py"
STORY = ("Dock workers in Rotterdam walked out on Tuesday. About 2,300 workers joined the strike, which halted "
         "loading at three terminals. The union said talks would resume on Thursday at the port authority's offices.")


@pytest.fixture
def writers(settings_for, postgres_url):
    """writers(n, **index) -> n Answerers on one fresh database, each with its own connections."""
    made = []

    def build(n: int = 2, **index):
        settings = settings_for(embedding={"model": "fake"}, chunking={"max_tokens": 40},
                                index={"url": postgres_url, **index}, answer={"min_score": 0.0})
        made.extend(Answerer(settings, FakeEmbedder()) for _ in range(n))
        return made[-n:]

    yield build
    for answerer in made:
        answerer.store.close()


def article(key: str, text: str, **fields) -> Article:
    return Article(key=key, title=key, outlet=fields.pop("outlet", "Port Times"), text=text, **fields)


def _hold_a_commit(answerer, articles, inside: threading.Event, release: threading.Event):
    """A writer that adds `articles` in one batch and keeps its transaction open until `release`."""
    writer = answerer.writer
    pending = writer_pending(articles, writer)
    batch = writer._embed(pending)
    with answerer.store.lock(), answerer.store.write(copies_threshold=0.5) as into:
        into.set_model("fake", FakeEmbedder().dim)
        for item in batch:
            into.add(*item)
        inside.set()
        release.wait(10)


def writer_pending(articles, writer):
    from retrieval.writer import _Pending

    pending = _Pending()
    for item in articles:
        pending.add(item, writer._chunk(item))
    return pending


def test_a_second_writers_commit_waits_for_the_first_and_takes_the_next_generation(writers):
    first, second = writers(2)
    first.ingest_articles([article("a", "Ferries to the islands were cancelled on Monday.")])
    start = first.store.generation
    inside, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_a_commit, args=(first, [article("b", "Cranes arrived in Gdansk.")],
                                                          inside, release))
    holder.start()
    assert inside.wait(10)
    done = threading.Event()
    other = threading.Thread(target=lambda: (second.ingest_articles(
        [article("c", "A strike halted loading at three terminals.")]), done.set()))
    other.start()
    time.sleep(1.0)
    assert not done.is_set()  # its commit waits for the open one
    release.set()
    holder.join(10)
    other.join(20)
    assert done.is_set()
    assert second.store.generation == start + 2
    assert {row.key for row in second.sources()} == {"a", "b", "c"} and second.check() == []


def test_the_same_article_from_two_writers_at_once_is_one_document(writers):
    first, second = writers(2)
    same = article("feed-entry-1", STORY)
    inside, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_a_commit, args=(first, [same], inside, release))
    holder.start()
    assert inside.wait(10)
    other = threading.Thread(target=second.ingest_articles, args=([same],))
    other.start()  # it looked before the first committed: it, too, thinks the article is new
    time.sleep(0.5)
    release.set()
    holder.join(10)
    other.join(20)
    assert second.store.count_documents() == 1 and second.check() == []
    generation = second.store.generation
    assert second.store.count_chunks() == len(second.store.articles()[0][2])
    again = first.ingest_articles([same])
    assert again.unchanged == 1 and first.store.generation == generation


def test_two_wire_copies_arriving_at_once_on_two_writers_join_one_story(writers):
    first, second = writers(2)
    one, two = article("w1", STORY, outlet="Reuters"), article("w2", STORY + " (AP)", outlet="AP")
    inside, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_a_commit, args=(first, [one], inside, release))
    holder.start()
    assert inside.wait(10)
    other = threading.Thread(target=second.ingest_articles, args=([two],))
    other.start()
    time.sleep(0.5)
    release.set()
    holder.join(10)
    other.join(20)
    store = second.store
    assert store.count_documents() == 2 and store.count_copies() == 1 and second.check() == []
    with store.snapshot():
        ids = [i for _, _, chunk_ids in store.articles() for i in chunk_ids]
        assert len({story for story, _ in store.stories_of(ids).values()}) == 1


def test_writers_share_the_right_to_write_and_a_rebuild_waits_for_them(writers):
    first, second, third = writers(3, lock_wait_seconds=0.5)
    with first.store.lock(), second.store.lock():  # two ordinary writers at once
        with pytest.raises(IndexBusyError, match="writing to"):
            with third.store.lock(alone=True):
                pass
    with third.store.lock(alone=True):
        with pytest.raises(IndexBusyError, match="rebuilding or migrating"):
            with first.store.lock():
                pass


def test_commits_removals_and_merges_from_three_threads_leave_the_index_whole(writers):
    """Two writers add and remove while a third merges: the postings, dead lists and counters stay consistent,
    and a question never sees a removed chunk."""
    first, second, merger = writers(3)
    rng = np.random.default_rng(7)
    words = "harbour ferry strike crane port union storm island talks terminal cargo wage".split()
    stop = threading.Event()
    errors: list[BaseException] = []

    def write(answerer, prefix):
        try:
            for round_ in range(12):
                batch = [article(f"{prefix}{round_}-{n}", " ".join(rng.choice(words, 30)) + ".",
                                 published=dt.date(2025, 1, 1 + n)) for n in range(4)]
                answerer.ingest_articles(batch)
                if round_ % 3 == 2:
                    answerer.remove([f"{prefix}{round_ - 1}-0", f"{prefix}{round_ - 2}-1"])
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    def merge():
        while not stop.is_set():
            try:
                merger.store.maintain()
            except BaseException as error:  # noqa: BLE001
                errors.append(error)
                return

    threads = [threading.Thread(target=write, args=(first, "a")), threading.Thread(target=write, args=(second, "b"))]
    background = threading.Thread(target=merge)
    background.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    stop.set()
    background.join(60)
    assert errors == []
    store = merger.store
    assert store.count_documents() == 2 * (12 * 4 - 8) and merger.check() == []
    with store.snapshot():
        live = {i for _, _, ids in store.articles(limit=1000) for i in ids}
        hits = store.lexical("harbour ferry strike crane", 1000)
    assert {i for i, _ in hits} <= live and len(hits) == len(live)


def test_two_writer_processes_ingesting_overlapping_folders_leave_one_copy_of_each(tmp_path, postgres_url):
    """Real processes: the same files from both, wire copies split between them; the result is what one
    writer makes of the same files."""
    shared, own = tmp_path / "shared", tmp_path / "own"
    shared.mkdir()
    own.mkdir()
    for n in range(90):
        (shared / f"s{n:03}.txt").write_text(f"Story {n}\n\nThe port of town {n} reported {n * 7} ships. "
                                             f"Officials in town {n} said cargo rose by {n} percent this week.")
    for n in range(0, 90, 9):  # a wire copy of every ninth shared story, only on the second writer
        (own / f"copy{n:03}.txt").write_text((shared / f"s{n:03}.txt").read_text() + " Reporting by the wire desk.")
    env = {**os.environ, "TEST_INDEX_URL": postgres_url, "PYTHONPATH": str(ROOT)}
    processes = [subprocess.Popen([sys.executable, str(WORKER), str(tmp_path / f"index{i}"), "slow", *paths],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i, paths in enumerate([[str(shared)], [str(shared), str(own)]])]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    from retrieval.settings import load_settings

    settings = load_settings(index={"dir": str(tmp_path / "look"), "url": postgres_url},
                             embedding={"model": "fake"}, chunking={"max_tokens": 40})
    answerer = Answerer(settings, FakeEmbedder())
    try:
        store = answerer.store
        assert store.count_documents() == 100 and store.count_copies() == 10 and answerer.check() == []
        keys = {row.key for row in answerer.sources()}
        assert keys == {str(p.resolve()) for p in [*shared.iterdir(), *own.iterdir()]}
    finally:
        store.close()


def test_a_reader_sees_each_commit_whole_and_at_its_very_next_question(writers):
    """Another process's reader: no question sees half of a commit (a pair of articles committed together, the
    counters against the rows), and the first question after a commit already finds what it added."""
    writer, reader = writers(2)
    stop = threading.Event()
    torn: list[str] = []
    looks = [0]

    def watch():
        while not stop.is_set():
            with reader.store.snapshot():
                keys = {row.key for row in reader.store.sources()}
                counted = reader.store.count_documents()
            looks[0] += 1
            if counted != len(keys):
                torn.append(f"counters say {counted} documents, rows {len(keys)}")
            torn.extend(f"{k} without its pair" for k in keys if k[0] in "ab" and "ba"["ab".index(k[0])] + k[1:] not in keys)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for i in range(12):
            writer.ingest_articles([article(f"a{i}", f"The zqtoken{i} report said ferries sailed on day {i}."),
                                    article(f"b{i}", f"A second zqtoken{i} story said cranes moved on day {i}.")])
            found = reader.answer(f"what did the zqtoken{i} report say?")
            assert any(f"zqtoken{i}" in p.text for p in found.passages), i
            if i % 3 == 2:
                writer.remove([f"a{i - 1}", f"b{i - 1}"])  # one commit removes both
                gone = reader.answer(f"what did the zqtoken{i - 1} report say?")
                assert not any(f"zqtoken{i - 1}" in p.text for p in gone.passages)
    finally:
        stop.set()
        watcher.join(30)
    assert torn == [] and looks[0] > 20
