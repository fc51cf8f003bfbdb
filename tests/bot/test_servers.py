"""bot/servers.py: the admins' choices in servers.sqlite (or PostgreSQL, the tests taking `state_settings`), read
once, written through, looked up most particular first."""

from __future__ import annotations

import sqlite3

import pytest

from bot.servers import SERVER, Overrides, Rules, ServerBook

BASE = Rules()


def test_a_rule_falls_through_channel_then_server_then_the_settings(state_settings):
    book = ServerBook.from_settings(state_settings)
    book.set_rules(1, SERVER, Overrides(replies="inline", not_found="private"))
    book.set_rules(1, 10, Overrides(replies="thread"))

    assert book.rules(BASE, 1, 10) == Rules(replies="thread", not_found="private")
    assert book.rules(BASE, 1, 11) == Rules(replies="inline", not_found="private")
    assert book.rules(BASE, 2, 10) == BASE  # another server
    assert book.rules(BASE, None, None) == BASE  # no server: a direct message


def test_changes_merge_and_survive_a_new_book_on_the_same_file(state_settings):
    book = ServerBook.from_settings(state_settings)
    book.set_rules(1, 10, Overrides(mention_only=True))
    book.set_rules(1, 10, Overrides(answers=False))  # mention_only stays
    book.set_collection(1, "server-1", by=99)

    again = ServerBook.from_settings(state_settings)
    assert again.overrides(1, 10) == Overrides(answers=False, mention_only=True)
    assert again.collection(1) == "server-1" and again.collection(2) is None
    assert again.channels_with_rules(1) == [10]
    assert again.reset_rules(1, 10) and not again.reset_rules(1, 10)
    again.set_collection(1, None)
    third = ServerBook.from_settings(state_settings)
    assert third.overrides(1, 10) == Overrides() and third.collections() == {}


def test_a_bad_value_is_refused_and_nothing_is_written(state_settings):
    book = ServerBook.from_settings(state_settings)
    with pytest.raises(ValueError, match="replies must be one of thread, inline"):
        book.set_rules(1, 10, Overrides(replies="sideways"))
    assert not book._state.exists() and book.overrides(1, 10) == Overrides()
    if state_settings.index.url is None:
        assert not (state_settings.index.dir / "servers.sqlite").exists()


def test_a_snowflake_id_is_kept_whole(state_settings):
    """Discord ids are 64-bit: PostgreSQL's columns are bigint."""
    guild, channel = 1_234_567_890_123_456_789, 987_654_321_098_765_432
    ServerBook.from_settings(state_settings).set_rules(guild, channel, Overrides(not_found="private"), by=guild)
    ServerBook.from_settings(state_settings).set_collection(guild, "big")
    again = ServerBook.from_settings(state_settings)
    assert again.overrides(guild, channel) == Overrides(not_found="private") and again.collection(guild) == "big"


def test_reading_rules_asks_the_file_once(tmp_path):
    path = tmp_path / "servers.sqlite"
    ServerBook(path).set_rules(1, 10, Overrides(replies="inline"))
    book = ServerBook(path)
    assert book.rules(BASE, 1, 10).replies == "inline"
    path.unlink()  # read once: later lookups need nothing from disk
    assert book.rules(BASE, 1, 10).replies == "inline" and book.collection(1) is None
    with pytest.raises(sqlite3.OperationalError):
        sqlite3.connect(f"file:{path}?mode=ro", uri=True).execute("SELECT 1 FROM channels")


def test_a_change_made_by_another_process_is_seen_within_a_second(state_settings, monkeypatch):
    """Two books on one store, as two bot shards on one database: no restart needed."""
    import time

    from bot import servers

    monkeypatch.setattr(servers, "REFRESH_S", 0.05)
    shard0, shard1 = ServerBook.from_settings(state_settings), ServerBook.from_settings(state_settings)
    shard0.set_rules(1, 10, Overrides(not_found="private"))
    assert shard1.rules(BASE, 1, 10).not_found == "private" and shard1.collection(1) is None
    shard0.set_collection(1, "harbour")
    shard1.set_rules(1, SERVER, Overrides(replies="inline"))  # it writes while the other's change is unread
    time.sleep(0.1)
    assert shard1.collection(1) == "harbour" and shard0.rules(BASE, 1, 11).replies == "inline"
    shard0.reset_rules(1, 10)
    time.sleep(0.1)
    assert shard1.rules(BASE, 1, 10).not_found == "public" and shard1.channels_with_rules(1) == []
