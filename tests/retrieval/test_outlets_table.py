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
    answerer.store._db.execute("UPDATE outlets SET documents = 5")
    assert any("outlets table" in problem for problem in answerer.check())
