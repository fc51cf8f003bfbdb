"""Hostile article text on Discord: every construct made inert, every limit held, "Show all sources" capped.

Article text, titles, outlets and URLs are written by whoever wrote the article. Each test below
feeds one construct through the Discord renderer and asserts on the exact output; a property-based
test then throws random mixtures of them at every renderer; the last tests drive the real
discord.py client against the fake Discord (tests/bot/fake_discord.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import threading
import time
from urllib.parse import urlsplit

import discord
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot import render_discord as rd
from retrieval.models import Answer, Passage, Source, Span, Version
from retrieval.writer import IngestReport
from tests.bot.conftest import FakeAnswerer, FakeSourceRow, huge_answer, make_answer, make_passage, make_source
from tests.bot.fake_discord import EPHEMERAL
from tests.bot.test_discord_transport import WAIT, answered, connected, fake, make_settings, new_bot  # noqa: F401
from tests.bot.test_render_discord import assert_within_limits

Z = "\u200b"  # the zero-width space that follows every "<" and "@" of article text


def quoted(text: str, highlight: tuple[int, int] | None = None, budget: int = rd.FIELD_VALUE_LIMIT) -> str:
    """The quote line of a passage's field, without the link line above it."""
    passage = make_passage(1, text, sources=[make_source(1, url=None)], highlight=highlight)
    return rd.passage_field(passage, budget)["value"]


# -- one construct at a time -------------------------------------------------------------------------

def test_a_masked_link_after_other_brackets_stays_text():
    # discord.utils.escape_markdown escapes only the first "[" of this, leaving a live link.
    text = "Note [1] and [Sign in to read more](https://evil.example/login)"

    assert rd.escape(text) == "Note \\[1\\] and \\[Sign in to read more\\](https\\://evil.example/login)"
    assert quoted(text) == "> Note \\[1\\] and \\[Sign in to read more\\](https\\://evil.example/login)"


def test_a_masked_link_with_an_angle_bracket_target_stays_text():
    assert rd.escape("[x](<https://evil.example>)") == f"\\[x\\](<{Z}https\\://evil.example>)"


def test_a_bare_url_does_not_autolink_and_cannot_become_a_masked_link():
    assert rd.escape("see https://evil.example/x_y and steam://run/1") == (
        "see https\\://evil.example/x\\_y and steam\\://run/1"
    )
    # Brackets on either side of a URL stay text too.
    assert rd.escape("[reuters.com](https://evil.example)") == "\\[reuters.com\\](https\\://evil.example)"


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("**bold** *it*", "\\*\\*bold\\*\\* \\*it\\*"),
        ("__under__ _it_", "\\_\\_under\\_\\_ \\_it\\_"),
        ("~~strike~~", "\\~\\~strike\\~\\~"),
        ("||spoiler||", "\\|\\|spoiler\\|\\|"),
        ("`code` ```block```", "\\`code\\` \\`\\`\\`block\\`\\`\\`"),
        ("a \\ b \\* c", "a \\\\ b \\\\\\* c"),
    ],
    ids=["stars", "underscores", "tildes", "spoiler-bars", "backticks", "backslashes"],
)
def test_inline_markdown_is_escaped(text, escaped):
    assert rd.escape(text) == escaped


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("> a quote", "\\> a quote"),
        (">>> the rest", "\\>>> the rest"),
        ("# Heading", "\\# Heading"),
        ("### Small heading", "\\### Small heading"),
        ("-# subtext", "\\-# subtext"),
        ("- item", "\\- item"),
        ("+ item", "\\+ item"),
        ("* item", "\\* item"),
        ("12. item", "12\\. item"),
        ("3) item", "3\\) item"),
        ("   # indented", "   \\# indented"),
    ],
    ids=["quote", "block-quote", "heading", "heading-3", "subtext", "dash-list", "plus-list", "star-list",
         "numbered", "numbered-paren", "indented"],
)
def test_line_start_markers_are_escaped_at_the_start_and_after_every_line_break(text, escaped):
    assert rd.escape(text) == escaped
    # A line break a client may honour is a line break here too; mid-line the same text is left alone.
    for newline in ("\n", "\r\n", "\r", "\u2028", "\x85"):
        assert rd.escape("first" + newline + text) == "first\n" + escaped
    assert rd.escape(text, at_line_start=False) == text.replace("*", "\\*")


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("<@123>", f"<{Z}@{Z}123>"),
        ("<@!123>", f"<{Z}@{Z}!123>"),
        ("<@&123>", f"<{Z}@{Z}&123>"),
        ("<#123>", f"<{Z}#123>"),
        ("<:name:123>", f"<{Z}:name:123>"),
        ("<a:name:123>", f"<{Z}a:name:123>"),
        ("<t:1700000000:R>", f"<{Z}t:1700000000:R>"),
        ("</ask:123>", f"<{Z}/ask:123>"),
        ("@everyone", f"@{Z}everyone"),
        ("@here", f"@{Z}here"),
    ],
    ids=["user", "nick", "role", "channel", "emoji", "animated-emoji", "timestamp", "command", "everyone", "here"],
)
def test_mentions_channels_roles_emoji_and_timestamps_are_broken(text, escaped):
    assert rd.escape(text) == escaped
    assert quoted(f"by {text}.") == f"> by {escaped}."


