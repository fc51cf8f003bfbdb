"""Admins manage their server from Discord: its collection, its feeds, and the bot's rules per channel.

Through the real discord.py client (simcord). The collection and feed tests use real indexes, a real
feed book and a real HTTP server on 127.0.0.1; the channel-rule tests a fake answerer.
"""

from __future__ import annotations

import os

import discord
import pytest
from discord import app_commands

from bot import discord_admin, discord_app
from bot.discord_app import CitebotClient
from bot.servers import ServerBook
from retrieval import collection
from retrieval.errors import CitebotError
from retrieval.feeds import FeedBook
from retrieval.models import Article
from retrieval.pipeline import Answerer
from retrieval.poller import Poller
from retrieval.settings import load_settings
from tests.bot.conftest import FakeAnswerer
from tests.fakes import FakeEmbedder
from tests.retrieval.test_feeds import HTML, RSS, page, rss
from tests.retrieval.webserver import Route, local_fetcher

QUESTION = "where are the new battlegroups?"
FERRY = "which ferry was hit by the zqstorm?"


def _settings(tmp_path, **discord):
    return load_settings(index={"dir": str(tmp_path / "index")}, embedding={"model": "fake"},
                         chunking={"max_tokens": 40}, corpus={"paths": []}, fetch={"allow_private": True},
                         discord={"cooldown_seconds": 0, **discord},
                         answer={"min_score": 0.0, "min_mixed_score": -100.0, "min_support": -100.0})


class Followed(list):
    """The `follow` hook: the collections whose feeds the bot was told to follow, in order."""

    def __call__(self, name, answerer) -> None:
        self.append(name)


@pytest.fixture
def discord_settings(request):
    marker = request.node.get_closest_marker("discord_settings")
    return marker.kwargs if marker else {}


@pytest.fixture
def simcord_bot(tmp_path, monkeypatch, request, discord_settings):
    for name in [n for n in os.environ if n.startswith("CITEBOT_")]:
        monkeypatch.delenv(name)
    settings = _settings(tmp_path, **discord_settings)
    if "real" in request.keywords:
        answerer = Answerer(settings, FakeEmbedder())
        answerer.ingest_articles([Article(key="texel", outlet="Texel Herald",
                                          text="The ferry to Texel was cancelled on Monday because of the zqstorm.")])
    else:
        answerer = FakeAnswerer()
    return CitebotClient(settings, answerer, follow=Followed())


@pytest.fixture
def world(simcord_env):
    env = simcord_env

    class World:
        pass

    w = World()
    w.env = env
    w.guild, w.other_guild = env.create_guild(), env.create_guild()
    w.general = w.guild.create_text_channel("general")
    w.random = w.guild.create_text_channel("random")
    w.elsewhere = w.other_guild.create_text_channel("news")
    admins = w.guild.create_role("Admins", permissions=discord.Permissions(manage_guild=True))
    w.admin = w.guild.add_member(env.create_user("admin"), roles=[admins])
    w.alice = w.guild.add_member(env.create_user("alice"))
    w.reader = w.other_guild.add_member(env.create_user("reader"))
    w.mention = f"<@{env.bot.user.id}>"
    return w


def said(result) -> str:
    """Everything an interaction's replies said, in order."""
    return "\n".join(m.content or "" for m in [result.response, *result.followups] if m is not None)


def shown(result) -> str:
    return " ".join(str(e.to_dict()) for e in result.response.embeds) + (result.response.content or "")


def bot_messages(channel, env) -> list[discord.Message]:
    return [m for m in channel.history() if m.author.id == env.bot.user.id and m.type != discord.MessageType.thread_created]


# -- who may

@pytest.mark.asyncio
@pytest.mark.parametrize("command, options", [("feeds add", {"url": "https://example.com/rss"}),
                                              ("feeds list", {}), ("collection own", {}),
                                              ("channel set", {"replies": "inline"})])
