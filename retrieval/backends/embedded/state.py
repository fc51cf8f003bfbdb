"""A small state store in a SQLite file of the index folder (`feeds.sqlite`, `history.sqlite`,
`servers.sqlite`): StateDB of retrieval/backends/base.py. Each session opens its own connection, so any
thread may call; the file and its folder are made at the first session."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from retrieval.errors import StateError


class SqliteState:
    dialect = "sqlite"

    def __init__(self, path: Path, ddl: str, *, upgrade: Callable[[sqlite3.Connection], None] | None = None):
        self.path = Path(path)
        self._ddl = ddl
        self._upgrade = upgrade
        self._ready = False

    @property
    def location(self) -> str:
        return str(self.path)

    def exists(self) -> bool:
        return self.path.exists()

    def _connect(self) -> sqlite3.Connection:
        if not self._ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            if not self._ready:
                connection.execute("PRAGMA journal_mode=WAL")  # readers go on while another process writes
                connection.executescript(self._ddl)
                if self._upgrade is not None:
                    self._upgrade(connection)
                self._ready = True
            connection.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            connection.close()
            raise
        return connection

    @contextmanager
    def session(self, *, exclusive: bool = False) -> Iterator[sqlite3.Connection]:
        """A transaction; any SQLite error (a locked, unreadable or corrupt file) is one StateError."""
        try:
            connection = self._connect()
            try:
                connection.execute("BEGIN IMMEDIATE" if exclusive else "BEGIN")
                try:
                    yield connection
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
                connection.execute("COMMIT")
            finally:
                connection.close()
        except sqlite3.Error as error:
            raise StateError(f"{self.path}: {error}") from error

    def close(self) -> None:
        pass  # nothing stays open between sessions
