"""`citebot discord --shard I/N` and `--shards auto`: the real discord.py client, sharded, against the fake Discord
on 127.0.0.1. (The fake gives every shard its one server; routing servers by shard is the fake's next step.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

from bot.cli import shard_spec
from bot.discord_app import AutoShardedCitebotClient, CitebotClient, make_client
from tests.bot.conftest import FakeAnswerer
from tests.bot.test_discord_transport import WAIT, connected, fake, make_settings  # noqa: F401 (fixtures)
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