async def test_members_without_manage_server_are_refused_and_nothing_changes(world, simcord_bot, command, options):
    # Hidden from them by default (default_member_permissions); a server override shows it to alice anyway.
    commands = {c.name: c for c in await world.env.bot.tree.fetch_commands()}
    world.guild.set_command_permissions(commands[command.split()[0]], {world.alice: True})

    refused = await world.alice.slash(world.general, command, **options)

    assert refused.ephemeral and refused.response.content == discord_app.ADMIN_ONLY
    [error] = world.env.errors
    assert isinstance(error, app_commands.MissingPermissions)
    assert simcord_bot.servers.collections() == {}
    assert simcord_bot.rules_in(world.guild.id, world.general.id) == simcord_bot.rules_in(None, None)


# -- collections and feeds, on real indexes

@pytest.mark.real
@pytest.mark.asyncio
async def test_a_server_gets_its_own_collection_follows_a_feed_and_only_it_is_answered_from_it(world, simcord_bot, web):
    web.routes["/ferry"] = Route(page("Ferry", "The ferry to Vlieland was hit by the zqstorm on Tuesday."), headers=HTML)
    web.routes["/rss"] = Route(rss([("f1", web.url("/ferry"), "")]), headers=RSS)

    shared = await world.admin.slash(world.general, "feeds add", url=web.url("/rss"))
    assert shared.ephemeral and "shared collection **default**" in shared.response.content
    assert "/collection own" in shared.response.content

    own = await world.admin.slash(world.general, "collection own")
    name = f"server-{world.guild.id}"
    assert f"This server now asks its own collection **{name}**." in said(own)
    assert simcord_bot.collection_of(world.guild.id) == name
    assert simcord_bot.collection_of(world.other_guild.id) == "default"
    assert simcord_bot.follow == [name]  # its feeds are followed from now on

    added = await world.admin.slash(world.general, "feeds add", url=web.url("/rss"), every="10m")
    assert added.ephemeral and said(added).startswith("Following")
    book = FeedBook(collection.folder(simcord_bot.settings, name))
    assert [(f.url, f.every_s) for f in book.added()] == [(web.url("/rss"), 600.0)]
    assert FeedBook(simcord_bot.settings.index.dir).added() == []  # the default collection follows nothing new

    # the poller the bot runs for it, once, by hand
    answerer = simcord_bot.answerer_for(world.guild.id)
    [result] = Poller(answerer.settings, answerer, fetcher=local_fetcher(), book=book).poll_all()
    assert result.ok and result.added == 1

    here = await world.alice.slash(world.general, "ask", question=FERRY)
    there = await world.reader.slash(world.elsewhere, "ask", question=FERRY)
    assert "Vlieland" in shown(here) and "Texel" not in shown(here)
    assert "Texel" in shown(there) and "Vlieland" not in shown(there)

    listed = await world.admin.slash(world.general, "feeds list")
    line = said(listed)
    assert web.url("/rss").replace(":", "\\:") in line or web.url("/rss") in line.replace("\\", "")
    assert ": ok, last poll <t:" in line and "1 articles taken" in line

    removed = await world.admin.slash(world.general, "feeds remove", url=web.url("/rss"))
    assert removed.response.content.startswith("No longer following")
    assert book.added() == []
    again = await world.alice.slash(world.general, "ask", question=FERRY)
    assert "Vlieland" in shown(again)  # its articles stay


@pytest.mark.real
@pytest.mark.asyncio
async def test_the_servers_choice_survives_a_restart(world, simcord_bot):
    await world.admin.slash(world.general, "collection own")

    restarted = CitebotClient(simcord_bot.settings, simcord_bot.answerer)
    assert restarted.collection_of(world.guild.id) == f"server-{world.guild.id}"
    assert restarted.collection_of(world.other_guild.id) == "default"

    simcord_bot.guild_collections[world.guild.id] = "harbour"  # what the settings say for it
    reset = await world.admin.slash(world.general, "collection reset")
    assert said(reset).startswith("Choice forgotten: this server asks **harbour** again")
    assert CitebotClient(simcord_bot.settings, simcord_bot.answerer).servers.collections() == {}
    again = await world.admin.slash(world.general, "collection reset")
    assert said(again).startswith("No collection was chosen here")


