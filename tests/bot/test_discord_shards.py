"""`citebot discord --shard I/N` and `--shards auto`: the real discord.py client, sharded, against the fake Discord
on 127.0.0.1, which gives each shard its own servers and routes each server's events to its shard's session."""

from __future__ import annotations

import os
import subprocess
import sys

import discord
import pytest
import yarl

from bot.cli import shard_spec
from bot.discord_app import AutoShardedCitebotClient, CitebotClient, make_client
from retrieval.settings import load_settings
from tests.bot.conftest import FakeAnswerer
from tests.bot.fake_discord import FakeDiscord
from tests.bot.test_discord_transport import (  # noqa: F401 (fixtures)
    QUESTION, WAIT, answered, connected, fake, make_settings,
)
from tests.conftest import ROOT


@pytest.mark.parametrize("shard, syncs", [((0, 2), True), ((1, 2), False)])
@pytest.mark.asyncio
async def test_a_shard_identifies_as_its_shard_and_only_shard_0_registers_the_commands(fake, make_settings,
                                                                                     shard, syncs):
    bot = make_client(make_settings(), FakeAnswerer(), shard=shard, guild_ready_timeout=0.05)
    assert type(bot) is CitebotClient and (bot.shard_id, bot.shard_count) == shard
    async with connected(bot, fake.token):
        await fake.wait_for(lambda: fake.identifies, timeout=WAIT, what="an IDENTIFY")
    assert fake.identifies[-1]["shard"] == list(shard)
    assert bool(fake.requests_to("PUT", r"/applications/\d+/(guilds/\d+/)?commands")) == syncs


def test_auto_makes_the_auto_sharded_client_and_no_shard_the_plain_one(make_settings):
    settings = make_settings()
    assert isinstance(make_client(settings, FakeAnswerer(), shard="auto"), AutoShardedCitebotClient)
    plain = make_client(settings, FakeAnswerer())
    assert type(plain) is CitebotClient and plain.shard_id is None


@pytest.mark.parametrize("text", ["2/2", "-1/2", "1/0", "a/b", "1", "1/2/3"])
def test_a_shard_that_is_not_i_of_n_is_refused(text):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="I/N"):
        shard_spec(text)
    assert shard_spec(" 1 / 4 ") == (1, 4)


def test_the_command_line_refuses_a_bad_shard_before_anything_loads(tmp_path):
    for args in (["--shard", "3/3"], ["--shard", "0/2", "--shards", "auto"]):
        result = subprocess.run([sys.executable, "-m", "bot.cli", "discord", *args], cwd=ROOT, capture_output=True,
                                text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert "--shard" in result.stderr.strip().splitlines()[-1]


def test_shards_in_separate_processes_need_the_shared_database(tmp_path):
    result = subprocess.run([sys.executable, "-m", "bot.cli", "discord", "--shard", "1/2"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CITEBOT_INDEX__DIR": str(tmp_path)})
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "set index.url to a PostgreSQL database" in line and "--shards auto" in line


@pytest.fixture
def sharded(monkeypatch, tmp_path):
    """A fake Discord that wants two shards, with two servers: server 0 on shard 0, server 1 on shard 1."""
    server = FakeDiscord(shards=2, guilds=2).start()
    monkeypatch.setattr(discord.http.Route, "BASE", server.api_base)
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(server.gateway_url))
    for name in [n for n in os.environ if n.startswith("CITEBOT_")]:
        monkeypatch.delenv(name)
    server.settings = load_settings(index={"dir": str(tmp_path / "index")}, corpus={"paths": []},
                                    discord={"cooldown_seconds": 0, "dev_guild": int(server.guild_id)})
    yield server
    server.stop()


@pytest.mark.asyncio
async def test_each_shard_gets_its_own_servers_and_answers_the_questions_asked_there(sharded):
    assert [sharded.shard_of(g) for g in sharded.guild_ids] == [0, 1]
    answerers = [FakeAnswerer(), FakeAnswerer()]
    bots = [make_client(sharded.settings, answerers[i], shard=(i, 2), guild_ready_timeout=0.05) for i in range(2)]
    async with connected(bots[0], sharded.token), connected(bots[1], sharded.token):
        for i, bot in enumerate(bots):
            await sharded.wait_for(lambda bot=bot: bot.guilds, timeout=WAIT, what=f"shard {i}'s server")
            assert [g.id for g in bot.guilds] == [int(sharded.guild_ids[i])]
        for i in (1, 0):
            record = await sharded.slash("alice", "ask", channel=sharded.general_of[sharded.guild_ids[i]],
                                         question=QUESTION)
            await sharded.wait_for(lambda record=record: answered(sharded, record), timeout=WAIT, what="an answer")
        assert [len(a.calls) for a in answerers] == [1, 1]  # each server's question went to its own shard
    assert sorted(i["shard"] for i in sharded.identifies) == [[0, 2], [1, 2]]
    assert sharded.violations == []


@pytest.mark.asyncio
async def test_auto_sharding_asks_discord_how_many_shards_and_holds_them_all(sharded):
    answerer = FakeAnswerer()
    bot = make_client(sharded.settings, answerer, shard="auto", guild_ready_timeout=0.05)
    async with connected(bot, sharded.token):
        await sharded.wait_for(lambda: len(bot.guilds) == 2, timeout=WAIT, what="both servers")
        assert bot.shard_count == 2 and sorted(bot.shards) == [0, 1]
        record = await sharded.slash("bob", "ask", channel=sharded.general_of[sharded.guild_ids[1]], question=QUESTION)
        await sharded.wait_for(lambda: answered(sharded, record), timeout=WAIT, what="an answer")
    assert sharded.requests_to("GET", "/gateway/bot") and sorted(i["shard"] for i in sharded.identifies) == [[0, 2], [1, 2]]


@pytest.mark.parametrize("shard, says", [(None, "--shards auto"), ((1, 3), "the same N")])  # 4011, 4010
def test_a_bot_that_does_not_shard_as_discord_requires_is_told_how_in_one_line(sharded, capsys, shard, says):
    import asyncio

    from bot.discord_app import serve

    def client(message_content: bool):
        return make_client(sharded.settings, FakeAnswerer(), shard=shard, guild_ready_timeout=0.05,
                           message_content=message_content)

    assert asyncio.run(serve(client, sharded.token)) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert says in line and "Traceback" not in line
