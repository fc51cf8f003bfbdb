"""Time words in questions (retrieval/timewords.py): the window of days they name, and the reader preferring it."""

import datetime as dt
import json

import pytest

from retrieval.models import Article
from retrieval.timewords import time_focus

TODAY = dt.date(2022, 6, 24)  # a Friday
D = dt.date


@pytest.mark.parametrize("question, start, end", [
    ("What country elected its first-ever leftist leader this week?", D(2022, 6, 17), TODAY),
    ("Who won the vote yesterday?", D(2022, 6, 23), D(2022, 6, 23)),
    ("What did the IRS announce today?", TODAY, TODAY),
    ("What happened last week in Bogota?", D(2022, 6, 10), D(2022, 6, 17)),
    ("What happened in Bogota over the last week?", D(2022, 6, 17), TODAY),
    ("Which talks were recently suspended?", D(2022, 6, 10), TODAY),
    ("What is the latest on the strike?", D(2022, 6, 10), TODAY),
    ("How many storms so far this year?", D(2022, 1, 1), TODAY),
    ("What did the union say last month?", D(2022, 5, 1), D(2022, 5, 31)),
    ("Who resigned this month?", D(2022, 6, 1), TODAY),
    ("What did the minister say last week about this year's budget?", D(2022, 6, 10), D(2022, 6, 17)),
])
def test_time_words_name_a_window_counted_from_today(question, start, end):
    focus = time_focus(question, TODAY)
    assert (focus.start, focus.end) == (start, end) and focus.half_life_days > 0
    assert focus.distance(start) == focus.distance(end) == 0 and focus.distance(start - dt.timedelta(days=3)) == 3


@pytest.mark.parametrize("question", ["How many weeks did the strike last?", "Where is the port now?",
                                      "What happened on 3 March 2022?", "Who won the election?"])
def test_a_question_without_time_words_names_no_time(question):
    assert time_focus(question, TODAY) is None


ELECTION = [  # the same subject in three periods; the oldest says it in the question's own words
    Article(key="old", outlet="Archive", published=D(2013, 6, 20), text=(
        "Colombia elected a president this week after a campaign about the first leftist leader the country "
        "might have had. Voters chose the conservative candidate.")),
    Article(key="feb", outlet="Herald", published=D(2022, 2, 14), text=(
        "Colombia's left hopes to elect its first leftist leader in the spring election, polls suggest.")),
    Article(key="week", outlet="Courier", published=D(2022, 6, 20), text=(
        "Gustavo Petro won Colombia's presidential runoff on Sunday, becoming the country's first president "
        "from the left.")),
]


@pytest.fixture
def ask(settings_for):
    from retrieval.pipeline import Answerer
    from tests.fakes import FakeEmbedder

    made = []

    def build(**search):
        settings = settings_for(embedding={"model": "fake"}, chunking={"max_tokens": 60},
                                search={"now": TODAY.isoformat(), **search},
                                answer={"min_score": 0.0, "min_mixed_score": -100.0, "min_support": -100.0})
        answerer = Answerer(settings, FakeEmbedder())
        answerer.ingest_articles(ELECTION)
        made.append(answerer)
        return answerer

    yield build
    for answerer in made:
        answerer.store.close()


def order(answer) -> list[str]:
    return [p.sources[0].outlet for p in answer.passages]


def test_this_week_puts_the_weeks_article_first(ask, settings_for, tmp_path):
    question = "What country elected its first-ever leftist leader this week?"
    on = ask()
    answer = on.answer(question)
    assert order(answer)[0] == "Courier"
    assert answer.preferred.describe() == "“this week”: articles of 2022-06-17 to 2022-06-24 first"
    assert on.answer("Which country elected its first leftist leader?").preferred is None
    from rich.console import Console

    from bot.render import render_answer
    from bot.render_discord import answer_embed_dict

    console = Console(width=120, record=True)
    console.print(render_answer(answer))
    assert "articles of 2022-06-17 to 2022-06-24 first" in console.export_text()  # said to the terminal ...
    assert answer_embed_dict(answer)["footer"]["text"].startswith("“this week”: articles of")  # ... and on Discord
    off = ask(time_words=False)
    assert order(off.answer(question))[0] != "Courier"  # by the words alone, another article leads


def test_a_question_without_time_words_ranks_exactly_as_with_them_off(ask, settings_for):
    question = "Which country elected its first leftist leader?"
    with_words, without = ask().answer(question), ask(time_words=False).answer(question)
    assert [(p.text, p.score) for p in with_words.passages] == [(p.text, p.score) for p in without.passages]


def test_undated_candidates_alone_are_left_in_their_order(ask, settings_for):
    from retrieval.pipeline import Answerer
    from tests.fakes import FakeEmbedder

    undated = [Article(key=a.key, outlet=a.outlet, text=a.text) for a in ELECTION]
    ranked = {}
    for words in (True, False):
        settings = settings_for(embedding={"model": "fake"}, chunking={"max_tokens": 60},
                                search={"now": TODAY.isoformat(), "time_words": words},
                                answer={"min_score": 0.0, "min_mixed_score": -100.0, "min_support": -100.0},
                                index={"dir": str(settings_for().index.dir) + str(words)})
        answerer = Answerer(settings, FakeEmbedder())
        answerer.ingest_articles(undated)
        ranked[words] = [(p.text, p.score) for p in answerer.answer("who was elected this week?").passages]
        answerer.store.close()
    assert ranked[True] == ranked[False]


def test_an_archive_dated_only_by_its_urls_answers_this_week_from_the_week(settings_for, tmp_path):
    """Records with no date field, as a news archive gives them: the URL's day is the article's."""
    from retrieval.pipeline import Answerer
    from tests.fakes import FakeEmbedder

    urls = {"old": "https://news.example/2013/06/20/world/colombia.html",
            "feb": "https://news.example/2022/02/14/americas/colombia-left.html",
            "week": "https://news.example/2022/06/20/americas/petro-wins.html"}
    archive = tmp_path / "archive.jsonl"
    archive.write_text("\n".join(json.dumps({"text": a.text, "url": urls[a.key], "source": a.outlet})
                                 for a in ELECTION))
    settings = settings_for(embedding={"model": "fake"}, chunking={"max_tokens": 60}, search={"now": "2022-06-24"},
                            answer={"min_score": 0.0, "min_mixed_score": -100.0, "min_support": -100.0})
    answerer = Answerer(settings, FakeEmbedder())
    try:
        answerer.ingest([archive])
        answer = answerer.answer("What country elected its first-ever leftist leader this week?")
        assert answer.passages[0].sources[0].published == D(2022, 6, 20)
        assert {p.sources[0].published for p in answer.passages} <= {D(2013, 6, 20), D(2022, 2, 14), D(2022, 6, 20)}
    finally:
        answerer.store.close()