@pytest.mark.real
@pytest.mark.asyncio
@pytest.mark.discord_settings(shared=["wire"])
async def test_use_points_a_server_at_a_shared_collection_only(world, simcord_bot):
    refused = await world.admin.slash(world.general, "collection use", name="server-999")
    assert "is not a collection servers may share" in refused.response.content
    assert simcord_bot.collection_of(world.guild.id) == "default"

    choices = await world.admin.autocomplete(world.general, "collection use", "name", "wi")
    assert [c["value"] for c in choices] == ["wire"]

    used = await world.admin.slash(world.general, "collection use", name="wire")
    assert said(used) == "This server now asks the shared collection **wire**."
    assert simcord_bot.collection_of(world.guild.id) == "wire"
    feeds = await world.admin.slash(world.general, "feeds add", url="https://example.com/rss")
    assert "shared collection **wire**" in feeds.response.content  # the operator's to manage

    show = await world.admin.slash(world.general, "collection show")
    assert "asks the collection **wire** (chosen here with `/collection`): 0 articles." in show.response.content


@pytest.mark.real
@pytest.mark.asyncio
async def test_a_collection_two_servers_ask_is_not_managed_from_either(world, simcord_bot):
    simcord_bot.guild_collections.update({world.guild.id: "wire", world.other_guild.id: "wire"})

    refused = await world.admin.slash(world.general, "feeds add", url="https://example.com/rss")

    assert "other servers ask too" in refused.response.content
    assert FeedBook(collection.folder(simcord_bot.settings, "wire")).added() == []


@pytest.mark.real
@pytest.mark.asyncio
@pytest.mark.discord_settings(max_feeds_per_server=1)
async def test_feeds_are_checked_and_limited_per_server(world, simcord_bot, tmp_path):
    await world.admin.slash(world.general, "collection own")
    simcord_bot.settings = simcord_bot.settings.model_copy(
        update={"fetch": simcord_bot.settings.fetch.model_copy(update={"allow_private": False})})
    book = FeedBook(collection.folder(simcord_bot.settings, f"server-{world.guild.id}"))

    for url, reason in [("ftp://example.com/rss", "not a feed address"),
                      ("http://127.0.0.1:8080/rss", "private, loopback or link-local"),
                      ("http://localhost/rss", "private, loopback or link-local"),
                      ("http://[::1]/rss", "private, loopback or link-local")]:
        refused = await world.admin.slash(world.general, "feeds add", url=url)
        assert reason in said(refused), url
    bad_every = await world.admin.slash(world.general, "feeds add", url="https://example.com/a", every="soon")
    assert "is not a duration" in said(bad_every)
    assert len(world.env.errors) == 5 and all(isinstance(e.__cause__, CitebotError) for e in world.env.errors)
    assert book.added() == []

    await world.admin.slash(world.general, "feeds add", url="https://example.com/a")
    full = await world.admin.slash(world.general, "feeds add", url="https://example.com/b")
    assert said(full) == discord_admin.FEEDS_FULL.format(count=1, limit=1)
    assert [f.url for f in book.added()] == ["https://example.com/a"]
    choices = await world.admin.autocomplete(world.general, "feeds remove", "url", "exa")
    assert [c["value"] for c in choices] == ["https://example.com/a"]


# -- per-channel rules

