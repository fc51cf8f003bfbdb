"""The Discord door: a discord.py client whose commands call the Answerer off the event loop.

Users ask with `/ask` or by mentioning the bot; replies to an answer and messages in the thread the
bot opens on an answer are follow-ups, asked with the earlier questions as context ("thanks" and
other chatter there is left alone: bot/followup.py). Every reply is sent with no mentions allowed,
and every call into the Answerer, like the escaping and trimming of an answer into Discord's shapes
and every read and write of the history, runs in a worker thread, so heartbeats and other users'
questions go on while one question is answered or an ingest runs.

Answers and conversations are kept in SQLite (bot/history.py), and the buttons under an answer are
dynamic items whose custom ids carry the answer's id: both survive any number of restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import re
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Optional, Protocol

import aiohttp
import discord
from discord import app_commands

from bot import render_discord as rd
from bot.followup import CONTEXT_QUESTIONS, classify
from bot.history import HistoryStore
from retrieval.collection import DEFAULT as DEFAULT_COLLECTION
from retrieval.errors import CitebotError
from retrieval.models import Answer
from retrieval.pipeline import IngestReport
from retrieval.store import SourceRow
from retrieval.settings import Settings

log = logging.getLogger("citebot.discord")
# The bot never joins a voice channel: discord.py's "PyNaCl is not installed" warning at every start is noise.
discord.VoiceClient.warn_nacl = False

QUESTION_MIN, QUESTION_MAX = 3, 500
K_MAX = 10
THREAD_NAME_LIMIT = 100
THREAD_ARCHIVE_MINUTES = 60
COLLECTION = DEFAULT_COLLECTION  # every server asks the default one until per-server collections come
PROGRESS_EVERY = 1.5  # seconds between /reindex progress edits: well inside the webhook rate limit
NO_MENTIONS = discord.AllowedMentions.none()

NOT_HERE = "I don't answer questions in this channel; please ask in one of the channels set up for me."
ADMIN_ONLY = "Sorry, only members with the Manage Server permission can use this command."
SOMETHING_WRONG = "Sorry, something went wrong while answering; please try again in a moment."
NO_ANSWER = "No answer this time."
EMPTY_MENTION = "Ask me a question after the mention, e.g. “@citebot where are the new battlegroups?”"
VOTE_SAVED = "Thanks, your feedback is saved."
ANSWER_GONE = ("I no longer have that answer: I keep answers for {days} days. "
               "Ask again with /ask to see its sources.")


class Answerer(Protocol):
    """What the bot needs from retrieval.pipeline.Answerer."""

    @classmethod
    def from_settings(cls, settings: Settings, *, embedder=None) -> Answerer: ...

    def warm_up(self) -> None: ...

    def answer(
        self,
        question: str,
        *,
        k: int | None = None,
        context: list[str] | None = None,
        outlet: str | None = None,
        since: dt.date | None = None,
        until: dt.date | None = None,
    ) -> Answer: ...

    def ingest(
        self, paths: Sequence[Path], *, progress: Callable[[int, int, str], None] | None = None
    ) -> IngestReport: ...

    def sources(self) -> list[SourceRow]: ...


def user_message(error: BaseException) -> str:
    """The one short sentence a user sees for an error; only citebot's own errors say more."""
    if isinstance(error, (app_commands.CommandInvokeError, app_commands.TransformerError)) and error.__cause__:
        error = error.__cause__
    if isinstance(error, (app_commands.MissingPermissions, app_commands.NoPrivateMessage)):
        return ADMIN_ONLY if isinstance(error, app_commands.MissingPermissions) else NOT_HERE
    if isinstance(error, CitebotError):
        return rd.trim(str(error), rd.MESSAGE_LIMIT)
    return SOMETHING_WRONG


