"""Each Discord server asks its own collection, through the real discord.py client (simcord), with real indexes."""

from __future__ import annotations

import os
import sqlite3

import pytest

from bot.discord_app import CitebotClient
from retrieval import collection
from retrieval.models import Article
from retrieval.pipeline import Answerer
from retrieval.settings import load_settings
from tests.fakes import FakeEmbedder

QUESTION = "which ferry was affected by the storm?"


@pytest.fixture
def simcord_bot(tmp_path, monkeypatch):
    """The bot over two real collections: `default` (a ferry to Texel) and `harbour` (a ferry to Vlieland)."""
    for name in [n for n in os.environ if n.startswith("CITEBOT_")]:
        monkeypatch.delenv(name)
    settings = load_settings(index={"dir": str(tmp_path / "index")}, embedding={"model": "fake"},
                             chunking={"max_tokens": 40}, corpus={"paths": []}, discord={"cooldown_seconds": 0},
                             answer={"min_score": 0.0, "min_mixed_score": -100.0, "min_support": -100.0})
    default = Answerer(settings, FakeEmbedder())
    default.ingest_articles([Article(key="texel", outlet="Texel Herald",
                                     text="The ferry to Texel was cancelled on Monday because of the storm.")])
    harbour = default.sibling(collection.settings_for(settings, "harbour"))
    harbour.ingest_articles([Article(key="vlieland", outlet="Vlieland Courier",
                                     text="The ferry to Vlieland sails again on Tuesday after the storm.")])
    return CitebotClient(settings, default, answerers={"harbour": harbour})


def shown(result) -> str:
    return " ".join(str(embed.to_dict()) for embed in result.response.embeds) + (result.response.content or "")


@pytest.mark.asyncio
async def test_the_same_question_in_two_servers_cites_only_each_ones_own_articles(simcord_env, simcord_bot, tmp_path):
    env = simcord_env
    one, two = env.create_guild(), env.create_guild()
    simcord_bot.guild_collections[two.id] = "harbour"
    for guild, own, other, name in ((one, "Texel", "Vlieland", "default"), (two, "Vlieland", "Texel", "harbour")):
        channel = guild.create_text_channel("news")
        member = guild.add_member(env.create_user(f"reader-{name}"))
        answer = await member.slash(channel, "ask", question=QUESTION)
        assert own in shown(answer) and other not in shown(answer)
        mention = await member.send(channel, f"<@{env.bot.user.id}> {QUESTION}")
        replies = [m for m in channel.history() if m.author.id == env.bot.user.id and m.id != mention.id]
        assert replies and all(other not in str([e.to_dict() for e in m.embeds]) + m.content for m in replies)
        helped = await member.slash(channel, "help")
        assert f"This server asks the collection **{name}**." in helped.response.content
    db = sqlite3.connect(tmp_path / "index" / "history.sqlite")
    kept = {guild: name for guild, name in db.execute("SELECT guild_id, collection FROM answers")}
    assert kept == {one.id: "default", two.id: "harbour"}


@pytest.mark.asyncio
async def test_a_server_mapped_in_the_settings_asks_that_collection(simcord_env, simcord_bot):
    env = simcord_env
    guild = env.create_guild()
    assert simcord_bot.collection_of(guild.id) == "default"
    simcord_bot.guild_collections[guild.id] = "harbour"
    assert simcord_bot.answerer_for(guild.id).dir == simcord_bot.answerer.dir / "collections" / "harbour"
    # a collection first asked for is opened then, over the same loaded models
    simcord_bot.guild_collections[guild.id] = "newsroom"
    newsroom = simcord_bot.answerer_for(guild.id)
    assert newsroom.embedder is simcord_bot.answerer.embedder and newsroom.store.count_documents() == 0
