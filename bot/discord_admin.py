"""The admin commands (Manage Server): a server's collection, its feeds, and how the bot behaves per channel.

- `/collection show|use|own`: which collection the server asks; point it at a shared one (those in
  `discord.shared`, and `discord.collection`), or give it its own (`server-ID`, empty until fed).
- `/feeds add|remove|list`: the feeds of the server's own collection, polled beside the bot from the
  next poll on. A shared collection is the operator's to manage, in the settings: it is refused here,
  as is a collection another server also asks, so one server's admins never change what another reads.
- `/channel show|set|reset`: the rules of this channel or the whole server (bot/servers.py).
- `/sources`, `/reindex`: the server's collection's articles; re-read its folders.

Every reply is private. Every read and write of the files runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from typing import Literal, Optional
from urllib.parse import urlsplit

import discord
from discord import app_commands

from bot import render_discord as rd
from bot.servers import SERVER, Overrides, Rules
from retrieval import collection
from retrieval.errors import CitebotError

# The bot's client is bot/discord_app.CitebotClient, which imports this module: here it is typed by its base
# class, so that no import goes back.
CitebotClient = discord.Client

log = logging.getLogger("citebot.discord")

OWN_PREFIX = "server-"
URL_MAX = 2000

SHARED_NOT_YOURS = ("This server asks the shared collection **{name}**, which the bot's operator manages in the "
                    "settings. To follow feeds of your own here, give this server its own collection first: "
                    "`/collection own`.")
MAPPED_ELSEWHERE = ("This server asks the collection **{name}**, which other servers ask too, so its feeds are "
                    "managed in the bot's settings. `/collection own` gives this server a collection of its own.")
NOT_SHARED = ("**{name}** is not a collection servers may share. Shared here: {shared}. "
              "The bot's operator lists them under `shared` in the [discord] settings.")
FEEDS_FULL = "This server follows {count} feeds, the most it may ({limit}): remove one with `/feeds remove` first."


def own_name(guild_id: int) -> str:
    """The collection a server gets with `/collection own`."""
    return f"{OWN_PREFIX}{guild_id}"


def shared_names(client: CitebotClient) -> list[str]:
    """The collections a server may be pointed at with `/collection use`."""
    names = [client.settings.discord.collection, *client.settings.discord.shared]
    return list(dict.fromkeys(names))


def why_not_manage(client: CitebotClient, guild_id: int) -> str | None:
    """Why this server's admins may not change its collection's feeds, or None when they may.

    They may when the collection is the server's alone: not shared, and asked by no other server.
    """
    name = client.collection_of(guild_id)
    if name in shared_names(client):
        return SHARED_NOT_YOURS.format(name=rd.escape(name, at_line_start=False))
    # guild_collections starts as discord.guilds
    others = {g for g, n in [*client.guild_collections.items(), *client.servers.collections().items()] if n == name}
    if others - {guild_id}:
        return MAPPED_ELSEWHERE.format(name=rd.escape(name, at_line_start=False))
    return None


def check_feed_url(url: str, *, allow_private: bool) -> str:
    """The URL an admin gave, stripped; CitebotError saying what is wrong with it."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise CitebotError("That is not a feed address: give an http(s) URL, e.g. https://example.com/rss")
    if len(url) > URL_MAX:
        raise CitebotError(f"That address is longer than {URL_MAX} characters: give the feed's own URL.")
    if not allow_private:
        try:
            literal = ipaddress.ip_address(parts.hostname)
        except ValueError:
            literal = None  # a name: its addresses are checked at every fetch
        if parts.hostname.lower() == "localhost" or (literal is not None and not (literal.is_global and
                                                                                  not literal.is_multicast)):
            raise CitebotError("That address is private, loopback or link-local: I only follow feeds on the "
                               "public internet.")
    return url


# -- /collection

