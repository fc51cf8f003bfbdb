"""👍/👎 votes on the bot's answers, kept in SQLite next to the index for later evaluation.

One row per (answer message, user): voting again replaces the earlier vote. Calls block on disk,
so the bot makes them off the event loop.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from retrieval.settings import Settings

FILENAME = "feedback.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    message_id INTEGER NOT NULL,
    user_id    INTEGER NOT NULL,
    at         TEXT    NOT NULL,
    question   TEXT    NOT NULL,
    answer     TEXT    NOT NULL,
    chunk_ids  TEXT    NOT NULL,
    vote       INTEGER NOT NULL CHECK (vote IN (-1, 1)),
    PRIMARY KEY (message_id, user_id)
)
"""


@dataclass(frozen=True)
class Vote:
    message_id: int
    user_id: int
    at: dt.datetime
    question: str
    answer: str
    chunk_ids: list[str]
    vote: int


class FeedbackStore:
    """The votes table in `path`; the file and its folder are created on first write."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def from_settings(cls, settings: Settings) -> FeedbackStore:
        return cls(Path(settings.index.dir) / FILENAME)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=10)
        connection.execute(_SCHEMA)
        return connection

    def record(
        self, *, message_id: int, user_id: int, question: str, answer: str, chunk_ids: list[str], vote: int
    ) -> None:
        """Store one vote (+1 or -1), replacing this user's earlier vote on the same answer."""
        if vote not in (-1, 1):
            raise ValueError(f"vote must be +1 or -1, got {vote!r}")
        at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        connection = self._connect()
        try:
            with connection:
                connection.execute(
                    "INSERT OR REPLACE INTO feedback VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (message_id, user_id, at, question, answer, json.dumps(chunk_ids), vote),
                )
        finally:
            connection.close()

    def votes(self) -> list[Vote]:
        """Every stored vote, oldest first."""
        if not self.path.exists():
            return []
        connection = self._connect()
        try:
            rows = connection.execute("SELECT * FROM feedback ORDER BY at, rowid").fetchall()
        finally:
            connection.close()
        return [
            Vote(m, u, dt.datetime.fromisoformat(at), q, a, json.loads(ids), v) for m, u, at, q, a, ids, v in rows
        ]
