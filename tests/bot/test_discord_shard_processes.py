"""Bot shards as separate processes on one PostgreSQL database (issue 24), against the loopback fake Discord.

Two `citebot discord --shard I/2` processes (the real command and discord.py client, tests/bot/shard_worker.py)
each serve their own server. Shard 0 answers in server 0 and is killed -9; the fleet is then resharded to three
shards, so server 0 now belongs to shard 1 of 3, a process that never saw the answer: its buttons, its thread's
follow-ups, the "Share to channel" of a private answer it gave and an admin's channel rule set before the
kill all work there, from the database alone.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bot.discord_app import NOT_HERE
from bot.history import HistoryStore
from retrieval.models import Article
from retrieval.pipeline import Answerer
from retrieval.settings import load_settings
from tests.bot.fake_discord import EPHEMERAL, FakeDiscord
from tests.bot.test_discord_transport import QUESTION, answered
from tests.fakes import FakeEmbedder

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("shard_worker.py")
WAIT = 30.0  # a process starting, loading and connecting

pytestmark = pytest.mark.slow

ARTICLES = [
    Article(key="b1", title="Battlegroups", outlet="Herald", text="The new battlegroups will be in Hungary, Slovakia, "
            "Romania and Bulgaria, NATO said on Thursday. Allied leaders agreed the plan in Brussels."),
    Article(key="b2", title="Summit", outlet="Times", text="Leaders met in Brussels to discuss the new battlegroups "
            "and the defence of the eastern flank. They also discussed energy prices."),
]
SETTINGS = {"embedding": {"model": "fake"}, "chunking": {"max_tokens": 40}, "answer": {"min_score": 0.0,
            "min_mixed_score": -100.0, "min_support": -100.0, "phrases": False}}


def _environment(fake: FakeDiscord, url: str, tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEBOT_")}
    env.update({"FAKE_DISCORD_API": fake.api_base, "FAKE_DISCORD_GATEWAY": fake.gateway_url, "PYTHONPATH": str(ROOT),
                "CITEBOT_DISCORD_TOKEN": fake.token, "CITEBOT_INDEX__URL": url,
                "CITEBOT_INDEX__DIR": str(tmp_path / "unused"), "CITEBOT_CORPUS__PATHS": "[]",
                "CITEBOT_EMBEDDING__MODEL": "fake", "CITEBOT_CHUNKING__MAX_TOKENS": "40",
                "CITEBOT_ANSWER__MIN_SCORE": "0", "CITEBOT_ANSWER__MIN_MIXED_SCORE": "-100",
                "CITEBOT_ANSWER__MIN_SUPPORT": "-100", "CITEBOT_ANSWER__PHRASES": "false",
                "CITEBOT_DISCORD__COOLDOWN_SECONDS": "0", "CITEBOT_DISCORD__DEV_GUILD": fake.guild_id})
    return env


class Shards:
    def __init__(self, fake, env, tmp_path):
        self.fake, self.env, self.tmp_path = fake, env, tmp_path
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, spec: str) -> subprocess.Popen:
        log = open(self.tmp_path / f"shard-{spec.replace('/', 'of')}.log", "w")  # noqa: SIM115 - the process holds it
        process = subprocess.Popen([sys.executable, str(WORKER), spec], cwd=ROOT, env=self.env,
                                   stdout=subprocess.DEVNULL, stderr=log)
        self.processes[spec] = process
        return process

    async def ready(self, shard: int) -> None:
        """Until the fake has a live session for this shard (its READY and GUILD_CREATE sent)."""
        await self.fake.wait_for(lambda: (s := self.fake._sessions.get(shard)) is not None and s.live is not None,
                                 timeout=WAIT, what=f"shard {shard}'s session")
        await asyncio.sleep(0.5)  # its GUILD_CREATE handled

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.tmp_path.glob("shard-*.log")))

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.mark.asyncio
async def test_an_answer_given_by_a_killed_shard_works_on_the_shard_that_takes_its_server(postgres_url, tmp_path):
    settings = load_settings(index={"url": postgres_url, "dir": str(tmp_path / "unused")}, **SETTINGS)
    loader = Answerer(settings, FakeEmbedder())
    loader.ingest_articles(ARTICLES)
    loader.store.close()
    fake = FakeDiscord(shards=2, guilds=2, heartbeat_ms=1000).start()
    shards = Shards(fake, _environment(fake, postgres_url, tmp_path), tmp_path)
    server0, server1 = fake.guild_ids
    try:
        shards.start("0/2")
        shards.start("1/2")
        await shards.ready(0)
        await shards.ready(1)
        await fake.wait_for(lambda: fake.commands, timeout=WAIT, what="shard 0 registering the commands")
        assert len(fake.requests_to("PUT", r"/applications/\d+/(guilds/\d+/)?commands")) == 1  # shard 0 only

        # An admin's rule in server 0's second channel, set through shard 0: no answers there. Then an
        # answer in server 0 (shard 0) and one in server 1 (shard 1).
        channel0 = fake.general_of[server0]
        ruled = await fake.slash("admin", "channel", sub="set", channel=fake.random, answers=False)
        await fake.wait_for(lambda: ruled.response_type is not None, timeout=WAIT, what="the rule's reply")
        asked = await fake.slash("alice", "ask", channel=channel0, question=QUESTION)
        answer = await fake.wait_for(lambda: answered(fake, asked), timeout=WAIT, what="shard 0's answer")
        await fake.wait_for(lambda: answer["id"] in fake.channels, timeout=WAIT, what="the answer's thread")
        kept = await fake.slash("carol", "ask", channel=channel0, question=QUESTION, private=True)
        private = await fake.wait_for(lambda: answered(fake, kept), timeout=WAIT, what="the private answer")
        other = await fake.slash("bob", "ask", channel=fake.general_of[server1], question=QUESTION)
        await fake.wait_for(lambda: answered(fake, other), timeout=WAIT, what="shard 1's answer")

        shards.processes["0/2"].send_signal(signal.SIGKILL)  # between the answer and any press on it
        shards.processes["0/2"].wait(10)
        await fake.wait_for(lambda: fake._sessions[0].live is None, timeout=WAIT, what="shard 0's connection gone")
        shards.processes["1/2"].send_signal(signal.SIGTERM)
        assert shards.processes["1/2"].wait(30) == 0

        fake.shard_count = 3  # the fleet grows: every process restarts with --shard I/3
        assert (fake.shard_of(server0), fake.shard_of(server1)) == (1, 2)
        for spec in ("0/3", "1/3", "2/3"):
            shards.start(spec)
        for shard in (0, 1, 2):
            await shards.ready(shard)

        shown = await fake.click("bob", answer["id"], label="Show all sources")
        voted = await fake.click("carol", answer["id"], emoji="👍")
        await fake.send_message("bob", "and which countries already had them?", channel=answer["id"])
        await fake.wait_for(lambda: fake.bot_messages(answer["id"]), timeout=WAIT, what="the follow-up's answer")
        await fake.wait_for(lambda: fake.requests_to("POST", rf"/webhooks/\d+/{shown.token}"), timeout=WAIT,
                            what="the sources")
        await fake.wait_for(lambda: fake.requests_to("POST", rf"/webhooks/\d+/{voted.token}"), timeout=WAIT,
                            what="the vote's reply")
        shared = await fake.click("carol", private["id"], label="Share to channel")
        public = await fake.wait_for(lambda: [m for m in fake.bot_messages(channel0) if m["embeds"] and not
                                              m["flags"] & EPHEMERAL and m["content"].startswith("Shared by")],
                                     timeout=WAIT, what="the shared answer")
        refused = await fake.slash("alice", "ask", channel=fake.random, question=QUESTION)
        await fake.wait_for(lambda: refused.response_type is not None, timeout=WAIT, what="the refusal")
        await asyncio.sleep(1.0)
    finally:
        shards.stop_all()
        fake.stop()
    logs = shards.logs()
    assert shards.processes["0/2"].returncode == -signal.SIGKILL
    assert [shards.processes[s].returncode for s in ("1/2", "0/3", "1/3", "2/3")] == [0, 0, 0, 0], logs
    assert "Traceback" not in logs, logs
    [sources] = fake.requests_to("POST", rf"/webhooks/\d+/{shown.token}")
    assert sources.json["flags"] == EPHEMERAL and sources.json["content"].startswith("**[1]** ")
    [reply] = fake.bot_messages(answer["id"])
    assert reply["embeds"]
    assert private["flags"] & EPHEMERAL and shared.response_type == 6 and len(public) == 1
    assert public[0]["content"] == f"Shared by <@{fake.users['carol']['id']}>"
    [vote] = HistoryStore.from_settings(settings).votes()
    assert (vote.user_id, vote.vote, vote.question) == (int(fake.users["carol"]["id"]), 1, QUESTION)
    [callback] = fake.requests_to("POST", rf"/interactions/{refused.id}/[^/]+/callback")
    assert (callback.json["data"]["content"], callback.json["data"]["flags"]) == (NOT_HERE, EPHEMERAL)
    assert [m for m in fake.bot_messages(fake.random) if not m["flags"] & EPHEMERAL] == []  # obeyed by shard 1/3
    assert len(fake.requests_to("PUT", r"/applications/\d+/(guilds/\d+/)?commands")) == 2  # shard 0 of each fleet
    assert fake.violations == []
