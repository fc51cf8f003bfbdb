"""Surviving restarts (issue 12): buttons, thread follow-ups and votes work for a new client on the same history.

Each restart builds a new CitebotClient, with a new HistoryStore on the same file, as a new process
would: nothing is carried over in memory. First through simcord's in-memory Discord
(`Env.restart_bot`), then over real sockets against the loopback fake (tests/bot/fake_discord.py).
Also here: chatter in the bot's threads is left alone.
"""

from __future__ import annotations

import re
import sqlite3

import pytest

from bot import discord_app
from bot.discord_app import CitebotClient
from bot.history import DAY, HistoryStore
from tests.bot.conftest import FakeAnswerer
from tests.bot.fake_discord import EPHEMERAL
from tests.bot.test_discord_behaviour import (  # noqa: F401  (fixtures)
    QUESTION, bot_messages, clock, discord_settings, simcord_bot, world,
)
from tests.bot.test_discord_transport import WAIT, answered, connected, fake, make_settings, new_bot  # noqa: F401

FOLLOW_UP = "and which countries already had them?"


class WallClock:
    """Hand-turned Unix time for the history's retention."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


async def restart(world, old: CitebotClient, *, now=None) -> CitebotClient:
    """A new client, a new answerer and a new store on the same history file, as after a process restart."""
    history = HistoryStore.from_settings(old.settings, **({"now": now} if now else {}))
    new = CitebotClient(old.settings, FakeAnswerer(), history=history)
    await world.env.restart_bot(new)
    assert world.env.bot is new
    return new


def custom_ids(message) -> list[str]:
    return [c["custom_id"] for row in message.components for c in row["components"]]


# -- through simcord ------------------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_buttons_carry_the_answer_id_and_never_time_out(world, simcord_bot):
    result = await world.alice.slash(world.general, "ask", question=QUESTION)

    [stored] = _all_answers(simcord_bot.history)
    assert custom_ids(result.response) == [
        f"citebot:sources:{stored.id}", f"citebot:vote:{stored.id}:up", f"citebot:vote:{stored.id}:down"]
    assert stored.message_id == result.response.id and stored.question == QUESTION
    assert discord_app.AnswerView(stored.id).timeout is None


@pytest.mark.asyncio
async def test_show_all_sources_works_after_restarts(world, simcord_bot):
    result = await world.alice.slash(world.general, "ask", question="huge question")
    await restart(world, simcord_bot)
    bot = await restart(world, world.env.bot)  # and once more: any number of restarts

    shown = await world.bob.click(result.response, label="Show all sources")

    messages = [shown.response, *shown.followups]
    assert all(m.ephemeral for m in messages) and len(messages) == 10
    assert messages[0].content.startswith("**[1]** ")
    assert messages[-1].content.endswith("… and 58 more sources not shown; `citebot sources` lists every indexed article.")
    assert bot.answerer.calls == []  # shown from the history, not asked again


@pytest.mark.asyncio
async def test_votes_after_a_restart_are_stored_in_the_history(world, simcord_bot):
    result = await world.alice.slash(world.general, "ask", question=QUESTION)
    bot = await restart(world, simcord_bot)

    up = await world.alice.click(result.response, custom_id=custom_ids(result.response)[1])
    await world.bob.click(result.response, custom_id=custom_ids(result.response)[2])
    await world.alice.click(result.response, custom_id=custom_ids(result.response)[2])  # she changes her mind

    assert up.ephemeral and up.response.content == discord_app.VOTE_SAVED
    votes = HistoryStore.from_settings(bot.settings).votes()
    assert sorted((v.user_id, v.vote) for v in votes) == sorted([(world.alice.id, -1), (world.bob.id, -1)])
    assert all(v.question == QUESTION and v.message_id == result.response.id for v in votes)
    assert votes[0].answer == "Slovakia, Hungary, Romania and Bulgaria"
    assert votes[0].chunk_ids == ["chunk1", "chunk2", "chunk3"]


@pytest.mark.asyncio
async def test_a_thread_follow_up_after_a_restart_has_its_context(world, simcord_bot):
    await world.alice.send(world.general, f"{world.mention} {QUESTION}")
    [thread] = world.general.threads
    await world.bob.send(thread, FOLLOW_UP)
    bot = await restart(world, simcord_bot)

    await world.alice.send(thread, "since when?")

    [call] = bot.answerer.calls
    assert call.question == "since when?" and call.context == [QUESTION, FOLLOW_UP]
    assert len(bot_messages(thread, world.env)) == 2 and len(world.general.threads) == 1


@pytest.mark.asyncio
async def test_a_reply_to_an_answer_after_a_restart_has_its_context(world, simcord_bot):
    await world.alice.send(world.general, f"{world.mention} {QUESTION}")
    first_answer = bot_messages(world.general, world.env)[-1]
    bot = await restart(world, simcord_bot)

    await world.bob.send(world.general, FOLLOW_UP, reply_to=first_answer)

    [call] = bot.answerer.calls
    assert call.context == [QUESTION]
    assert bot_messages(world.general, world.env)[-1].reference.message_id != first_answer.id  # replied to bob


@pytest.mark.asyncio
async def test_a_button_on_an_answer_past_the_retention_says_so_privately(world, simcord_bot):
    clock = WallClock()
    simcord_bot.history = HistoryStore.from_settings(simcord_bot.settings, now=clock)
    result = await world.alice.slash(world.general, "ask", question=QUESTION)
    clock.now += 91 * DAY
    bot = await restart(world, simcord_bot, now=clock)
    await world.bob.slash(world.general, "ask", question="another question")  # its answer prunes the old one

    shown = await world.bob.click(result.response, label="Show all sources")
    voted = await world.bob.click(result.response, custom_id=custom_ids(result.response)[1])

    gone = discord_app.ANSWER_GONE.format(days=90)
    assert shown.ephemeral and [shown.response.content, *[m.content for m in shown.followups]] == [gone]
    assert voted.ephemeral and voted.response.content == gone
    assert bot.history.votes() == []


@pytest.mark.asyncio
async def test_an_answer_id_pressed_on_another_message_shows_nothing(world, simcord_bot):
    await world.alice.slash(world.general, "ask", question=QUESTION)
    other = await world.bob.slash(world.general, "ask", question="another question")
    [first, second] = _all_answers(simcord_bot.history)

    # As a crafted interaction would: the first answer's id, on the second answer's message.
    assert simcord_bot.history.posted_answer(first.id, guild_id=world.guild.id, message_id=other.response.id) is None
    assert simcord_bot.history.posted_answer(first.id, guild_id=world.guild.id + 1, message_id=None) is None
    assert simcord_bot.history.posted_answer(second.id, guild_id=world.guild.id, message_id=other.response.id)


# -- chatter in the bot's threads -------------------------------------------------------------------------

@pytest.mark.asyncio
@pytest.mark.parametrize("text", ["thanks", "Thanks a lot!", "ok 👍", "👍", "got it", "really?", "ty"])
async def test_chatter_in_a_bot_thread_gets_no_public_reply(world, simcord_bot, answerer, text):
    await world.alice.slash(world.general, "ask", question=QUESTION)
    [thread] = world.general.threads

    await world.bob.send(thread, text)

    assert bot_messages(thread, world.env) == []
    assert [c.question for c in answerer.calls] == [QUESTION]  # not even asked
    assert world.bob.user.dm_channel is None or world.bob.user.dm_channel.last_message is None


@pytest.mark.asyncio
async def test_chatter_is_not_part_of_the_conversation_and_real_follow_ups_are_still_answered(world, answerer):
    await world.alice.slash(world.general, "ask", question=QUESTION)
    [thread] = world.general.threads

    await world.bob.send(thread, "thanks!")
    await world.bob.send(thread, "where exactly")  # no "?" but a question word
    await world.alice.send(thread, "tell me about the unknown ones")  # a request, not found: said so

    assert [(c.question, c.context) for c in answerer.calls] == [
        (QUESTION, None),
        ("where exactly", [QUESTION]),
        ("tell me about the unknown ones", [QUESTION, "where exactly"]),
    ]
    replies = bot_messages(thread, world.env)
    assert len(replies) == 2 and replies[0].embeds
    assert replies[1].content == "No passage in the index answers that question."


@pytest.mark.asyncio
async def test_a_statement_in_a_bot_thread_is_answered_only_when_found(world, answerer):
    await world.alice.slash(world.general, "ask", question=QUESTION)
    [thread] = world.general.threads

    await world.bob.send(thread, "I read somewhere it was an unknown place")
    await world.bob.send(thread, "the ones in Romania")

    assert [c.question for c in answerer.calls][1:] == ["I read somewhere it was an unknown place", "the ones in Romania"]
    [reply] = bot_messages(thread, world.env)  # the found one; no public "not found"
    assert reply.embeds
    assert bot_messages(world.general, world.env)[-1].embeds  # and nothing new in the channel


@pytest.mark.asyncio
async def test_thanks_in_reply_to_an_answer_gets_no_reply(world, answerer):
    await world.alice.send(world.general, f"{world.mention} {QUESTION}")
    answer = bot_messages(world.general, world.env)[-1]

    await world.alice.send(world.general, "thanks!", reply_to=answer)

    assert len(answerer.calls) == 1 and len(bot_messages(world.general, world.env)) == 1


# -- over real sockets, against the fake Discord ----------------------------------------------------------

@pytest.mark.asyncio
@pytest.mark.parametrize("threads_listed", [True, False], ids=["thread-in-cache", "thread-unknown-to-the-client"])
async def test_the_real_client_after_a_restart_shows_sources_and_follows_up_in_the_thread(
    fake, make_settings, monkeypatch, threads_listed
):
    if not threads_listed:  # as for a thread Discord leaves out of GUILD_CREATE: the message's channel is partial
        guild = fake._guild
        monkeypatch.setattr(fake, "_guild", lambda: {**guild(), "threads": []})
    settings = make_settings()
    first = new_bot(fake, settings, FakeAnswerer())
    async with connected(first, fake.token):
        asked = await fake.slash("alice", "ask", question=QUESTION)
        answer = await fake.wait_for(lambda: answered(fake, asked), timeout=WAIT, what="the answer")
        await fake.wait_for(lambda: answer["id"] in fake.channels, timeout=WAIT, what="the thread")

    answerer = FakeAnswerer()
    second = new_bot(fake, settings, answerer)
    assert second.history is not first.history
    async with connected(second, fake.token):
        shown = await fake.click("bob", answer["id"], label="Show all sources")
        voted = await fake.click("carol", answer["id"], emoji="👍")
        await fake.send_message("alice", "thanks!", channel=answer["id"])
        await fake.send_message("bob", FOLLOW_UP, channel=answer["id"])
        await fake.wait_for(lambda: fake.bot_messages(answer["id"]), timeout=WAIT, what="the follow-up's answer")
        await fake.wait_for(lambda: len(fake.requests_to("POST", rf"/webhooks/\d+/{voted.token}")) == 1, timeout=WAIT,
                            what="the vote's reply")

    [sources] = fake.requests_to("POST", rf"/webhooks/\d+/{shown.token}")
    assert (shown.response_type, shown.ephemeral) == (5, True)
    assert sources.json["flags"] == EPHEMERAL and sources.json["content"].startswith("**[1]** ")
    [thanks] = fake.requests_to("POST", rf"/webhooks/\d+/{voted.token}")
    assert thanks.json["content"] == discord_app.VOTE_SAVED and thanks.json["flags"] == EPHEMERAL
    assert [(c.question, c.context) for c in answerer.calls] == [(FOLLOW_UP, [QUESTION])]  # "thanks!" left alone
    [reply] = fake.bot_messages(answer["id"])
    assert reply["embeds"] and re.fullmatch(r"citebot:sources:\d+", reply["components"][0]["components"][0]["custom_id"])
    [vote] = HistoryStore.from_settings(settings).votes()
    assert (vote.user_id, vote.vote, vote.question) == (int(fake.users["carol"]["id"]), 1, QUESTION)
    assert len(fake.identifies) == 2
    assert fake.violations == []


def _all_answers(history: HistoryStore) -> list:
    with sqlite3.connect(history.location) as connection:
        ids = [n for (n,) in connection.execute("SELECT id FROM answers ORDER BY id")]
    return [history.answer(n) for n in ids]


@pytest.mark.asyncio
async def test_a_history_that_cannot_be_opened_costs_the_buttons_and_context_not_the_answers(
    world, simcord_bot, answerer, tmp_path, caplog
):
    (tmp_path / "broken").mkdir()
    simcord_bot.history = HistoryStore(tmp_path / "broken", keep_days=90)  # a folder: SQLite cannot open it

    asked = await world.alice.slash(world.general, "ask", question=QUESTION)
    [thread] = world.general.threads
    await world.bob.send(thread, FOLLOW_UP)

    assert asked.response.embeds and asked.response.components == []
    [reply] = bot_messages(thread, world.env)
    assert reply.embeds and reply.components == []
    assert [c.context for c in answerer.calls] == [None, None]
    assert any("could not store an answer" in r.getMessage() for r in caplog.records)
    assert any("could not read the conversation" in r.getMessage() for r in caplog.records)
