"""The real, unmodified discord.py client over real sockets against the fake Discord in fake_discord.py.

The fake runs in its own thread and loop on 127.0.0.1; discord.py is pointed at it through
`discord.http.Route.BASE` and `discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`, nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import threading
import time

import aiohttp
import discord
import pytest
import yarl

from bot import discord_app
from bot import render_discord as rd
from bot.discord_app import CitebotClient, run_bot
from retrieval.settings import load_settings
from tests.bot.conftest import FakeAnswerer
from tests.bot.fake_discord import EPHEMERAL, LOADING, FakeDiscord

QUESTION = "where are the new battlegroups?"
WAIT = 5.0  # seconds any single expected event may take


@pytest.fixture
def fake(monkeypatch):
    server = FakeDiscord().start()
    monkeypatch.setattr(discord.http.Route, "BASE", server.api_base)
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(server.gateway_url))
    yield server
    server.stop()


@pytest.fixture
def make_settings(tmp_path, monkeypatch, fake):
    for name in [n for n in os.environ if n.startswith("CITEBOT_")]:
        monkeypatch.delenv(name)

    def make(*, token: str | None = None, **discord_values):
        discord_values = {"cooldown_seconds": 0, "dev_guild": int(fake.guild_id), **discord_values}
        extra = {"discord_token": token} if token is not None else {}
        return load_settings(
            index={"dir": str(tmp_path / "index")},
            corpus={"paths": [str(tmp_path / "news")]},
            discord=discord_values,
            **extra,
        )

    return make


@contextlib.asynccontextmanager
async def connected(bot: discord.Client, token: str):
    """The bot logged in, connected and ready; closed cleanly afterwards."""
    async with bot:
        runner = asyncio.create_task(bot.start(token))
        ready = asyncio.create_task(bot.wait_until_ready())
        done, _ = await asyncio.wait({runner, ready}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            if runner.done():
                runner.result()
            raise AssertionError("the bot was not ready within 10 s")
        try:
            yield bot
        finally:
            await asyncio.wait_for(bot.close(), 10)
            await asyncio.wait_for(runner, 10)


def new_bot(fake: FakeDiscord, settings, answerer, cls=CitebotClient) -> CitebotClient:
    bot = cls(settings, answerer, guild_ready_timeout=0.05)
    bot.progress_every = 0.1
    return bot


def answered(fake: FakeDiscord, record) -> dict | None:
    """The interaction's original response once it holds the answer (no longer "thinking")."""
    message = fake.messages.get(record.original_id or "")
    if message and not message["flags"] & LOADING and (message["embeds"] or message["content"]):
        return message
    return None


def mention(fake: FakeDiscord) -> str:
    return f"<@{fake.bot_user['id']}>"


@pytest.mark.asyncio
async def test_login_command_sync_and_gateway_handshake(fake, make_settings):
    bot = new_bot(fake, make_settings(), FakeAnswerer())
    async with connected(bot, fake.token):
        await fake.wait_for(lambda: len(fake.heartbeats) >= 3, timeout=WAIT, what="heartbeats")
        assert bot.get_guild(int(fake.guild_id)) is not None

    [me] = fake.requests_to("GET", "/users/@me")
    assert me.status == 200
    [sync] = fake.requests_to("PUT", rf"/applications/{fake.app_id}/guilds/{fake.guild_id}/commands")
    commands = {c["name"]: c for c in sync.json}
    assert set(commands) == {"ask", "help", "reindex", "sources", "feeds", "collection", "channel",
                             discord_app.ASK_ABOUT}
    for admin in ("reindex", "sources", "feeds", "collection", "channel"):
        assert str(commands[admin]["default_member_permissions"]) == "32"  # Manage Server
    assert {o["name"] for o in commands["feeds"]["options"]} == {"add", "remove", "list"}
    [identify] = fake.identifies
    assert identify["intents"] & (1 << 15) and identify["intents"] & 1  # message content, guilds
    await fake.wait_for(lambda: fake.close_codes, timeout=WAIT, what="a close frame, not a dropped connection")
    assert fake.violations == []


