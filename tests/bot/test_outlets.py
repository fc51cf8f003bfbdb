"""The outlets offered by `/ask outlet:` autocomplete (bot/outlets.py), from a real store file."""

from __future__ import annotations

import sqlite3

from bot.outlets import Outlets
from retrieval.backends.embedded.store import Store
from tests.bot.conftest import add_documents


def test_outlets_starting_with_what_was_typed_come_first_then_those_holding_it(tmp_path):
    path = add_documents(tmp_path / "citebot.sqlite", ["Newsmax", "Fox News", "Reuters", "NEWSWEEK", None, "  "])

    outlets = Outlets(Store(path))

    assert outlets.matching("news") == ["Newsmax", "NEWSWEEK", "Fox News"]
    assert outlets.matching("  NeWs ") == ["Newsmax", "NEWSWEEK", "Fox News"]
    assert outlets.matching("") == ["Fox News", "Newsmax", "NEWSWEEK", "Reuters"]  # no blank outlet offered
    assert outlets.matching("bbc") == []


def test_one_outlet_spelled_two_ways_is_offered_once_as_most_documents_spell_it(tmp_path):
    path = add_documents(tmp_path / "citebot.sqlite", ["REUTERS", "Reuters", "Reuters ", "reuters"])

    assert Outlets(Store(path)).matching("re") == ["Reuters"]  # the filter matches any case: one choice is enough
    add_documents(path, ["BBC", "bbc", "Bbc"])
    assert Outlets(Store(path)).matching("b") == ["Bbc"]  # as many one way as another: the mixed case
    add_documents(path, ["bbc"])
    assert Outlets(Store(path)).matching("b") == ["bbc"]


def test_at_most_25_and_none_discord_could_not_take(tmp_path):
    names = [f"Outlet {n:02}" for n in range(30)] + ["Outlet \x1b[31mred", "Outlet " + "x" * 100]
    path = add_documents(tmp_path / "citebot.sqlite", names)

    offered = Outlets(Store(path)).matching("outlet")

    assert offered == [f"Outlet {n:02}" for n in range(25)]


def test_the_documents_are_read_once_per_generation(tmp_path):
    path = add_documents(tmp_path / "citebot.sqlite", ["Reuters"])
    outlets = Outlets(Store(path))

    for typed in ("r", "re", "reu", "reut"):
        assert outlets.matching(typed) == ["Reuters"]
    assert outlets.scans == 1
    add_documents(path, ["Radio Free Europe"])  # an ingest: a new generation

    assert outlets.matching("r") == ["Radio Free Europe", "Reuters"]
    assert outlets.scans == 2


def test_an_empty_index_offers_nothing(tmp_path):
    assert Outlets(Store(tmp_path / "citebot.sqlite")).matching("re") == []


def test_an_index_that_cannot_be_read_keeps_the_last_list(tmp_path):
    path = add_documents(tmp_path / "citebot.sqlite", ["Reuters"])
    store = Store(path)
    outlets = Outlets(store)
    assert outlets.matching("r") == ["Reuters"]
    add_documents(path, ["Radio Free Europe"])
    store.close()
    store.path = tmp_path / "gone" / "citebot.sqlite"  # away (a database restarting, an unmounted disk)
    assert outlets.matching("r") == ["Reuters"]


def test_the_store_is_only_read(tmp_path):
    path = add_documents(tmp_path / "citebot.sqlite", ["Reuters"])
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
    writer = sqlite3.connect(path)
    writer.execute("BEGIN IMMEDIATE")  # a writer mid-ingest holds the write lock
    try:
        assert Outlets(Store(path)).matching("reu") == ["Reuters"]  # read beside it, without waiting for it
    finally:
        writer.rollback()
        writer.close()
