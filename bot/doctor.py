"""`citebot doctor`: is this installation ready? One line per check, ok / warn / fail.

Checks the model (loads offline), the ONNX question encoder, the index folder (readable,
writable), the index's schema version and its agreement (`citebot check`), and the Discord
settings (discord.py installed, a well-formed token, channel ids), without printing the token.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from retrieval.errors import CitebotError
from retrieval.settings import Settings, find_defaults

Status = Literal["ok", "warn", "fail"]

# A bot token: the bot's user id in base64, a timestamp, an HMAC, separated by dots.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{17,40}\.[A-Za-z0-9_-]{4,10}\.[A-Za-z0-9_-]{20,}")
# A Discord id (snowflake): 17 to 20 digits today.
_SNOWFLAKE_MIN, _SNOWFLAKE_MAX = 10**16, 2**64 - 1


@dataclass(frozen=True)
class Finding:
    name: str
    status: Status
    detail: str


def run_checks(settings: Settings) -> Iterator[Finding]:
    """Every check, in order, as each finishes; a check that crashes is a failure, not a traceback."""
    checks: list[tuple[str, Callable[[Settings], tuple[Status, str]]]] = [
        ("settings", _settings), ("model", _model), ("question encoder", _question_encoder),
        ("database", _database), ("index folder", _index_folder), ("schema", _schema), ("agreement", _agreement),
        ("sentence vectors", _sentence_vectors),
        ("discord.py", _discord_package), ("discord token", _discord_token), ("discord channels", _channels),
    ]
    for name, check in checks:
        try:
            status, detail = check(settings)
        except Exception as error:  # noqa: BLE001 - the doctor reports, it does not crash
            status, detail = "fail", f"the check itself failed ({type(error).__name__}: {error})"
        yield Finding(name, status, detail)


def _settings(settings: Settings) -> tuple[Status, str]:
    defaults = find_defaults()
    where = "an installed citebot" if defaults.installed else "the checkout"
    return "ok", f"defaults read from {defaults.file} ({where}); `citebot config show` lists them"


def _model(settings: Settings) -> tuple[Status, str]:
    from retrieval.embed import SentenceTransformerEmbedder
    from retrieval.errors import ModelLoadError

    embedder = SentenceTransformerEmbedder(settings.embedding)
    try:
        vectors = embedder.embed_queries(["Is citebot ready?"])
    except ModelLoadError as error:
        return "fail", str(error)
    return "ok", (f"{settings.embedding.model} loads offline ({vectors.shape[1]} dimensions, "
                  f"{embedder.max_tokens} word pieces)")


def _question_encoder(settings: Settings) -> tuple[Status, str]:
    from retrieval.onnx_embed import default_onnx_dir, load_question_embedder

    encoder = load_question_embedder(settings.embedding)
    if encoder is None:
        return "warn", (f"no ONNX export in {default_onnx_dir(settings.embedding)}: questions load torch (a slower "
                        "start) until the next ingest writes one")
    encoder.embed_queries(["Is citebot ready?"])
    return "ok", f"ONNX export in {encoder.folder}"


def _database(settings: Settings) -> tuple[Status, str]:
    if settings.index.url is None:
        return "ok", "none: the index is kept in the folder below (index.url names a PostgreSQL database)"
    from retrieval.backends import open_index

    try:
        store = open_index(settings)
    except CitebotError as error:
        return "fail", str(error)
    try:
        try:
            about = store.server()
        except CitebotError as error:
            return "fail", str(error)
        replica = ""
        if about["replica"]:
            lag = "nothing replayed yet" if about["lag_s"] is None else f"last commit replayed {about['lag_s']:.1f} s ago"
            replica = f"; a streaming replica, {lag}"
        if about["read_from"]:
            if about["lag_bytes"] == 0:
                lag = "has replayed everything the primary wrote"
            elif about["lag_bytes"] is None:
                lag = "its lag is unknown"
            else:
                seconds = "" if about["lag_s"] is None else f", last commit replayed {about['lag_s']:.1f} s ago"
                lag = f"is {about['lag_bytes']:,} bytes of WAL behind the primary{seconds}"
            replica += f"; questions read from the replica {about['read_from']}, which {lag}"
        return "ok", (f"{store.location}: PostgreSQL {about['postgres']}, pgvector {about['pgvector']}, "
                      f"schema {about['schema']}, vectors {about['vector_index']}{replica}")
    finally:
        store.close()


def _index_folder(settings: Settings) -> tuple[Status, str]:
    folder = settings.index.dir
    if not folder.exists():
        parent = next(p for p in folder.parents if p.exists())
        if os.access(parent, os.W_OK | os.X_OK):
            return "ok", f"{folder} does not exist yet: the first ingest or question makes it"
        return "fail", f"{folder} cannot be made: {parent} is not writable; set CITEBOT_HOME or index.dir elsewhere"
    if not folder.is_dir():
        return "fail", f"{folder} is not a folder: set CITEBOT_HOME or index.dir to a folder"
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
        readable = os.access(folder, os.R_OK | os.X_OK) and all(
            os.access(p, os.R_OK) for p in folder.iterdir() if p.is_file())
    except OSError as error:
        return "fail", f"{folder} is not writable ({error.strerror}): fix its permissions or move the index"
    if not readable:
        return "fail", f"{folder} holds files this user cannot read: fix their permissions"
    return "ok", f"{folder} is readable and writable"


def _schema(settings: Settings) -> tuple[Status, str]:
    if settings.index.url is not None:
        return "ok", "the database's: see the database line"
    from retrieval.backends.embedded.migrate import schema_version
    from retrieval.backends.embedded.schema import SCHEMA_VERSION

    try:
        version = schema_version(settings.index.dir)
    except sqlite3.DatabaseError as error:
        return "fail", (f"the index in {settings.index.dir} cannot be read ({error}): rebuild with "
                        "`citebot ingest --rebuild PATH…`")
    if version is None:
        return "ok", "no index yet"
    if version < SCHEMA_VERSION:
        return "fail", f"schema {version}, older than this citebot's {SCHEMA_VERSION}: run `citebot migrate`"
    if version > SCHEMA_VERSION:
        return "fail", (f"schema {version}, written by a newer citebot (this one reads {SCHEMA_VERSION}): upgrade "
                        "citebot, or rebuild with `citebot ingest --rebuild PATH…`")
    return "ok", f"schema {version}, current"


@contextmanager
def _current_store(settings: Settings):
    """The index, closed after; None when there is no index of this citebot's schema (or no database)."""
    from retrieval.backends import open_index
    from retrieval.backends.embedded.migrate import schema_version
    from retrieval.backends.embedded.schema import SCHEMA_VERSION

    if settings.index.url is None and schema_version(settings.index.dir) != SCHEMA_VERSION:
        yield None
        return
    try:
        store = open_index(settings)
    except CitebotError:  # a database that cannot be reached: the database line says why
        yield None
        return
    try:
        yield store
    finally:
        store.close()


