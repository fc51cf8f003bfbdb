"""What Discord users expect (issue 12), on the real discord.py code paths through simcord's in-memory Discord.

Outlet autocomplete and date words on /ask, private answers and "Share to channel" (also after a
restart), the message command "Ask citebot about this", /help, the typing indicator, role gating,
and a bot running without the Message Content intent. The server-wide limit and 20 concurrent
questions need real concurrency: tests/bot/test_discord_ux_transport.py.
"""

from __future__ import annotations

import datetime as dt
import os

import discord
import pytest

from bot import discord_app
from bot.discord_app import CitebotClient
from bot.history import HistoryStore
from retrieval.collection import DEFAULT
from retrieval.settings import load_settings
from retrieval.backends.embedded.store import Store
from tests.bot.conftest import FakeAnswerer, add_documents
from tests.bot.test_discord_behaviour import QUESTION, bot_messages, clock, discord_settings, requests, world  # noqa: F401

SHARE = "Share to channel"


@pytest.fixture
def answerer(tmp_path) -> FakeAnswerer:
    """The fake answerer, with a real store file holding a few outlets for the autocomplete."""
    answerer = FakeAnswerer()
    path = add_documents(tmp_path / "store" / "citebot.sqlite",
                         ["Reuters", "Radio Free Europe", "Newsmax", "Fox News", "REUTERS", None])
    answerer.store = Store(path)
    return answerer


@pytest.fixture
def simcord_bot(tmp_path, monkeypatch, answerer, clock, discord_settings, request):  # noqa: F811
    for name in [n for n in os.environ if n.startswith("CITEBOT_")]:
        monkeypatch.delenv(name)
    settings = load_settings(index={"dir": str(tmp_path / "index")}, corpus={"paths": [str(tmp_path / "news")]},
                             discord=discord_settings)
    marker = request.node.get_closest_marker("client")
    return CitebotClient(settings, answerer, clock=clock, **(marker.kwargs if marker else {}))


def labels(message) -> list[str]:
    """The buttons' labels (or emoji) of a simcord response or of a discord.Message."""
    if isinstance(message, discord.Message):
        return [c.label or c.emoji.name for row in message.components for c in row.children]
    return [c.get("label") or c["emoji"]["name"] for row in message.components for c in row["components"]]


def synced(env, name: str) -> dict:
    return next(c for r in requests(env, "PUT", "/commands") for c in r.json if c["name"] == name)


# -- /ask options ------------------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_outlet_autocompletes_from_the_indexed_outlets(world, simcord_bot, answerer, tmp_path):
    outlet = next(o for o in synced(world.env, "ask")["options"] if o["name"] == "outlet")
    assert outlet["autocomplete"] is True

    offered = await world.alice.autocomplete(world.general, "ask", "outlet", "r", question=QUESTION)
    assert offered == [{"name": "Radio Free Europe", "value": "Radio Free Europe"}, {"name": "Reuters", "value": "Reuters"}]
    assert [c["value"] for c in await world.alice.autocomplete(world.general, "ask", "outlet", "NEWS")] == [
        "Newsmax", "Fox News"]
    add_documents(answerer.store.path, ["Rappler"])  # an ingest meanwhile
    assert [c["value"] for c in await world.alice.autocomplete(world.general, "ask", "outlet", "ra")] == [
        "Radio Free Europe", "Rappler"]
    assert simcord_bot.outlets.scans == 2  # once per generation, not per keystroke

    await world.alice.slash(world.general, "ask", question=QUESTION, outlet="Rappler")
    assert answerer.calls[0].filters == {"outlet": "Rappler"}


@pytest.mark.asyncio
async def test_without_a_store_the_outlet_offers_nothing_rather_than_failing(world, simcord_bot):
    simcord_bot.outlets = None

    assert await world.alice.autocomplete(world.general, "ask", "outlet", "re") == []


@pytest.mark.asyncio
async def test_since_and_until_take_days_ago_yesterday_and_iso_dates(world, answerer):
    today = dt.datetime.now(dt.timezone.utc).date()

    await world.alice.slash(world.general, "ask", question=QUESTION, since="7d", until="yesterday")
    await world.alice.slash(world.general, "ask", question=QUESTION, since="2022-03-01", until="Today")
    refused = await world.alice.slash(world.general, "ask", question=QUESTION, since="2022-04-01", until="2022-03-01")

    assert [c.filters for c in answerer.calls] == [
        {"since": today - dt.timedelta(days=7), "until": today - dt.timedelta(days=1)},
        {"since": dt.date(2022, 3, 1), "until": today},
    ]
    assert refused.ephemeral and refused.response.content == "since 2022-04-01 is after until 2022-03-01: swap them"


