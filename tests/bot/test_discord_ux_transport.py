"""What Discord users expect (issue 12), with the real discord.py client over real sockets against the fake Discord.

Here is what needs real concurrency or the wire itself: 20 questions at once, the server-wide
limit, autocomplete while every worker is busy, the message command and sharing as Discord takes
them, and starting without the Message Content intent when Discord refuses it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time

import discord
import pytest
import yarl

from bot import discord_app
from bot.discord_app import run_bot
from retrieval.backends.embedded.store import Store
from tests.bot.conftest import FakeAnswerer, add_documents
from tests.bot.fake_discord import EPHEMERAL, MESSAGE_CONTENT_INTENT, FakeDiscord
from tests.bot.test_discord_transport import QUESTION, WAIT, answered, connected, fake, make_settings, mention, new_bot  # noqa: F401

USERS = ("alice", "bob", "carol", "admin")


def with_store(answerer: FakeAnswerer, tmp_path, outlets=("Reuters", "Radio Free Europe", "Newsmax")) -> FakeAnswerer:
    answerer.store = Store(add_documents(tmp_path / "store" / "citebot.sqlite", list(outlets)))
    return answerer


def deferred_and_answered(fake: FakeDiscord, records) -> list:
    """The interactions answered after a "thinking" defer (not refused at once)."""
    return [r for r in records if r.response_type == 5 and answered(fake, r)]


def callback_of(fake: FakeDiscord, record) -> dict:
    [callback] = fake.requests_to("POST", rf"/interactions/{record.id}/[^/]+/callback")
    return callback.json


@pytest.mark.asyncio
@pytest.mark.parametrize("limit", [20, 4])
async def test_twenty_concurrent_asks_are_all_acknowledged_within_discords_3_s(fake, make_settings, limit):
    answerer = FakeAnswerer(delays={"slow": 0.4})
    bot = new_bot(fake, make_settings(max_concurrent_per_server=limit), answerer)
    async with connected(bot, fake.token):
        asked = await asyncio.gather(*(fake.slash(USERS[n % 4], "ask", question=f"slow question {n}") for n in range(20)))
        await fake.wait_for(lambda: all(r.acked_at for r in asked), timeout=WAIT, what="every acknowledgement")
        await fake.wait_for(lambda: len(deferred_and_answered(fake, asked)) == limit, timeout=10, what="the answers")

    for record in asked:
        assert record.acked_at - record.dispatched_at < 1.0  # well inside the 3 s Discord allows
    answers = deferred_and_answered(fake, asked)
    busy = [r for r in asked if r not in answers]
    assert len(answers) == limit and all(r.response_type == 5 and not r.ephemeral for r in answers)
    assert len(answerer.calls) == limit
    for record in busy:  # the rest told privately, at once
        assert (record.response_type, record.ephemeral) == (4, True)
        assert callback_of(fake, record)["data"]["content"] == discord_app.BUSY
    assert fake.violations == []


@pytest.mark.asyncio
async def test_the_server_limit_counts_questions_being_answered_and_a_refusal_starts_no_cooldown(fake, make_settings):
    answerer = FakeAnswerer(delays={"slow": 1.0})
    bot = new_bot(fake, make_settings(max_concurrent_per_server=2, cooldown_seconds=60), answerer)
    async with connected(bot, fake.token):
        slow = [await fake.slash(user, "ask", question="a slow question") for user in ("alice", "bob")]
        await fake.wait_for(lambda: len(answerer.calls) == 2, timeout=WAIT, what="two questions being answered")
        refused = await fake.slash("carol", "ask", question=QUESTION)
        await fake.send_message("carol", f"{mention(fake)} {QUESTION}")
        dm = await fake.wait_for(lambda: [m for m in fake.bot_messages() if fake.channels[m["channel_id"]]["type"] == 1],
                                 timeout=WAIT, what="the busy DM")
        await fake.wait_for(lambda: all(answered(fake, r) for r in slow), timeout=WAIT, what="the slow answers")
        # A slot is given back just after its reply is sent: wait for that rather than race it.
        await fake.wait_for(lambda: bot._answering == {}, timeout=WAIT, what="the slow questions' slots given back")
        later = await fake.slash("carol", "ask", question=QUESTION)
        await fake.wait_for(lambda: answered(fake, later), timeout=WAIT, what="carol's answer once there is room")
        await fake.wait_for(lambda: bot._answering == {}, timeout=WAIT, what="every slot given back")

    told = callback_of(fake, refused)["data"]
    assert (told["content"], told["flags"]) == (discord_app.BUSY, EPHEMERAL)
    assert dm[0]["content"] == discord_app.BUSY
    assert [c.question for c in answerer.calls] == ["a slow question", "a slow question", QUESTION]
    assert fake.violations == []


@pytest.mark.asyncio
async def test_outlet_choices_come_within_the_deadline_while_every_worker_is_answering(fake, make_settings, tmp_path):
    answerer = with_store(FakeAnswerer(delays={"slow": 3.5}), tmp_path)
    workers = min(32, (os.cpu_count() or 1) + 4)  # asyncio's default executor, which asyncio.to_thread uses
    bot = new_bot(fake, make_settings(max_concurrent_per_server=workers), answerer)
    async with connected(bot, fake.token):
        slow = [await fake.slash(USERS[n % 4], "ask", question=f"slow {n}") for n in range(workers)]
        await fake.wait_for(lambda: len(answerer.calls) == workers, timeout=WAIT, what="every worker busy")
        typed = await fake.autocomplete("alice", "ask", "outlet", "r", question=QUESTION)
        await fake.wait_for(lambda: typed.acked_at or fake.violations, timeout=WAIT, what="the choices")
        await fake.wait_for(lambda: all(answered(fake, r) for r in slow), timeout=WAIT, what="the slow answers")

    assert typed.response_type == 8 and typed.acked_at - typed.dispatched_at < 1.0
    assert typed.choices == [{"name": "Radio Free Europe", "value": "Radio Free Europe"},
                             {"name": "Reuters", "value": "Reuters"}]
    assert fake.violations == []


@pytest.mark.asyncio
async def test_the_message_command_and_help_are_synced_and_answered_as_discord_takes_them(fake, make_settings):
    answerer = FakeAnswerer()
    bot = new_bot(fake, make_settings(), answerer)
    async with connected(bot, fake.token):
        said = await fake.send_message("bob", QUESTION)
        asked = await fake.context_menu("alice", discord_app.ASK_ABOUT, said["id"])
        answer = await fake.wait_for(lambda: answered(fake, asked), timeout=WAIT, what="the answer")
        await fake.wait_for(lambda: answer["id"] in fake.channels, timeout=WAIT, what="its thread")
        helped = await fake.slash("alice", "help")
        await fake.wait_for(lambda: helped.acked_at, timeout=WAIT)

    commands = {c["name"]: c for c in fake.commands}
    [sync] = fake.requests_to("PUT", rf"/applications/{fake.app_id}/guilds/{fake.guild_id}/commands")
    [menu] = [c for c in sync.json if c["name"] == discord_app.ASK_ABOUT]
    assert menu["type"] == 3 and not menu.get("description") and commands[discord_app.ASK_ABOUT]["type"] == 3
    assert [c.question for c in answerer.calls] == [QUESTION]
    assert answer["embeds"][0]["title"] == QUESTION and not answer["flags"] & EPHEMERAL
    assert callback_of(fake, helped)["data"]["flags"] == EPHEMERAL
    assert "This server asks the collection **default**." in callback_of(fake, helped)["data"]["content"]
    assert fake.violations == []


@pytest.mark.asyncio
async def test_a_private_answer_shared_after_a_restart(fake, make_settings):
    settings = make_settings()
    first = new_bot(fake, settings, FakeAnswerer())
    async with connected(first, fake.token):
        asked = await fake.slash("alice", "ask", question=QUESTION, private=True)
        private = await fake.wait_for(lambda: answered(fake, asked), timeout=WAIT, what="the private answer")

    second = new_bot(fake, settings, FakeAnswerer())
    async with connected(second, fake.token):
        shared = await fake.click("alice", private["id"], label="Share to channel")
        twice = await fake.click("alice", private["id"], label="Share to channel")  # pressed again at once
        public = await fake.wait_for(lambda: [m for m in fake.bot_messages(fake.general)
                                              if m["embeds"] and not m["flags"] & EPHEMERAL], timeout=WAIT)
        await fake.wait_for(lambda: public[0]["id"] in fake.channels, timeout=WAIT, what="the thread")
        told = await fake.wait_for(lambda: [m for m in fake.bot_messages(fake.general)
                                            if m["content"] == discord_app.SHARED_ALREADY], timeout=WAIT)

    assert (asked.response_type, asked.ephemeral) == (5, True) and private["flags"] & EPHEMERAL
    assert shared.response_type == 6  # acknowledged without a message of its own
    assert told[0]["flags"] & EPHEMERAL and twice.acked_at
    [post] = public  # shared once
    assert post["embeds"][0]["title"] == QUESTION and post["content"] == f"Shared by <@{fake.users['alice']['id']}>"
    assert post["_pings"] == []
    assert [c.get("label") or c["emoji"]["name"] for c in post["components"][0]["components"]] == [
        "Show all sources", "👍", "👎"]
    assert [c.get("label") or c["emoji"]["name"] for c in private["components"][0]["components"]] == [
        "Show all sources", "👍", "👎"]  # the private one lost its share button
    assert fake.violations == []


@pytest.mark.asyncio
async def test_a_mention_shows_typing_and_an_answer_still_comes_when_discord_refuses_typing(fake, make_settings):
    bot = new_bot(fake, make_settings(), FakeAnswerer())
    async with connected(bot, fake.token):
        await fake.send_message("alice", f"{mention(fake)} {QUESTION}")
        await fake.wait_for(lambda: fake.bot_messages(fake.general), timeout=WAIT, what="the answer")
        fake._routes = [(m, p, _forbidden if h is FakeDiscord._typing else h) for m, p, h in FakeDiscord._routes]
        await fake.send_message("bob", f"{mention(fake)} another question", channel=fake.random)
        await fake.wait_for(lambda: fake.bot_messages(fake.random), timeout=WAIT, what="the second answer")

    typing = fake.requests_to("POST", r"/channels/\d+/typing")
    assert [(r.path, r.status) for r in typing] == [(f"/channels/{fake.general}/typing", 204),
                                                    (f"/channels/{fake.random}/typing", 403)]
    [reply] = fake.requests_to("POST", rf"/channels/{fake.general}/messages")
    assert typing[0].at < reply.at
    assert len(fake.violations) == 1 and "Missing Permissions" in fake.violations[0]


def _forbidden(self, request, body, channel_id):
    return self._error(403, 50013, "Missing Permissions", request)


@pytest.mark.asyncio
async def test_roles_gate_asking_over_the_wire(fake, make_settings):
    answerer = FakeAnswerer()
    fake.give_role("bob", "Reporters")
    bot = new_bot(fake, make_settings(ask_roles=[int(fake.roles["Reporters"])]), answerer)
    async with connected(bot, fake.token):
        refused = await fake.slash("alice", "ask", question=QUESTION)
        allowed = await fake.slash("bob", "ask", question="bob asks")
        owner = await fake.slash("admin", "ask", question="the owner asks")
        await fake.wait_for(lambda: refused.acked_at and answered(fake, allowed) and answered(fake, owner), timeout=WAIT)

    assert callback_of(fake, refused)["data"]["content"] == discord_app.NOT_YOUR_ROLE
    assert callback_of(fake, refused)["data"]["flags"] == EPHEMERAL
    assert sorted(c.question for c in answerer.calls) == ["bob asks", "the owner asks"]  # answered in either order
    assert fake.violations == []


def test_refused_the_message_content_intent_the_bot_starts_without_it_and_says_so_once(monkeypatch, make_settings,
                                                                                       caplog):
    caplog.set_level(logging.INFO, logger="citebot.discord")
    strict = FakeDiscord(message_content_approved=False).start()
    answerer = FakeAnswerer()
    seen: dict = {}

    def drive() -> None:
        """From another thread, as users would: once the second session is up, ask, mention, then stop the bot."""
        try:
            deadline = time.monotonic() + 15
            while len(strict.identifies) < 2 or not strict.ready_at or not strict.commands:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.02)
            seen["asked"] = asked = asyncio.run(strict.slash("alice", "ask", question=QUESTION))
            asyncio.run(strict.send_message("bob", f"<@{strict.bot_user['id']}> and since when?"))
            while time.monotonic() < deadline and not (answered(strict, asked) and len(answerer.calls) >= 2
                                                       and strict.bot_messages(strict.general)):
                time.sleep(0.02)
        finally:
            os.kill(os.getpid(), signal.SIGINT)

    previous = signal.getsignal(signal.SIGINT)
    try:
        monkeypatch.setattr(discord.http.Route, "BASE", strict.api_base)
        monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(strict.gateway_url))
        threading.Thread(target=drive, daemon=True).start()
        code = run_bot(make_settings(token=strict.token, dev_guild=int(strict.guild_id)), answerer)
    finally:
        signal.signal(signal.SIGINT, previous)
        strict.stop()

    assert code == 0
    first, second = strict.identifies
    assert first["intents"] & MESSAGE_CONTENT_INTENT and not second["intents"] & MESSAGE_CONTENT_INTENT
    assert answered(strict, seen["asked"])
    # a mention still carries its text (the two are answered in worker threads, in either order)
    assert sorted(c.question for c in answerer.calls) == sorted([QUESTION, "and since when?"])
    said = [r.getMessage() for r in caplog.records if "Message Content intent" in r.getMessage()]
    assert said == [discord_app.NO_MESSAGE_CONTENT]
    assert strict.token not in caplog.text
    assert strict.violations == []
