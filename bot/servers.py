"""What each server's admins chose from Discord: the collection it asks, and how the bot behaves per channel.

One SQLite file, `servers.sqlite` in the index folder beside `history.sqlite`, or two tables in the
`index.url` database's `citebot` schema. Unlike the history
it is never pruned: it holds settings, one row per server that chose a collection and one per server
or channel whose behaviour was changed, so it stays small whatever the corpus holds. The whole file
is read once when the bot starts and then kept in memory; every change is written through, so
reading the rules for a message costs a dictionary lookup, not a query. Only the bot writes it. Each change
also counts up `book_version`; a process reads that counter at most once a second (`REFRESH_S`) when it
looks a rule up, and reads the book again when another process changed it: bot shards sharing one database
obey a rule another shard's admin command set within a second, with no restart.

A rule is looked up from the most particular place to the least: the channel (a thread counts as
its parent), the whole server (channel id 0), then the `[discord]` settings. An unset rule (NULL)
falls through.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path

from retrieval.backends.base import StateDB
from retrieval.settings import Settings

FILENAME = "servers.sqlite"
REFRESH_S = 1.0  # how often a process looks whether another one changed the book
_BUMP = ("INSERT INTO book_version (id, n) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET n = book_version.n + 1"
         " RETURNING n")
SERVER = 0  # the channel id under which a server-wide rule is kept
REPLIES = ("thread", "inline")
NOT_FOUND = ("public", "private")

_SCHEMA = {"sqlite": """
CREATE TABLE IF NOT EXISTS servers (
    guild_id   INTEGER PRIMARY KEY,
    collection TEXT    NOT NULL,       -- the collection this server asks, chosen with /collection
    set_by     INTEGER,
    set_at     REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS servers_collection ON servers (collection);
CREATE TABLE IF NOT EXISTS channels (
    guild_id     INTEGER NOT NULL,
    channel_id   INTEGER NOT NULL,     -- 0: the whole server
    answers      INTEGER,              -- NULL in any rule column: not set here, look further
    replies      TEXT CHECK (replies IN ('thread', 'inline')),
    mention_only INTEGER,
    not_found    TEXT CHECK (not_found IN ('public', 'private')),
    set_by       INTEGER,
    set_at       REAL    NOT NULL,
    PRIMARY KEY (guild_id, channel_id)
);
CREATE TABLE IF NOT EXISTS book_version (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL);
""",
           "postgres": """
CREATE TABLE IF NOT EXISTS servers (
    guild_id   BIGINT PRIMARY KEY,
    collection TEXT    NOT NULL,       -- the collection this server asks, chosen with /collection
    set_by     BIGINT,
    set_at     DOUBLE PRECISION    NOT NULL
);
CREATE INDEX IF NOT EXISTS servers_collection ON servers (collection);
CREATE TABLE IF NOT EXISTS channels (
    guild_id     BIGINT  NOT NULL,
    channel_id   BIGINT  NOT NULL,     -- 0: the whole server
    answers      INTEGER,              -- NULL in any rule column: not set here, look further
    replies      TEXT CHECK (replies IN ('thread', 'inline')),
    mention_only INTEGER,
    not_found    TEXT CHECK (not_found IN ('public', 'private')),
    set_by       BIGINT,
    set_at       DOUBLE PRECISION    NOT NULL,
    PRIMARY KEY (guild_id, channel_id)
);
CREATE TABLE IF NOT EXISTS book_version (id INTEGER PRIMARY KEY CHECK (id = 1), n BIGINT NOT NULL);
"""}


@dataclass(frozen=True)
class Rules:
    """How the bot behaves in one channel. In `Overrides` each field may be None: not set there."""

    answers: bool = True          # whether it answers questions here at all
    replies: str = "thread"       # "thread": open a thread on each answer for follow-ups; "inline": no thread
    mention_only: bool = False    # only messages that mention it: thread follow-ups and replies need a mention too
    not_found: str = "public"     # "private": a "not found" goes to the asker only, the channel sees nothing


@dataclass(frozen=True)
class Overrides:
    answers: bool | None = None
    replies: str | None = None
    mention_only: bool | None = None
    not_found: str | None = None

    def over(self, rules: Rules) -> Rules:
        return replace(rules, **{f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None})

    def set(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


def defaults(settings: Settings) -> Rules:
    """The rules of the `[discord]` settings, where no admin set any."""
    d = settings.discord
    return Rules(answers=True, replies=d.replies, mention_only=d.mention_only, not_found=d.not_found)


class ServerBook:
    """The servers' choices in `path`, held in memory after the first read; any thread may call."""

    def __init__(self, where: Path | StateDB, *, now: Callable[[], float] = time.time):
        if isinstance(where, (str, Path)):
            from retrieval.backends.embedded.state import SqliteState

            where = SqliteState(Path(where), _SCHEMA["sqlite"])
        self._state = where
        self._now = now
        self._lock = threading.Lock()
        self._collections: dict[int, str] | None = None
        self._overrides: dict[tuple[int, int], Overrides] = {}
        self._version = 0  # book_version as last read or written here
        self._checked = 0.0  # monotonic time of the last look at book_version

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerBook:
        from retrieval.backends import open_state

        return cls(open_state(settings.index, file=FILENAME, ddl=_SCHEMA, table="servers"))

    def copy_to(self, other: ServerBook) -> int:
        """Every server's collection and channel rules, into another engine's book (`citebot migrate --to`)."""
        from retrieval.backends.copy import copy_state

        return copy_state(self._state, other._state, {
            "servers": "guild_id, collection, set_by, set_at",
            "channels": "guild_id, channel_id, answers, replies, mention_only, not_found, set_by, set_at"})

    def load(self) -> None:
        """Read the book once (nothing to read if it does not exist yet); later calls read it again only when
        another process has changed it (looked at once a second at most)."""
        with self._lock:
            self._load()

    def _load(self) -> None:
        if self._collections is not None:
            if time.monotonic() - self._checked < REFRESH_S or not self._state.exists():
                return
            with self._state.session() as db:
                row = db.execute("SELECT n FROM book_version WHERE id = 1").fetchone()
            self._checked = time.monotonic()
            if (row[0] if row else 0) == self._version:
                return
        collections: dict[int, str] = {}
        overrides: dict[tuple[int, int], Overrides] = {}
        version = 0
        if self._state.exists():
            with self._state.session() as db:
                row = db.execute("SELECT n FROM book_version WHERE id = 1").fetchone()
                version = row[0] if row else 0
                collections = dict(db.execute("SELECT guild_id, collection FROM servers").fetchall())
                for guild, channel, answers, replies, mention_only, not_found in db.execute(
                        "SELECT guild_id, channel_id, answers, replies, mention_only, not_found FROM channels"):
                    overrides[guild, channel] = Overrides(_bool(answers), replies, _bool(mention_only), not_found)
        self._collections, self._overrides = collections, overrides
        self._version, self._checked = version, time.monotonic()

    def _written(self, connection) -> None:
        """In a change's transaction: count the book's version up. When this process had read the version
        before (nobody else wrote meanwhile), its memory is current; otherwise it reads the book again soon."""
        version = connection.execute(_BUMP).fetchone()[0]
        if version == self._version + 1:
            self._version = version
        else:
            self._checked = 0.0  # someone else wrote too: look at the next lookup

    # -- collections

    def collection(self, guild_id: int | None) -> str | None:
        """The collection this server's admins chose, or None when they chose none."""
        self.load()
        return None if guild_id is None else self._collections.get(guild_id)

    def collections(self) -> dict[int, str]:
        self.load()
        return dict(self._collections)

    def set_collection(self, guild_id: int, name: str | None, *, by: int | None = None) -> None:
        """Make server `guild_id` ask `name`; None forgets the choice (the settings decide again)."""
        with self._lock:
            self._load()
            with self._state.session() as connection:
                if name is None:
                    connection.execute("DELETE FROM servers WHERE guild_id = ?", (guild_id,))
                else:
                    connection.execute(
                        "INSERT INTO servers (guild_id, collection, set_by, set_at) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (guild_id) DO UPDATE SET collection = excluded.collection, "
                        "set_by = excluded.set_by, set_at = excluded.set_at", (guild_id, name, by, self._now()))
                self._written(connection)
            if name is None:
                self._collections.pop(guild_id, None)
            else:
                self._collections[guild_id] = name

    # -- rules

    def overrides(self, guild_id: int, channel_id: int = SERVER) -> Overrides:
        """What an admin set for this channel (or, with SERVER, the whole server)."""
        self.load()
        return self._overrides.get((guild_id, channel_id), Overrides())

    def rules(self, base: Rules, guild_id: int | None, channel_id: int | None) -> Rules:
        """The rules in force in a channel: its own, then its server's, then `base`."""
        if guild_id is None:
            return base
        rules = self.overrides(guild_id, SERVER).over(base)
        if channel_id is not None:
            rules = self.overrides(guild_id, channel_id).over(rules)
        return rules

    def set_rules(self, guild_id: int, channel_id: int, changes: Overrides, *, by: int | None = None) -> Overrides:
        """Set the rules `changes` names (the others stay as they were); returns what is now set there."""
        for name, allowed in (("replies", REPLIES), ("not_found", NOT_FOUND)):
            value = getattr(changes, name)
            if value is not None and value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        with self._lock:
            self._load()
            merged = replace(self._overrides.get((guild_id, channel_id), Overrides()), **changes.set())
            with self._state.session() as connection:
                connection.execute(
                    "INSERT INTO channels (guild_id, channel_id, answers, replies, mention_only, not_found, set_by, "
                    "set_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (guild_id, channel_id) DO UPDATE SET "
                    "answers = excluded.answers, replies = excluded.replies, mention_only = excluded.mention_only, "
                    "not_found = excluded.not_found, set_by = excluded.set_by, set_at = excluded.set_at",
                    (guild_id, channel_id, _int(merged.answers), merged.replies, _int(merged.mention_only),
                     merged.not_found, by, self._now()))
                self._written(connection)
            self._overrides[guild_id, channel_id] = merged
            return merged

    def reset_rules(self, guild_id: int, channel_id: int) -> bool:
        """Forget every rule set for this channel (or server); False when none was set."""
        with self._lock:
            self._load()
            with self._state.session() as connection:
                gone = connection.execute("DELETE FROM channels WHERE guild_id = ? AND channel_id = ?",
                                          (guild_id, channel_id)).rowcount
                self._written(connection)
            self._overrides.pop((guild_id, channel_id), None)
            return bool(gone)

    def channels_with_rules(self, guild_id: int) -> list[int]:
        """The channels of this server with rules of their own (not the server-wide ones)."""
        self.load()
        return sorted(channel for guild, channel in self._overrides if guild == guild_id and channel != SERVER)


def _bool(value: int | None) -> bool | None:
    return None if value is None else bool(value)


def _int(value: bool | None) -> int | None:
    return None if value is None else int(value)
