"""Wire copies grouped at ingest (retrieval/stories.py, store_writer.join_story) and counted once at search."""

import datetime as dt
import shutil
import sqlite3

import pytest

from retrieval import stories
from retrieval.models import Article

STORY = (
    "Dockworkers in Rotterdam walked out on Monday in a dispute over automation at the port's container "
    "terminals, the FNV union said. About 2,300 workers joined the strike, which halted loading at three of "
    "the four largest terminals. The union wants guarantees that no jobs will be lost as cranes are automated. "
    "Port officials said talks would resume on Thursday and that ships were being diverted to Antwerp."
)
RELATED = (
    "Antwerp's port expects more ships this week as a strike continues in Rotterdam, its director said on "
    "Tuesday. Extra crews were called in to handle the diverted vessels. Dockworkers in Rotterdam walked out "
    "on Monday in a dispute over automation. Shipping lines warned of delays of up to four days for cargo "
    "bound for Germany."
)
OUTLETS = ["Reuters", "AP", "NOS", "De Telegraaf", "Politico Europe"]


def copy_of(text: str, n: int) -> str:
    variants = [
        lambda t: "ROTTERDAM (Reuters) - " + t,
        lambda t: t + " Reporting by Maria de Vries; Editing by Tom Hals.",
        lambda t: t.rsplit(". ", 1)[0] + ".",
        lambda t: "ROTTERDAM — " + t + " Copyright 2025 The Associated Press.",
        lambda t: t.replace("said", "told reporters", 1),
    ]
    return variants[n % len(variants)](text)


def wire(n: int = 5, *, day: int = 3) -> list[Article]:
    return [Article(key=f"wire-{i}", outlet=OUTLETS[i], title=f"Rotterdam strike ({OUTLETS[i]})",
                    published=dt.date(2025, 3, day), text=copy_of(STORY, i) if i else STORY) for i in range(n)]


def story_rows(answerer) -> dict[str, int]:
    db = sqlite3.connect(answerer.dir / "citebot.sqlite")
    try:
        return dict(db.execute("SELECT d.key, s.story FROM stories s JOIN documents d ON d.id = s.document"))
    finally:
        db.close()


def test_a_copy_scores_near_one_and_a_related_article_low():
    original = stories.signature(STORY)
    assert original.similarity(stories.signature(copy_of(STORY, 1))) >= 0.9
    # Cut by its last sentence: Jaccard drops, the share of the shorter text held by the longer does not.
    cut = stories.signature(copy_of(STORY, 2))
    assert original.similarity(cut) >= 0.9 > original.jaccard(cut) + 0.05
    assert original.similarity(stories.signature(RELATED)) < 0.3
    assert stories.signature("  ") is None
    assert stories.signature("Too short") is not None


def test_signatures_and_bands_do_not_change_between_runs():
    # The bands are stored: they must come out the same in every process, for every Python hash seed.
    signature = stories.signature(STORY)
    again = stories.Signature.from_bytes(signature.to_bytes(), signature.size)
    assert again.bands() == signature.bands()
    assert signature.values[:4].tolist() == stories.signature(STORY).values[:4].tolist()
    bands, rows = stories.banding()
    assert bands * rows <= stories.NUM_PERM and len(signature.bands()) == bands


def test_copies_join_one_story_and_a_related_article_stays_apart(answerer):
    related = Article(key="related", outlet="NOS", published=dt.date(2025, 3, 4), text=RELATED)
    report = answerer.ingest_articles(wire() + [related])
    assert report.added == 6
    rows = story_rows(answerer)
    assert len({rows[f"wire-{i}"] for i in range(5)}) == 1
    assert rows["related"] != rows["wire-0"]
    assert answerer.store.count_copies() == 4
    assert answerer.check() == []


def test_removing_copies_keeps_the_story_and_the_counter_right(answerer):
    answerer.ingest_articles(wire(3))
    assert answerer.store.count_copies() == 2
    answerer.remove(["wire-0"])  # the first to arrive
    assert answerer.store.count_copies() == 1
    answerer.ingest_articles([Article(key="wire-9", outlet="Yle", text=copy_of(STORY, 3))])
    rows = story_rows(answerer)
    assert rows["wire-9"] == rows["wire-1"] == rows["wire-2"]
    assert answerer.store.count_copies() == 2
    answerer.remove(["wire-1", "wire-2", "wire-9"])
    assert answerer.store.count_copies() == 0 and story_rows(answerer) == {}
    assert answerer.check() == []


def test_an_updated_article_that_is_no_longer_a_copy_leaves_the_story(answerer):
    answerer.ingest_articles(wire(2))
    answerer.ingest_articles([Article(key="wire-1", outlet="AP", text=RELATED)])
    rows = story_rows(answerer)
    assert rows["wire-1"] != rows["wire-0"] and answerer.store.count_copies() == 0
    assert answerer.check() == []


def test_copies_can_be_turned_off(settings_for):
    from retrieval.pipeline import Answerer
    from tests.fakes import FakeEmbedder

    settings = settings_for(embedding={"model": "fake"}, chunking={"max_tokens": 40}, copies={"enabled": False},
                            answer={"min_score": 0.0, "min_mixed_score": -100.0, "min_support": -100.0})
    answerer = Answerer(settings, FakeEmbedder())
    answerer.ingest_articles(wire(3))
    assert answerer.store.count_copies() == 0 and story_rows(answerer) == {}