async def collection_show(client: CitebotClient, interaction: discord.Interaction) -> None:
    guild_id = interaction.guild_id
    name = client.collection_of(guild_id)
    answerer = await asyncio.to_thread(client.answerer_for, guild_id)
    documents = await asyncio.to_thread(answerer.store.count_documents) if hasattr(answerer, "store") else None
    chosen = client.servers.collection(guild_id)
    how = ("chosen here with `/collection`" if chosen is not None else
           "set in the bot's settings" if guild_id in client.guild_collections else "the bot's default")
    lines = [f"This server asks the collection **{rd.escape(name, at_line_start=False)}** ({how})"
             + (f": {documents} articles." if documents is not None else ".")]
    reason = why_not_manage(client, guild_id)
    lines.append("Its feeds are yours to manage: `/feeds add`, `/feeds list`." if reason is None else reason)
    lines.append("Shared collections: " + ", ".join(f"`{n}`" for n in shared_names(client)) + ".")
    await interaction.response.send_message(rd.trim("\n".join(lines), rd.MESSAGE_LIMIT), ephemeral=True)


async def collection_use(client: CitebotClient, interaction: discord.Interaction, name: str) -> None:
    name = name.strip()
    shared = shared_names(client)
    if name not in shared:
        await interaction.response.send_message(rd.trim(NOT_SHARED.format(
            name=rd.escape(name, at_line_start=False), shared=", ".join(f"`{n}`" for n in shared)),
            rd.MESSAGE_LIMIT), ephemeral=True)
        return
    await _point(client, interaction, name, f"This server now asks the shared collection **{name}**.")


async def collection_own(client: CitebotClient, interaction: discord.Interaction) -> None:
    name = own_name(interaction.guild_id)
    if client.collection_of(interaction.guild_id) == name:
        await interaction.response.send_message(f"This server already asks its own collection **{name}**.",
                                                ephemeral=True)
        return
    await _point(client, interaction, name,
                 f"This server now asks its own collection **{name}**. It holds no articles until you follow "
                 "feeds with `/feeds add URL`; new articles are answerable within a poll of their feed.")


async def collection_reset(client: CitebotClient, interaction: discord.Interaction) -> None:
    if client.servers.collection(interaction.guild_id) is None:
        await interaction.response.send_message(
            f"No collection was chosen here: this server asks **{client.collection_of(interaction.guild_id)}**, "
            "as the bot's settings say.", ephemeral=True)
        return
    await asyncio.to_thread(client.servers.set_collection, interaction.guild_id, None)
    client.forget_outlets(interaction.guild_id)
    log.info("server %s forgot its collection choice (user %s)", interaction.guild_id, interaction.user.id)
    await interaction.response.send_message(
        f"Choice forgotten: this server asks **{client.collection_of(interaction.guild_id)}** again, as the bot's "
        "settings say. A collection of its own keeps its articles and feeds for `/collection own`.", ephemeral=True)


async def _point(client: CitebotClient, interaction: discord.Interaction, name: str, said: str) -> None:
    collection.check_name(name)
    await interaction.response.defer(ephemeral=True, thinking=True)
    await asyncio.to_thread(client.servers.set_collection, interaction.guild_id, name, by=interaction.user.id)
    await asyncio.to_thread(client.answerer_for, interaction.guild_id)  # opened, and its feeds followed, now
    client.forget_outlets(interaction.guild_id)
    log.info("server %s now asks collection %s (set by user %s)", interaction.guild_id, name, interaction.user.id)
    await interaction.followup.send(said, ephemeral=True)


async def shared_choices(client: CitebotClient, typed: str) -> list[app_commands.Choice[str]]:
    typed = typed.casefold()
    return [app_commands.Choice(name=n, value=n) for n in shared_names(client) if typed in n][:25]


# -- /feeds

def _book(client: CitebotClient, guild_id: int) -> contextlib.closing:
    """The feed book of the collection the server asks, closed at the end of the `with`."""
    from retrieval.feeds import FeedBook

    return contextlib.closing(FeedBook(collection.settings_for(client.settings, client.collection_of(guild_id)).index))


