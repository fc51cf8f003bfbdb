"""The Discord door: a discord.py client whose commands call the Answerer off the event loop.

Users ask with `/ask` (publicly, or with `private:true` for themselves, then share it), with the
message command "Ask citebot about this", or by mentioning the bot; replies to an answer and
messages in the thread the bot opens on an answer are follow-ups, asked with the earlier questions
as context ("thanks" and other chatter there is left alone: bot/followup.py). Every reply is sent
with no mentions allowed, and every call into the Answerer, like the escaping and trimming of an
answer into Discord's shapes and every read and write of the history, runs in a worker thread, so
heartbeats and other users' questions go on while one question is answered or an ingest runs.

Who may ask, where, how often and how many at once in one server are settings ([discord]). The
Message Content intent is asked for; refused it, the bot starts again without it (`serve`), and
slash commands, the message command and mentions still work.

Answers and conversations are kept in SQLite (bot/history.py), and the buttons under an answer are
dynamic items whose custom ids carry the answer's id (bot/discord_views.py): both survive any
number of restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from concurrent.futures import ThreadPoolExecutor
import logging
import math
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Optional, Protocol

import aiohttp
import discord
from discord import app_commands

from bot import discord_admin
from bot.discord_admin import rules_channel
from bot import render_discord as rd
from bot.discord_views import AnswerView, ShareButton, SourcesButton, VoteButton, buttons
from bot.followup import CONTEXT_QUESTIONS, classify
from bot.history import HistoryStore
from bot.outlets import Outlets
from bot.servers import Rules, ServerBook, defaults
from retrieval import collection
from retrieval.errors import CitebotError, IndexUnavailableError
from retrieval.models import Answer
from retrieval.pipeline import IngestReport
from retrieval.backends.base import SourceRow
from retrieval.settings import Settings

log = logging.getLogger("citebot.discord")
# The bot never joins a voice channel: discord.py's "PyNaCl is not installed" warning at every start is noise.
discord.VoiceClient.warn_nacl = False

QUESTION_MIN, QUESTION_MAX = 3, 500
K_MAX = 10
THREAD_NAME_LIMIT = 100
THREAD_ARCHIVE_MINUTES = 60
PROGRESS_EVERY = 1.5  # seconds between /reindex progress edits: well inside the webhook rate limit
NO_MENTIONS = discord.AllowedMentions.none()

ASK_ABOUT = "Ask citebot about this"
AUTOCOMPLETE_SECONDS = 2.0  # of Discord's 3 s for the choices: past it, none are offered this keystroke

NOT_HERE = "I don't answer questions in this channel; please ask in one of the channels set up for me."
NOT_YOUR_ROLE = "Sorry, asking me in this server is for members with certain roles; a server admin can tell you which."
BUSY = "I'm busy answering other questions in this server: please try again in a moment."
NOTICE_EVERY_S = 10.0  # a refused mention is explained to its author at most this often (or once per cooldown)
NO_TEXT = "That message has no text for me to ask about."
SHARED_ALREADY = "That answer is already in the channel."
SHARED_BY = "Shared by <@{user}>"
NO_MESSAGE_CONTENT = (
    "Discord refused the Message Content intent, so the bot runs without it: /ask, /help, "
    f"“{ASK_ABOUT}” and messages that mention the bot work; replies and follow-ups in its threads that "
    "do not mention it go unheard. Turn the intent on in the Developer Portal (Bot → Privileged Gateway "
    "Intents) and restart to hear them."
)
ADMIN_ONLY = "Sorry, only members with the Manage Server permission can use this command."
SOMETHING_WRONG = "Sorry, something went wrong while answering; please try again in a moment."
INDEX_AWAY = "Sorry, the news index cannot be reached right now; please try again in a moment."
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
    if isinstance(error, IndexUnavailableError):  # the database's address is the operator's business, not the channel's
        return INDEX_AWAY
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
        answerers: dict[str, Answerer] | None = None,
        history: HistoryStore | None = None,
        servers: ServerBook | None = None,
        follow: Callable[[str, Answerer], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        message_content: bool = True,
        **options,
    ):
        intents = discord.Intents.default()
        # Privileged: follow-ups in threads and replies are message text; mentions carry theirs without it.
        intents.message_content = message_content
        # Every message this client sends, reply, follow-up or edit, carries it: nobody is ever pinged.
        super().__init__(intents=intents, allowed_mentions=NO_MENTIONS, **options)
        self.settings = settings
        self.answerer = answerer  # the one of discord.collection, the collection servers ask by default
        # Each server asks its collection (discord.guilds, else discord.collection): an Answerer each,
        # sharing the loaded models (Answerer.sibling), made when a server first asks.
        self.guild_collections: dict[int, str] = dict(settings.discord.guilds)
        self._answerers: dict[str, Answerer] = {settings.discord.collection: answerer, **(answerers or {})}
        self._outlets: dict[str, Outlets | None] = {}
        self._collections_lock = threading.Lock()
        self.history = history or HistoryStore.from_settings(settings)
        self.servers = servers or ServerBook.from_settings(settings)  # what admins chose with /collection, /channel
        self.follow = follow  # called with each collection opened later, so its feeds are followed too
        self.tree = app_commands.CommandTree(self)
        self.tree.error(self._on_app_command_error)
        self._clock = clock
        self._asked_at: dict[int, float] = {}
        self._told_at: dict[int, float] = {}  # when each user was last told why a mention was refused
        self._answering: dict[int | None, int] = {}  # questions being answered, by server
        self._sharing: set[int] = set()
        self.reindexing = asyncio.Lock()
        # Autocomplete must answer within 3 s even while every default worker is busy answering.
        self.quick = ThreadPoolExecutor(max_workers=1, thread_name_prefix="citebot-autocomplete")
        self.progress_every = PROGRESS_EVERY
        _add_commands(self)

    async def setup_hook(self) -> None:
        # Buttons of answers posted by any earlier run are dispatched by their custom id's pattern.
        self.add_dynamic_items(SourcesButton, VoteButton, ShareButton)
        await asyncio.to_thread(self.servers.load)
        if getattr(self, "shard_id", None):  # shards 1…N-1: shard 0 registered the same commands
            return
        guild_id = self.settings.discord.dev_guild
        if guild_id is not None:
            guild = discord.Object(id=guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
        else:
            await self.tree.sync()

    async def on_ready(self) -> None:
        log.info("connected to Discord as %s (%s) in %d servers", self.user, self.user.id, len(self.guilds))

    async def close(self) -> None:
        await super().close()
        self.quick.shutdown(wait=False, cancel_futures=True)

    # -- rules shared by /ask and messages

    def allowed_in(self, channel: object, guild_id: int | None = None) -> bool:
        """Whether questions are answered in `channel` (a thread counts as its parent channel).

        Both the settings' `discord.channels` and the server's own rules (`/channel set answers`) must allow it.
        """
        if not self.rules_in(guild_id, rules_channel(channel)).answers:
            return False
        allowed = self.settings.discord.channels
        if not allowed:
            return True
        ids = {getattr(channel, "id", None), getattr(channel, "parent_id", None)}
        return bool(ids.intersection(allowed))

    def rules_in(self, guild_id: int | None, channel_id: int | None) -> Rules:
        """How the bot behaves in this channel: the admins' rules over the `[discord]` settings (bot/servers.py)."""
        return self.servers.rules(defaults(self.settings), guild_id, channel_id)

    def may_ask(self, member: object) -> bool:
        """Whether `member` holds one of `discord.ask_roles` (by id or name, any case); anyone when none are set.

        Members who can manage the server may always ask.
        """
        wanted = {str(role).strip().casefold() for role in self.settings.discord.ask_roles}
        if not wanted:
            return True
        permissions = getattr(member, "guild_permissions", None)
        if permissions is not None and permissions.manage_guild:
            return True
        return any(str(role.id) in wanted or role.name.casefold() in wanted for role in getattr(member, "roles", []))

    def refusal(self, member: discord.abc.User, guild_id: int | None) -> str | None:
        """Why `member` may not ask now (role, the server busy, the cooldown), or None: their cooldown starts."""
        if not self.may_ask(member):
            return NOT_YOUR_ROLE
        if self._answering.get(guild_id, 0) >= self.settings.discord.max_concurrent_per_server:
            return BUSY  # checked before the cooldown, which a refused question must not start
        if wait := self.cooldown_left(member.id):
            return _wait_text(wait)
        return None

    @contextlib.contextmanager
    def answering(self, guild_id: int | None):
        """Counts a question against its server's `discord.max_concurrent_per_server` until it is answered."""
        self._answering[guild_id] = self._answering.get(guild_id, 0) + 1
        try:
            yield
        finally:
            self._answering[guild_id] -= 1
            if not self._answering[guild_id]:
                del self._answering[guild_id]

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

    def notice_due(self, user_id: int) -> bool:
        """Whether a refused mention may be told why: once per user per cooldown (at least NOTICE_EVERY_S)."""
        window = max(self.settings.discord.cooldown_seconds, NOTICE_EVERY_S)
        now = self._clock()
        last = self._told_at.get(user_id)
        if last is not None and now - last < window:
            return False
        if len(self._told_at) > 10_000:
            self._told_at = {u: t for u, t in self._told_at.items() if now - t < window}
        self._told_at[user_id] = now
        return True

    # -- the history: every call off the event loop; a history that cannot be written costs the buttons only

    async def _store_answer(self, answer: Answer, *, guild_id: int | None, channel_id: int | None, user_id: int,
                            conversation: int | None, private: bool = False) -> int | None:
        """The new answer's id, for its buttons; None (and no buttons) when the history cannot be written."""
        try:
            return await asyncio.to_thread(
                self.history.add_answer, answer, collection=self.collection_of(guild_id), guild_id=guild_id,
                channel_id=channel_id,
                user_id=user_id, conversation=conversation, private=private,
            )
        except CitebotError as error:
            log.error("could not store an answer in %s: %s", self.history.location, error)
            return None

    async def _sent(self, answer_id: int | None, message: discord.Message) -> None:
        if answer_id is None:
            return
        try:
            await asyncio.to_thread(self.history.sent, answer_id, message.id)
        except CitebotError as error:
            log.error("could not store answer %s's message id in %s: %s", answer_id, self.history.location, error)

    async def _recall(self, read: Callable, key: int):
        """A conversation read from the history; None, as for no conversation, when it cannot be read."""
        try:
            return await asyncio.to_thread(read, key, limit=CONTEXT_QUESTIONS)
        except CitebotError as error:
            log.error("could not read the conversation of %s from %s: %s", key, self.history.location, error)
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
        private: bool = False,
    ) -> None:
        try:
            filters = _filters(outlet, since, until)
        except CitebotError as error:  # a mistyped date: the user's to fix, not a fault to log
            await interaction.response.send_message(str(error), ephemeral=True)
            return
        await self._answer_interaction(interaction, question, k=k, filters=filters, private=private)

    async def ask_about(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """The message command: the message's text asked as a question, answered as a public /ask is."""
        assert self.user is not None
        question = rd.message_question(message.content, self.user.id, self.settings.answer.max_question_chars)
        if not question:
            await interaction.response.send_message(NO_TEXT, ephemeral=True)
            return
        await self._answer_interaction(interaction, question)

    async def _answer_interaction(self, interaction: discord.Interaction, question: str, *, k: int | None = None,
                                  filters: dict | None = None, private: bool = False) -> None:
        channel = interaction.channel or discord.Object(interaction.channel_id or 0)
        if not self.allowed_in(channel, interaction.guild_id):
            await interaction.response.send_message(NOT_HERE, ephemeral=True)
            return
        if refused := self.refusal(interaction.user, interaction.guild_id):
            await interaction.response.send_message(refused, ephemeral=True)
            return
        with self.answering(interaction.guild_id):
            # First, before any slow work: Discord waits 3 s for the acknowledgement.
            await interaction.response.defer(thinking=True, ephemeral=private)
            interaction.extras["public_defer"] = not private
            answer = await asyncio.to_thread(self.answerer_for(interaction.guild_id).answer, question, k=k,
                                             **(filters or {}))
            answer_id = await self._store_answer(answer, guild_id=interaction.guild_id,
                                                 channel_id=interaction.channel_id, user_id=interaction.user.id,
                                                 conversation=None, private=private)
            rules = self.rules_in(interaction.guild_id, rules_channel(channel))
            if not answer.found and not private and rules.not_found == "private":
                await self._tell_instead_of_public(interaction, rd.not_found_text(answer))
                return
            if not answer.found:
                sent = await interaction.followup.send(rd.not_found_text(answer), wait=True, ephemeral=private)
            else:
                embed = await asyncio.to_thread(rd.answer_embed, answer)  # a huge answer takes a while to escape
                sent = await interaction.followup.send(embed=embed, wait=True, ephemeral=private,
                                                       **buttons(answer_id, private=private))
            await self._sent(answer_id, sent)
        if answer.found and not private and rules.replies == "thread":
            await self._open_thread(interaction.channel, sent.id, question)

    def collection_of(self, guild_id: int | None) -> str:
        """The collection server `guild_id` asks: its admins' choice (/collection), else the settings'."""
        chosen = self.servers.collection(guild_id)
        if chosen is not None:
            return chosen
        return self.guild_collections.get(guild_id, self.settings.discord.collection)

    def answerer_for(self, guild_id: int | None) -> Answerer:
        """The Answerer over the collection server `guild_id` asks: no other collection's article can be cited."""
        name = self.collection_of(guild_id)
        with self._collections_lock:
            found = self._answerers.get(name)
            if found is None:
                own = collection.settings_for(self.settings, name)
                found = self._answerers[name] = self.answerer.sibling(own)
                if self.follow is not None:  # a collection first asked now: its feeds are followed from now on
                    self.follow(name, found)
            return found

    def forget_outlets(self, guild_id: int | None) -> None:
        """The server asks another collection now: its outlet choices are read again."""
        self._outlets.pop(self.collection_of(guild_id), None)

    @property
    def outlets(self) -> Outlets | None:
        """The outlets of the collection servers ask by default."""
        return self.outlets_for(None)

    @outlets.setter
    def outlets(self, outlets: Outlets | None) -> None:
        self._outlets[self.settings.discord.collection] = outlets

    def outlets_for(self, guild_id: int | None) -> Outlets | None:
        name = self.collection_of(guild_id)
        if name not in self._outlets:
            store = getattr(self.answerer_for(guild_id), "store", None)
            self._outlets[name] = Outlets(store) if hasattr(store, "outlets") else None
        return self._outlets[name]

    async def outlet_choices(self, typed: str, guild_id: int | None = None) -> list[app_commands.Choice[str]]:
        """The indexed outlets starting with (then holding) what was typed, for `/ask outlet:`."""
        outlets = self.outlets_for(guild_id)
        if outlets is None:
            return []
        try:
            names = await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(self.quick, outlets.matching, typed),
                AUTOCOMPLETE_SECONDS)
        except Exception as error:  # a slow or unreadable index costs this keystroke's choices only
            log.info("no outlet choices for %r: %s", typed[:100], str(error) or type(error).__name__)
            return []
        return [app_commands.Choice(name=name, value=name) for name in names]

    # -- @mentions and follow-ups

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.guild is None or self.user is None:
            return
        if not self.allowed_in(message.channel, message.guild.id):
            return
        rules = self.rules_in(message.guild.id, rules_channel(message.channel))
        found = await self._conversation_for(message, mention_only=rules.mention_only)
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
        if refused := self.refusal(message.author, message.guild.id):
            # A remark in a thread is left alone rather than answered with a rule, and a storm of mentions
            # gets one notice: the bot's own rate limit is not one user's to spend.
            if kind == "question" and self.notice_due(message.author.id):
                await self._tell_privately(message, refused)
            return
        with self.answering(message.guild.id):
            try:
                async with _typing(message.channel):
                    answer = await asyncio.to_thread(self.answerer_for(message.guild.id).answer, question,
                                                     context=list(context) or None)
            except Exception as error:
                self._log_error(error, f"answering message {message.id}")
                await self._tell_privately(message, user_message(error))
                return
            if not answer.found and kind == "statement":
                log.debug("a statement the index does not answer, left alone: message %s", message.id)
                return
            if not answer.found and rules.not_found == "private":
                await self._tell_privately(message, rd.not_found_text(answer), reply=False)
                return
            answer_id = await self._store_answer(answer, guild_id=message.guild.id, channel_id=message.channel.id,
                                                 user_id=message.author.id, conversation=key)
            sent = await self._reply(message, answer, answer_id)
            await self._sent(answer_id, sent)
        if key is None and answer.found and rules.replies == "thread":
            await self._open_thread(message.channel, sent.id, question)

    async def _conversation_for(self, message: discord.Message, *,
                                mention_only: bool = False) -> tuple[int | None, list[str]] | None:
        """(conversation key or None for a new question, earlier questions), or None if not for the bot.

        The history is read only for messages that may belong to a conversation: in one of the bot's
        threads, or replying to a message that is (or may be) the bot's. With `mention_only`, a message
        that does not mention the bot is never for it.
        """
        assert self.user is not None
        mentioned = re.search(rf"<@!?{self.user.id}>", message.content) is not None
        if mention_only and not mentioned:
            return None
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
        if mentioned:
            return None, []
        return None

    async def _reply(self, message: discord.Message, answer: Answer, answer_id: int | None) -> discord.Message:
        if not answer.found:
            return await message.reply(rd.not_found_text(answer), mention_author=False)
        return await message.reply(
            embed=await asyncio.to_thread(rd.answer_embed, answer),
            mention_author=False,
            **buttons(answer_id),
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

    async def _tell_privately(self, message: discord.Message, text: str, *, reply: bool = True) -> None:
        """A direct message; when the user takes none, a reply (or, with `reply=False`, nothing but a log line)."""
        try:
            await message.author.send(text)
        except discord.HTTPException as error:
            if reply:
                await message.reply(text, mention_author=False)
            else:
                log.info("could not tell user %s privately: %s", message.author.id, error)

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

    async def share(self, interaction: discord.Interaction, answer_id: int) -> None:
        """Share to channel: the asker's private answer posted publicly, once, with its buttons and a thread."""
        if answer_id in self._sharing:  # a second press while the first is being posted
            await interaction.response.send_message(SHARED_ALREADY, ephemeral=True)
            return
        self._sharing.add(answer_id)
        try:
            await interaction.response.defer()  # nothing shown yet; the public copy is a new message
            shared = await asyncio.to_thread(
                self.history.share, answer_id, guild_id=interaction.guild_id,
                message_id=interaction.message.id if interaction.message else None, user_id=interaction.user.id,
            )
            if shared is None or shared.answer is None:
                await interaction.followup.send(self._gone_text(), ephemeral=True)
                return
            if not shared.new:
                await interaction.followup.send(SHARED_ALREADY, ephemeral=True)
                return
            answer, by = shared.answer, SHARED_BY.format(user=interaction.user.id)
            if not answer.found:
                sent = await interaction.followup.send(rd.trim(f"{by}: {rd.not_found_text(answer)}", rd.MESSAGE_LIMIT),
                                                       wait=True)
            else:
                sent = await interaction.followup.send(by, embed=await asyncio.to_thread(rd.answer_embed, answer),
                                                       wait=True, **buttons(shared.copy_id))
            await self._sent(shared.copy_id, sent)
            try:  # the private message keeps its other buttons
                await interaction.edit_original_response(view=AnswerView(answer_id))
            except discord.HTTPException as error:
                log.info("could not take the share button off answer %s: %s", answer_id, error)
            if answer.found and self.rules_in(interaction.guild_id,
                                              rules_channel(interaction.channel)).replies == "thread":
                await self._open_thread(interaction.channel, sent.id, answer.question)
        except Exception as error:
            await self.report_error(interaction, error)
        finally:
            self._sharing.discard(answer_id)

    def _gone_text(self) -> str:
        return ANSWER_GONE.format(days=self.history.keep_days)

    async def help(self, interaction: discord.Interaction) -> None:
        discord_settings = self.settings.discord
        text = rd.help_text(collection=self.collection_of(interaction.guild_id),
                            message_content=self.intents.message_content,
                            cooldown=discord_settings.cooldown_seconds, roles_only=bool(discord_settings.ask_roles),
                            max_concurrent=discord_settings.max_concurrent_per_server,
                            channel_rules=_rule_notes(self.rules_in(interaction.guild_id,
                                                                    rules_channel(interaction.channel))))
        await interaction.response.send_message(text, ephemeral=True)

    # -- admin commands: bot/discord_admin.py

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
                await self._tell_instead_of_public(interaction, text)
                return
            await interaction.followup.send(text, ephemeral=True)
        except discord.HTTPException as failure:
            log.warning("could not tell user %s about an error: %s", interaction.user.id, failure)

    @staticmethod
    async def _tell_instead_of_public(interaction: discord.Interaction, text: str) -> None:
        """After a public defer: `text` to the user alone, and the public "thinking…" message gone.

        The first follow-up would fill the public message, for everyone to see: it is filled with a
        neutral line first, the user is told privately, then it is removed.
        """
        await interaction.edit_original_response(content=NO_ANSWER)
        await interaction.followup.send(text, ephemeral=True)
        await interaction.delete_original_response()

    async def _on_app_command_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        await self.report_error(interaction, error)


def _rule_notes(rules: Rules) -> list[str]:
    """What /help says of this channel's rules, where they differ from the usual."""
    notes = []
    if rules.replies == "inline":
        notes.append("answers come without a thread: reply to one to follow up")
    if rules.mention_only:
        notes.append("I answer only messages that mention me, follow-ups included")
    if rules.not_found == "private":
        notes.append("when I find nothing, only the asker is told")
    return notes


def _wait_text(seconds: float) -> str:
    return f"You're asking quickly: please try again in {max(1, math.ceil(seconds))} s."


def _filters(outlet: str | None, since: str | None, until: str | None) -> dict:
    """/ask's outlet and date options as Answerer.answer keywords; a bad date is a CitebotError to show."""
    from bot.dates import date_range

    first, last = date_range(since, until, names=("since", "until"))
    filters = {"outlet": outlet.strip() if outlet and outlet.strip() else None, "since": first, "until": last}
    return {name: value for name, value in filters.items() if value is not None}


@contextlib.asynccontextmanager
async def _typing(channel: discord.abc.Messageable):
    """"citebot is typing…" while a message's question is answered; without it when Discord refuses it."""
    typing = channel.typing()
    try:
        await typing.__aenter__()
        entered = True
    except discord.HTTPException as error:
        log.info("no typing indicator in channel %s: %s", getattr(channel, "id", "?"), error)
        entered = False
    try:
        yield
    finally:
        if entered:
            await typing.__aexit__(None, None, None)


def _add_commands(client: CitebotClient) -> None:
    tree = client.tree

    @tree.command(name="ask", description="Ask a question; the answer quotes the news passages it rests on.")
    @app_commands.describe(
        question="What you want to know, e.g. where are the new battlegroups?",
        k="How many passages to cite (1-10)",
        outlet="Only articles from this outlet, e.g. Newsmax",
        since="Only articles published on or after this date: YYYY-MM-DD, today, yesterday, 7d, 2w",
        until="Only articles published on or before this date: YYYY-MM-DD, today, yesterday, 7d, 2w",
        private="Only you see the answer; its Share to channel button posts it for everyone",
    )
    @app_commands.guild_only()
    async def ask(
        interaction: discord.Interaction,
        question: app_commands.Range[str, QUESTION_MIN, QUESTION_MAX],
        k: Optional[app_commands.Range[int, 1, K_MAX]] = None,
        outlet: Optional[app_commands.Range[str, 1, 100]] = None,
        since: Optional[app_commands.Range[str, 1, 10]] = None,
        until: Optional[app_commands.Range[str, 1, 10]] = None,
        private: bool = False,
    ) -> None:
        await client.ask(interaction, question, k, outlet, since, until, private)

    @ask.autocomplete("outlet")
    async def outlet_choices(interaction: discord.Interaction, typed: str) -> list[app_commands.Choice[str]]:
        return await client.outlet_choices(typed, interaction.guild_id)

    @tree.context_menu(name=ASK_ABOUT)
    @app_commands.guild_only()
    async def ask_about(interaction: discord.Interaction, message: discord.Message) -> None:
        await client.ask_about(interaction, message)

    @tree.command(name="help", description="What citebot can do, how to ask, and which collection this server asks.")
    @app_commands.guild_only()
    async def help_command(interaction: discord.Interaction) -> None:
        await client.help(interaction)

    discord_admin.add_commands(client)


class AutoShardedCitebotClient(CitebotClient, discord.AutoShardedClient):
    """The bot holding as many shards as Discord recommends, in one process (`citebot discord --shards auto`)."""


def make_client(settings: Settings, answerer: Answerer, *, shard: tuple[int, int] | str | None = None,
                **options) -> CitebotClient:
    """The bot's client: one connection (no shard), shard I of N (`--shard I/N`), or every shard (`"auto"`)."""
    if shard == "auto":
        return AutoShardedCitebotClient(settings, answerer, **options)
    if shard is not None:
        index, count = shard
        options.update(shard_id=index, shard_count=count)
    return CitebotClient(settings, answerer, **options)


def run_bot(settings: Settings, answerer: Answerer, *, answerers: dict[str, Answerer] | None = None,
            follow: Callable[[str, Answerer], None] | None = None,
            shard: tuple[int, int] | str | None = None) -> int:
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

    def client(message_content: bool) -> CitebotClient:
        return make_client(settings, answerer, shard=shard, answerers=answerers, follow=follow,
                           message_content=message_content)

    return asyncio.run(serve(client, token.get_secret_value()))


async def serve(make_client: Callable[[bool], discord.Client], token: str) -> int:
    """Connect and run until SIGTERM/SIGINT or the connection ends for good; returns an exit code.

    `make_client(message_content)` builds the client. When Discord refuses the Message Content
    intent (not turned on in the Developer Portal) a second client starts without it, and the log
    says once what the bot then cannot hear.
    """
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
        try:
            return await _run(make_client(True), token, stop)
        except discord.PrivilegedIntentsRequired:
            log.warning(NO_MESSAGE_CONTENT)
        return await _run(make_client(False), token, stop)
    except discord.LoginFailure:
        _say("Discord rejected the token in CITEBOT_DISCORD_TOKEN: reset it in the Developer Portal (Bot → Reset Token) and set it again")
        return 1
    except discord.PrivilegedIntentsRequired:  # the bot asks for no other privileged intent: never, unless Discord changes
        _say("Discord refused a privileged intent the bot asked for: check the Developer Portal (Bot → Privileged Gateway Intents)")
        return 1
    except discord.ConnectionClosed as error:
        if error.code == 4011:  # Discord's "Sharding required": the bot is in too many servers for one connection
            _say("Discord requires this bot to shard (it is in too many servers for one connection): run "
                 "`citebot discord --shards auto`, or one process per shard with --shard I/N")
        elif error.code == 4010:
            _say("Discord refused the shard (close code 4010, invalid shard): give every process the same N in "
                 "--shard I/N, with I from 0 to N-1, or use --shards auto")
        else:
            _say(f"could not connect to Discord: {type(error).__name__}: {error}")
        return 1
    except (discord.HTTPException, discord.GatewayNotFound, aiohttp.ClientError, OSError) as error:
        _say(f"could not connect to Discord: {type(error).__name__}: {error}")
        return 1
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


async def _run(client: discord.Client, token: str, stop: asyncio.Event) -> int:
    """One client's run, closed on the way out: 0 once `stop` is set or the connection ends for good."""
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
    return 0


def _say(line: str) -> None:
    print(f"citebot discord: {line}", file=sys.stderr)
