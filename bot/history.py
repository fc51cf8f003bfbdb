"""The bot's memory across restarts: its answers, the conversations they belong to, and 👍/👎 votes.

One SQLite file, `history.sqlite` in the index folder (`[index] dir`, `$CITEBOT_HOME/index` when
installed), beside the feeds and the index. Each answer row holds what the buttons under the answer
need after a restart: the Answer itself as JSON (so "Show all sources" shows exactly what was cited,
even once the article was re-ingested or removed), its cited chunk ids, the collection, server,
channel, asker and time. A conversation is the answers sharing one key: the id of the first answer's
message, which is also the id of the thread opened on it; its questions are the follow-ups' context.
A private answer (`/ask private:true`) shared to its channel is stored again as a public copy that
names it in `shared_from`, so each is shared once. A vote keeps a copy of what it was cast on, with
the collection and server, so `citebot feedback export` needs nothing else.

Rows older than `discord.history_days` are deleted, votes included: at the first answer after a start
and then at most once an hour, by `DELETE … WHERE at < ?` on an indexed column, so pruning costs what
it removes. Calls block on disk: the bot makes them off the event loop. Each call opens its own
connection, so any worker thread may call.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from retrieval.backends.base import StateDB
from retrieval.models import Answer
from retrieval.settings import Settings

log = logging.getLogger("citebot.history")

FILENAME = "history.sqlite"
DAY = 86_400.0
PRUNE_EVERY = 3600.0  # seconds between two prunings

_SCHEMA = {"sqlite": """
CREATE TABLE IF NOT EXISTS answers (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: an old button cannot show a new answer
    at           REAL    NOT NULL,                   -- Unix time
    collection   TEXT    NOT NULL,
    guild_id     INTEGER,
    channel_id   INTEGER,
    user_id      INTEGER,
    message_id   INTEGER,                            -- the answer's own message, once sent
    conversation INTEGER,                            -- the first answer's message id (= its thread's id)
    question     TEXT    NOT NULL,
    found        INTEGER NOT NULL,
    text         TEXT    NOT NULL,                   -- what the answer says first: the highlight, or "not found"
    chunk_ids    TEXT    NOT NULL,                   -- JSON list
    answer       TEXT    NOT NULL,                   -- the Answer as JSON
    private      INTEGER NOT NULL DEFAULT 0,         -- shown to the asker only
    shared_from  INTEGER                             -- for the public copy of a private answer: its id
);
CREATE INDEX IF NOT EXISTS answers_at ON answers (at);
CREATE INDEX IF NOT EXISTS answers_message ON answers (message_id);
CREATE INDEX IF NOT EXISTS answers_conversation ON answers (conversation, id);
CREATE TABLE IF NOT EXISTS votes (
    answer_id  INTEGER NOT NULL,
    user_id    INTEGER NOT NULL,
    message_id INTEGER,
    at         REAL    NOT NULL,
    question   TEXT    NOT NULL,   -- copied from the answer, so a vote outlives nothing it needs
    answer     TEXT    NOT NULL,
    chunk_ids  TEXT    NOT NULL,
    vote       INTEGER NOT NULL CHECK (vote IN (-1, 1)),
    collection TEXT,
    guild_id   INTEGER,
    PRIMARY KEY (answer_id, user_id)
);
CREATE INDEX IF NOT EXISTS votes_at ON votes (at);
""",
           "postgres": """
