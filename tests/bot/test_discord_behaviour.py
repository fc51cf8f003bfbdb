"""The bot's behaviour on the real discord.py code paths, driven by simcord's in-memory Discord."""

from __future__ import annotations

import logging
import threading

import discord
import pytest
import simcord
from discord import app_commands

from bot import discord_app
from bot.discord_app import CitebotClient
from bot.history import HistoryStore
from bot.render_discord import size
from retrieval.errors import QuestionError
from retrieval.settings import load_settings
from tests.bot.conftest import FakeAnswerer

QUESTION = "where are the new battlegroups?"


class Clock:
    """A hand-turned clock for the cooldown."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def discord_settings(request):
    """[discord] settings for this test, set with @pytest.mark.discord_settings(channels=..., ...)."""
    marker = request.node.get_closest_marker("discord_settings")
    return {"cooldown_seconds": 0, **(marker.kwargs if marker else {})}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def answerer() -> FakeAnswerer:
    return FakeAnswerer()


@pytest.fixture
def simcord_bot(tmp_path, monkeypatch, answerer, clock, discord_settings):
    for name in [n for n in __import__("os").environ if n.startswith("CITEBOT_")]:
        monkeypatch.delenv(name)
    settings = load_settings(
        index={"dir": str(tmp_path / "index")},
        corpus={"paths": [str(tmp_path / "news")]},
        discord=discord_settings,
    )
    bot = CitebotClient(settings, answerer, clock=clock)
    bot.progress_every = 0.05
    return bot


@pytest.fixture
def world(simcord_env):
    """A guild with #general, #random, a member alice, a member bob and an admin."""
    env = simcord_env
    guild = env.create_guild()
    general = guild.create_text_channel("general")
    other = guild.create_text_channel("random")
    admins = guild.create_role("Admins", permissions=discord.Permissions(manage_guild=True))

    class World:
        pass

    w = World()
    w.env, w.guild, w.general, w.other = env, guild, general, other
    w.alice = guild.add_member(env.create_user("alice"))
    w.bob = guild.add_member(env.create_user("bob"))
    w.admin = guild.add_member(env.create_user("admin"), roles=[admins])
    w.mention = f"<@{env.bot.user.id}>"
    return w


def requests(env, method: str, fragment: str) -> list:
    return [r for r in env.http_requests if r.method == method and fragment in r.path]


def bot_messages(channel, env) -> list[discord.Message]:
    return [m for m in channel.history() if m.author.id == env.bot.user.id and m.type != discord.MessageType.thread_created]


@pytest.mark.asyncio
async def test_ask_defers_then_answers_with_the_embed_and_buttons(world, answerer):
    result = await world.alice.slash(world.general, "ask", question=QUESTION)

    callbacks = requests(world.env, "POST", "/callback")
    assert [c.json["type"] for c in callbacks] == [5]  # deferred before the slow work
    assert not result.ephemeral
    embed = result.response.embeds[0]
    assert embed.description.startswith("**Slovakia, Hungary, Romania and Bulgaria**")
    assert embed.fields[0].name == "[1] Article 1 — Reuters, 2022-03-23"
    labels = [c.get("label") or c["emoji"]["name"] for row in result.response.components for c in row["components"]]
    assert labels == ["Show all sources", "👍", "👎"]
    [call] = answerer.calls
    assert call.question == QUESTION and call.context is None
    assert call.thread != threading.main_thread().name  # answered off the event loop


@pytest.mark.asyncio
async def test_no_reply_can_ping_anyone(world):
    await world.alice.slash(world.general, "ask", question=QUESTION)
    await world.alice.send(world.general, f"{world.mention} {QUESTION}")

    sent = requests(world.env, "POST", "/webhooks/") + requests(world.env, "POST", "/messages")
    bot_sent = [r for r in sent if r.json and "embeds" in r.json]
    assert len(bot_sent) == 2
    for request in bot_sent:
        assert request.json["allowed_mentions"]["parse"] == []
        assert "@everyone" not in str(request.json["embeds"])
    reply = bot_messages(world.general, world.env)[-1]
    assert reply.mention_everyone is False and reply.mentions == [] and reply.role_mentions == []


