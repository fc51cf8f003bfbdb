"""PostgreSQL's packed BM25 postings (retrieval/backends/postgres/postings.py): SQLite FTS5's scores over many
commits, removals and merges on a real server, and an index of schema 1 upgraded in place by `citebot migrate`."""

import os
import subprocess
import sys

import numpy as np
import psycopg
import pytest

from retrieval.backends.embedded import postings as lexical
from retrieval.backends.postgres import postings as packed
from retrieval.errors import IndexSchemaError
from retrieval.models import Article
from retrieval.pipeline import Answerer
from retrieval.text import question_terms
from tests import squad_sample
from tests.conftest import ROOT
from tests.fakes import FakeEmbedder
from tests.retrieval.backends.embedded.test_postings import _same_ranking, fts, fts_query


@pytest.fixture(scope="module")
def paragraphs() -> tuple[list[str], list[str]]:
    data = squad_sample.sample()["data"]  # made up here: a clone has no ../shared
    texts = [p["context"] for article in data for p in article["paragraphs"]][:60]
    questions = [q["question"] for article in data for p in article["paragraphs"] for q in p["qas"]][:300:5]
    return texts, questions


def test_packed_rows_score_as_the_embedded_postings_with_ties_removals_and_a_filter(paragraphs):
    texts, questions = paragraphs
    texts = texts + texts[:10]  # the same text twice: tied scores, which go to the older chunk
    ids = np.arange(1, len(texts) + 1, dtype=np.int64)
    dead = np.array([3, 17, 40, 61], dtype=np.int64)
    built = lexical.build(ids, texts)
    segment = lexical.LexicalSegment(built)
    segment.kill(dead.tolist())
    rows = {}  # term hash -> one packed row, as PostgreSQL keeps it
    for t, key in enumerate(built.terms):
        docs, tfs = built.docs[built.starts[t]:built.starts[t + 1]], built.tfs[built.starts[t]:built.starts[t + 1]]
        rows[int(key)] = packed.unpack(*packed.pack(built.ids[docs], tfs, built.lengths[docs]))
    live = np.setdiff1d(ids, dead)
    average = built.lengths[live - 1].sum() / len(live)
    for allowed in (None, np.arange(1, len(texts) + 1, 3, dtype=np.int64)):
        for question in questions:
            terms = question_terms(question)
            theirs = lexical.search([segment], terms, 15, allowed)
            parts = []
            for term in terms:
                found = segment.find(lexical.term_hash(term))[0]
                n = len(found)
                idf = max(np.log((len(live) - n + 0.5) / (n + 0.5)), lexical.IDF_FLOOR)
                if (row := rows.get(lexical.term_hash(term))) is not None:
                    parts.append((*row, idf))
            ours = packed.score(parts, average, 15, dead=dead, allowed=allowed)
            assert [i for i, _ in ours] == [i for i, _ in theirs]
            assert [s for _, s in ours] == pytest.approx([s for _, s in theirs], rel=1e-12)
            assert not set(dead.tolist()) & {i for i, _ in ours}
    with pytest.raises(ValueError, match="ids"):
        packed.unpack(b"\0" * 16, b"\0" * 2, b"\0" * 8)


@pytest.fixture
def answerer(settings_for, postgres_url):
    settings = settings_for(embedding={"model": "fake"}, chunking={"max_tokens": 40},
                            index={"url": postgres_url})
    answerer = Answerer(settings, FakeEmbedder())
    yield answerer
    answerer.store.close()


def _as_fts5(store, questions, *, k=20, allowed=None):
    """Every question's BM25 from the store, against SQLite FTS5 over the chunks the store holds now."""
    with store.snapshot():
        texts = store.chunk_texts(range(1, 10_000))
        db = fts([])
        db.executemany("INSERT INTO f(rowid, text) VALUES (?, ?)", list(texts.items()))
        for question in questions:
            theirs = [(i, s) for i, s in db.execute("SELECT rowid, -bm25(f) FROM f WHERE f MATCH ? ORDER BY rank",
                                                    (fts_query(question),)) if allowed is None or i in allowed][:k]
            ours = store.lexical(question, k, allowed)
            _same_ranking(theirs, ours)
    return texts


def _segments(url):
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("SET search_path = citebot")
        live = db.execute("SELECT id, chunks, dead FROM segments WHERE merged_into IS NULL ORDER BY id").fetchall()
        return live, db.execute("SELECT count(*) FROM dead").fetchone()[0]