async def feeds_add(client: CitebotClient, interaction: discord.Interaction, url: str, outlet: str | None,
                    every: str | None) -> None:
    from retrieval.poller import parse_interval

    if (reason := why_not_manage(client, interaction.guild_id)) is not None:
        await interaction.response.send_message(reason, ephemeral=True)
        return
    url = check_feed_url(url, allow_private=client.settings.fetch.allow_private)
    seconds = parse_interval(every.strip(), what="every") if every and every.strip() else None
    outlet = " ".join(outlet.split())[:100] if outlet and outlet.strip() else None
    await interaction.response.defer(ephemeral=True, thinking=True)
    limit = client.settings.discord.max_feeds_per_server

    def add() -> bool | int:
        with _book(client, interaction.guild_id) as book:
            feeds = book.added()
            if url not in {f.url for f in feeds} and len(feeds) >= limit:
                return len(feeds)
            return book.add(url, outlet=outlet, every_s=seconds)

    added = await asyncio.to_thread(add)
    await asyncio.to_thread(client.answerer_for, interaction.guild_id)  # its poller runs from now on, if not yet
    if not isinstance(added, bool):
        await interaction.followup.send(FEEDS_FULL.format(count=added, limit=limit), ephemeral=True)
        return
    log.info("server %s %s feed %s (user %s)", interaction.guild_id, "follows" if added else "updated",
             url, interaction.user.id)
    shown = rd.escape(url, at_line_start=False)
    every_text = f"every {every.strip()}" if seconds else "at the default interval"
    await interaction.followup.send(rd.trim(
        (f"Following {shown}, polled {every_text}. The first poll comes within a minute; `/feeds list` shows how "
         "it went." if added else f"Updated {shown}: polled {every_text}.")
        + (f" Its articles are cited as {rd.escape(outlet, at_line_start=False)}." if outlet else ""),
        rd.MESSAGE_LIMIT), ephemeral=True)


async def feeds_remove(client: CitebotClient, interaction: discord.Interaction, url: str) -> None:
    if (reason := why_not_manage(client, interaction.guild_id)) is not None:
        await interaction.response.send_message(reason, ephemeral=True)
        return
    url = url.strip()

    def remove() -> bool:
        with _book(client, interaction.guild_id) as book:
            return book.remove(url)

    shown = rd.escape(url, at_line_start=False)
    if await asyncio.to_thread(remove):
        log.info("server %s no longer follows %s (user %s)", interaction.guild_id, url, interaction.user.id)
        text = f"No longer following {shown}. Its articles stay in the collection."
    else:
        text = f"This server follows no feed {shown}: `/feeds list` shows the ones it does."
    await interaction.response.send_message(rd.trim(text, rd.MESSAGE_LIMIT), ephemeral=True)


async def feeds_list(client: CitebotClient, interaction: discord.Interaction) -> None:
    from retrieval.poller import followed

    await interaction.response.defer(ephemeral=True, thinking=True)
    name = client.collection_of(interaction.guild_id)
    settings = collection.settings_for(client.settings, name)

    def read() -> list:
        with _book(client, interaction.guild_id) as book:
            return [book.status(feed) for feed in followed(settings, book)]

    for text in feeds_messages(await asyncio.to_thread(read), name):
        await interaction.followup.send(text, ephemeral=True)


def feeds_messages(statuses: list, name: str, *, max_messages: int = 5) -> list[str]:
    """The followed feeds, one line each with their state, in at most `max_messages` messages."""
    if not statuses:
        return [f"The collection **{rd.escape(name, at_line_start=False)}** follows no feeds: "
                "`/feeds add URL` adds one."]
    lines = []
    for s in statuses:
        state = (f"error: {rd.escape(' '.join(s.last_error.split()), at_line_start=False)}" if s.last_error
                 else "ok" if s.last_ok else "not polled yet")
        when = f", last poll <t:{int(s.last_poll)}:R>" if s.last_poll else ""
        new = f", last new article <t:{int(s.last_new)}:R>" if s.last_new else ""
        origin = " (in the settings)" if s.feed.origin == "settings" else ""
        lines.append(rd.trim(f"• {rd.escape(s.feed.url, at_line_start=False)}{origin}: {state}{when}{new}, "
                             f"{s.entries} articles taken", 400))
    head = f"The collection **{rd.escape(name, at_line_start=False)}** follows {len(statuses)} feeds:"
    return rd.paged(head, lines, max_messages=max_messages)


