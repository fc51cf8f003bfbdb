"""The Discord door: a discord.py client whose commands call the Answerer off the event loop.

Users ask with `/ask` or by mentioning the bot; replies to an answer and messages in the thread the
bot opens on an answer are follow-ups, asked with the earlier questions as context. Every reply is
sent with no mentions allowed, and every call into the Answerer, like the escaping and trimming of
an answer into Discord's shapes, runs in a worker thread, so heartbeats and other users' questions
go on while one question is answered or an ingest runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import re
import signal
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Optional, Protocol

import aiohttp
import discord
from discord import app_commands

from bot import render_discord as rd
from bot.feedback import FeedbackStore
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
VIEW_TIMEOUT = 24 * 3600.0
MAX_CONVERSATIONS = 5000
PROGRESS_EVERY = 1.5  # seconds between /reindex progress edits: well inside the webhook rate limit
NO_MENTIONS = discord.AllowedMentions.none()

NOT_HERE = "I don't answer questions in this channel; please ask in one of the channels set up for me."
ADMIN_ONLY = "Sorry, only members with the Manage Server permission can use this command."
SOMETHING_WRONG = "Sorry, something went wrong while answering; please try again in a moment."
NO_ANSWER = "No answer this time."
EMPTY_MENTION = "Ask me a question after the mention, e.g. “@citebot where are the new battlegroups?”"


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
    """The bot. Takes its settings and Answerer in the constructor; holds no other state worth keeping."""

    def __init__(
        self,
        settings: Settings,
        answerer: Answerer,
        *,
        feedback: FeedbackStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        **options,
    ):
        intents = discord.Intents.default()
        intents.message_content = True  # privileged: @mention questions and follow-ups are message text
        # Every message this client sends, reply, follow-up or edit, carries it: nobody is ever pinged.
        super().__init__(intents=intents, allowed_mentions=NO_MENTIONS, **options)
        self.settings = settings
        self.answerer = answerer
        self.feedback = feedback or FeedbackStore.from_settings(settings)
        self.tree = app_commands.CommandTree(self)
        self.tree.error(self._on_app_command_error)
        self._clock = clock
        self._asked_at: dict[int, float] = {}
        # answer message id (= id of the thread opened on it) -> the conversation's questions, oldest first
        self._conversations: OrderedDict[int, list[str]] = OrderedDict()
        self._reindexing = asyncio.Lock()
        self.progress_every = PROGRESS_EVERY
        _add_commands(self)

    async def setup_hook(self) -> None:
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

    def remember(self, key: int, questions: list[str]) -> None:
        self._conversations[key] = questions
        self._conversations.move_to_end(key)
        while len(self._conversations) > MAX_CONVERSATIONS:
            self._conversations.popitem(last=False)

    def conversation(self, key: int) -> list[str] | None:
        return self._conversations.get(key)

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
        if not answer.found:
            sent = await interaction.followup.send(rd.not_found_text(answer), wait=True)
        else:
            embed = await asyncio.to_thread(rd.answer_embed, answer)  # a huge answer takes a while to escape
            sent = await interaction.followup.send(
                embed=embed, view=AnswerView(self, answer), wait=True
            )
        self.remember(sent.id, [question])
        if answer.found:
            await self._open_thread(interaction.channel, sent.id, question)

    # -- @mentions and follow-ups

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.guild is None or self.user is None:
            return
        if not self.allowed_in(message.channel):
            return
        found = self._conversation_for(message)
        if found is None:
            return
        key, context = found
        question = rd.strip_mentions(message.content, self.user.id)
        if not question:
            if key is None:
                await message.reply(EMPTY_MENTION, mention_author=False)
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
        sent = await self._reply(message, answer)
        in_thread = key is not None and key == message.channel.id
        if in_thread:
            self.remember(key, [*context, question])
        else:
            self.remember(sent.id, [*context, question])
        if key is None and answer.found:
            await self._open_thread(message.channel, sent.id, question)

    def _conversation_for(self, message: discord.Message) -> tuple[int | None, list[str]] | None:
        """(conversation key or None for a new question, earlier questions), or None if not for the bot."""
        assert self.user is not None
        channel = message.channel
        questions = self.conversation(channel.id)
        if questions is not None or (isinstance(channel, discord.Thread) and channel.owner_id == self.user.id):
            return channel.id, questions or []
        reference = message.reference
        if reference is not None and reference.message_id is not None:
            questions = self.conversation(reference.message_id)
            replied = reference.resolved
            if questions is not None:
                return reference.message_id, questions
            if isinstance(replied, discord.Message) and replied.author.id == self.user.id:
                return reference.message_id, []
        if re.search(rf"<@!?{self.user.id}>", message.content):
            return None, []
        return None

    async def _reply(self, message: discord.Message, answer: Answer) -> discord.Message:
        if not answer.found:
            return await message.reply(rd.not_found_text(answer), mention_author=False)
        return await message.reply(
            embed=await asyncio.to_thread(rd.answer_embed, answer),
            view=AnswerView(self, answer),
            mention_author=False,
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


class AnswerView(discord.ui.View):
    """The buttons under an answer: every source in full (privately), and 👍/👎 feedback."""

    def __init__(self, client: CitebotClient, answer: Answer):
        super().__init__(timeout=VIEW_TIMEOUT)
        self.client = client
        self.answer = answer

    @discord.ui.button(label="Show all sources", style=discord.ButtonStyle.secondary)
    async def show_sources(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        # Deferred first: the worker threads may all be busy answering, and the click must be acknowledged
        # within 3 s. The first follow-up fills the private "thinking…" message; at most
        # rd.ALL_SOURCES_MAX_MESSAGES in all.
        await interaction.response.defer(ephemeral=True, thinking=True)
        for text in await asyncio.to_thread(rd.all_sources_messages, self.answer):
            await interaction.followup.send(text, ephemeral=True)

    @discord.ui.button(emoji="👍", style=discord.ButtonStyle.secondary)
    async def helpful(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await self._vote(interaction, +1)

    @discord.ui.button(emoji="👎", style=discord.ButtonStyle.secondary)
    async def unhelpful(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await self._vote(interaction, -1)

    async def _vote(self, interaction: discord.Interaction, vote: int) -> None:
        answer = self.answer
        await asyncio.to_thread(
            self.client.feedback.record,
            message_id=interaction.message.id if interaction.message else 0,
            user_id=interaction.user.id,
            question=answer.question,
            answer=answer.answer.text if answer.answer else answer.message,
            chunk_ids=[chunk for passage in answer.passages for chunk in passage.chunk_ids],
            vote=vote,
        )
        await interaction.response.send_message(
            "Thanks, your feedback is saved.", ephemeral=True
        )

    async def on_error(self, interaction: discord.Interaction, error: Exception, item: discord.ui.Item) -> None:
        await self.client.report_error(interaction, error)


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