CREATE TABLE IF NOT EXISTS answers (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- never reused
    at           DOUBLE PRECISION NOT NULL,
    collection   TEXT    NOT NULL,
    guild_id     BIGINT,
    channel_id   BIGINT,
    user_id      BIGINT,
    message_id   BIGINT,
    conversation BIGINT,
    question     TEXT    NOT NULL,
    found        INTEGER NOT NULL,
    text         TEXT    NOT NULL,
    chunk_ids    TEXT    NOT NULL,
    answer       TEXT    NOT NULL,
    private      INTEGER NOT NULL DEFAULT 0,
    shared_from  BIGINT
);
CREATE INDEX IF NOT EXISTS answers_at ON answers (at);
CREATE INDEX IF NOT EXISTS answers_message ON answers (message_id);
CREATE INDEX IF NOT EXISTS answers_conversation ON answers (conversation, id);
CREATE UNIQUE INDEX IF NOT EXISTS answers_shared ON answers (shared_from) WHERE shared_from IS NOT NULL;
CREATE TABLE IF NOT EXISTS votes (
    answer_id  BIGINT  NOT NULL,
    user_id    BIGINT  NOT NULL,
    message_id BIGINT,
    at         DOUBLE PRECISION NOT NULL,
    question   TEXT    NOT NULL,
    answer     TEXT    NOT NULL,
    chunk_ids  TEXT    NOT NULL,
    vote       INTEGER NOT NULL CHECK (vote IN (-1, 1)),
    collection TEXT,
    guild_id   BIGINT,
    PRIMARY KEY (answer_id, user_id)
);
CREATE INDEX IF NOT EXISTS votes_at ON votes (at);
"""}

# Columns added since the first history files; `_upgrade` adds them to a file written without them.
_ADDED = {
    "answers": {"private": "INTEGER NOT NULL DEFAULT 0", "shared_from": "INTEGER"},
    "votes": {"collection": "TEXT", "guild_id": "INTEGER"},
}
_INDEXES = "CREATE UNIQUE INDEX IF NOT EXISTS answers_shared ON answers (shared_from) WHERE shared_from IS NOT NULL;"

# An answer pressed on: this id, posted in this server, as this message (unless either message id is unknown).
_POSTED = ("id = ? AND guild_id IS NOT DISTINCT FROM CAST(? AS BIGINT) AND (message_id IS NULL"
           " OR CAST(? AS BIGINT) IS NULL OR message_id = ?)")


@dataclass(frozen=True)
class StoredAnswer:
    """One answer the bot posted. `answer` is None when a newer or older citebot wrote a shape this one cannot read."""

    id: int
    at: float
    collection: str
    guild_id: int | None
    channel_id: int | None
    message_id: int | None
    conversation: int | None
    question: str
    user_id: int | None
    private: bool
    answer: Answer | None


@dataclass(frozen=True)
class Shared:
    """A private answer's public copy: its id, for the buttons, and whether this call made it."""

    copy_id: int
    answer: Answer | None
    new: bool


@dataclass(frozen=True)
class Vote:
    answer_id: int
    user_id: int
    message_id: int | None
    at: float
    question: str
    answer: str
    chunk_ids: list[str]
    vote: int
    collection: str | None
    guild_id: int | None