@pytest.mark.asyncio
async def test_two_users_are_answered_within_the_deadline_while_a_slow_question_runs(fake, make_settings):
    answerer = FakeAnswerer(delays={"slow": 2.0})
    bot = new_bot(fake, make_settings(), answerer)
    async with connected(bot, fake.token):
        # Sent by the fake's own loop once the slow question is being answered, so a bot that blocked
        # its loop could not delay them; arranged before the slow question is even asked.
        quick = [
            await fake.slash("bob", "ask", question=QUESTION, after=0.2, when=lambda: answerer.calls),
            await fake.slash("carol", "ask", question="which countries already had them?", after=0.3, when=lambda: answerer.calls),
        ]
        slow = await fake.slash("alice", "ask", question="a slow question")
        await fake.wait_for(lambda: all(answered(fake, r) for r in [slow, *quick]), timeout=WAIT, what="the answers")

    slow_done = answered(fake, slow)["_filled_at"]
    for record in [slow, *quick]:
        assert record.response_type == 5 and record.acked_at - record.dispatched_at < 0.5
    for record in quick:
        assert answered(fake, record)["_filled_at"] - record.dispatched_at < 1.0
        assert answered(fake, record)["_filled_at"] < slow_done - 0.5  # while the slow one was still working
    beats = [t for t in fake.heartbeats if slow.dispatched_at <= t <= slow_done]
    assert len(beats) >= 5  # every 0.2 s: the loop never stalled
    assert max(b - a for a, b in zip(beats, beats[1:])) < 0.6
    assert fake.violations == []


class BlockingClient(CitebotClient):
    """What the bot must not do: answer on the event loop."""

    async def ask(self, interaction, question, k, *filters):
        await interaction.response.defer(thinking=True)
        answer = self.answerer.answer(question, k=k)
        await interaction.followup.send(embed=rd.answer_embed(answer))


@pytest.mark.asyncio
async def test_the_deadline_catches_a_bot_that_blocks_its_loop(fake, make_settings):
    answerer = FakeAnswerer(delays={"slow": 3.8})
    bot = new_bot(fake, make_settings(), answerer, cls=BlockingClient)
    async with connected(bot, fake.token):
        late = await fake.slash("bob", "ask", question=QUESTION, after=0.3, when=lambda: answerer.calls)
        await fake.slash("alice", "ask", question="a slow question")
        await fake.wait_for(lambda: late.acked_at or fake.violations, timeout=WAIT, what="bob's interaction")
        with contextlib.suppress(AssertionError):
            await fake.wait_for(lambda: False, timeout=0.3)  # let the bot's error handling finish

    assert any("Unknown interaction" in v for v in fake.violations), fake.violations
    assert max(b - a for a, b in zip(fake.heartbeats, fake.heartbeats[1:])) > 3.0


@pytest.mark.asyncio
async def test_a_mention_is_answered_over_rest_and_its_thread_takes_follow_ups(fake, make_settings):
    answerer = FakeAnswerer()
    bot = new_bot(fake, make_settings(), answerer)
    async with connected(bot, fake.token):
        question = await fake.send_message("alice", f"{mention(fake)} {QUESTION}")
        [reply] = await fake.wait_for(lambda: fake.bot_messages(fake.general), timeout=WAIT, what="the answer")
        await fake.wait_for(lambda: reply["id"] in fake.channels, timeout=WAIT, what="the thread")
        await fake.send_message("bob", "and which countries already had them?", channel=reply["id"])
        await fake.wait_for(lambda: fake.bot_messages(reply["id"]), timeout=WAIT, what="the follow-up answer")

    [post, *_] = fake.requests_to("POST", rf"/channels/{fake.general}/messages")
    assert post.content_type == "application/json"
    assert str(post.json["message_reference"]["message_id"]) == question["id"]
    assert post.json["embeds"][0]["title"] == QUESTION
    assert [c.context for c in answerer.calls] == [None, [QUESTION]]  # the bot's own messages started nothing
    assert fake.violations == []