async def feed_choices(client: CitebotClient, interaction: discord.Interaction, typed: str) -> list[app_commands.Choice[str]]:
    """The feeds added in this server, matching what was typed, for `/feeds remove url:`."""
    def read() -> list[str]:
        with _book(client, interaction.guild_id) as book:
            return [feed.url for feed in book.added()]

    try:
        urls = await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(client.quick, read), 2.0)
    except Exception as error:
        log.info("no feed choices: %s", str(error) or type(error).__name__)
        return []
    typed = typed.casefold()
    return [app_commands.Choice(name=rd.trim(u, 100), value=u) for u in urls if typed in u.casefold() and len(u) <= 100][:25]


# -- /channel

_RULE_TEXT = {
    "answers": lambda v: "answers questions here" if v else "does not answer here",
    "replies": lambda v: "opens a thread on each answer" if v == "thread" else "answers inline, without a thread",
    "mention_only": lambda v: "answers only messages that mention it" if v else
    "also answers follow-ups in its threads and replies to its answers",
    "not_found": lambda v: "says “not found” in the channel" if v == "public" else
    "tells only the asker when it finds nothing",
}


def rules_text(where: str, rules: Rules, origins: dict[str, str]) -> str:
    lines = [f"In {where} the bot:"]
    for name, say in _RULE_TEXT.items():
        lines.append(f"• {say(getattr(rules, name))} (`{name}`, {origins[name]})")
    return "\n".join(lines)


def _origins(client: CitebotClient, guild_id: int, channel_id: int) -> dict[str, str]:
    here = client.servers.overrides(guild_id, channel_id).set() if channel_id != SERVER else {}
    server = client.servers.overrides(guild_id, SERVER).set()
    return {name: "set for this channel" if name in here else "set for the server" if name in server
            else "the bot's default" for name in _RULE_TEXT}


def _scope(interaction: discord.Interaction, scope: str | None) -> tuple[int, str]:
    if scope == "server":
        return SERVER, "this server"
    channel_id = rules_channel(interaction.channel) or interaction.channel_id
    return channel_id, f"<#{channel_id}>"


def rules_channel(channel: object) -> int | None:
    """The channel whose rules apply: a thread's parent, else the channel itself."""
    if isinstance(channel, discord.Thread):
        return channel.parent_id
    return getattr(channel, "id", None)


async def channel_show(client: CitebotClient, interaction: discord.Interaction) -> None:
    channel_id, where = _scope(interaction, None)
    rules = client.rules_in(interaction.guild_id, channel_id)
    text = rules_text(where, rules, _origins(client, interaction.guild_id, channel_id))
    others = [c for c in client.servers.channels_with_rules(interaction.guild_id) if c != channel_id]
    if others:
        text += "\nChannels with rules of their own: " + ", ".join(f"<#{c}>" for c in others[:40]) + "."
    await interaction.response.send_message(rd.trim(text, rd.MESSAGE_LIMIT), ephemeral=True)


async def channel_set(client: CitebotClient, interaction: discord.Interaction, changes: Overrides,
                      scope: str | None) -> None:
    channel_id, where = _scope(interaction, scope)
    if not changes.set():
        await interaction.response.send_message(
            "Name at least one rule to change: answers, replies, mention_only or not_found.", ephemeral=True)
        return
    await asyncio.to_thread(client.servers.set_rules, interaction.guild_id, channel_id, changes,
                            by=interaction.user.id)
    log.info("server %s channel %s rules %s (user %s)", interaction.guild_id, channel_id or "(all)",
             changes.set(), interaction.user.id)
    rules = client.rules_in(interaction.guild_id, channel_id)
    await interaction.response.send_message(rd.trim(
        "Saved. " + rules_text(where, rules, _origins(client, interaction.guild_id, channel_id)), rd.MESSAGE_LIMIT),
        ephemeral=True)


