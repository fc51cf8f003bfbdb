"""Answer -> terminal text: the phrase asked for, the date it holds as of, and sources that differ.

Also the same information in the Discord embed, and the --since/--until flags that filter by date.
"""

from __future__ import annotations

import datetime as dt
import io

import pytest
from rich.console import Console

from bot import render_discord as rd
from bot.cli import filters, main
from bot.dates import parse_date_flag
from bot.render import render_answer, version_line
from retrieval.errors import CitebotError
from retrieval.models import Answer, Passage, Source, Span, Version

MARCH_23 = dt.date(2022, 3, 23)
SEVEN = ["Hungary", "Slovakia", "Romania", "Latvia", "Estonia", "Lithuania", "Bulgaria"]
FOUR = ["Bulgaria", "Hungary", "Romania", "Slovakia"]
NEWSMAX = Source(doc_id="a", outlet="Newsmax", lead="NATO will bolster")
DAILY = Source(doc_id="b", outlet="The Daily", published=MARCH_23, lead="NATO leaders")


def passage(n: int, text: str, sentence: tuple[int, int], source: Source) -> Passage:
    start, end = sentence
    span = Span(text=text[start:end], passage=n, start=start, end=end, doc_start=start, doc_end=end)
    return Passage(n=n, text=text, score=0.6, sources=[source], chunk_ids=[f"c{n}"], doc_start=0,
                   doc_end=len(text), highlight=span)


def battlegroups(*, differ: bool = True) -> Answer:
    first = "Intro. Four new battle groups are being set up in " + ", ".join(SEVEN[:-1]) + " and Bulgaria, he said."
    second = "Four new battle groups will be established in Bulgaria, Hungary, Romania, and Slovakia."
    p1 = passage(1, first, (7, len(first)), NEWSMAX)
    p2 = passage(2, second, (0, len(second)), DAILY)
    at = first.index("Hungary")
    end = first.index(", he said")
    phrase = Span(text=first[at:end], passage=1, start=at, end=end, doc_start=at, doc_end=end)
    versions = [
        Version(text=first[at:end], values=SEVEN, passage=1, sources=[NEWSMAX]),
        Version(text="Bulgaria, Hungary, Romania, and Slovakia", values=FOUR, passage=2, sources=[DAILY]),
    ] if differ else []
    return Answer(question="where are the new battlegroups?", found=True, answer=p1.highlight, passages=[p1, p2],
                  phrase=phrase, versions=versions, disagreement=differ, as_of=MARCH_23)


def plain(answer: Answer) -> str:
    console = Console(file=io.StringIO(), width=400, color_system=None)
    console.print(render_answer(answer))
    return console.file.getvalue()


def test_the_phrase_follows_its_sentence_highlighted_with_the_date_the_answer_holds_as_of():
    answer = battlegroups(differ=False)
    text = plain(answer)
    lines = text.splitlines()
    assert lines[0] == answer.answer.text + " [1]"
    assert lines[1] == "→ " + answer.phrase.text + "  as of 2022-03-23"

    head = render_answer(answer).renderables[0]
    reversed_parts = [head.plain[s.start : s.end] for s in head.spans if "reverse" in str(s.style)]
    assert reversed_parts == [answer.phrase.text, answer.phrase.text]  # inside the sentence, then on its own


def test_without_phrase_or_date_only_the_sentence_is_shown():
    answer = battlegroups(differ=False).model_copy(update={"phrase": None, "as_of": None})
    lines = plain(answer).splitlines()
    assert lines[0] == answer.answer.text + " [1]"
    assert lines[1] == ""
    assert "→" not in plain(answer) and "as of" not in plain(answer)


def test_sources_that_differ_are_listed_with_outlet_date_values_and_passage():
    text = plain(battlegroups())
    block = text[text.index("Sources differ:") :].splitlines()
    assert block[1].strip() == "— Newsmax, date unknown: " + ", ".join(SEVEN) + " [1]"
    assert block[2].strip() == "— The Daily, 2022-03-23: Bulgaria, Hungary, Romania, Slovakia [2]"
    assert text.index("Sources differ:") < text.index("[1] ")  # before the passages


def test_sources_that_agree_say_nothing_about_differing():
    assert "Sources differ" not in plain(battlegroups(differ=False))


def test_a_version_carried_by_several_outlets_names_each():
    version = Version(text="x", values=["Poland"], passage=3, sources=[DAILY, NEWSMAX])
    assert version_line(version) == "— The Daily, 2022-03-23; Newsmax, date unknown: Poland [3]"


# -- the same information on Discord ---------------------------------------------------------------