def test_control_characters_and_terminal_sequences_are_stripped():
    text = "a\x00b\x07c \x1b[31mred\x1b[0m \x1b]0;title\x07d \x9b2Je \x7ff\x85g \u202eevil\u202c h\x0bi"
    assert rd.escape(text) == "abc red d e f\ng evil h i"
    assert quoted(text) == "> abc red d e f g evil h i"


# -- highlight boundaries -----------------------------------------------------------------------------

def test_a_channel_split_by_the_highlight_cannot_rebuild_itself():
    text = "See <#123> now"
    # "<" before the highlight, "#123>" inside it; then the highlight is "<" alone.
    assert quoted(text, (5, 14)) == f"> See <{Z}**#123> now**"
    assert quoted(text, (4, 5)) == f"> See **<{Z}**#123> now"
    # Without room for the bold, the plain line keeps the channel broken too.
    assert quoted(text, (5, 14), budget=19) == f"> See <{Z}#123> now"
    # Cut short, the line ends before the next "<", not between it and its zero-width space.
    assert quoted(text * 3, (5, 17), budget=23) == f"> See <{Z}#123> nowSee…"


def test_a_mention_and_a_masked_link_split_by_the_highlight_stay_broken():
    assert quoted("x <@123> y", (3, 8)) == f"> x <{Z}**@{Z}123>** y"
    assert quoted("[a](https://evil.example)", (1, 5)) == "> \\[**a\\](h**ttps\\://evil.example)"


def test_the_highlight_does_not_pair_with_stars_or_backslashes_in_the_article():
    assert quoted("a * b * c", (2, 5)) == "> a **\\* b** \\* c"
    assert quoted("path C:\\ end", (5, 8)) == "> path **C:\\\\** end"


def test_a_terminal_sequence_across_the_highlight_goes_whole():
    text = "red \x1b[31mALERT\x1b[0m done"
    assert quoted(text, (6, 14)) == "> red **ALERT** done"  # the highlight starts inside "\x1b[31m"
    assert quoted(text, (6, 9)) == "> red ALERT done"  # nothing left to bold


def test_an_autolink_split_by_the_highlight_stays_text():
    assert quoted("go to https://evil.example/x now", (6, 12)) == "> go to **https:**//evil.example/x now"
    assert quoted("go to https://evil.example/x now", (6, 11)) == "> go to **https**\\://evil.example/x now"


