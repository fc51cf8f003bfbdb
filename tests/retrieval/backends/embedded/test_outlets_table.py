"""The store's outlets table: kept by the writer with each add, update and remove, so listing costs what the outlets are."""

from retrieval.models import Article


def test_outlets_are_counted_through_adds_updates_and_removes(answerer):
    answerer.ingest_articles([Article(key="a", outlet="Herald", text="The ferry was cancelled on Monday."),
                              Article(key="b", outlet=" Herald ", text="The bridge reopened on Tuesday."),
                              Article(key="c", outlet="Courier", text="The port closed on Wednesday."),
                              Article(key="d", text="No outlet is named here at all.")])
    assert answerer.store.outlets() == {"Herald": 2, "Courier": 1}
    answerer.ingest_articles([Article(key="c", outlet="Gazette", text="The port reopened on Thursday.")])
    assert answerer.store.outlets() == {"Herald": 2, "Gazette": 1}
    answerer.remove(["a", "b"])
    assert answerer.store.outlets() == {"Gazette": 1}
    assert answerer.check() == []


def test_check_finds_an_outlets_table_that_drifted(answerer):
    answerer.ingest_articles([Article(key="a", outlet="Herald", text="The ferry was cancelled on Monday.")])
    answerer.store.sqlite._db.execute("UPDATE outlets SET documents = 5")
    assert any("outlets table" in problem for problem in answerer.check())


def _steps(db, sql: str, values) -> tuple[int, list]:
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    db.set_progress_handler(count, 1)
    try:
        rows = db.execute(sql, values).fetchall()
    finally:
        db.set_progress_handler(None, 1)
    return steps[0], rows


def test_the_outlet_filter_reads_that_outlets_documents_by_their_index(answerer):
    import datetime as dt

    store = answerer.store.sqlite
    answerer.ingest_articles([Article(key="h", outlet="Süddeutsche", text="The ferry was cancelled on Monday."),
                              Article(key="d", outlet="Courier", published=dt.date(2022, 3, 1),
                                      text="The port closed on Wednesday.")])
    herald = store.chunk_ids_matching(outlet=" SÜDDEUTSCHE ")  # any case, any spacing around it
    assert herald and herald == store.chunk_ids_matching(outlet="süddeutsche")
    assert store.chunk_ids_matching(outlet="Nobody") == set()
    assert store.chunk_ids_matching(outlet="courier", since=dt.date(2022, 3, 2)) == set()
    assert store.chunk_ids_matching(outlet="courier", since=dt.date(2022, 3, 1))
    plan = " ".join(row[-1] for row in store._db.execute(
        "EXPLAIN QUERY PLAN SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document "
        "WHERE trim(d.outlet) IN (?)", ("Süddeutsche",)))
    assert "documents_outlet" in plan, plan
    answerer.ingest_articles([Article(key=f"c{n}", outlet="Courier", text=f"The port reopened on day {n}.")
                              for n in range(200)])
    assert store.chunk_ids_matching(outlet="Süddeutsche") == herald
    steps, rows = _steps(store._db, "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document "
                         "WHERE trim(d.outlet) IN (?)", ("Süddeutsche",))
    assert {r[0] for r in rows} == herald
    scanned = _steps(store._db, "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document "
                     "WHERE casefold(trim(d.outlet)) = ?", ("süddeutsche",))[0]
    assert steps * 20 < scanned, (steps, scanned)  # the query it replaces read all 202 documents


def test_an_index_made_before_the_outlet_index_gets_it_at_its_next_write(answerer):
    answerer.ingest_articles([Article(key="a", outlet="Herald", text="The ferry was cancelled on Monday.")])
    db = answerer.store.sqlite._db
    db.execute("DROP INDEX documents_outlet")
    assert answerer.store.matching(outlet="herald")  # still right, only slower
    answerer.ingest_articles([Article(key="b", outlet="Courier", text="The port closed on Wednesday.")])
    names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "documents_outlet" in names
    assert answerer.check() == []


def test_a_rare_outlet_is_searched_through_a_faiss_selector_and_still_answers(settings_for, monkeypatch):
    from retrieval.backends.embedded import segments as index
    from retrieval.pipeline import Answerer
    from tests.fakes import FakeEmbedder

    settings = settings_for(embedding={"model": "fake"}, chunking={"max_tokens": 40}, search={"candidates": 2},
                            answer={"min_score": 0.0, "min_mixed_score": -100.0, "min_support": -100.0})
    answerer = Answerer(settings, FakeEmbedder())
    answerer.ingest_articles([Article(key=f"c{n}", outlet="Courier", text=f"The ferry to the island sailed on day {n}.")
                              for n in range(40)]
                             + [Article(key="rare", outlet="Gazette", text="The ferry to the island was cancelled.")])
    given = []
    search = index.SegmentSet.search
    monkeypatch.setattr(index.SegmentSet, "search", lambda self, v, k, among=None: given.append(among) or
                        search(self, v, k, among))
    answer = answerer.answer("was the ferry to the island cancelled?", outlet="gazette")
    assert {s.outlet for p in answer.passages for s in p.sources} == {"Gazette"}
    assert given and all(a is not None and len(a) == 1 for a in given)  # 1 chunk of 41: FAISS filtered
    given.clear()
    answer = answerer.answer("did the ferry to the island sail?", outlet="courier")
    assert answer.passages and {s.outlet for p in answer.passages for s in p.sources} == {"Courier"}
    assert given and all(a is None for a in given)  # 40 of 41: a search a little deeper, filtered after