@pytest.mark.asyncio
@pytest.mark.parametrize("drop", [False, True], ids=["op7-reconnect", "dropped-connection"])
async def test_a_reconnect_mid_session_loses_no_question(fake, make_settings, drop):
    answerer = FakeAnswerer()
    bot = new_bot(fake, make_settings(), answerer)
    async with connected(bot, fake.token):
        await fake.reconnect(drop=drop)
        await fake.send_message("alice", f"{mention(fake)} {QUESTION}")  # sent while the bot is away
        await fake.wait_for(lambda: fake.resumes, timeout=WAIT, what="RESUME")
        await fake.wait_for(lambda: fake.bot_messages(fake.general), timeout=WAIT, what="the answer")
        after = await fake.slash("bob", "ask", question=QUESTION)
        await fake.wait_for(lambda: answered(fake, after), timeout=WAIT, what="an answer after the resume")

    assert len(fake.identifies) == 1  # resumed, not a new session
    assert fake.resumes[0]["session_id"] == "session-1"
    assert fake.connections[:2] == ["/gateway", "/resume-gateway"]
    assert [c.question for c in answerer.calls] == [QUESTION, QUESTION]
    assert fake.violations == []


@pytest.mark.asyncio
async def test_a_429_is_waited_out(fake, make_settings):
    bot = new_bot(fake, make_settings(), FakeAnswerer())
    fake.rate_limit("POST", r"/channels/\d+/messages", retry_after=0.6)
    fake.rate_limit("POST", r"/webhooks/\d+/[^/]+", retry_after=0.6)
    async with connected(bot, fake.token):
        await fake.send_message("alice", f"{mention(fake)} {QUESTION}")
        await fake.wait_for(lambda: fake.bot_messages(fake.general), timeout=WAIT, what="the answer")
        asked = await fake.slash("bob", "ask", question=QUESTION)
        await fake.wait_for(lambda: answered(fake, asked), timeout=WAIT, what="the slash answer")

    for pattern in (rf"/channels/{fake.general}/messages", r"/webhooks/\d+/[^/]+"):
        first, second, *_ = fake.requests_to("POST", pattern)
        assert (first.status, second.status) == (429, 200)
        assert second.at - first.at >= 0.6
    assert fake.violations == []  # no retry came early


@pytest.mark.asyncio
async def test_everyone_in_a_passage_reaches_discord_with_no_mentions_allowed(fake, make_settings):
    bot = new_bot(fake, make_settings(), FakeAnswerer())
    async with connected(bot, fake.token):
        asked = await fake.slash("alice", "ask", question=QUESTION)
        answer = await fake.wait_for(lambda: answered(fake, asked), timeout=WAIT, what="the answer")
        shown = await fake.click("bob", answer["id"], label="Show all sources")
        await fake.wait_for(lambda: len(fake.requests_to("POST", r"/webhooks/\d+/[^/]+")) == 2, timeout=WAIT,
                            what="the sources")
        await fake.send_message("carol", f"{mention(fake)} {QUESTION}")
        await fake.wait_for(lambda: fake.requests_to("POST", rf"/channels/{fake.general}/messages"), timeout=WAIT)

    followup, sources = fake.requests_to("POST", r"/webhooks/\d+/[^/]+")
    [callback] = fake.requests_to("POST", rf"/interactions/{shown.id}/[^/]+/callback")
    [reply] = fake.requests_to("POST", rf"/channels/{fake.general}/messages")
    assert "@\u200beveryone" in json.dumps(followup.json["embeds"], ensure_ascii=False)
    assert callback.json == {"type": 5, "data": {"flags": EPHEMERAL}}  # deferred, privately
    assert "@\u200beveryone" in sources.json["content"]
    assert sources.json["flags"] == EPHEMERAL
    for body in (followup.json, sources.json, reply.json):
        assert body["allowed_mentions"]["parse"] == [] and not body["allowed_mentions"].get("replied_user")
        assert "@everyone" not in json.dumps(body, ensure_ascii=False)
    assert all(m["_pings"] == [] for m in fake.bot_messages())
    assert fake.violations == []


