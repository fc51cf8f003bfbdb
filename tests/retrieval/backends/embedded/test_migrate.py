"""Indexes written by older citebots (schema 1: citebot 0.1; schema 2: BM25 in FTS5) are refused with the
command that upgrades them, and upgrade whole."""

import sqlite3

import numpy as np
import pytest

from retrieval.chunk import chunk_text
from retrieval.errors import IndexSchemaError
from retrieval.backends.embedded.migrate import migrate, schema_version
from retrieval.models import Article
from retrieval.pipeline import Answerer
from retrieval.backends.embedded.schema import SCHEMA_VERSION
from tests.fakes import FakeEmbedder

# citebot 0.1's schema, as it wrote it.
V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE documents (id INTEGER PRIMARY KEY, doc_id TEXT NOT NULL, key TEXT NOT NULL UNIQUE,
    title TEXT, outlet TEXT, published TEXT, author TEXT, url TEXT, path TEXT, text TEXT NOT NULL,
    ingested_at TEXT NOT NULL);
CREATE TABLE chunks (id INTEGER PRIMARY KEY, chunk_id TEXT NOT NULL,
    document INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE, ordinal INTEGER NOT NULL,
    start INTEGER NOT NULL, end INTEGER NOT NULL, text TEXT NOT NULL, vector BLOB NOT NULL);