# -- private answers ---------------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_a_private_answer_is_the_askers_alone_until_shared(world, simcord_bot):
    asked = await world.alice.slash(world.general, "ask", question=QUESTION, private=True)

    assert requests(world.env, "POST", "/callback")[0].json == {"type": 5, "data": {"flags": 64}}
    assert asked.ephemeral and asked.response.embeds[0].title == QUESTION
    assert labels(asked.response) == ["Show all sources", "👍", "👎", SHARE]
    assert bot_messages(world.general, world.env) == [] and world.general.threads == []

    shown = await world.alice.click(asked.response, label="Show all sources")  # its other buttons work too
    assert shown.ephemeral and shown.response.content.startswith("**[1]** ")

    shared = await world.alice.click(asked.response, label=SHARE)

    [public] = bot_messages(world.general, world.env)
    assert not public.flags.ephemeral and public.embeds[0].title == QUESTION
    assert public.content == f"Shared by <@{world.alice.id}>"
    [post] = [r for r in requests(world.env, "POST", "/webhooks/") if r.json.get("content", "").startswith("Shared")]
    assert post.json["allowed_mentions"]["parse"] == []  # shown as her name, pinging nobody
    assert labels(public) == ["Show all sources", "👍", "👎"]  # its normal buttons
    [thread] = world.general.threads
    assert thread.id == public.id  # follow-ups as under any public answer
    assert labels(asked.response) == ["Show all sources", "👍", "👎"]  # shared once: the button is gone
    assert [m.id for m in shared.followups] == [public.id]  # nothing else said

    voted = await world.bob.click(public, custom_id=public.components[0].children[1].custom_id)
    assert voted.response.content == discord_app.VOTE_SAVED


@pytest.mark.asyncio
async def test_share_works_after_a_restart(world, simcord_bot):
    asked = await world.alice.slash(world.general, "ask", question=QUESTION, private=True)
    share_id = asked.response.components[0]["components"][3]["custom_id"]
    restarted = CitebotClient(simcord_bot.settings, FakeAnswerer(), history=HistoryStore.from_settings(simcord_bot.settings))
    await world.env.restart_bot(restarted)

    await world.alice.click(asked.response, custom_id=share_id)

    [public] = bot_messages(world.general, world.env)
    assert public.embeds[0].title == QUESTION and labels(public) == ["Show all sources", "👍", "👎"]
    assert labels(asked.response) == ["Show all sources", "👍", "👎"]  # nothing left to share twice
    assert restarted.answerer.calls == []  # shared from the history, not asked again


@pytest.mark.asyncio
async def test_a_private_not_found_has_nothing_to_share(world):
    asked = await world.alice.slash(world.general, "ask", question="an unknown thing", private=True)

    assert asked.ephemeral and asked.response.content == "No passage in the index answers that question."
    assert asked.response.components == []
    assert bot_messages(world.general, world.env) == []


# -- the message command -----------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_ask_citebot_about_this_asks_the_messages_text(world, answerer):
    said = await world.bob.send(world.general, f"  {QUESTION}\n")  # not for the bot: no mention

    result = await world.alice.context_menu(world.general, discord_app.ASK_ABOUT, said)

    assert synced(world.env, discord_app.ASK_ABOUT)["type"] == 3  # a message command
    [call] = answerer.calls
    assert call.question == QUESTION
    assert not result.ephemeral and result.response.embeds[0].title == QUESTION
    assert labels(result.response) == ["Show all sources", "👍", "👎"]
    assert [t.id for t in world.general.threads] == [result.response.id]


@pytest.mark.asyncio
async def test_a_long_message_is_asked_up_to_the_question_limit_and_one_without_text_is_refused(world, answerer):
    long = await world.bob.send(world.general, "where " + "exactly " * 200)
    silent = await world.bob.send(world.general, f"<@{world.env.bot.user.id}>")

    await world.alice.context_menu(world.general, discord_app.ASK_ABOUT, long)
    refused = await world.alice.context_menu(world.general, discord_app.ASK_ABOUT, silent)

    [call] = answerer.calls
    assert len(call.question) <= 500 and call.question.endswith("exactly")
    assert refused.ephemeral and refused.response.content == discord_app.NO_TEXT