class HistoryStore:
    """The history in `where` (a history.sqlite path, or a StateDB: the index's PostgreSQL schema), keeping
    `keep_days` days; nothing is made before the first write."""

    def __init__(self, where: Path | StateDB, *, keep_days: int, now: Callable[[], float] = time.time):
        if keep_days < 1:
            raise ValueError(f"keep_days must be at least 1, got {keep_days!r}")
        if isinstance(where, (str, Path)):
            from retrieval.backends.embedded.state import SqliteState

            where = SqliteState(Path(where), _SCHEMA["sqlite"], upgrade=_upgrade)
        self._state = where
        self.keep_days = keep_days
        self._now = now
        self._pruned_at = -math.inf

    @property
    def location(self) -> str:
        return self._state.location

    @classmethod
    def from_settings(cls, settings: Settings, *, now: Callable[[], float] = time.time) -> HistoryStore:
        from retrieval.backends import open_state

        return cls(open_state(settings.index, file=FILENAME, ddl=_SCHEMA, table="answers", upgrade=_upgrade),
                   keep_days=settings.discord.history_days, now=now)

    # -- answers and conversations

    def add_answer(
        self,
        answer: Answer,
        *,
        collection: str,
        guild_id: int | None,
        channel_id: int | None,
        user_id: int | None,
        conversation: int | None,
        private: bool = False,
    ) -> int:
        """Store an answer about to be posted and return its id (for the buttons' custom ids).

        `conversation` is the key of the conversation it continues, None for a new question: the
        answer's own message id becomes the key once `sent` is told it. A `private` answer is the
        asker's alone until shared (`share`).
        """
        now = self._now()
        chunk_ids = [chunk for passage in answer.passages for chunk in passage.chunk_ids]
        with self._state.session() as db:
            if now - self._pruned_at >= PRUNE_EVERY:
                self._prune(db, now)
            return int(db.execute(
                "INSERT INTO answers (at, collection, guild_id, channel_id, user_id, conversation, question, "
                "found, text, chunk_ids, answer, private) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (now, collection, guild_id, channel_id, user_id, conversation, answer.question,
                 int(answer.found), answer.answer.text if answer.answer else answer.message,
                 json.dumps(chunk_ids), answer.model_dump_json(), int(private)),
            ).fetchone()[0])

    def sent(self, answer_id: int, message_id: int) -> None:
        """The answer went out as message `message_id`; a new question's conversation is keyed by it."""
        with self._state.session() as db:
            db.execute("UPDATE answers SET message_id = ?, conversation = coalesce(conversation, ?) WHERE id = ?",
                       (message_id, message_id, answer_id))

    def answer(self, answer_id: int) -> StoredAnswer | None:
        """The stored answer with this id, or None when there is none (never stored, or pruned)."""
        return self._stored("id = ?", (answer_id,))

    def posted_answer(self, answer_id: int, *, guild_id: int | None, message_id: int | None) -> StoredAnswer | None:
        """The answer with this id if it was posted in this server as this message (for a button pressed on it)."""
        return self._stored(_POSTED, (answer_id, guild_id, message_id, message_id))

    def _stored(self, where: str, parameters: tuple) -> StoredAnswer | None:
        row = self._read_one(f"SELECT {_STORED} FROM answers WHERE {where}", parameters)
        return None if row is None else _stored_answer(row)

    def share(self, answer_id: int, *, guild_id: int | None, message_id: int | None, user_id: int) -> Shared | None:
        """The public copy of this user's private answer posted there as `message_id`, made on the first call.

        None when there is no such answer (not private, another user's, pruned). A copy whose
        message never went out (`sent` was not told it) is handed out again as new, to be posted.
        """
        now = self._now()
        with self._state.session(exclusive=True) as db:  # one copy, however many presses race
            original = db.execute(f"SELECT id FROM answers WHERE {_POSTED} AND private = 1 AND user_id = ?",
                                  (answer_id, guild_id, message_id, message_id, user_id)).fetchone()
            if original is None:
                return None
            copy = db.execute(f"SELECT {_STORED} FROM answers WHERE shared_from = ?", (answer_id,)).fetchone()
            if copy is not None:
                stored = _stored_answer(copy)
                return Shared(stored.id, stored.answer, new=stored.message_id is None)
            copy_id = int(db.execute(
                "INSERT INTO answers (at, collection, guild_id, channel_id, user_id, conversation, question, found, "
                "text, chunk_ids, answer, private, shared_from) SELECT ?, collection, guild_id, channel_id, "
                "user_id, NULL, question, found, text, chunk_ids, answer, 0, id FROM answers WHERE id = ? "
                "RETURNING id", (now, answer_id)).fetchone()[0])
            row = db.execute(f"SELECT {_STORED} FROM answers WHERE id = ?", (copy_id,)).fetchone()
            return Shared(copy_id, _stored_answer(row).answer, new=True)

    def context(self, conversation: int, *, limit: int) -> list[str] | None:
        """The conversation's last `limit` questions, oldest first; None if no answer is stored under that key."""
        rows = self._read("SELECT question FROM answers WHERE conversation = ? ORDER BY id DESC LIMIT ?",
                          (conversation, limit))
        return [question for (question,) in reversed(rows)] if rows else None

    def context_of_message(self, message_id: int, *, limit: int) -> tuple[int, list[str]] | None:
        """For a reply to the answer posted as `message_id`: its conversation's key and questions up to that answer."""
        row = self._read_one("SELECT id, coalesce(conversation, message_id) FROM answers WHERE message_id = ? "
                             "ORDER BY id DESC LIMIT 1", (message_id,))
        if row is None:
            return None
        answer_id, conversation = row
        rows = self._read("SELECT question FROM answers WHERE conversation = ? AND id <= ? ORDER BY id DESC LIMIT ?",
                          (conversation, answer_id, limit))
        return conversation, [question for (question,) in reversed(rows)]

    # -- votes

    def record_vote(self, answer_id: int, *, guild_id: int | None, message_id: int | None, user_id: int,
                    vote: int) -> bool:
        """Store one vote (+1 or -1) on a posted answer, replacing this user's earlier one.

        False, and nothing stored, when no such answer was posted there (pruned, or never stored).
        """
        if vote not in (-1, 1):
            raise ValueError(f"vote must be +1 or -1, got {vote!r}")
        with self._state.session() as db:
            cursor = db.execute(
                "INSERT INTO votes (answer_id, user_id, message_id, at, question, answer, chunk_ids, vote, "
                "collection, guild_id) SELECT id, ?, coalesce(CAST(? AS BIGINT), message_id), ?, question, text, "
                f"chunk_ids, ?, collection, guild_id FROM answers WHERE {_POSTED} ON CONFLICT (answer_id, user_id) "
                "DO UPDATE SET message_id = excluded.message_id, at = excluded.at, vote = excluded.vote",
                (user_id, message_id, self._now(), vote, answer_id, guild_id, message_id, message_id))
            return cursor.rowcount == 1

    def votes(self, *, collection: str | None = None) -> list[Vote]:
        """Every stored vote, or those on answers from `collection`, oldest first."""
        if not self._state.exists():
            return []
        where, parameters = ("WHERE collection = ? ", (collection,)) if collection is not None else ("", ())
        rows = self._read("SELECT answer_id, user_id, message_id, at, question, answer, chunk_ids, vote, collection, "
                          f"guild_id FROM votes {where}ORDER BY at, answer_id, user_id", parameters)
        return [Vote(a, u, m, at, q, text, json.loads(ids), v, c, g) for a, u, m, at, q, text, ids, v, c, g in rows]

    # -- retention

    def prune(self) -> int:
        """Delete answers and votes older than `keep_days`; the number of rows deleted."""
        with self._state.session() as db:
            return self._prune(db, self._now())

    def _prune(self, db, now: float) -> int:
        cutoff = now - self.keep_days * DAY
        removed = db.execute("DELETE FROM answers WHERE at < ?", (cutoff,)).rowcount
        removed += db.execute("DELETE FROM votes WHERE at < ?", (cutoff,)).rowcount
        self._pruned_at = now
        if removed:
            log.info("history: removed %d rows older than %d days", removed, self.keep_days)
        return removed

    # -- plumbing

    def _read(self, sql: str, parameters: tuple) -> list[tuple]:
        with self._state.session() as db:
            return db.execute(sql, parameters).fetchall()

    def _read_one(self, sql: str, parameters: tuple) -> tuple | None:
        rows = self._read(sql, parameters)
        return rows[0] if rows else None