async def channel_reset(client: CitebotClient, interaction: discord.Interaction, scope: str | None) -> None:
    channel_id, where = _scope(interaction, scope)
    had = await asyncio.to_thread(client.servers.reset_rules, interaction.guild_id, channel_id)
    rules = client.rules_in(interaction.guild_id, channel_id)
    said = "Rules reset. " if had else f"No rules were set for {where}. "
    await interaction.response.send_message(rd.trim(
        said + rules_text(where, rules, _origins(client, interaction.guild_id, channel_id)), rd.MESSAGE_LIMIT),
        ephemeral=True)


# -- /reindex and /sources

async def reindex(client: CitebotClient, interaction: discord.Interaction) -> None:
    answerer = client.answerer_for(interaction.guild_id)
    paths = list(getattr(answerer, "settings", client.settings).corpus.paths)
    if not paths:
        await interaction.response.send_message(
            "No article folders are configured for this server's collection: the bot's operator adds them to "
            "its `paths` in the settings. Feeds are polled by themselves (`/feeds list`).", ephemeral=True)
        return
    if client.reindexing.locked():
        await interaction.response.send_message("A reindex is already running; please wait for it.", ephemeral=True)
        return
    async with client.reindexing:
        await interaction.response.defer(ephemeral=True, thinking=True)
        latest: list[tuple[int, int, str] | None] = [None]

        def progress(done: int, total: int, path: str) -> None:  # called in the worker thread
            latest[0] = (done, total, path)

        work = asyncio.ensure_future(asyncio.to_thread(answerer.ingest, paths, progress=progress))
        shown = None
        while not work.done():
            await asyncio.wait({work}, timeout=client.progress_every)
            if work.done() or latest[0] is None or latest[0] == shown:
                continue
            shown = latest[0]
            try:
                await interaction.edit_original_response(content=rd.ingest_progress_text(*shown))
            except discord.HTTPException as error:
                log.info("could not show reindex progress: %s", error)
        await interaction.edit_original_response(content=rd.ingest_report_text(work.result()))


async def sources(client: CitebotClient, interaction: discord.Interaction) -> None:
    await interaction.response.defer(ephemeral=True, thinking=True)
    rows = await asyncio.to_thread(client.answerer_for(interaction.guild_id).sources)
    for text in rd.sources_messages(rows):
        await interaction.followup.send(text, ephemeral=True)


# -- registration