# -- links to sources ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("url", "link"),
    [
        ("https://www.reuters.com/world/a", "[reuters.com](https://www.reuters.com/world/a)"),
        ("https://www.reuters.com@evil.example/login", "[evil.example](https://evil.example/login)"),
        ("https://user:pw@www.reuters.com:8443/a", "[reuters.com](https://www.reuters.com:8443/a)"),
        ("HTTPS://WWW.Reuters.COM/a", "[reuters.com](https://www.reuters.com/a)"),
        ("https://rеuters.com/a", "[xn--ruters-3of.com](https://xn--ruters-3of.com/a)"),  # a Cyrillic "е"
        ("https://x.example/a(b)<c>@everyone", "[x.example](https://x.example/a%28b%29%3Cc%3E%40everyone)"),
        ("https://x.example/ünï", "[x.example](https://x.example/%C3%BCn%C3%AF)"),
        # found by the random test below: a URL inside the target stays inside it, one link
        ("https://evil.example/x_y*z<https://evil.example>",
         "[evil.example](https://evil.example/x_y*z%3Chttps://evil.example%3E)"),
    ],
    ids=["plain", "userinfo", "port", "case", "lookalike", "breakout", "unicode-path", "url-in-url"],
)
def test_a_link_label_names_the_host_the_link_really_goes_to(url, link):
    field = rd.passage_field(make_passage(1, "text", sources=[make_source(1, url=url)]))
    assert field["value"] == link + "\n> text"
    assert_inert(field["value"])


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(1)", "data:text/html,hi", "file:///etc/passwd", "ftp://x.example/a",
     "https://evil.example\\@www.reuters.com/", "https://", "https://x.example:99999/", "https://[x/",
     "https://a b.example/", "https://x.example/\u202e", "https://a_b.example/", "https://x.example/" + "a" * 600],
    ids=["javascript", "data", "file", "ftp", "backslash", "no-host", "bad-port", "bad-ipv6", "space", "bidi",
         "underscore-host", "too-long"],
)
def test_a_url_that_could_mislead_or_break_out_gets_no_link(url):
    field = rd.passage_field(make_passage(1, "text", sources=[make_source(1, url=url)]))
    assert field["value"] == "> text"
    [message] = rd.all_sources_messages(make_answer("q", [make_passage(1, "text", sources=[make_source(1, url=url)])]))
    assert message == "**[1]** Article 1 — Reuters, 2022-03-23\n> text"


# -- limits, with escaping that lengthens ---------------------------------------------------------------

def test_escaping_cannot_push_a_part_over_its_limit_or_be_cut_in_half():
    stars = make_answer("*" * 300, [make_passage(1, "*" * 5000, sources=[make_source(1, title="<" * 600)],
                                                 highlight=(0, 4000))])
    embed = rd.answer_embed_dict(stars)

    assert_within_limits(embed)
    assert embed["title"] == "\\*" * 127 + "…"
    assert embed["description"] == "**" + "\\*" * 2037 + "…** [1]"
    assert embed["fields"][0]["name"] == "[1] " + f"<{Z}" * 125 + "…"
    link = "[reuters.com](https://www.reuters.com/world/article-1)"
    pairs = (1024 - len(link) - len("\n> ") - len("…")) // 2  # as many whole escapes as fit
    assert embed["fields"][0]["value"] == f"{link}\n> " + "\\*" * pairs + "…"


def test_a_message_split_never_cuts_an_escape_and_escapes_a_marker_it_brings_to_a_line_start():
    def shown(text: str) -> list[str]:
        return rd.all_sources_messages(make_answer("q", [make_passage(1, text, sources=[])]))

    assert shown("y" * 1996 + " # heading") == ["> " + "y" * 1996, "> \\# heading"]
    assert shown("y" * 1996 + " 1. item") == ["> " + "y" * 1996, "> 1\\. item"]
    assert shown("y" * 1997 + "*" * 10) == ["> " + "y" * 1997, "> " + "\\*" * 10]
    assert shown("y" * 1997 + "<@1>") == ["> " + "y" * 1997, f"> <{Z}@{Z}1>"]


