"""Answer -> Discord parts: the layout, the escaping, and every Discord limit."""

from __future__ import annotations

import random
import re

import discord

from bot import render_discord as rd
from retrieval.writer import IngestReport
from tests.bot.conftest import (
    FakeSourceRow,
    huge_answer,
    make_answer,
    make_passage,
    make_source,
    not_found,
)

# A markdown character not preceded by an (unescaped) backslash: it would format the text.
LIVE_MARKDOWN = re.compile(r"(?<!\\)(?:\\\\)*[*_~|`]")


def assert_within_limits(embed: dict) -> None:
    assert rd.size(embed.get("title", "")) <= 256
    assert rd.size(embed.get("description", "")) <= 4096
    assert len(embed.get("fields", [])) <= 25
    for f in embed.get("fields", []):
        assert 0 < rd.size(f["name"]) <= 256
        assert 0 < rd.size(f["value"]) <= 1024
    assert rd.size(embed.get("footer", {}).get("text", "")) <= 2048
    assert rd.embed_size(embed) <= 6000
    assert len(discord.Embed.from_dict(embed)) <= 6000


def test_answer_span_comes_first_then_numbered_sources_with_title_outlet_date_and_link():
    embed = rd.answer_embed_dict(make_answer("where are the new battlegroups?"))

    assert embed["title"] == "where are the new battlegroups?"
    assert embed["description"] == "**Slovakia, Hungary, Romania and Bulgaria** [1]"
    names = [f["name"] for f in embed["fields"]]
    assert names[0] == "[1] Article 1 — Reuters, 2022-03-23"
    assert names[2] == "[3] Markdown \\*title\\* \\_x\\_ — outlet unknown, date unknown"
    first = embed["fields"][0]["value"]
    assert first.startswith("[reuters.com](https://www.reuters.com/world/article-1)\n> ")
    assert "**Slovakia, Hungary, Romania and Bulgaria**" in first  # the highlight is bold in its passage
    assert not embed["fields"][2]["value"].startswith("[")  # no URL, no link line


def test_mentions_in_article_text_are_broken_and_markdown_is_inert():
    embed = rd.answer_embed_dict(make_answer("q"))
    mentions = embed["fields"][1]["value"]
    markdown = embed["fields"][2]["value"]

    for ping in ("@everyone", "@here", "<@123>", "<#456>", "<@&789>"):
        assert ping not in mentions
    assert mentions.endswith(
        "> Breaking: @\u200beveryone and @\u200bhere were told by <\u200b@\u200b123> in <\u200b#456>"
        " about <\u200b@\u200b&789>."
    )
    body = markdown.removeprefix("> ")
    assert not LIVE_MARKDOWN.search(body), body
    assert "\\[click me\\](https\\://evil.example/x)" in body  # a masked link cannot render


def test_escape_keeps_escapes_paired():
    assert rd.escape("a * b") == "a \\* b"
    assert rd.escape("an escaped \\* star") == "an escaped \\\\\\* star"


def test_a_huge_answer_fits_every_limit_and_says_it_was_trimmed():
    embed = rd.answer_embed_dict(huge_answer())

    assert_within_limits(embed)
    assert embed["title"].endswith("…")
    assert len(embed["fields"]) >= 3  # long passages are shortened before any field is dropped
    assert all(f["value"].endswith("…") for f in embed["fields"])
    assert all("Carried by 2 outlets" in f["value"] for f in embed["fields"])


def test_characters_outside_the_basic_plane_count_twice():
    emoji = "🙂" * 3000
    answer = make_answer(emoji, [make_passage(1, emoji, highlight=(0, 10))])
    embed = rd.answer_embed_dict(answer)

    assert_within_limits(embed)
    assert rd.size(embed["title"]) <= 256 and len(embed["title"]) < 256


def test_fit_embed_holds_any_oversized_embed_within_discords_limits():
    rng = random.Random(7)
    for _ in range(200):
        embed = {
            "title": "t" * rng.randint(0, 600),
            "description": "d" * rng.randint(0, 9000),
            "footer": {"text": "f" * rng.randint(0, 3000)},
            "fields": [
                {"name": "n" * rng.randint(0, 400), "value": "v" * rng.randint(0, 3000)}
                for _ in range(rng.randint(0, 40))
            ],
        }
        assert_within_limits(rd.fit_embed(embed))