def add_commands(client: CitebotClient) -> None:
    tree = client.tree
    admins = discord.Permissions(manage_guild=True)
    is_admin = app_commands.checks.has_permissions(manage_guild=True)

    feeds = app_commands.Group(name="feeds", description="The feeds this server's collection follows (admins only).",
                               guild_only=True, default_permissions=admins)

    @feeds.command(name="add", description="Follow a feed (RSS, Atom or news sitemap) into this server's collection.")
    @app_commands.describe(url="The feed's address, e.g. https://example.com/rss",
                           outlet="The outlet to cite its articles by (default: what each page says)",
                           every="How often to poll it, e.g. 15m or 2h (default: the bot's setting)")
    @is_admin
    async def add(interaction: discord.Interaction, url: app_commands.Range[str, 8, URL_MAX],
                  outlet: Optional[app_commands.Range[str, 1, 100]] = None,
                  every: Optional[app_commands.Range[str, 2, 10]] = None) -> None:
        await feeds_add(client, interaction, url, outlet, every)

    @feeds.command(name="remove", description="Stop following a feed; its articles stay in the collection.")
    @app_commands.describe(url="The feed's address, as /feeds list shows it")
    @is_admin
    async def remove(interaction: discord.Interaction, url: app_commands.Range[str, 1, URL_MAX]) -> None:
        await feeds_remove(client, interaction, url)

    @remove.autocomplete("url")
    async def remove_choices(interaction: discord.Interaction, typed: str) -> list[app_commands.Choice[str]]:
        return await feed_choices(client, interaction, typed)

    @feeds.command(name="list", description="Each feed with its last poll, last new article and last error.")
    @is_admin
    async def list_feeds(interaction: discord.Interaction) -> None:
        await feeds_list(client, interaction)

    group = app_commands.Group(name="collection", description="Which collection this server asks (admins only).",
                               guild_only=True, default_permissions=admins)

    @group.command(name="show", description="Which collection this server asks, and whether its feeds are yours.")
    @is_admin
    async def show(interaction: discord.Interaction) -> None:
        await collection_show(client, interaction)

    @group.command(name="use", description="Make this server ask a shared collection.")
    @app_commands.describe(name="One of the shared collections the bot's operator set up")
    @is_admin
    async def use(interaction: discord.Interaction, name: app_commands.Range[str, 1, 64]) -> None:
        await collection_use(client, interaction, name)

    @use.autocomplete("name")
    async def use_choices(interaction: discord.Interaction, typed: str) -> list[app_commands.Choice[str]]:
        return await shared_choices(client, typed)

    @group.command(name="own", description="Give this server a collection of its own, fed by /feeds add.")
    @is_admin
    async def own(interaction: discord.Interaction) -> None:
        await collection_own(client, interaction)

    @group.command(name="reset", description="Forget this server's choice; it asks what the bot's settings say.")
    @is_admin
    async def reset_collection(interaction: discord.Interaction) -> None:
        await collection_reset(client, interaction)

    channel = app_commands.Group(name="channel", description="How the bot behaves in a channel (admins only).",
                                 guild_only=True, default_permissions=admins)
    scope_help = "This channel (default) or the whole server; a channel's own rules win over the server's"

    @channel.command(name="show", description="The bot's rules in this channel, and where each is set.")
    @is_admin
    async def show_rules(interaction: discord.Interaction) -> None:
        await channel_show(client, interaction)

    @channel.command(name="set", description="Change how the bot behaves here; rules you leave out stay as they are.")
    @app_commands.describe(
        answers="Whether the bot answers questions here at all",
        replies="thread: open a thread on each answer for follow-ups; inline: no thread",
        mention_only="Answer only messages that mention the bot, follow-ups in its threads included",
        not_found="private: when nothing answers, tell only the asker; public: say so in the channel",
        scope=scope_help)
    @is_admin
    async def set_rules(interaction: discord.Interaction, answers: Optional[bool] = None,
                        replies: Optional[Literal["thread", "inline"]] = None,
                        mention_only: Optional[bool] = None,
                        not_found: Optional[Literal["public", "private"]] = None,
                        scope: Optional[Literal["channel", "server"]] = None) -> None:
        await channel_set(client, interaction, Overrides(answers, replies, mention_only, not_found), scope)

    @channel.command(name="reset", description="Forget the rules set here; the server's (or the bot's) apply again.")
    @app_commands.describe(scope=scope_help)
    @is_admin
    async def reset(interaction: discord.Interaction, scope: Optional[Literal["channel", "server"]] = None) -> None:
        await channel_reset(client, interaction, scope)

    for each in (feeds, group, channel):
        tree.add_command(each)

    @tree.command(name="reindex", description="Re-read this server's collection's article folders (admins only).")
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)
    @is_admin
    async def reindex_command(interaction: discord.Interaction) -> None:
        await reindex(client, interaction)

    @tree.command(name="sources", description="List the articles of this server's collection (admins only).")
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)
    @is_admin
    async def sources_command(interaction: discord.Interaction) -> None:
        await sources(client, interaction)