@pytest.mark.asyncio
async def test_the_allowlist_holds(fake, make_settings):
    answerer = FakeAnswerer()
    bot = new_bot(fake, make_settings(channels=[int(fake.general)]), answerer)
    async with connected(bot, fake.token):
        await fake.send_message("alice", f"{mention(fake)} {QUESTION}", channel=fake.random)
        refused = await fake.slash("alice", "ask", channel=fake.random, question=QUESTION)
        await fake.wait_for(lambda: refused.acked_at, timeout=WAIT)
        allowed = await fake.slash("alice", "ask", question=QUESTION)
        await fake.wait_for(lambda: answered(fake, allowed), timeout=WAIT)

    [callback, *_] = fake.requests_to("POST", rf"/interactions/{refused.id}/[^/]+/callback")
    assert callback.json["type"] == 4
    assert (callback.json["data"]["content"], callback.json["data"]["flags"]) == (discord_app.NOT_HERE, EPHEMERAL)
    assert [m for m in fake.bot_messages(fake.random) if not m["flags"] & EPHEMERAL] == []
    assert len(answerer.calls) == 1
    assert fake.violations == []


@pytest.mark.asyncio
async def test_the_cooldown_holds(fake, make_settings):
    answerer = FakeAnswerer()
    bot = new_bot(fake, make_settings(cooldown_seconds=60), answerer)
    async with connected(bot, fake.token):
        first = await fake.slash("alice", "ask", question=QUESTION)
        await fake.wait_for(lambda: answered(fake, first), timeout=WAIT)
        second = await fake.slash("alice", "ask", question=QUESTION)
        await fake.wait_for(lambda: second.acked_at, timeout=WAIT)
        await fake.send_message("alice", f"{mention(fake)} {QUESTION}")
        await fake.wait_for(lambda: fake.requests_to("POST", r"/users/@me/channels"), timeout=WAIT, what="a DM")
        dm = await fake.wait_for(lambda: [m for m in fake.bot_messages() if fake.channels[m["channel_id"]]["type"] == 1],
                                 timeout=WAIT, what="the DM")

    [callback] = fake.requests_to("POST", rf"/interactions/{second.id}/[^/]+/callback")
    assert callback.json["data"]["flags"] == EPHEMERAL
    assert callback.json["data"]["content"].endswith("please try again in 60 s.")
    assert dm[0]["content"].startswith("You're asking quickly: please try again in ")
    assert len(answerer.calls) == 1
    assert fake.violations == []


@pytest.mark.asyncio
async def test_admin_commands_hold_and_reindex_shows_progress_in_one_message(fake, make_settings):
    answerer = FakeAnswerer(ingest_delay=0.15)
    bot = new_bot(fake, make_settings(), answerer)
    async with connected(bot, fake.token):
        refused = await fake.slash("bob", "reindex")
        await fake.wait_for(lambda: refused.acked_at, timeout=WAIT)
        reindex = await fake.slash("admin", "reindex")
        await fake.wait_for(lambda: "Reindex finished" in fake.messages.get(reindex.original_id or "", {}).get("content", ""),
                            timeout=WAIT, what="the reindex report")
        listed = await fake.slash("admin", "sources")
        await fake.wait_for(lambda: answered(fake, listed), timeout=WAIT)

    [callback] = fake.requests_to("POST", rf"/interactions/{refused.id}/[^/]+/callback")
    assert callback.json["data"]["content"] == discord_app.ADMIN_ONLY and callback.json["data"]["flags"] == EPHEMERAL
    assert len(answerer.ingested) == 1
    assert (reindex.response_type, reindex.ephemeral, reindex.followup_ids) == (5, True, [])
    edits = [e["content"] for e in fake.messages[reindex.original_id]["_edits"]]
    assert any(e.startswith("Reindexing: ") for e in edits), edits
    assert edits[-1].startswith("Reindex finished: 2 added, 0 updated, 0 unchanged, 0 removed, 1 failed.")
    assert listed.ephemeral and fake.messages[listed.original_id]["content"].startswith("3 articles indexed:")
    assert fake.violations == []