_STORED = "id, at, collection, guild_id, channel_id, message_id, conversation, question, user_id, private, answer"


def _stored_answer(row: tuple) -> StoredAnswer:
    *fields, private, dumped = row
    try:
        parsed = Answer.model_validate_json(dumped)
    except ValidationError as error:
        log.warning("stored answer %s cannot be read by this citebot: %s", fields[0], error)
        parsed = None
    return StoredAnswer(*fields, bool(private), parsed)


def _upgrade(connection: sqlite3.Connection) -> None:
    """Add the columns a history file written by an earlier citebot lacks; its votes learn their collection."""
    missing = {table: {name: kind for name, kind in columns.items()
                       if name not in {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}}
               for table, columns in _ADDED.items()}
    if any(missing.values()):
        with connection:
            connection.execute("BEGIN IMMEDIATE")
            for table, columns in missing.items():
                present = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}  # another start's?
                for name, kind in columns.items():
                    if name not in present:
                        connection.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
            if "collection" in missing["votes"]:
                connection.execute(
                    "UPDATE votes SET collection = (SELECT collection FROM answers WHERE answers.id = votes.answer_id), "
                    "guild_id = (SELECT guild_id FROM answers WHERE answers.id = votes.answer_id)")
    connection.executescript(_INDEXES)