"""

ARTICLES = [
    Article(key="/news/nato.txt", path="/news/nato.txt", outlet="Newsmax",
            text="NATO will set up four new battle groups in Hungary, Slovakia, Romania and Bulgaria. "
                 "The forces will remain in place as long as necessary."),
    Article(key="/news/bread.txt", path="/news/bread.txt", title="Bread",
            text="Sourdough bread needs a lively starter. Bake it hot in a covered pot for forty minutes."),
]


def write_v1(folder, embedder):
    folder.mkdir(parents=True)
    db = sqlite3.connect(folder / "citebot.sqlite")
    db.executescript(V1_SCHEMA)
    for n, article in enumerate(ARTICLES, start=1):
        db.execute("INSERT INTO documents VALUES (?, ?, ?, ?, ?, NULL, NULL, NULL, ?, ?, '2026-01-01')",
                   (n, article.doc_id, article.key, article.title, article.outlet, article.path, article.text))
        chunks = chunk_text(article.doc_id, article.text, count_tokens=embedder.count_tokens, max_tokens=16)
        vectors = embedder.embed_documents([c.text for c in chunks])
        for chunk, vector in zip(chunks, vectors):
            db.execute("INSERT INTO chunks(chunk_id, document, ordinal, start, end, text, vector) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)", (chunk.chunk_id, n, chunk.ordinal, chunk.start, chunk.end,
                                                        chunk.text, np.asarray(vector, np.float32).tobytes()))
    for key, value in (("generation", "3"), ("schema", "1"), ("model", "fake"), ("dim", "64")):
        db.execute("INSERT INTO meta VALUES (?, ?)", (key, value))
    db.commit()
    db.close()
    (folder / "vectors-3.faiss").write_bytes(b"old whole-index file")


@pytest.fixture
def settings(settings_for):
    return settings_for(embedding={"model": "fake"}, chunking={"max_tokens": 16}, answer={"min_score": 0.0})


def test_an_old_index_is_refused_with_the_command_that_upgrades_it(settings):
    write_v1(settings.index.dir, FakeEmbedder())
    with pytest.raises(IndexSchemaError, match="run `citebot migrate`"):
        Answerer(settings, FakeEmbedder())


def test_migrate_keeps_every_article_and_answers_from_it(settings):
    embedder = FakeEmbedder()
    write_v1(settings.index.dir, embedder)
    before = sqlite3.connect(settings.index.dir / "citebot.sqlite").execute(
        "SELECT count(*) FROM chunks").fetchone()[0]
    assert migrate(settings, embedder) == 2
    assert schema_version(settings.index.dir) == SCHEMA_VERSION
    assert not list(settings.index.dir.glob("vectors-*.faiss"))
    assert not list(settings.index.dir.glob("*.migrating*"))
    answerer = Answerer(settings, embedder)
    assert answerer.check() == []
    assert answerer.store.count_chunks() == before
    assert {s.key for s in answerer.sources()} == {a.key for a in ARTICLES}
    answer = answerer.answer("battle groups Hungary")
    assert answer.found and "Hungary" in answer.passages[0].text
    assert answer.passages[0].sources[0].outlet == "Newsmax"
    assert migrate(settings, embedder) == 0  # nothing left to do


def test_a_migration_that_dies_leaves_the_old_index(settings, monkeypatch):
    embedder = FakeEmbedder()
    write_v1(settings.index.dir, embedder)
    from retrieval.backends.embedded import migrate as module

    def die(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module.os, "replace", die)
    with pytest.raises(KeyboardInterrupt):
        migrate(settings, embedder)
    assert schema_version(settings.index.dir) == 1
    monkeypatch.undo()
    assert migrate(settings, embedder) == 2  # and a second try goes through
    assert Answerer(settings, embedder).check() == []


# Schema 2 against 3: BM25 in an FTS5 table kept by triggers, no postings files, no documents.via.
V2_FTS = """
CREATE VIRTUAL TABLE chunks_fts USING fts5(
    text, content='chunks', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
);
CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
INSERT INTO chunks_fts(chunks_fts) VALUES ('rebuild');
ALTER TABLE documents DROP COLUMN via;
UPDATE meta SET value = '2' WHERE key = 'schema';
"""
# Schema 3 against 4: no wire-copy stories.
V3 = """
DROP TABLE story_bands;
DROP TABLE stories;
DELETE FROM meta WHERE key IN ('copies', 'next_story');
DROP TABLE outlets;
UPDATE meta SET value = '3' WHERE key = 'schema';
"""


def write_v2(settings, tmp_path, embedder):
    """A schema-2 index as the previous citebot left it: two segments, one article removed (a tombstone)."""
    tmp_path.mkdir()
    for article in ARTICLES + [Article(key="/news/gone.txt", path="/news/gone.txt", text="Gone tomorrow.")]:
        path = tmp_path / article.key.rsplit("/", 1)[1]
        path.write_text(article.text)
    answerer = Answerer(settings, embedder)
    for name in ("nato.txt", "bread.txt", "gone.txt"):
        answerer.ingest([tmp_path / name])
    answerer.remove([str(tmp_path / "gone.txt")])
    answer = answerer.answer("battle groups Hungary")
    answerer.store.close()
    db = sqlite3.connect(settings.index.dir / "citebot.sqlite")
    db.executescript(V3 + V2_FTS)
    db.close()
    for postings in settings.index.dir.glob("seg-*.lex"):
        postings.unlink()
    return answer


def test_a_schema_2_index_is_refused_then_upgraded_in_place_without_the_model(settings, tmp_path):
    before = write_v2(settings, tmp_path / "news", FakeEmbedder())
    with pytest.raises(IndexSchemaError, match="run `citebot migrate`"):
        Answerer(settings, FakeEmbedder())

    class NoModel(FakeEmbedder):
        def embed_documents(self, texts):
            raise AssertionError("the upgrade from schema 2 needs no model")

    assert migrate(settings, NoModel()) == 2
    assert schema_version(settings.index.dir) == SCHEMA_VERSION
    db = sqlite3.connect(settings.index.dir / "citebot.sqlite")
    assert db.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE 'chunks_fts%'").fetchone()[0] == 0
    db.close()
    answerer = Answerer(settings, FakeEmbedder())
    assert answerer.check() == []
    after = answerer.answer("battle groups Hungary")
    assert [p.text for p in after.passages] == [p.text for p in before.passages]
    assert [p.score for p in after.passages] == pytest.approx([p.score for p in before.passages])


def test_a_schema_2_upgrade_that_dies_before_its_commit_leaves_schema_2(settings, tmp_path, monkeypatch):
    write_v2(settings, tmp_path / "news", FakeEmbedder())
    from retrieval.backends.embedded import migrate as module

    real = module.lexical.save
    calls = []

    def die_on_second(postings, path):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(postings, path)

    monkeypatch.setattr(module.lexical, "save", die_on_second)
    segments = sqlite3.connect(settings.index.dir / "citebot.sqlite").execute("SELECT count(*) FROM segments")
    assert segments.fetchone()[0] == 2
    with pytest.raises(KeyboardInterrupt):
        migrate(settings, FakeEmbedder())
    assert schema_version(settings.index.dir) == 2
    monkeypatch.undo()
    assert migrate(settings, FakeEmbedder()) == 2
    assert Answerer(settings, FakeEmbedder()).check() == []


WIRE = ("NATO will set up four new battle groups in Hungary, Slovakia, Romania and Bulgaria, the alliance's "
        "secretary-general said on Wednesday, as leaders prepared for a summit in Brussels on the war in Ukraine.")


def test_a_schema_3_index_is_upgraded_with_its_wire_copies_grouped_without_the_model(settings, tmp_path):
    news = tmp_path / "news"
    news.mkdir()
    (news / "wire.txt").write_text(WIRE)
    (news / "copy.txt").write_text("BRUSSELS (Reuters) - " + WIRE + " Reporting by Maria de Vries.")
    (news / "bread.txt").write_text(ARTICLES[1].text)
    answerer = Answerer(settings, FakeEmbedder())
    answerer.ingest([news])
    grouped = answerer.store.count_copies()
    answerer.store.close()
    db = sqlite3.connect(settings.index.dir / "citebot.sqlite")
    db.executescript(V3)
    db.close()
    with pytest.raises(IndexSchemaError, match="run `citebot migrate`"):
        Answerer(settings, FakeEmbedder())

    class NoModel(FakeEmbedder):
        def embed_documents(self, texts):
            raise AssertionError("the upgrade from schema 3 needs no model")

    assert migrate(settings, NoModel()) == 3
    assert schema_version(settings.index.dir) == SCHEMA_VERSION
    answerer = Answerer(settings, FakeEmbedder())
    assert answerer.check() == []
    assert grouped == 1 and answerer.store.count_copies() == 1
    db = sqlite3.connect(settings.index.dir / "citebot.sqlite")
    stories = dict(db.execute("SELECT d.path, s.story FROM stories s JOIN documents d ON d.id = s.document"))
    assert stories[str(news / "wire.txt")] == stories[str(news / "copy.txt")] != stories[str(news / "bread.txt")]