_NO_INDEX = ("ok", "nothing to check (no current index)")


def _agreement(settings: Settings) -> tuple[Status, str]:
    with _current_store(settings) as store:
        if store is None:
            return _NO_INDEX
        problems = store.check()
        documents, chunks = store.count_documents(), store.count_chunks()
    if problems:
        more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
        return "fail", f"{problems[0]}{more}: `citebot check` lists them"
    return "ok", f"store and vectors agree: {documents} documents, {chunks} chunks"


def _sentence_vectors(settings: Settings) -> tuple[Status, str]:
    with _current_store(settings) as store:
        if store is None:
            return _NO_INDEX
        chunks, made = store.count_chunks(), store.get_meta("sentence_vectors") or "separate"
    wanted = settings.embedding.sentence_vectors
    if not chunks or made == wanted:
        return "ok", f"made the way the settings say ({wanted})"
    what = {"separate": "all", "mixed": "some"}.get(made, "all")
    return "warn", (f"{what} of the index's sentence vectors were made another way than embedding.sentence_vectors = "
                    f"{wanted!r} says (the rescoring weights are fitted for it; on SQuAD, recall@1 0.865 against "
                    "0.875): rebuild with `citebot ingest --rebuild PATH…`")


def _discord_package(settings: Settings) -> tuple[Status, str]:
    try:
        import discord
    except ModuleNotFoundError as error:
        if error.name != "discord":
            raise
        return "warn", "not installed: `citebot discord` needs pip install 'citebot[discord]'"
    return "ok", f"discord.py {discord.__version__}"


def _discord_token(settings: Settings) -> tuple[Status, str]:
    if settings.discord_token is None:
        return "warn", "CITEBOT_DISCORD_TOKEN is not set: `citebot discord` needs it"
    token = settings.discord_token.get_secret_value().strip()
    if not _TOKEN.fullmatch(token):
        return "fail", ("CITEBOT_DISCORD_TOKEN is set but is not shaped like a bot token (three parts joined by "
                        "dots): copy it again from the Developer Portal (Bot → Reset Token)")
    user = _token_user(token)
    if user is None:
        return "warn", "CITEBOT_DISCORD_TOKEN is set, but its first part names no user id: check it is a bot token"
    return "ok", f"CITEBOT_DISCORD_TOKEN is set and well-formed, for bot user {user}"


def _token_user(token: str) -> int | None:
    """The bot's user id, which a token's first part holds in base64 (the id is public; the token is not)."""
    first = token.split(".", 1)[0]
    try:
        text = base64.urlsafe_b64decode(first + "=" * (-len(first) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return int(text) if text.isdigit() and _SNOWFLAKE_MIN <= int(text) <= _SNOWFLAKE_MAX else None


def _channels(settings: Settings) -> tuple[Status, str]:
    discord = settings.discord
    ids = [("discord.channels", c) for c in discord.channels]
    if discord.dev_guild is not None:
        ids.append(("discord.dev_guild", discord.dev_guild))
    bad = [(name, value) for name, value in ids if not _SNOWFLAKE_MIN <= value <= _SNOWFLAKE_MAX]
    if bad:
        name, value = bad[0]
        return "fail", (f"{name} holds {value}, which is not a Discord id (17 to 20 digits): copy it with "
                        "Developer Mode on (right-click → Copy ID)")
    where = f"{len(discord.channels)} channels" if discord.channels else "every channel (discord.channels is empty)"
    guild = f"; commands synced to server {discord.dev_guild} only" if discord.dev_guild is not None else ""
    return "ok", f"answers in {where}{guild}"