def test_commits_removals_and_merges_keep_fts5s_ranking_and_drop_the_removed(answerer, postgres_url, paragraphs):
    texts, questions = paragraphs
    store = answerer.store
    articles = [Article(key=f"p{i}", title=f"P{i}", text=text) for i, text in enumerate(texts)]
    answerer.ingest_articles(articles[:30])  # one commit: one segment of about 100 chunks
    first = _segments(postgres_url)[0]
    assert len(first) == 1 and first[0][1] >= 64
    for article in articles[30:40]:  # ten small commits: small segments, merged eight at a time
        answerer.ingest_articles([article])
    removed = [f"p{i}" for i in range(12)]  # over 30% of the first segment
    with store.snapshot():
        gone = {i for i, row in store.chunks(range(1, 10_000)).items() if row.source.title.lower() in removed}
    assert answerer.remove(removed) == removed  # the writer merges after a removal
    live, dead = _segments(postgres_url)
    assert dead == 0 and len(live) < 11, live  # the dead-heavy segment rewritten, the small ones merged
    texts_now = _as_fts5(store, questions)
    assert not gone & set(texts_now) and answerer.check() == []

    # a chunk whose segment was merged is removed: listed dead against the merged segment, masked at once
    assert answerer.remove(["p35"]) == ["p35"]
    live, dead = _segments(postgres_url)
    assert dead > 0 and sum(d for _, _, d in live) == dead
    allowed = set(list(store.matching())[::2])
    _as_fts5(store, questions)
    _as_fts5(store, questions[:5], allowed=allowed)
    assert answerer.check() == []
    answerer.ingest_articles([Article(key="p35", title="again", text=texts[35] + " Rotterdam harbour")])
    _as_fts5(store, questions)
    assert answerer.check() == []


def test_a_segment_left_empty_by_removals_is_dropped(answerer, postgres_url, paragraphs):
    answerer.ingest_articles([Article(key="only", title="t", text=paragraphs[0][0])])
    assert answerer.remove(["only"]) == ["only"]  # the writer merges after it: the emptied segment goes
    assert _segments(postgres_url) == ([], 0)
    assert answerer.store.maintain() == 0 and answerer.check() == []
    assert answerer.store.lexical(paragraphs[1][0], 5) == []


def test_a_broken_postings_row_is_found_by_check(answerer, postgres_url, paragraphs):
    answerer.ingest_articles([Article(key=f"p{i}", title="t", text=t) for i, t in enumerate(paragraphs[0][:5])])
    assert answerer.check() == []
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("UPDATE citebot.postings SET tfs = tfs || '\\x0001'::bytea WHERE term = (SELECT min(term) FROM"
                   " citebot.postings)")
    assert any("torn" in problem for problem in answerer.check())


SCHEMA_1 = """
ALTER TABLE postings RENAME TO postings_v2;
ALTER INDEX postings_pkey RENAME TO postings_v2_pkey;
CREATE TABLE postings (term text NOT NULL, chunk bigint NOT NULL REFERENCES chunks (id) ON DELETE CASCADE,
    tf integer NOT NULL, tokens integer NOT NULL, PRIMARY KEY (term, chunk) INCLUDE (tf, tokens));
CREATE INDEX postings_chunk ON postings (chunk);
"""


def test_an_index_of_schema_1_is_refused_then_upgraded_in_place_by_citebot_migrate(answerer, postgres_url,
                                                                                   paragraphs, tmp_path):
    texts, questions = paragraphs
    answerer.ingest_articles([Article(key=f"p{i}", title="t", text=t) for i, t in enumerate(texts[:20])])
    answerer.remove(["p3"])
    with answerer.store.snapshot():
        before = {q: answerer.store.lexical(q, 10) for q in questions}
    answerer.store.close()
    with psycopg.connect(postgres_url, autocommit=True) as db, db.transaction():  # back to schema 1, as it was
        db.execute("SET search_path = citebot")
        dead = {row[0] for row in db.execute("SELECT chunk FROM dead")}
        db.execute(SCHEMA_1)
        rows = [(term, int(i), int(f), int(n)) for term, *arrays in db.execute(
            "SELECT term, chunks, tfs, lengths FROM postings_v2") for i, f, n in zip(*packed.unpack(*arrays))
            if int(i) not in dead]
        with db.cursor() as cursor:
            cursor.executemany("INSERT INTO postings VALUES (%s, %s, %s, %s)", rows)
        db.execute("DROP TABLE postings_v2, segments, dead; ALTER TABLE chunks DROP COLUMN segment;"
                   " UPDATE citebot_meta SET value = '1' WHERE key = 'schema'")
    with pytest.raises(IndexSchemaError, match="citebot migrate"):
        Answerer(answerer.settings, FakeEmbedder())
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEBOT_")}
    env.update({"CITEBOT_INDEX__DIR": str(tmp_path / "folder"), "CITEBOT_INDEX__URL": postgres_url})
    done = subprocess.run([sys.executable, "-m", "bot.cli", "migrate"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and "upgraded default" in done.stderr, done.stderr
    upgraded = Answerer(answerer.settings, FakeEmbedder())
    try:
        assert upgraded.check() == []
        with upgraded.store.snapshot():
            for question, hits in before.items():
                _same_ranking(hits, upgraded.store.lexical(question, 10))
        upgraded.remove(["p4"])  # its chunks in the one segment the upgrade made
        upgraded.ingest_articles([Article(key="new", title="t", text=texts[30])])
        assert upgraded.check() == []
        _as_fts5(upgraded.store, questions)
    finally:
        upgraded.store.close()
    again = subprocess.run([sys.executable, "-m", "bot.cli", "migrate"], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0 and "nothing to do" in again.stderr, again.stderr