@pytest.mark.asyncio
async def test_the_fake_rejects_what_discord_rejects(fake):
    headers = {"Authorization": f"Bot {fake.token}"}
    url = f"{fake.api_base}/channels/{fake.general}/messages"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data="hello", headers={**headers, "Content-Type": "text/plain"}) as response:
            assert response.status == 400
            assert response.headers["Content-Type"] == "application/json"
        big = {"embeds": [{"description": "x" * 4000, "fields": [{"name": "n", "value": "v" * 1024}] * 3}]}
        async with session.post(url, json=big, headers=headers) as response:
            assert (response.status, (await response.json())["code"]) == (400, 50035)
        async with session.post(url, json={"content": "x" * 2001}, headers=headers) as response:
            assert response.status == 400
        async with session.get(f"{fake.api_base}/users/@me", headers={"Authorization": "Bot wrong"}) as response:
            assert response.status == 401
    assert len(fake.violations) == 3


def test_a_missing_token_is_one_clear_line(make_settings, capsys):
    code = run_bot(make_settings(), FakeAnswerer())

    lines = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and "CITEBOT_DISCORD_TOKEN" in lines[0]


def test_a_rejected_token_is_one_clear_line_without_the_token(fake, make_settings, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    code = run_bot(make_settings(token="not-the-token"), FakeAnswerer())

    err = capsys.readouterr().err
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert "rejected the token in CITEBOT_DISCORD_TOKEN" in err
    assert "not-the-token" not in err + caplog.text
    assert fake.identifies == []  # never reached the gateway


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_closes_the_gateway_cleanly(fake, make_settings, caplog, signum):
    caplog.set_level(logging.DEBUG)
    answerer = FakeAnswerer()

    def stop_when_connected() -> None:
        deadline = time.monotonic() + 10
        while not (fake.ready_at and fake.heartbeats) and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signum)

    def not_handled(*_):
        raise AssertionError("the signal reached the default handler, not the bot's")

    previous = signal.signal(signum, not_handled)
    try:
        threading.Thread(target=stop_when_connected, daemon=True).start()
        code = run_bot(make_settings(token=fake.token), answerer)
    finally:
        signal.signal(signum, previous)

    assert code == 0
    deadline = time.monotonic() + WAIT
    while not fake.close_codes and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake.close_codes == [1000]
    assert answerer.warmed_at is not None and answerer.warmed_at < fake.identifies[0]["at"]  # warm before connecting
    assert fake.token not in caplog.text


@pytest.mark.asyncio
async def test_a_mention_storm_gets_one_notice_per_user_not_one_per_mention(fake, make_settings):
    answerer = FakeAnswerer()
    bot = new_bot(fake, make_settings(cooldown_seconds=5), answerer)
    users = ("alice", "bob", "carol")
    async with connected(bot, fake.token):
        sent = []
        for n in range(60):  # 20 mentions each, as fast as the fake gateway takes them
            sent.append(await fake.send_message(users[n % 3], f"{mention(fake)} {QUESTION} ({n})"))
        await fake.wait_for(lambda: len(answerer.calls) == 3, timeout=WAIT, what="three answers")
        await fake.wait_for(lambda: len(bot._told_at) == 3, timeout=WAIT, what="the three notices")
        await asyncio.sleep(1.0)  # any further notice would be on its way by now
        dms = [m for m in fake.bot_messages() if fake.channels[m["channel_id"]]["type"] == 1]

    assert len(answerer.calls) == 3
    assert len(dms) == 3 and all(m["content"].startswith("You're asking quickly") for m in dms)
    assert {fake.channels[m["channel_id"]]["recipients"][0]["id"] for m in dms} == {
        fake.users[u]["id"] for u in users}
    assert len(fake.bot_messages(fake.general)) == 3  # the answers; no refusal as a reply in the channel
    assert fake.violations == []