def test_trim_keeps_short_text_and_ends_long_text_with_an_ellipsis():
    assert rd.trim("short", 10) == "short"
    assert rd.trim("a" * 20, 10) == "a" * 9 + "…"
    assert rd.trim("abc\\" + "x" * 20, 5) == "abc…"  # never leaves a lone backslash before the ellipsis


def test_not_found_is_said_plainly():
    assert rd.not_found_text(not_found("q")) == "No passage in the index answers that question."


def test_show_all_sources_gives_every_passage_in_full_within_message_limits():
    long_text = ("The minister said the plan is *bold* and @everyone agrees. " * 40).strip()
    passages = [make_passage(n, long_text, sources=[make_source(n), make_source(n + 100)]) for n in range(1, 6)]
    answer = make_answer("q", passages)
    messages = rd.all_sources_messages(answer)

    assert 5 < len(messages) <= rd.ALL_SOURCES_MAX_MESSAGES
    assert all(rd.size(m) <= 2000 for m in messages)
    text = "\n".join(messages)
    assert text.count("**[") == 5 and text.count("also in: ") == 5
    assert "not shown" not in text
    assert "@everyone" not in text
    quoted = [line for m in messages for line in m.splitlines() if line.startswith(">")]
    assert sum(len(line) for line in quoted) >= sum(len(p.text) for p in answer.passages)


def test_show_all_sources_lists_every_source_of_a_passage():
    passage = make_passage(1, "text", sources=[make_source(1), make_source(2, outlet="AP")])
    [message] = rd.all_sources_messages(make_answer("q", [passage]))

    assert "**[1]** Article 1 — Reuters, 2022-03-23 <https://www.reuters.com/world/article-1>" in message
    assert "also in: Article 2 — AP, 2022-03-23" in message


def test_sources_list_stays_within_five_messages_and_says_how_many_more():
    rows = [FakeSourceRow(f"d{i}", f"Title {i} " * 5, "Outlet", None, 3, None, f"Title {i} " * 5) for i in range(400)]
    messages = rd.sources_messages(rows)

    assert len(messages) == 5
    assert all(rd.size(m) <= 2000 for m in messages)
    shown = sum(m.count("• ") for m in messages)
    assert messages[-1].endswith(f"… and {400 - shown} more.")


def test_ingest_report_lists_counts_and_errors():
    text = rd.ingest_report_text(IngestReport(added=2, failed=1, errors=["a_b.html: not an article"]))
    assert text == "Reindex finished: 2 added, 0 updated, 0 unchanged, 0 removed, 1 failed.\n• a\\_b.html: not an article"


def test_strip_mentions_removes_only_the_bots_mention():
    assert rd.strip_mentions("<@42> where are <@7> the <@!42> troops?", 42) == "where are <@7> the troops?"


def test_a_wire_copy_is_one_field_naming_every_outlet():
    import datetime as dt

    from retrieval.models import Answer, Passage, Source, Span

    text = "Four new battle groups will be set up in Hungary."
    sources = [Source(doc_id=d, outlet=o, published=dt.date(2022, 3, 23), lead="x") for d, o in
               [("a", "AP"), ("b", "Newsmax"), ("c", "The Daily")]]
    span = Span(text=text, passage=1, start=0, end=len(text), doc_start=0, doc_end=len(text))
    passage = Passage(n=1, text=text, score=0.7, sources=sources, chunk_ids=["a", "b", "c"], doc_start=0,
                      doc_end=len(text), highlight=span)
    embed = rd.answer_embed_dict(Answer(question="where?", found=True, answer=span, passages=[passage]))
    [field] = embed["fields"]
    assert "Carried by 3 outlets: AP, Newsmax, The Daily" in field["value"]


def test_a_message_as_a_question_loses_the_bots_mention_and_is_cut_at_a_word():
    assert rd.message_question("<@42> where are  they? <@7>", 42, 500) == "where are they? <@7>"
    assert rd.message_question("one two three four", 42, 9) == "one two"
    assert rd.message_question("x" * 20, 42, 9) == "x" * 9  # no space to cut at
    assert rd.message_question("<@!42>", 42, 500) == ""


def test_help_fits_a_message_and_says_the_rules_in_force():
    text = rd.help_text(collection="harbour_news", message_content=False, cooldown=5.0, roles_only=True,
                        max_concurrent=4)

    assert rd.size(text) <= rd.MESSAGE_LIMIT
    assert "This server asks the collection **harbour\\_news**." in text  # escaped like any text shown
    assert "one question every 5 s per person; at most 4 questions answered at once in this server; asking is for " \
           "members with certain roles." in text
    assert "Message Content intent" in text