# -- "Show all sources", capped -------------------------------------------------------------------------

def test_show_all_sources_stops_at_ten_messages_and_says_how_many_sources_are_left_out():
    answer = huge_answer("q")  # 30 passages of 24,000 characters, 60 sources
    messages = rd.all_sources_messages(answer)

    assert len(messages) == rd.ALL_SOURCES_MAX_MESSAGES == 10
    assert all(rd.size(m) <= 2000 for m in messages)
    assert messages[-1].splitlines()[-1] == (
        "… and 58 more sources not shown; `citebot sources` lists every indexed article."
    )
    two = rd.all_sources_messages(answer, max_messages=2)
    assert len(two) == 2
    assert two[-1].endswith("\n… and 58 more sources not shown; `citebot sources` lists every indexed article.")


def test_show_all_sources_says_when_only_passages_are_left_out():
    text = "word " * 3000
    answer = make_answer("q", [make_passage(n, text, sources=[make_source(1)]) for n in (1, 2)])
    messages = rd.all_sources_messages(answer, max_messages=3)

    assert len(messages) == 3 and all(rd.size(m) <= 2000 for m in messages)
    assert messages[-1].endswith("\n… and the rest of the passages not shown; "
                                 "`citebot sources` lists every indexed article.")


def test_show_all_sources_uses_the_last_messages_reserve_when_nothing_follows():
    # A quote of 1,950 characters: more than the last message holds while the "not shown" line may be needed.
    answer = make_answer("q", [make_passage(1, "z" * 1948, sources=[])])
    assert rd.all_sources_messages(answer, max_messages=1) == ["> " + "z" * 1948]


def test_show_all_sources_of_a_huge_answer_is_quick():
    text = "word *x* @everyone <#1> " * 50_000  # 1.2 MB a passage
    many = [make_source(i) for i in range(20)]
    answer = make_answer("q", [make_passage(n, text, sources=many, highlight=(600_000, 600_100)) for n in range(1, 11)])
    started = time.perf_counter()
    messages = rd.all_sources_messages(answer)
    embed = rd.answer_embed_dict(answer)
    assert time.perf_counter() - started < 2.0  # were 16.4 s and 9.4 s
    assert len(messages) == 10
    assert_within_limits(embed)


# -- random hostile text through every Discord renderer -------------------------------------------------

HOSTILE = [
    "[", "]", "(", ")", "](", "[x](https://evil.example/a)", "[Sign in](<https://evil.example>)", "<", ">",
    "<@123>", "<@!123>", "<@&123>", "<#123>", "<:e:123>", "<a:e:123>", "<t:1700000000:R>", "</ask:1>",
    "<https://evil.example>", "@everyone", "@here", "@", "#", "# ", "-# ", "- ", "+ ", "1. ", "2) ", "> ", ">>> ",
    "*", "**", "_", "__", "~~", "||", "`", "```", "\\", ":", "//", "https:", "https://evil.example/x_y*z",
    "\n", "\r\n", "\r", "\t", " ", "   ", "\x00", "\x01", "\x07", "\x1b", "\x1b[31m", "\x1b]0;title\x07",
    "\x85", "\x9b2J", "\x7f", "\u2028", "\u202e", "\u2066", Z, "\ue000", "\ue001", "🙂", "é", "word", ".",
]
URLS = [
    "https://www.reuters.com/world/a", "https://www.reuters.com@evil.example/login", "http://x.example:8080/a_b",
    "javascript:alert(1)", "https://evil.example\\@reuters.com/", "https://x.example/a)[b](c<@1>",
    "https://rеuters.com/", "//evil.example/x", "https://[::1]/a",
]
fragment = st.sampled_from(HOSTILE) | st.text(max_size=4)
long_run = st.builds(lambda piece, n: piece * n, st.sampled_from(HOSTILE), st.integers(100, 3000))
article_text = st.lists(st.sampled_from(HOSTILE) | fragment | long_run, max_size=24).map("".join)
short_text = st.lists(fragment, max_size=8).map("".join)