@pytest.mark.asyncio
async def test_the_question_option_is_typed_length_checked_and_described(world):
    [sync] = requests(world.env, "PUT", "/commands")
    ask = next(c for c in sync.json if c["name"] == "ask")
    question, k, *filters, private = ask["options"]
    assert [f["name"] for f in filters] == ["outlet", "since", "until"]
    assert all(f["description"] and not f.get("required") for f in filters)
    assert (private["name"], private["type"], private.get("required", False)) == ("private", 5, False)  # a boolean
    assert (question["name"], question["type"], question["required"]) == ("question", 3, True)
    assert (question["min_length"], question["max_length"]) == (3, 500)
    assert question["description"].startswith("What you want to know")
    assert (k["name"], k["type"], k["min_value"], k["max_value"]) == ("k", 4, 1, 10)
    assert not k.get("required")

    with pytest.raises(simcord.OptionError):
        await world.alice.slash(world.general, "ask", question="hi")
    with pytest.raises(simcord.OptionError):
        await world.alice.slash(world.general, "ask", question="x" * 501)


@pytest.mark.asyncio
async def test_k_limits_the_cited_passages(world, answerer):
    result = await world.alice.slash(world.general, "ask", question=QUESTION, k=1)

    assert answerer.calls[0].k == 1
    assert len(result.response.embeds[0].fields) == 1


@pytest.mark.asyncio
async def test_outlet_and_date_filters_reach_the_answerer(world, answerer):
    import datetime as dt

    await world.alice.slash(world.general, "ask", question=QUESTION, outlet=" Newsmax ", since="2022-03-01",
                            until="2022-03-31")
    assert answerer.calls[0].filters == {
        "outlet": "Newsmax", "since": dt.date(2022, 3, 1), "until": dt.date(2022, 3, 31)}


@pytest.mark.asyncio
async def test_a_bad_date_filter_is_one_private_line(world, answerer):
    result = await world.alice.slash(world.general, "ask", question=QUESTION, since="2022-13-01")
    assert answerer.calls == []
    assert "since must be a date (YYYY-MM-DD" in result.response.content
    assert result.response.ephemeral


@pytest.mark.asyncio
async def test_a_mention_is_answered_in_the_channel_and_opens_a_thread(world, answerer):
    question = await world.alice.send(world.general, f"{world.mention}  {QUESTION}")

    [reply] = bot_messages(world.general, world.env)
    assert reply.reference.message_id == question.id
    assert reply.embeds[0].title == QUESTION
    assert answerer.calls[0].question == QUESTION
    [thread] = world.general.threads
    assert thread.id == reply.id and thread.name == QUESTION


@pytest.mark.asyncio
async def test_not_found_is_said_plainly(world):
    result = await world.alice.slash(world.general, "ask", question="an unknown thing")
    await world.bob.send(world.general, f"{world.mention} another unknown thing")

    assert result.response.content == "No passage in the index answers that question."
    assert result.response.embeds == [] and result.response.components == []
    reply = bot_messages(world.general, world.env)[-1]
    assert reply.content == "No passage in the index answers that question." and reply.embeds == []
    assert world.general.threads == []


@pytest.mark.asyncio
async def test_a_reply_to_an_answer_is_a_follow_up_with_the_conversation_as_context(world, answerer):
    await world.alice.send(world.general, f"{world.mention} {QUESTION}")
    first_answer = bot_messages(world.general, world.env)[-1]

    await world.bob.send(world.general, "and which countries already had them?", reply_to=first_answer)
    second_answer = bot_messages(world.general, world.env)[-1]
    await world.alice.send(world.general, "since when?", reply_to=second_answer)

    assert [c.context for c in answerer.calls] == [
        None,
        [QUESTION],
        [QUESTION, "and which countries already had them?"],
    ]
    assert len(world.general.threads) == 1  # only a new question opens a thread


@pytest.mark.asyncio
async def test_a_message_in_the_thread_opened_for_a_question_is_a_follow_up(world, answerer):
    await world.alice.slash(world.general, "ask", question=QUESTION)
    [thread] = world.general.threads

    await world.bob.send(thread, "and which countries already had them?")
    await world.alice.send(thread, "since when?")

    assert [c.context for c in answerer.calls] == [
        None,
        [QUESTION],
        [QUESTION, "and which countries already had them?"],
    ]
    replies = bot_messages(thread, world.env)
    assert len(replies) == 2 and all(r.embeds for r in replies)


