"""The Answerer over a real SQLite store and FAISS index, with a fake embedder."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from retrieval.errors import IndexBusyError, IndexMismatchError, QuestionError
from retrieval.pipeline import Answerer
from tests.fakes import FakeEmbedder

WORKER = Path(__file__).with_name("ingest_worker.py")

ARTICLES = {
    "nato.txt": "NATO will set up four new battle groups in Hungary, Slovakia, Romania and Bulgaria. "
    "The forces will remain in place as long as necessary.",
    "bread.txt": "Sourdough bread needs a lively starter. Bake it hot in a covered pot for forty minutes.",
    "ships.txt": "The alliance has 140 warships at sea and 130 aircraft on high alert in the region.",
}


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def make(settings_for):
    def make_answerer(**sections):
        sections.setdefault("embedding", {"model": "fake"})
        sections.setdefault("chunking", {"max_tokens": 40})
        # the fake embedder's similarities are not the real model's: no calibrated threshold here
        sections.setdefault("answer", {"min_score": 0.0})
        return Answerer(settings_for(**sections), FakeEmbedder())

    return make_answerer


def test_ingest_is_idempotent_and_replaces_changed_files(make, tmp_path):
    corpus = write(tmp_path / "corpus", ARTICLES)
    answerer = make()
    first = answerer.ingest([corpus])
    assert (first.added, first.updated, first.unchanged, first.failed) == (3, 0, 0, 0)
    again = answerer.ingest([corpus])
    assert (again.added, again.updated, again.unchanged) == (0, 0, 3)

    (corpus / "ships.txt").write_text("The alliance now has 200 warships at sea.", encoding="utf-8")
    changed = answerer.ingest([corpus])
    assert (changed.added, changed.updated, changed.unchanged) == (0, 1, 2)
    answer = answerer.answer("how many warships at sea?")
    assert "200 warships" in answer.passages[0].text
    assert all("140" not in p.text for p in answer.passages)
    assert answerer.check() == []


def test_remove_takes_a_document_out_of_search(make, tmp_path):
    corpus = write(tmp_path / "corpus", ARTICLES)
    answerer = make()
    answerer.ingest([corpus])
    removed = answerer.remove([str(corpus / "bread.txt")])
    assert removed == [str((corpus / "bread.txt").resolve())]
    assert len(answerer.sources()) == 2
    answer = answerer.answer("sourdough starter bread")
    assert all("Sourdough" not in p.text for p in answer.passages)
    with pytest.raises(QuestionError, match="no indexed document"):
        answerer.remove(["nothing-like-this"])


def test_bad_files_are_reported_and_the_rest_goes_on(make, tmp_path):
    corpus = write(tmp_path / "corpus", ARTICLES)
    (corpus / "broken.txt").write_bytes(b"\xff\xfe\x00\x81bad")
    (corpus / "empty.txt").write_text("", encoding="utf-8")
    report = make().ingest([corpus, tmp_path / "missing.txt"])
    assert report.added == 3
    assert report.failed == 3
    assert any("broken.txt" in e for e in report.errors)
    assert any("missing.txt" in e for e in report.errors)


def test_another_model_gets_a_clear_error(make, tmp_path, settings_for):
    corpus = write(tmp_path / "corpus", ARTICLES)
    make().ingest([corpus])
    other = make(embedding={"model": "another-model"})
    with pytest.raises(IndexMismatchError, match="re-ingest with `citebot ingest --rebuild"):
        other.answer("battle groups?")
    report = other.ingest([corpus], rebuild=True)
    assert report.added == 3
    assert other.answer("battle groups Hungary").found


def test_questions_are_checked(make):
    answerer = make()
    with pytest.raises(QuestionError, match="empty"):
        answerer.answer("   \n ")
    with pytest.raises(QuestionError, match="limit is 500"):
        answerer.answer("why " * 300)
    with pytest.raises(QuestionError, match="half a character"):  # from Discord's JSON: "\ud800"
        answerer.answer("where are the \ud800 troops?")


def test_empty_index_says_so(make):
    answer = make().answer("where are the battle groups?")
    assert not answer.found and "index is empty" in answer.message


def test_interrupted_ingest_leaves_the_index_as_it_was(make, tmp_path):
    answerer = make()
    answerer.ingest([write(tmp_path / "a", {"nato.txt": ARTICLES["nato.txt"]})])
    before = answerer.sources()

    def interrupt(done, total, path):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        answerer.ingest([write(tmp_path / "b", {"ships.txt": ARTICLES["ships.txt"]})], progress=interrupt)
    assert answerer.sources() == before
    fresh = make()
    assert fresh.answer("battle groups Hungary").found
    assert len(fresh.sources()) == 1


def _run_worker(index: Path, mode: str, *paths: Path, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.Popen([sys.executable, str(WORKER), str(index), mode, *map(str, paths)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def test_ingest_killed_before_commit_leaves_previous_index_usable(make, tmp_path):
    index = tmp_path / "index"
    answerer = make(index={"dir": str(index)})
    answerer.ingest([write(tmp_path / "a", {"nato.txt": ARTICLES["nato.txt"]})])
    generation = answerer.store.generation

    worker = _run_worker(index, "kill-before-commit", write(tmp_path / "b", {"bread.txt": ARTICLES["bread.txt"]}))
    worker.wait(timeout=60)
    assert worker.returncode == -9  # SIGKILL, right after the new vector file was written

    after = make(index={"dir": str(index)})
    assert after.store.generation == generation
    assert [s.location for s in after.sources()] == [str((tmp_path / "a" / "nato.txt").resolve())]
    answer = after.answer("battle groups Hungary")
    assert answer.found and "Hungary" in answer.passages[0].text
    assert after.check() == []
    # and the next ingest goes through
    assert after.ingest([tmp_path / "b"]).added == 1


def test_questions_are_answered_while_another_process_ingests(make, tmp_path):
    index = tmp_path / "index"
    reader = make(index={"dir": str(index)})
    reader.ingest([write(tmp_path / "a", {"nato.txt": ARTICLES["nato.txt"]})])
    many = {f"ships{i}.txt": f"Report {i}: " + ARTICLES["ships.txt"] for i in range(10)}
    worker = _run_worker(index, "slow", write(tmp_path / "b", many))
    answered = 0
    deadline = time.monotonic() + 60
    while worker.poll() is None and time.monotonic() < deadline:
        assert reader.answer("battle groups Hungary").found
        answered += 1
        time.sleep(0.05)
    out, errors = worker.communicate(timeout=60)
    assert worker.returncode == 0, errors.decode()
    assert answered >= 5
    assert len(reader.sources()) == 11  # the reader sees the new generation once it is committed


def test_a_second_writer_waits_for_the_lock_then_gives_up_with_one_line(make, tmp_path, settings_for):
    import fcntl

    answerer = make(index={"dir": str(tmp_path / "index"), "lock_wait_seconds": 0.5})
    answerer.dir.mkdir(parents=True, exist_ok=True)
    with open(answerer.dir / "write.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        started = time.monotonic()
        with pytest.raises(IndexBusyError, match="for 0.5 s: try again when it is done, or raise "
                                                 "index.lock_wait_seconds"):
            answerer.ingest([write(tmp_path / "a", ARTICLES)])
        assert 0.5 <= time.monotonic() - started < 3
    assert answerer.ingest([tmp_path / "a"]).added == 3


def test_a_second_writer_goes_on_once_the_first_is_done(make, tmp_path):
    import fcntl
    import threading

    answerer = make(index={"dir": str(tmp_path / "index"), "lock_wait_seconds": 30})
    answerer.dir.mkdir(parents=True, exist_ok=True)
    held = open(answerer.dir / "write.lock", "w")
    fcntl.flock(held, fcntl.LOCK_EX)
    threading.Timer(0.5, held.close).start()  # the first writer finishes
    started = time.monotonic()
    assert answerer.ingest([write(tmp_path / "a", ARTICLES)]).added == 3
    assert time.monotonic() - started >= 0.4


def test_a_configured_reranker_orders_the_candidates(make, tmp_path, settings_for):
    class PrefersBread:
        def score(self, question, passages):
            return [1.0 if "Sourdough" in p else 0.0 for p in passages]

    answerer = make()
    answerer.ingest([write(tmp_path / "corpus", ARTICLES)])
    assert "Hungary" in answerer.answer("battle groups Hungary").passages[0].text
    reranked = Answerer(answerer.settings, FakeEmbedder(), reranker=PrefersBread())
    assert "Sourdough" in reranked.answer("battle groups Hungary").passages[0].text


def test_a_cross_encoder_setting_must_name_a_folder(settings_for, tmp_path):
    from retrieval.errors import SettingsError

    settings = settings_for(reranker={"cross_encoder": str(tmp_path / "nowhere")})
    with pytest.raises(SettingsError, match="reranker.cross_encoder.*not a folder"):
        Answerer.from_settings(settings, embedder=FakeEmbedder())


def test_rescoring_scores_each_sentence_and_a_chunk_by_its_best(make, tmp_path):
    from retrieval.features import FEATURES

    answerer = make()
    answerer.ingest([write(tmp_path / "corpus", ARTICLES)])
    scored = answerer.rank("how many warships at sea")
    assert "warships" in scored[0].hit.text
    assert [s.rank_score for s in scored] == sorted((s.rank_score for s in scored), reverse=True)
    top = scored[0]
    weights = answerer.settings.reranker.weights
    assert set(weights) == set(FEATURES)
    # the highlighted sentence is the best-scoring one, and its score is the chunk's
    assert top.hit.text[top.sentence[0] : top.sentence[1]].startswith("The alliance has 140 warships")
    only_cosine = make(reranker={"weights": {name: 1.0 if name == "cosine" else 0.0 for name in FEATURES}})
    plain = only_cosine.rank("how many warships at sea")
    assert plain[0].rank_score == pytest.approx(plain[0].sentence_score)  # weights are read from the settings


def test_the_highlight_weighs_question_words_but_the_score_stays_the_similarity(make):
    import numpy as np

    from retrieval.models import Source
    from retrieval.backends.embedded.store import StoredChunk

    text = "Troops gather near the border. Four battle groups go to Hungary."
    spans = [(0, 30), (31, len(text))]
    vectors = np.array([[1.0, 0.0], [0.8, 0.6]], dtype=np.float16)  # the first is more similar to the query
    chunk = StoredChunk(7, "c", 0, len(text), text, Source(doc_id="d"), spans, vectors)
    query = np.array([1.0, 0.0], dtype=np.float32)
    question = "where do the four battle groups go?"

    for weight, expected in [(0.0, spans[0]), (0.75, spans[1])]:
        answerer = make(answer={"min_score": 0.0, "sentence_overlap_weight": weight})
        scored = answerer.reader._best_sentence(question, query, chunk, {})
        assert scored.sentence == expected
        assert scored.sentence_score == pytest.approx(1.0)


def test_the_caches_keep_the_most_recently_used_entries():
    from retrieval.reader import _Lru

    cache = _Lru(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is used again, so b is the least recently used
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)


def test_commits_add_small_segments_that_merge_and_removals_leave_tombstones(make, tmp_path, monkeypatch):
    from retrieval.backends.embedded import segments as index_module

    monkeypatch.setattr(index_module, "MERGE_FACTOR", 3)
    answerer = make()
    for n in range(7):  # one commit each
        answerer.ingest([write(tmp_path / f"c{n}", {f"a{n}.txt": f"Report {n} on zebras{n} and the herd."})])
        assert answerer.check() == []
    segments = answerer.store.sqlite.segments()
    assert len(segments) < 7  # merged as they came
    assert sum(s.vectors for s in segments) == answerer.store.count_chunks()
    files = sorted(p.name for p in answerer.dir.glob("seg-*.faiss"))
    assert {s.file for s in segments} <= set(files)

    answerer.remove([str((tmp_path / "c0" / "a0.txt").resolve())])
    assert answerer.check() == []
    assert sum(s.dead for s in answerer.store.sqlite.segments()) in (0, 1)  # a tombstone, unless a merge purged it
    answer = answerer.answer("zebras0 herd")
    assert all("zebras0" not in p.text for p in answer.passages)
    assert "zebras5" in answerer.answer("zebras5 herd").passages[0].text


def test_a_reader_follows_commits_by_loading_only_the_new_segments(make, tmp_path):
    writer = make()
    writer.ingest([write(tmp_path / "a", {"nato.txt": ARTICLES["nato.txt"]})])
    reader = make()
    assert reader.answer("battle groups Hungary").found
    loaded = dict(reader.store._segments.segments)
    writer.ingest([write(tmp_path / "b", {"ships.txt": ARTICLES["ships.txt"]})])
    assert "warships" in reader.answer("how many warships at sea").passages[0].text
    after = reader.store._segments.segments
    assert all(after[i] is loaded[i] for i in loaded if i in after)  # kept, not reloaded
    assert len(after) == len(loaded) + 1


class _RecordingPhrases:
    def __init__(self):
        self.prefetched = []

    def prefetch(self, question):
        self.prefetched.append(question)

    def find(self, question, sentence):
        return None


def test_the_phrase_model_is_prefetched_only_beside_an_embedder_that_never_imports_torch(settings_for, tmp_path,
                                                                                       monkeypatch):
    settings = settings_for(embedding={"model": "fake"}, chunking={"max_tokens": 40}, answer={"min_score": 0.0})
    phrases = _RecordingPhrases()
    embedder = FakeEmbedder()
    answerer = Answerer(settings, embedder, phrases=phrases)
    answerer.ingest([write(tmp_path / "corpus", ARTICLES)])
    monkeypatch.delitem(sys.modules, "torch", raising=False)  # as in a fresh `citebot ask`
    answerer.answer("where are the battle groups?")
    assert phrases.prefetched == []  # the fake may load torch: spaCy must not hide it meanwhile
    embedder.uses_torch = False
    answerer.answer("where are the battle groups?")
    assert phrases.prefetched == ["where are the battle groups?"]


def test_an_article_over_the_length_limit_or_one_that_trips_a_bug_costs_only_itself(make, tmp_path, monkeypatch):
    import retrieval.writer as writer

    corpus = write(tmp_path / "corpus", {**ARTICLES, "long.txt": "Troops moved. " * 200})
    answerer = make(corpus={"max_article_chars": 1000})
    real = writer.chunk_text

    def chunk_text(doc_id, text, **kwargs):
        if "Sourdough" in text:
            raise RuntimeError("a bug the chunker never met")
        return real(doc_id, text, **kwargs)

    monkeypatch.setattr(writer, "chunk_text", chunk_text)
    report = answerer.ingest([corpus])
    assert (report.added, report.failed) == (2, 2)
    long_line, = [e for e in report.errors if "long.txt" in e]
    assert "2,799 characters, more than the limit of 1,000" in long_line and "corpus.max_article_chars" in long_line
    bug_line, = [e for e in report.errors if "bread.txt" in e]
    assert "RuntimeError: a bug the chunker never met" in bug_line
    assert {s.key.rsplit("/", 1)[-1] for s in answerer.sources()} == {"nato.txt", "ships.txt"}
    assert answerer.check() == []


# -- sync and retention ---------------------------------------------------------------------------
def test_sync_removes_deleted_files_and_records_gone_from_their_file_only_under_the_roots(make, tmp_path):
    import json as json_

    answerer = make()
    corpus = write(tmp_path / "corpus", ARTICLES)
    other = write(tmp_path / "other", {"keep.txt": "The harbour master keeps a log of every ship."})
    feed = corpus / "feed.jsonl"
    feed.write_text("\n".join(json_.dumps({"id": f"s{n}", "title": f"S{n}", "text": f"Story {n} about zqtides."})
                              for n in range(3)) + "\n")
    assert answerer.ingest([corpus, other]).added == 7
    (corpus / "bread.txt").unlink()
    feed.write_text(json_.dumps({"id": "s0", "title": "S0", "text": "Story 0 about zqtides."}) + "\n")
    plain = answerer.ingest([corpus])
    assert (plain.removed, plain.unchanged) == (0, 3)  # without --sync nothing goes
    report = answerer.ingest([corpus], sync=True)
    assert (report.added, report.unchanged, report.removed, report.failed) == (0, 3, 3, 0)
    keys = {row.key for row in answerer.sources()}
    assert keys == {str((corpus / "nato.txt").resolve()), str((corpus / "ships.txt").resolve()), "s0",
                    str((other / "keep.txt").resolve())}
    assert answerer.check() == []


def test_sync_keeps_the_documents_of_a_file_that_cannot_be_read_now(make, tmp_path):
    answerer = make()
    corpus = write(tmp_path / "corpus", ARTICLES)
    assert answerer.ingest([corpus]).added == 3
    (corpus / "nato.txt").write_bytes(b"\xff\xfe broken now")
    report = answerer.ingest([corpus], sync=True)
    assert (report.removed, report.failed) == (0, 1)
    assert len(answerer.sources()) == 3


def test_retention_removes_old_articles_and_does_not_index_them(make, tmp_path):
    import datetime as dt
    import json as json_

    today = dt.datetime.now(dt.timezone.utc).date()
    records = [{"id": "old", "title": "Old", "text": "An old story of zqold times.", "published": "2001-01-01"},
               {"id": "new", "title": "New", "text": "A new story of zqnew times.", "published": today.isoformat()}]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "feed.jsonl").write_text("\n".join(json_.dumps(r) for r in records) + "\n")
    keeper = make()
    assert keeper.ingest([corpus]).added == 2
    keeper.store.close()
    answerer = make(retention={"max_age_days": 30})
    assert {r.key for r in answerer.sources()} == {"old", "new"}
    (corpus / "later.jsonl").write_text(json_.dumps({"id": "later", "title": "L", "text": "zqlater news.",
                                                     "published": today.isoformat()}) + "\n")
    report = answerer.ingest([corpus / "later.jsonl"])
    assert (report.added, report.removed) == (1, 1)
    assert {r.key for r in answerer.sources()} == {"new", "later"}
    again = answerer.ingest([corpus / "feed.jsonl"])
    assert again.failed == 1 and "more than retention.max_age_days (30) ago: not indexed" in again.errors[0]
    assert answerer.check() == []