class CitebotClient(discord.Client):
    """The bot. Takes its settings, Answerer and history in the constructor; keeps nothing else worth keeping."""

    def __init__(
        self,
        settings: Settings,
        answerer: Answerer,
        *,
        history: HistoryStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        **options,
    ):
        intents = discord.Intents.default()
        intents.message_content = True  # privileged: @mention questions and follow-ups are message text
        # Every message this client sends, reply, follow-up or edit, carries it: nobody is ever pinged.
        super().__init__(intents=intents, allowed_mentions=NO_MENTIONS, **options)
        self.settings = settings
        self.answerer = answerer
        self.history = history or HistoryStore.from_settings(settings)
        self.tree = app_commands.CommandTree(self)
        self.tree.error(self._on_app_command_error)
        self._clock = clock
        self._asked_at: dict[int, float] = {}
        self._reindexing = asyncio.Lock()
        self.progress_every = PROGRESS_EVERY
        _add_commands(self)

    async def setup_hook(self) -> None:
        # Buttons of answers posted by any earlier run are dispatched by their custom id's pattern.
        self.add_dynamic_items(SourcesButton, VoteButton)
        guild_id = self.settings.discord.dev_guild
        if guild_id is not None:
            guild = discord.Object(id=guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
        else:
            await self.tree.sync()

    async def on_ready(self) -> None:
        log.info("connected to Discord as %s (%s) in %d servers", self.user, self.user.id, len(self.guilds))

    # -- rules shared by /ask and messages

    def allowed_in(self, channel: object) -> bool:
        """Whether questions are answered in `channel` (a thread counts as its parent channel)."""
        allowed = self.settings.discord.channels
        if not allowed:
            return True
        ids = {getattr(channel, "id", None), getattr(channel, "parent_id", None)}
        return bool(ids.intersection(allowed))

    def cooldown_left(self, user_id: int) -> float:
        """Seconds this user must still wait; 0 starts a new cooldown."""
        cooldown = self.settings.discord.cooldown_seconds
        now = self._clock()
        last = self._asked_at.get(user_id)
        if last is not None and now - last < cooldown:
            return cooldown - (now - last)
        if len(self._asked_at) > 10_000:
            self._asked_at = {u: t for u, t in self._asked_at.items() if now - t < cooldown}
        self._asked_at[user_id] = now
        return 0.0

    # -- the history: every call off the event loop; a history that cannot be written costs the buttons only

    async def _store_answer(self, answer: Answer, *, guild_id: int | None, channel_id: int | None, user_id: int,
                            conversation: int | None) -> int | None:
        """The new answer's id, for its buttons; None (and no buttons) when the history cannot be written."""
        try:
            return await asyncio.to_thread(
                self.history.add_answer, answer, collection=COLLECTION, guild_id=guild_id, channel_id=channel_id,
                user_id=user_id, conversation=conversation,
            )
        except sqlite3.Error as error:
            log.error("could not store an answer in %s: %s", self.history.path, error)
            return None

    async def _sent(self, answer_id: int | None, message: discord.Message) -> None:
        if answer_id is None:
            return
        try:
            await asyncio.to_thread(self.history.sent, answer_id, message.id)
        except sqlite3.Error as error:
            log.error("could not store answer %s's message id in %s: %s", answer_id, self.history.path, error)

    async def _recall(self, read: Callable, key: int):
        """A conversation read from the history; None, as for no conversation, when it cannot be read."""
        try:
            return await asyncio.to_thread(read, key, limit=CONTEXT_QUESTIONS)
        except sqlite3.Error as error:
            log.error("could not read the conversation of %s from %s: %s", key, self.history.path, error)
            return None

    # -- /ask

    async def ask(
        self,
        interaction: discord.Interaction,
        question: str,
        k: int | None,
        outlet: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> None:
        from bot.cli import parse_date_flag

        try:
            filters = {
                "outlet": outlet.strip() if outlet and outlet.strip() else None,
                "since": parse_date_flag("since", since),
                "until": parse_date_flag("until", until),
            }
        except CitebotError as error:  # a mistyped date: the user's to fix, not a fault to log
            await interaction.response.send_message(str(error), ephemeral=True)
            return
        filters = {name: value for name, value in filters.items() if value is not None}
        if not self.allowed_in(interaction.channel or discord.Object(interaction.channel_id or 0)):
            await interaction.response.send_message(NOT_HERE, ephemeral=True)
            return
        if wait := self.cooldown_left(interaction.user.id):
            await interaction.response.send_message(_wait_text(wait), ephemeral=True)
            return
        await interaction.response.defer(thinking=True)
        interaction.extras["public_defer"] = True
        answer = await asyncio.to_thread(self.answerer.answer, question, k=k, **filters)
        answer_id = await self._store_answer(answer, guild_id=interaction.guild_id, channel_id=interaction.channel_id,
                                             user_id=interaction.user.id, conversation=None)
        if not answer.found:
            sent = await interaction.followup.send(rd.not_found_text(answer), wait=True)
        else:
            embed = await asyncio.to_thread(rd.answer_embed, answer)  # a huge answer takes a while to escape
            sent = await interaction.followup.send(embed=embed, wait=True, **_buttons(answer_id))
        await self._sent(answer_id, sent)
        if answer.found:
            await self._open_thread(interaction.channel, sent.id, question)

    # -- @mentions and follow-ups

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.guild is None or self.user is None:
            return
        if not self.allowed_in(message.channel):
            return
        found = await self._conversation_for(message)
        if found is None:
            return
        key, context = found
        question = rd.strip_mentions(message.content, self.user.id)
        if not question:
            if key is None:
                await message.reply(EMPTY_MENTION, mention_author=False)
            return
        # A follow-up may be chatter ("thanks!"), left alone, or a statement, answered only when found.
        kind = classify(question) if key is not None else "question"
        if kind == "chatter":
            log.debug("not a question, left alone: message %s", message.id)
            return
        if wait := self.cooldown_left(message.author.id):
            await self._tell_privately(message, _wait_text(wait))
            return
        try:
            answer = await asyncio.to_thread(self.answerer.answer, question, context=list(context) or None)
        except Exception as error:
            self._log_error(error, f"answering message {message.id}")
            await self._tell_privately(message, user_message(error))
            return
        if not answer.found and kind == "statement":
            log.debug("a statement the index does not answer, left alone: message %s", message.id)
            return
        answer_id = await self._store_answer(answer, guild_id=message.guild.id, channel_id=message.channel.id,
                                             user_id=message.author.id, conversation=key)
        sent = await self._reply(message, answer, answer_id)
        await self._sent(answer_id, sent)
        if key is None and answer.found:
            await self._open_thread(message.channel, sent.id, question)

    async def _conversation_for(self, message: discord.Message) -> tuple[int | None, list[str]] | None:
        """(conversation key or None for a new question, earlier questions), or None if not for the bot.

        The history is read only for messages that may belong to a conversation: in one of the bot's
        threads, or replying to a message that is (or may be) the bot's.
        """
        assert self.user is not None
        channel = message.channel
        bot_thread = isinstance(channel, discord.Thread) and channel.owner_id == self.user.id
        if bot_thread or isinstance(channel, discord.PartialMessageable):  # a thread not in the cache, say
            questions = await self._recall(self.history.context, channel.id)
            if questions is not None or bot_thread:
                return channel.id, questions or []
        reference = message.reference
        if reference is not None and reference.message_id is not None:
            replied = reference.resolved
            if not isinstance(replied, discord.Message) or replied.author.id == self.user.id:
                found = await self._recall(self.history.context_of_message, reference.message_id)
                if found is not None:
                    return found
                if isinstance(replied, discord.Message):  # an answer older than the history
                    return reference.message_id, []
        if re.search(rf"<@!?{self.user.id}>", message.content):
            return None, []
        return None

    async def _reply(self, message: discord.Message, answer: Answer, answer_id: int | None) -> discord.Message:
        if not answer.found:
            return await message.reply(rd.not_found_text(answer), mention_author=False)
        return await message.reply(
            embed=await asyncio.to_thread(rd.answer_embed, answer),
            mention_author=False,
            **_buttons(answer_id),
        )

    async def _open_thread(self, channel: object, message_id: int, question: str) -> None:
        """A thread on an answer in a text channel, for follow-ups; without permission the answer stands alone."""
        if not isinstance(channel, discord.TextChannel):
            return
        name = rd.trim(" ".join(question.split()), THREAD_NAME_LIMIT)
        try:
            await channel.get_partial_message(message_id).create_thread(
                name=name, auto_archive_duration=THREAD_ARCHIVE_MINUTES
            )
        except discord.HTTPException as error:
            log.info("could not open a thread on message %s: %s", message_id, error)

    async def _tell_privately(self, message: discord.Message, text: str) -> None:
        """A direct message, or a reply when the user takes no direct messages."""
        try:
            await message.author.send(text)
        except discord.HTTPException:
            await message.reply(text, mention_author=False)

    # -- the buttons under an answer, from this run or any earlier one

    async def show_sources(self, interaction: discord.Interaction, answer_id: int) -> None:
        try:
            # Deferred first: the worker threads may all be busy answering, and the click must be acknowledged
            # within 3 s. The first follow-up fills the private "thinking…" message; at most
            # rd.ALL_SOURCES_MAX_MESSAGES in all.
            await interaction.response.defer(ephemeral=True, thinking=True)
            stored = await asyncio.to_thread(
                self.history.posted_answer, answer_id, guild_id=interaction.guild_id,
                message_id=interaction.message.id if interaction.message else None,
            )
            if stored is None or stored.answer is None:
                await interaction.followup.send(self._gone_text(), ephemeral=True)
                return
            for text in await asyncio.to_thread(rd.all_sources_messages, stored.answer):
                await interaction.followup.send(text, ephemeral=True)
        except Exception as error:
            await self.report_error(interaction, error)

    async def vote(self, interaction: discord.Interaction, answer_id: int, vote: int) -> None:
        try:
            await interaction.response.defer(ephemeral=True, thinking=True)  # the write may wait for a worker
            saved = await asyncio.to_thread(
                self.history.record_vote, answer_id, guild_id=interaction.guild_id,
                message_id=interaction.message.id if interaction.message else None,
                user_id=interaction.user.id, vote=vote,
            )
            await interaction.followup.send(VOTE_SAVED if saved else self._gone_text(), ephemeral=True)
        except Exception as error:
            await self.report_error(interaction, error)

    def _gone_text(self) -> str:
        return ANSWER_GONE.format(days=self.history.keep_days)

    # -- admin commands

    async def reindex(self, interaction: discord.Interaction) -> None:
        paths = list(self.settings.corpus.paths)
        if not paths:
            await interaction.response.send_message(
                "No article folders are configured: add them to [corpus] paths in the settings file.",
                ephemeral=True,
            )
            return
        if self._reindexing.locked():
            await interaction.response.send_message(
                "A reindex is already running; please wait for it.", ephemeral=True
            )
            return
        async with self._reindexing:
            await interaction.response.defer(ephemeral=True, thinking=True)
            latest: list[tuple[int, int, str] | None] = [None]

            def progress(done: int, total: int, path: str) -> None:  # called in the worker thread
                latest[0] = (done, total, path)

            work = asyncio.ensure_future(asyncio.to_thread(self.answerer.ingest, paths, progress=progress))
            shown = None
            while not work.done():
                await asyncio.wait({work}, timeout=self.progress_every)
                if work.done() or latest[0] is None or latest[0] == shown:
                    continue
                shown = latest[0]
                try:
                    await interaction.edit_original_response(
                        content=rd.ingest_progress_text(*shown)
                    )
                except discord.HTTPException as error:
                    log.info("could not show reindex progress: %s", error)
            report = work.result()
            await interaction.edit_original_response(
                content=rd.ingest_report_text(report)
            )

    async def sources(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        rows = await asyncio.to_thread(self.answerer.sources)
        for text in rd.sources_messages(rows):
            await interaction.followup.send(text, ephemeral=True)

    # -- errors

    def _log_error(self, error: BaseException, doing: str) -> None:
        original = error.__cause__ if isinstance(error, app_commands.CommandInvokeError) and error.__cause__ else error
        if isinstance(original, (CitebotError, app_commands.CheckFailure)):
            log.info("%s: %s", doing, original)
        else:
            log.error("error while %s", doing, exc_info=original)

    async def report_error(self, interaction: discord.Interaction, error: BaseException) -> None:
        """The traceback to the log, one short private sentence to the user."""
        command = interaction.command.name if interaction.command else "a button"
        self._log_error(error, f"handling /{command} for user {interaction.user.id}")
        text = user_message(error)
        try:
            if not interaction.response.is_done():
                await interaction.response.send_message(text, ephemeral=True)
                return
            if interaction.extras.get("public_defer"):
                # The first follow-up would fill the public "thinking…" message, for everyone to see:
                # fill it with a neutral line, tell the user privately, then remove it.
                await interaction.edit_original_response(content=NO_ANSWER)
                await interaction.followup.send(text, ephemeral=True)
                await interaction.delete_original_response()
                return
            await interaction.followup.send(text, ephemeral=True)
        except discord.HTTPException as failure:
            log.warning("could not tell user %s about an error: %s", interaction.user.id, failure)

    async def _on_app_command_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        await self.report_error(interaction, error)


def _wait_text(seconds: float) -> str:
    return f"You're asking quickly: please try again in {max(1, math.ceil(seconds))} s."


def _buttons(answer_id: int | None) -> dict:
    """The `view=` keyword for an answer's message; no buttons when the answer could not be stored."""
    return {} if answer_id is None else {"view": AnswerView(answer_id)}


class AnswerView(discord.ui.View):
    """The buttons under an answer: every source in full (privately), and 👍/👎 feedback.

    Never times out: a timed-out view would also unregister its dynamic items for every answer.
    """

    def __init__(self, answer_id: int):
        super().__init__(timeout=None)
        self.add_item(SourcesButton(answer_id))
        self.add_item(VoteButton(answer_id, +1))
        self.add_item(VoteButton(answer_id, -1))


class SourcesButton(discord.ui.DynamicItem[discord.ui.Button], template=r"citebot:sources:(?P<answer>[0-9]{1,18})"):
    """Show all sources: the stored answer's passages in full, to the presser only."""

    def __init__(self, answer_id: int):
        super().__init__(discord.ui.Button(
            label="Show all sources", style=discord.ButtonStyle.secondary, custom_id=f"citebot:sources:{answer_id}"
        ))
        self.answer_id = answer_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,
                             match: re.Match[str]) -> SourcesButton:
        return cls(int(match["answer"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await _citebot(interaction).show_sources(interaction, self.answer_id)


class VoteButton(
    discord.ui.DynamicItem[discord.ui.Button], template=r"citebot:vote:(?P<answer>[0-9]{1,18}):(?P<vote>up|down)"
):
    """👍 or 👎 on an answer, kept in the history with the question, the answer and its passage ids."""

    def __init__(self, answer_id: int, vote: int):
        super().__init__(discord.ui.Button(
            emoji="👍" if vote > 0 else "👎", style=discord.ButtonStyle.secondary,
            custom_id=f"citebot:vote:{answer_id}:{'up' if vote > 0 else 'down'}",
        ))
        self.answer_id, self.vote = answer_id, vote

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,
                             match: re.Match[str]) -> VoteButton:
        return cls(int(match["answer"]), +1 if match["vote"] == "up" else -1)

    async def callback(self, interaction: discord.Interaction) -> None:
        await _citebot(interaction).vote(interaction, self.answer_id, self.vote)


def _citebot(interaction: discord.Interaction) -> CitebotClient:
    client = interaction.client
    assert isinstance(client, CitebotClient)
    return client


def _add_commands(client: CitebotClient) -> None:
    tree = client.tree

    @tree.command(name="ask", description="Ask a question; the answer quotes the news passages it rests on.")
    @app_commands.describe(
        question="What you want to know, e.g. where are the new battlegroups?",
        k="How many passages to cite (1-10)",
        outlet="Only articles from this outlet, e.g. Newsmax",
        since="Only articles published on or after this date: YYYY-MM-DD, today, yesterday, 7d, 2w",
        until="Only articles published on or before this date: YYYY-MM-DD, today, yesterday, 7d, 2w",
    )
    @app_commands.guild_only()
    async def ask(
        interaction: discord.Interaction,
        question: app_commands.Range[str, QUESTION_MIN, QUESTION_MAX],
        k: Optional[app_commands.Range[int, 1, K_MAX]] = None,
        outlet: Optional[app_commands.Range[str, 1, 100]] = None,
        since: Optional[app_commands.Range[str, 1, 10]] = None,
        until: Optional[app_commands.Range[str, 1, 10]] = None,
    ) -> None:
        await client.ask(interaction, question, k, outlet, since, until)

    @tree.command(name="reindex", description="Re-read the configured article folders into the index (admins only).")
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.checks.has_permissions(manage_guild=True)
    async def reindex(interaction: discord.Interaction) -> None:
        await client.reindex(interaction)

    @tree.command(name="sources", description="List the indexed articles (admins only).")
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.checks.has_permissions(manage_guild=True)
    async def sources(interaction: discord.Interaction) -> None:
        await client.sources(interaction)


def run_bot(settings: Settings, answerer: Answerer) -> int:
    """Run the bot until SIGTERM or Ctrl-C; the exit code for `citebot discord`.

    The model and index load before the bot connects, so it only reports ready once it can answer.
    """
    token = settings.discord_token
    if token is None:
        _say("no Discord token: set CITEBOT_DISCORD_TOKEN to the bot token from the Developer Portal (Bot → Token)")
        return 2
    try:
        answerer.warm_up()
    except CitebotError as error:
        _say(str(error))
        return error.exit_code
    return asyncio.run(serve(CitebotClient(settings, answerer), token.get_secret_value()))


async def serve(client: discord.Client, token: str) -> int:
    """Connect and run until SIGTERM/SIGINT or the connection ends for good; returns an exit code."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
            pass
    try:
        async with client:
            running = asyncio.ensure_future(client.start(token))
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not running.done():
                log.info("stopping: closing the gateway connection")
                # discord.py's reader answers a close with code 4000 ("resume me later"); stopping the reader
                # first lets the close frame say 1000, so Discord ends the session and shows the bot offline.
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
                await client.close()
                return 0
            running.result()
    except discord.LoginFailure:
        _say("Discord rejected the token in CITEBOT_DISCORD_TOKEN: reset it in the Developer Portal (Bot → Reset Token) and set it again")
        return 1
    except discord.PrivilegedIntentsRequired:
        _say("Discord refused the Message Content intent: turn it on in the Developer Portal (Bot → Privileged Gateway Intents)")
        return 1
    except (discord.HTTPException, discord.GatewayNotFound, discord.ConnectionClosed, aiohttp.ClientError, OSError) as error:
        _say(f"could not connect to Discord: {type(error).__name__}: {error}")
        return 1
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
    return 0


def _say(line: str) -> None:
    print(f"citebot discord: {line}", file=sys.stderr)