def test_discord_embed_shows_the_phrase_the_date_and_the_differing_sources_first():
    answer = battlegroups()
    embed = rd.answer_embed_dict(answer)
    assert embed["description"].startswith("**" + answer.phrase.text + "** [1]\n> Four new battle groups")
    assert embed["footer"]["text"] == "As of 2022-03-23 · " + rd.FOOTER
    differ = embed["fields"][0]
    assert differ["name"] == "Sources differ"
    assert differ["value"].splitlines() == [
        "— Newsmax, date unknown: " + ", ".join(SEVEN) + " [1]",
        "— The Daily, 2022-03-23: Bulgaria, Hungary, Romania, Slovakia [2]",
    ]
    assert [f["name"][:3] for f in embed["fields"][1:]] == ["[1]", "[2]"]


def test_discord_embed_without_disagreement_or_date_is_as_before():
    answer = battlegroups(differ=False).model_copy(update={"phrase": None, "as_of": None})
    embed = rd.answer_embed_dict(answer)
    assert embed["description"] == f"**{answer.answer.text}** [1]"
    assert embed["footer"]["text"] == rd.FOOTER
    assert all(f["name"] != "Sources differ" for f in embed["fields"])


def test_discord_embed_keeps_differing_sources_within_every_limit():
    many = [Source(doc_id=f"d{i}", outlet="O" * 200 + " *x* @everyone", published=MARCH_23) for i in range(40)]
    long_passages = [passage(n, "The plan is *bold*. " * 300, (0, 2000), many[n]) for n in range(1, 31)]
    versions = [Version(text="x", values=["Place"] * 30, passage=1, sources=many) for _ in range(5)]
    answer = Answer(question="q" * 600, found=True, answer=long_passages[0].highlight, passages=long_passages,
                    phrase=long_passages[0].highlight, versions=versions, disagreement=True, as_of=MARCH_23)
    embed = rd.answer_embed_dict(answer)
    assert embed["fields"][0]["name"] == "Sources differ"
    assert "@everyone" not in embed["fields"][0]["value"]
    assert len(embed["fields"]) <= 25 and rd.size(embed["fields"][0]["value"]) <= 1024
    assert rd.embed_size(embed) <= 6000 and rd.size(embed["description"]) <= 4096


# -- the --since/--until flags ---------------------------------------------------------------------

def test_date_flags_read_yyyy_mm_dd():
    assert parse_date_flag("--since", "2022-03-01") == dt.date(2022, 3, 1)
    assert parse_date_flag("--until", None) is None


@pytest.mark.parametrize("value, expected", [
    ("today", dt.date(2025, 3, 4)), ("Yesterday", dt.date(2025, 3, 3)), ("7d", dt.date(2025, 2, 25)),
    ("0d", dt.date(2025, 3, 4)), (" 2w ", dt.date(2025, 2, 18)), ("30 d", dt.date(2025, 2, 2)),
])
def test_date_flags_read_relative_dates_from_today(value, expected):
    assert parse_date_flag("--since", value, today=dt.date(2025, 3, 4)) == expected


@pytest.mark.parametrize("value", ["2022-13-01", "2022-02-30", "tomorrow", "7", "7y", "-7d", "20220301", "1/3/2022",
                                   ""])
def test_a_bad_date_is_an_error_naming_the_flag(value):
    with pytest.raises(CitebotError, match=r"^--until must be a date \(YYYY-MM-DD.*7d, 2w\), not "):
        parse_date_flag("--until", value)


class Args:
    def __init__(self, outlet=None, since=None, until=None):
        self.outlet, self.since, self.until = outlet, since, until


def test_filters_become_answer_keywords_and_are_checked_together():
    assert filters(Args(" Newsmax ", "2022-03-01")) == {"outlet": "Newsmax", "since": dt.date(2022, 3, 1), "until": None}
    with pytest.raises(CitebotError, match="--since 2022-04-01 is after --until 2022-03-01"):
        filters(Args(since="2022-04-01", until="2022-03-01"))
    with pytest.raises(CitebotError, match="--outlet is empty"):
        filters(Args(outlet="  "))


@pytest.mark.parametrize("command", [["ask", "where?"], ["chat"]])
def test_a_bad_date_on_the_command_line_is_one_clear_line(command, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("CITEBOT_INDEX__DIR", str(tmp_path))
    code = main([*command, "--since", "2022-3-1"])
    err = capsys.readouterr().err
    assert code != 0
    assert err.strip().splitlines() == ["citebot: --since must be a date (YYYY-MM-DD, e.g. 2022-03-23), today, "
                                        "yesterday, or days or weeks ago (7d, 2w), not '2022-3-1'"]


def test_passages_show_the_answer_with_a_sentence_either_side_unless_full():
    text = "First one here. Second one here. The answer is Hungary. Fourth one here. Fifth one here."
    at = text.index("The answer")
    p = passage(1, text, (at, at + len("The answer is Hungary.")), NEWSMAX)
    answer = Answer(question="q", found=True, answer=p.highlight, passages=[p])
    short = plain(answer)
    assert "… Second one here. The answer is Hungary. Fourth one here. …" in short
    assert "First one here" not in short and "Fifth one here" not in short

    console = Console(file=io.StringIO(), width=400, color_system=None)
    console.print(render_answer(answer, full=True))
    assert text in console.file.getvalue()