@pytest.mark.asyncio
async def test_inline_replies_open_no_thread_in_that_channel_only(world):
    set_ = await world.admin.slash(world.general, "channel set", replies="inline")
    assert set_.ephemeral and "answers inline, without a thread (`replies`, set for this channel)" in set_.response.content

    await world.alice.slash(world.general, "ask", question=QUESTION)
    await world.alice.send(world.general, f"{world.mention} {QUESTION}")
    await world.alice.slash(world.random, "ask", question=QUESTION)

    assert world.general.threads == []
    assert len(bot_messages(world.general, world.env)) == 2
    assert len(world.random.threads) == 1
    helped = await world.alice.slash(world.general, "help")
    assert "answers come without a thread" in helped.response.content
    assert "without a thread" not in (await world.alice.slash(world.random, "help")).response.content


@pytest.mark.asyncio
async def test_mention_only_leaves_thread_messages_without_a_mention_alone(world, simcord_bot):
    await world.alice.slash(world.general, "ask", question=QUESTION)
    [thread] = world.general.threads
    await world.admin.slash(world.general, "channel set", mention_only=True)

    await world.alice.send(thread, "and when did they arrive?")
    assert bot_messages(thread, world.env) == []
    await world.alice.send(thread, f"{world.mention} and when did they arrive?")
    [reply] = bot_messages(thread, world.env)
    assert reply.embeds
    assert simcord_bot.answerer.calls[-1].context == [QUESTION]  # still a follow-up, with its context


@pytest.mark.asyncio
async def test_a_private_not_found_reaches_the_asker_only(world):
    await world.admin.slash(world.general, "channel set", not_found="private")

    asked = await world.alice.slash(world.general, "ask", question="something unknown here")
    await world.alice.send(world.general, f"{world.mention} another unknown thing")
    found = await world.alice.slash(world.general, "ask", question=QUESTION)

    assert asked.response is None  # the public "thinking…" is gone
    [private] = asked.followups
    assert private.ephemeral and private.content == "No passage in the index answers that question."
    assert world.alice.user.dm_channel.last_message.content == "No passage in the index answers that question."
    assert [m.id for m in bot_messages(world.general, world.env)] == [found.response.id]  # only the found answer


@pytest.mark.asyncio
async def test_the_server_can_be_closed_but_for_chosen_channels(world, simcord_bot):
    await world.admin.slash(world.general, "channel set", answers=False, scope="server")
    opened = await world.admin.slash(world.general, "channel set", answers=True)
    assert "answers questions here (`answers`, set for this channel)" in opened.response.content

    refused = await world.alice.slash(world.random, "ask", question=QUESTION)
    await world.alice.send(world.random, f"{world.mention} {QUESTION}")
    answered = await world.alice.slash(world.general, "ask", question=QUESTION)
    elsewhere = await world.reader.slash(world.elsewhere, "ask", question=QUESTION)

    assert refused.response.content == discord_app.NOT_HERE and bot_messages(world.random, world.env) == []
    assert answered.response.embeds and elsewhere.response.embeds  # another server is untouched

    shown_rules = await world.admin.slash(world.random, "channel show")
    assert "does not answer here (`answers`, set for the server)" in shown_rules.response.content
    assert f"<#{world.general.id}>" in shown_rules.response.content  # a channel with rules of its own

    reset = await world.admin.slash(world.general, "channel reset")
    assert reset.response.content.startswith("Rules reset.")
    closed = await world.alice.slash(world.general, "ask", question=QUESTION)
    assert closed.response.content == discord_app.NOT_HERE
    nothing = await world.admin.slash(world.general, "channel set")
    assert "Name at least one rule" in nothing.response.content


@pytest.mark.asyncio
async def test_rules_set_in_a_thread_are_its_channels_and_survive_a_restart(world, simcord_bot):
    await world.alice.slash(world.general, "ask", question=QUESTION)
    [thread] = world.general.threads
    await world.admin.slash(thread, "channel set", replies="inline")

    book = ServerBook.from_settings(simcord_bot.settings)  # a new process's view of the file
    assert book.overrides(world.guild.id, world.general.id).replies == "inline"
    assert book.rules(simcord_bot.rules_in(None, None), world.guild.id, world.random.id).replies == "thread"