@pytest.mark.asyncio
async def test_ordinary_chat_and_messages_from_bots_are_ignored(world, answerer):
    other_bot = world.guild.add_member(world.env.create_user("helperbot", bot=True))

    await world.alice.send(world.general, QUESTION)  # no mention: not for the bot
    await other_bot.send(world.general, f"{world.mention} {QUESTION}")
    await world.alice.send(world.general, f"{world.mention} {QUESTION}")

    assert len(answerer.calls) == 1  # the bot's own answer did not start another
    assert len(bot_messages(world.general, world.env)) == 1


@pytest.mark.asyncio
async def test_a_bare_mention_gets_a_hint(world, answerer):
    await world.alice.send(world.general, world.mention)

    assert bot_messages(world.general, world.env)[-1].content.startswith("Ask me a question after the mention")
    assert answerer.calls == []


@pytest.mark.asyncio
async def test_show_all_sources_gives_the_passages_privately_in_at_most_ten_messages(world):
    result = await world.alice.slash(world.general, "ask", question="huge question")
    answer = result.response

    shown = await world.bob.click(answer, label="Show all sources")

    messages = [shown.response, *shown.followups]
    assert requests(world.env, "POST", "/callback")[-1].json == {"type": 5, "data": {"flags": 64}}  # deferred privately
    assert all(m.ephemeral for m in messages)
    assert len(messages) == 10 and all(size(m.content) <= 2000 for m in messages)
    assert messages[0].content.startswith("**[1]** ")
    assert messages[-1].content.splitlines()[-1] == (
        "… and 58 more sources not shown; `citebot sources` lists every indexed article."
    )
    assert "@everyone" not in "".join(m.content for m in messages)


@pytest.mark.asyncio
async def test_votes_are_stored_with_question_answer_and_passage_ids(world, simcord_bot):
    result = await world.alice.slash(world.general, "ask", question=QUESTION)

    thanks = await world.alice.click(result.response, label=None, custom_id=_custom_id(result, "👍"))
    await world.alice.click(result.response, custom_id=_custom_id(result, "👎"))  # changes her mind
    await world.bob.click(result.response, custom_id=_custom_id(result, "👍"))

    assert thanks.ephemeral and thanks.response.content == "Thanks, your feedback is saved."
    votes = HistoryStore.from_settings(simcord_bot.settings).votes()
    assert {(v.user_id, v.vote) for v in votes} == {(world.alice.id, -1), (world.bob.id, 1)}
    assert all(v.question == QUESTION and v.message_id == result.response.id for v in votes)
    assert votes[0].answer == "Slovakia, Hungary, Romania and Bulgaria"
    assert votes[0].chunk_ids == ["chunk1", "chunk2", "chunk3"]


def _custom_id(result, emoji: str) -> str:
    return next(c["custom_id"] for row in result.response.components for c in row["components"] if c.get("emoji", {}).get("name") == emoji)


@pytest.mark.asyncio
async def test_the_allowlist_keeps_the_bot_silent_elsewhere(world, answerer, simcord_bot):
    simcord_bot.settings = simcord_bot.settings.model_copy(
        update={"discord": simcord_bot.settings.discord.model_copy(update={"channels": [world.general.id]})}
    )

    await world.alice.send(world.other, f"{world.mention} {QUESTION}")
    refused = await world.alice.slash(world.other, "ask", question=QUESTION)
    await world.alice.send(world.general, f"{world.mention} {QUESTION}")
    [thread] = world.general.threads
    await world.bob.send(thread, "and which countries already had them?")

    assert bot_messages(world.other, world.env) == []
    assert refused.ephemeral and refused.response.content == discord_app.NOT_HERE
    assert [c.question for c in answerer.calls] == [QUESTION, "and which countries already had them?"]


