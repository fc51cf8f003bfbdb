"""A small state store in PostgreSQL (the feed book, the bot's history and server rules): StateDB of
retrieval/backends/base.py, in the collection's schema beside its index, through a connection pool.

Stores write their SQL once, with `?` placeholders; a session turns them into psycopg's. The pool is one
per database and schema in a process, shared by every store there (psycopg_pool: at most `MAX_CONNECTIONS`,
each checked before use, so a server that restarted costs a reconnect, not an error). A server that cannot
be reached is one IndexUnavailableError naming the database without its password.
"""

from __future__ import annotations

import atexit
import logging
import threading
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from retrieval.backends.postgres.schema import shown
from retrieval.errors import CitebotError, IndexUnavailableError, StateError

# The pool logs each failed reconnection as a warning with its own wording; citebot says it once, in its own
# line (IndexUnavailableError), so only the pool's errors are let through.
logging.getLogger("psycopg.pool").setLevel(logging.ERROR)

MAX_CONNECTIONS = 4
WAIT_S = 5.0  # for a connection from the pool (a server that is down fails after this)

_pools: dict[tuple[str, str], ConnectionPool] = {}
_pools_lock = threading.Lock()


def pool(url: str, schema: str) -> ConnectionPool:
    """The process's pool for this database and schema (search_path set on each connection)."""
    with _pools_lock:
        found = _pools.get((url, schema))
        if found is None or found.closed:
            def configure(connection: psycopg.Connection) -> None:
                connection.autocommit = True
                connection.execute(f'SET search_path = "{schema}", public')
                connection.autocommit = False

            found = ConnectionPool(url, min_size=1, max_size=MAX_CONNECTIONS, open=False, configure=configure,
                                   check=ConnectionPool.check_connection, kwargs={"connect_timeout": 10},
                                   name=f"citebot-{schema}")
            found.open(wait=False)
            _pools[url, schema] = found
        return found


@atexit.register
def close_pools() -> None:
    with _pools_lock:
        for each in _pools.values():
            each.close(timeout=1.0)
        _pools.clear()


def _unavailable(url: str, error: BaseException) -> IndexUnavailableError:
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return IndexUnavailableError(f"cannot reach the database {shown(url)} ({reason}): nothing was changed; check "
                                 "index.url and that the server is running")


class _Session:
    """A pooled connection in one transaction, taking `?` placeholders."""

    def __init__(self, connection: psycopg.Connection):
        self._connection = connection

    def execute(self, sql: str, parameters: Sequence = ()):
        return self._connection.execute(_placeholders(sql), tuple(parameters) or None)

    def executemany(self, sql: str, rows: Iterable[Sequence]) -> None:
        rows = [tuple(row) for row in rows]
        if rows:
            with self._connection.cursor() as cursor:
                cursor.executemany(_placeholders(sql), rows)


def _placeholders(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresState:
    dialect = "postgres"

    def __init__(self, url: str, schema: str, ddl: str, *, table: str):
        self.url = url
        self.schema = schema
        self._ddl = ddl
        self._table = table  # one of the store's tables: whether it exists says whether the store was written
        self._ready = False

    @property
    def location(self) -> str:
        return f"{shown(self.url)} (schema {self.schema})"

    def exists(self) -> bool:
        with self._connection() as connection:
            return connection.execute("SELECT to_regclass(%s) IS NOT NULL",
                                      (f'"{self.schema}".{self._table}',)).fetchone()[0]

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        try:
            with pool(self.url, self.schema).connection(timeout=WAIT_S) as connection:
                yield connection
        except PoolTimeout as error:
            raise _unavailable(self.url, error) from None
        except (psycopg.OperationalError, psycopg.InterfaceError) as error:
            raise _unavailable(self.url, error) from None
        except psycopg.Error as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise StateError(f"{shown(self.url)} (schema {self.schema}): {reason}") from error

    @contextmanager
    def session(self, *, exclusive: bool = False) -> Iterator[_Session]:
        if not self._ready:  # the first use: a server that is not there is said at once, with its reason
            try:
                psycopg.connect(self.url, connect_timeout=10).close()
            except psycopg.OperationalError as error:
                raise _unavailable(self.url, error) from None
        with self._connection() as connection:  # commits at the end of the block, rolls back on an exception
            if not self._ready:
                self._prepare(connection)
            if exclusive:
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key(),))
            yield _Session(connection)

    def _prepare(self, connection: psycopg.Connection) -> None:
        """The schema and the store's tables, made once by whichever process comes first."""
        try:
            with connection.transaction():
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key("ddl"),))
                connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                connection.execute(self._ddl)
        except psycopg.errors.InsufficientPrivilege as error:
            raise CitebotError(f"{shown(self.url)}: cannot create the {self._table} table in schema {self.schema} "
                               f"({str(error).strip().splitlines()[0]}): grant CREATE to citebot's user") from None
        self._ready = True

    def _lock_key(self, what: str = "") -> int:
        return zlib.crc32(f"citebot:{self.schema}:{self._table}:{what}".encode())

    def close(self) -> None:
        pass  # the pool is the process's, shared by every store; closed at exit