sources = st.builds(
    Source,
    doc_id=st.sampled_from(["d1", "d2", "d3", "d4", "d5"]),
    title=st.none() | short_text | long_run,
    outlet=st.none() | short_text,
    published=st.none() | st.just(dt.date(2022, 3, 23)),
    url=st.none() | st.sampled_from(URLS) | short_text,
    lead=short_text,
)


@st.composite
def spans(draw, text: str, n: int) -> Span | None:
    if not text or draw(st.booleans()):
        return None
    start = draw(st.integers(0, len(text) - 1))
    end = draw(st.integers(start + 1, len(text)))
    return Span(text=text[start:end], passage=n, start=start, end=end, doc_start=start, doc_end=end)


@st.composite
def answers(draw) -> Answer:
    passages = []
    for n in range(1, draw(st.integers(1, 3)) + 1):
        text = draw(article_text)
        passages.append(Passage(n=n, text=text, score=1.0, sources=draw(st.lists(sources, min_size=1, max_size=3)),
                                chunk_ids=[f"c{n}"], doc_start=0, doc_end=len(text), highlight=draw(spans(text, n))))
    first = passages[0]
    span = first.highlight or Span(text=first.text, passage=1, start=0, end=len(first.text), doc_start=0,
                                   doc_end=len(first.text))
    versions = [Version(text=draw(short_text), values=draw(st.lists(short_text, max_size=4)), passage=1,
                        sources=draw(st.lists(sources, min_size=1, max_size=2)))
                for _ in range(draw(st.integers(0, 2)))]
    return Answer(question=draw(article_text), found=True, answer=span, passages=passages,
                  phrase=draw(st.none() | st.just(span)), versions=versions, disagreement=bool(versions),
                  message=draw(short_text))


# Discord's escape: a backslash before anything but a letter, digit or space makes that character text.
ESCAPED = re.compile(r"\\([^0-9A-Za-z\s])")
OUR_LINK = re.compile(r"\[([a-z0-9.:-]+)\]\((https?://[^\s()<>]+)\)")
OUR_URL = re.compile(r"<(https?://[^\s<>]+)>")
CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def live(text: str) -> str:
    """`text` with each escaped character replaced by a plain letter: what is left can still format."""
    return ESCAPED.sub("x", text)


def assert_inert(text: str) -> None:
    """Nothing in `text` but our own markup can format, link, mention or ping."""
    assert not CONTROLS.search(text), text
    for i in (m.start() for m in re.finditer("@", text)):
        assert text[i + 1 : i + 2] == Z, text  # no ping, no <@id>
    for i in (m.start() for m in re.finditer("<", text)):
        assert text[i + 1 : i + 2] == Z or OUR_URL.match(text, i), text  # no <#id>, <:e:id>, <t:…>, autolink
    view = live(text)
    for match in OUR_LINK.finditer(view):
        url = match.group(2)
        assert match.group(1) == urlsplit(url).hostname.removeprefix("www."), text  # the label tells the truth
        assert "@" not in url
    view = OUR_URL.sub("url", OUR_LINK.sub("link", view)).replace(rd.NOT_SHOWN, "")
    # No autolink but our own links. A link's target may hold "://" itself (a percent-encoded URL in
    # its query): it is one target up to its ")", never shown, so it is looked at without them.
    assert "://" not in view, text
    view = re.sub(r"\[[0-9]+\](?!\()", "n", view)  # our citation numbers
    assert not re.search(r"[\[\]_~|`]", view), text
    assert all(len(run) == 2 for run in re.findall(r"\*+", view)), text  # only our own bold
    for line in view.split("\n"):
        line = line.removeprefix("> ").lstrip()
        assert not re.match(r"[#>+-]|[0-9]+[.)]", line), text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(answers())