@pytest.mark.asyncio
@pytest.mark.discord_settings(cooldown_seconds=30)
async def test_the_cooldown_answers_privately_with_the_seconds_left(world, answerer, clock):
    await world.alice.slash(world.general, "ask", question=QUESTION)
    clock.now += 10
    refused = await world.alice.slash(world.general, "ask", question=QUESTION)
    other_user = await world.bob.slash(world.general, "ask", question=QUESTION)
    await world.alice.send(world.general, f"{world.mention} {QUESTION}")
    clock.now += 21
    again = await world.alice.slash(world.general, "ask", question=QUESTION)

    assert refused.ephemeral and refused.response.content.endswith("please try again in 20 s.")
    assert other_user.response.embeds
    dm = world.alice.user.dm_channel.last_message
    assert dm.content.endswith("please try again in 20 s.")
    assert again.response.embeds
    assert len(answerer.calls) == 3


@pytest.mark.asyncio
async def test_sources_and_reindex_are_for_admins(world, answerer):
    listed = await world.admin.slash(world.general, "sources")
    reindexed = await world.admin.slash(world.general, "reindex")

    assert listed.ephemeral and listed.response.content.startswith("3 articles indexed:")
    assert reindexed.ephemeral
    assert reindexed.response.content.startswith("Reindex finished: 2 added, 0 updated, 0 unchanged, 0 removed, 1 failed.")
    assert "not an article" in reindexed.response.content
    assert len(answerer.ingested) == 1
    with pytest.raises(simcord.SetupError, match="not visible"):  # hidden from members in the client
        await world.alice.slash(world.general, "reindex")


@pytest.mark.asyncio
async def test_reindex_reports_by_editing_its_one_private_message(world, answerer):
    result = await world.admin.slash(world.general, "reindex")

    assert [c.json for c in requests(world.env, "POST", "/callback")] == [{"type": 5, "data": {"flags": 64}}]
    edits = requests(world.env, "PATCH", "/messages/@original")
    assert edits[-1].json["content"].startswith("Reindex finished")
    assert result.followups == []  # progress and the report edit one message (progress timing: transport tests)


@pytest.mark.asyncio
async def test_a_member_let_in_by_a_server_override_still_gets_a_polite_refusal(world, answerer):
    commands = {c.name: c for c in await world.env.bot.tree.fetch_commands()}
    world.guild.set_command_permissions(commands["reindex"], {world.alice: True})

    refused = await world.alice.slash(world.general, "reindex")

    assert refused.ephemeral and refused.response.content == discord_app.ADMIN_ONLY
    assert answerer.ingested == []
    [error] = world.env.errors
    assert isinstance(error, app_commands.MissingPermissions)


@pytest.mark.asyncio
async def test_an_error_reaches_the_user_as_one_private_sentence_and_the_log_gets_the_traceback(world, caplog):
    caplog.set_level(logging.INFO, logger="citebot.discord")

    failed = await world.alice.slash(world.general, "ask", question="explode please")
    await world.bob.send(world.general, f"{world.mention} explode again")

    assert failed.response is None  # the public "thinking…" message is gone
    [private] = failed.followups
    assert private.ephemeral and private.content == discord_app.SOMETHING_WRONG
    assert world.bob.user.dm_channel.last_message.content == discord_app.SOMETHING_WRONG
    assert bot_messages(world.general, world.env) == []
    tracebacks = [r for r in caplog.records if r.exc_info and "index file is corrupt" in str(r.exc_info[1])]
    assert len(tracebacks) == 2
    [error] = world.env.errors  # the slash command's, passed to the tree's error handler
    assert isinstance(error.__cause__, RuntimeError)


@pytest.mark.asyncio
async def test_a_question_error_is_told_in_its_own_words(world):
    failed = await world.alice.slash(world.general, "ask", question="toolong question")

    assert failed.followups[0].ephemeral
    assert failed.followups[0].content == "the question is too long: ask it in at most 500 characters"
    assert failed.response is None
    [error] = world.env.errors
    assert isinstance(error.__cause__, QuestionError)


@pytest.mark.asyncio
async def test_a_huge_answer_is_accepted_by_discord(world):
    result = await world.alice.slash(world.general, "ask", question="huge " + "q" * 400)

    embed = result.response.embeds[0]
    assert len(embed) <= 6000 and len(embed.fields) <= 25