# -- /help -------------------------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_help_says_what_the_bot_does_and_which_collection_the_server_asks(world):
    result = await world.alice.slash(world.general, "help")

    text = result.response.content
    assert result.ephemeral and len(text) <= 2000
    assert f"This server asks the collection **{DEFAULT}**." in text
    for feature in ("/ask", "private:true", "Share to channel", discord_app.ASK_ABOUT, "Show all sources", "/reindex"):
        assert feature in text
    assert "one question every 5 s per person" not in text  # the tests' cooldown is 0
    assert "Message Content" not in text


# -- mentions: the typing indicator ------------------------------------------------------------------

@pytest.mark.asyncio
async def test_a_mention_question_shows_typing_while_it_is_answered(world, answerer):
    await world.alice.send(world.general, f"{world.mention} {QUESTION}")
    [thread] = world.general.threads
    await world.bob.send(thread, "thanks!")  # chatter: nothing to type

    typing = requests(world.env, "POST", "/typing")
    assert [r.path for r in typing] == [f"/channels/{world.general.id}/typing"]
    reply = next(r for r in world.env.http_requests if r.method == "POST" and r.path.endswith("/messages"))
    assert world.env.http_requests.index(typing[0]) < world.env.http_requests.index(reply)


# -- who may ask -------------------------------------------------------------------------------------

@pytest.mark.asyncio
@pytest.mark.discord_settings(ask_roles=["reporters"])
async def test_only_the_roles_set_up_may_ask_and_admins_always_may(world, answerer):
    reporters = world.guild.create_role("Reporters")
    carol = world.guild.add_member(world.env.create_user("carol"), roles=[reporters])

    refused = await world.alice.slash(world.general, "ask", question=QUESTION)
    said = await world.bob.send(world.general, QUESTION)
    refused_menu = await world.alice.context_menu(world.general, discord_app.ASK_ABOUT, said)
    await world.alice.send(world.general, f"{world.mention} {QUESTION}")
    allowed = await carol.slash(world.general, "ask", question="carol asks")
    admin = await world.admin.slash(world.general, "ask", question="the admin asks")
    helped = await world.alice.slash(world.general, "help")

    assert refused.ephemeral and refused.response.content == discord_app.NOT_YOUR_ROLE
    assert refused_menu.ephemeral and refused_menu.response.content == discord_app.NOT_YOUR_ROLE
    assert world.alice.user.dm_channel.last_message.content == discord_app.NOT_YOUR_ROLE
    assert allowed.response.embeds and admin.response.embeds
    assert [c.question for c in answerer.calls] == ["carol asks", "the admin asks"]
    assert "asking is for members with certain roles" in helped.response.content


@pytest.mark.asyncio
async def test_roles_may_be_named_by_id(world, simcord_bot, answerer):
    reporters = world.guild.create_role("Reporters")
    carol = world.guild.add_member(world.env.create_user("carol"), roles=[reporters])
    simcord_bot.settings = simcord_bot.settings.model_copy(
        update={"discord": simcord_bot.settings.discord.model_copy(update={"ask_roles": [reporters.id]})})

    refused = await world.bob.slash(world.general, "ask", question=QUESTION)
    allowed = await carol.slash(world.general, "ask", question=QUESTION)

    assert refused.response.content == discord_app.NOT_YOUR_ROLE and allowed.response.embeds
    assert len(answerer.calls) == 1


# -- without the Message Content intent --------------------------------------------------------------

@pytest.mark.asyncio
@pytest.mark.client(message_content=False)
@pytest.mark.simcord(approved_intents=discord.Intents.default())
async def test_without_message_content_slash_commands_the_message_command_and_mentions_still_work(world, answerer):
    asked = await world.alice.slash(world.general, "ask", question=QUESTION)
    said = await world.bob.send(world.general, "which countries already had them?")
    menu = await world.alice.context_menu(world.general, discord_app.ASK_ABOUT, said)
    await world.bob.send(world.general, f"{world.mention} and since when?")
    [thread, *_] = world.general.threads
    await world.bob.send(thread, "and which ones are new?")  # reaches the bot empty: not heard
    helped = await world.alice.slash(world.general, "help")

    assert asked.response.embeds and menu.response.embeds
    assert [c.question for c in answerer.calls] == [QUESTION, "which countries already had them?", "and since when?"]
    assert "without Discord's Message Content intent" in helped.response.content