def test_the_answer_cites_each_passage_once_carried_by_every_outlet(answerer):
    answerer.ingest_articles(wire())
    answer = answerer.answer("how many workers joined the Rotterdam strike?")
    assert answer.found
    quoted = answer.passages[answer.answer.passage - 1]
    assert "2,300" in answer.answer.text and sorted(s.outlet for s in quoted.sources) == sorted(OUTLETS)
    # Each part of the story is cited once, by all that carry it (the cut copy lacks the last sentence).
    chunks = len(answerer.store.matching(outlet="Reuters"))
    assert len(answer.passages) <= chunks
    assert all(len({s.outlet for s in p.sources}) == len(p.sources) >= 4 for p in answer.passages)


@pytest.mark.parametrize("depth", [3])
def test_copies_do_not_crowd_other_articles_out_of_the_candidates(settings_for, depth):
    from retrieval.pipeline import Answerer
    from tests.fakes import FakeEmbedder

    settings = settings_for(embedding={"model": "fake"}, chunking={"max_tokens": 40}, search={"candidates": depth, "mode": "dense"},
                            reranker={"rescore": depth},
                            answer={"min_score": 0.0, "min_mixed_score": -100.0, "min_support": -100.0})
    answerer = Answerer(settings, FakeEmbedder())
    other = Article(key="other", outlet="Yle", published=dt.date(2025, 3, 5), text=(
        "The Rotterdam strike grew on Wednesday: workers at a fourth terminal joined it, bringing the number "
        "who walked out to about 2,600, union officials said."))
    answerer.ingest_articles(wire() + [other])
    ranked = answerer.reader.rank("how many workers joined the Rotterdam strike?")
    keys = [item.hit.source.outlet for item in ranked]
    assert "Yle" in keys  # five copies of one story would otherwise fill all three places
    copies = next(item for item in ranked if item.copies)
    assert len(copies.copies) + 1 == 5


def test_a_corrected_copy_is_quoted_as_the_newer_report(answerer):
    older = Article(key="wire-0", outlet="Reuters", published=dt.date(2025, 3, 3), text=STORY)
    newer = Article(key="wire-1", outlet="AP", published=dt.date(2025, 3, 4),
                    text=STORY.replace("About 2,300", "About 1,900"))
    answerer.ingest_articles([older, newer])
    assert answerer.store.count_copies() == 1
    answer = answerer.answer("how many workers joined the Rotterdam strike?")
    lead = answer.passages[0]
    assert [s.outlet for s in lead.sources] == ["AP", "Reuters"]
    assert "1,900" in lead.text and answer.as_of == dt.date(2025, 3, 4)


def test_a_recency_half_life_puts_the_newer_report_first(settings_for):
    from retrieval.pipeline import Answerer
    from tests.fakes import FakeEmbedder

    old = Article(key="old", outlet="Herald", published=dt.date(2025, 1, 3), text=(
        "About 2,300 workers joined the Rotterdam strike at the port on Monday, the union said."))
    new = Article(key="new", outlet="Courier", published=dt.date(2025, 3, 3), text=(
        "Some 1,900 dockworkers are still on strike in Rotterdam, a union spokesman said on Monday."))
    order = {}
    for half_life in (None, 1):
        settings = settings_for(embedding={"model": "fake"}, chunking={"max_tokens": 40},
                                search={"recency_half_life_days": half_life},
                                answer={"min_score": 0.0, "min_mixed_score": -100.0, "min_support": -100.0})
        answerer = Answerer(settings, FakeEmbedder())
        answerer.ingest_articles([old, new])
        answer = answerer.answer("how many workers joined the Rotterdam strike?")
        order[half_life] = [p.sources[0].outlet for p in answer.passages]
        answerer.store.close()
        shutil.rmtree(settings.index.dir)
    assert order[None][0] == "Herald"  # the closer wording wins when dates do not count
    assert order[1] == ["Courier", "Herald"]  # two months at a 1-day half-life outweigh it


def test_finding_a_new_articles_copies_costs_the_same_in_a_bigger_index(answerer):
    # SQLite's own step counter: what join_story costs with 20 and with 400 articles indexed.
    import random

    words = STORY.split() + RELATED.split()

    def article(n: int) -> Article:
        rng = random.Random(n)
        return Article(key=f"a{n}", text=" ".join(rng.choice(words) for _ in range(120)) + f" Zq{n}.")

    costs = []
    for size in (20, 400):
        answerer.ingest_articles([article(n) for n in range(20 if costs else 0, size)])
        db = answerer.store.sqlite._db
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0

        db.execute("BEGIN")
        document = db.execute("INSERT INTO documents(doc_id, key, text, ingested_at) VALUES ('x', 'x', '', '')"
                              ).lastrowid
        db.set_progress_handler(count, 1)
        try:
            from retrieval.backends.embedded.transaction import Transaction

            Transaction(db, 0, copies_threshold=0.7).join_story(document, copy_of(STORY, 1))
        finally:
            db.set_progress_handler(None, 1)
            db.execute("ROLLBACK")
        costs.append(steps[0])
    assert costs[1] < costs[0] * 1.5, costs