def test_random_hostile_articles_render_inert_and_within_every_limit(answer):
    embed = rd.answer_embed_dict(answer)
    assert_within_limits(embed)
    assert len(discord.Embed.from_dict(embed)) <= 6000
    for part in [embed["title"], embed.get("description", ""), embed["footer"]["text"],
                 *(f[key] for f in embed.get("fields", []) for key in ("name", "value"))]:
        assert_inert(part)

    messages = rd.all_sources_messages(answer)
    assert 1 <= len(messages) <= rd.ALL_SOURCES_MAX_MESSAGES
    for message in messages:
        assert 0 < rd.size(message) <= rd.MESSAGE_LIMIT
        assert_inert(message)

    not_found = answer.model_copy(update={"found": False})
    assert rd.size(rd.not_found_text(not_found)) <= rd.MESSAGE_LIMIT
    assert_inert(rd.not_found_text(not_found))
    rows = [FakeSourceRow(s.doc_id, s.title, s.outlet, s.published, 3, s.url, s.label) for s in answer.sources]
    for message in rd.sources_messages(rows):
        assert rd.size(message) <= rd.MESSAGE_LIMIT
        assert_inert(message)
    report = rd.ingest_report_text(IngestReport(failed=1, errors=[answer.question]))
    assert rd.size(report) <= rd.MESSAGE_LIMIT
    assert_inert(report)


# -- through the bot, against the fake Discord --------------------------------------------------------

@pytest.mark.asyncio
async def test_show_all_sources_of_a_huge_answer_sends_ten_private_messages(fake, make_settings):
    bot = new_bot(fake, make_settings(), FakeAnswerer())
    async with connected(bot, fake.token):
        asked = await fake.slash("alice", "ask", question="a huge question")
        answer = await fake.wait_for(lambda: answered(fake, asked), timeout=WAIT, what="the answer")
        shown = await fake.click("bob", answer["id"], label="Show all sources")

        def posts():
            return fake.requests_to("POST", rf"/webhooks/\d+/{shown.token}")

        await fake.wait_for(lambda: any("not shown" in r.json["content"] for r in posts()), timeout=WAIT,
                            what="the last sources message")
        await asyncio.sleep(0.3)  # and nothing after it

    sent = posts()
    assert (shown.response_type, shown.ephemeral) == (5, True)
    assert len(sent) == 10
    assert all(r.json["flags"] == EPHEMERAL and r.json["allowed_mentions"]["parse"] == [] for r in sent)
    assert sent[-1].json["content"].endswith("… and 58 more sources not shown; "
                                             "`citebot sources` lists every indexed article.")
    assert all(m["_pings"] == [] for m in fake.bot_messages())
    assert fake.violations == []


@pytest.mark.asyncio
@pytest.mark.parametrize("builder", ["answer_embed", "all_sources_messages"])
async def test_messages_are_built_off_the_event_loop(fake, make_settings, monkeypatch, builder):
    """A builder as slow as a huge answer's once was: heartbeats go on, and the click is acknowledged at once."""
    threads: list[threading.Thread] = []
    real = getattr(rd, builder)

    def slow(answer):
        threads.append(threading.current_thread())
        time.sleep(1.0)
        return real(answer)

    monkeypatch.setattr(rd, builder, slow)
    bot = new_bot(fake, make_settings(), FakeAnswerer())
    async with connected(bot, fake.token):
        asked = await fake.slash("alice", "ask", question="where are the new battlegroups?")
        answer = await fake.wait_for(lambda: answered(fake, asked), timeout=WAIT, what="the answer")
        shown = await fake.click("bob", answer["id"], label="Show all sources")
        await fake.wait_for(lambda: fake.requests_to("POST", rf"/webhooks/\d+/{shown.token}"), timeout=WAIT,
                            what="the sources")

    [thread] = threads
    assert thread is not threading.main_thread()
    assert shown.acked_at - shown.dispatched_at < 0.5
    assert max(b - a for a, b in zip(fake.heartbeats, fake.heartbeats[1:])) < 0.6
    assert fake.violations == []
