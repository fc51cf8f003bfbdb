"""The bot's history (bot/history.py): answers, conversations, votes and retention, on a real SQLite file and
(the tests taking `store`) on a real PostgreSQL server too."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from bot.history import DAY, FILENAME, PRUNE_EVERY, HistoryStore
from retrieval.settings import load_settings
from tests.bot.conftest import huge_answer, make_answer, not_found

GUILD, CHANNEL, USER = 11, 22, 33


class WallClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> WallClock:
    return WallClock()


@pytest.fixture
def store(state_settings, clock) -> HistoryStore:
    """The history where the index is: a history.sqlite file, or the schema of a real PostgreSQL database."""
    return HistoryStore.from_settings(state_settings.model_copy(update={"discord": state_settings.discord.model_copy(
        update={"history_days": 90})}), now=clock)


def add(store: HistoryStore, question: str = "where?", *, conversation: int | None = None, message_id: int | None = None,
        answer=None) -> int:
    answer_id = store.add_answer(answer or make_answer(question), collection="default", guild_id=GUILD,
                                 channel_id=CHANNEL, user_id=USER, conversation=conversation)
    if message_id is not None:
        store.sent(answer_id, message_id)
    return answer_id


def test_the_file_is_in_the_index_folder_and_the_retention_is_the_setting(tmp_path):
    settings = load_settings(index={"dir": str(tmp_path / "index")}, discord={"history_days": 7})
    store = HistoryStore.from_settings(settings)
    assert store.location == str(tmp_path / "index" / "history.sqlite") and store.keep_days == 7
    assert not Path(store.location).exists()  # made on first write
    assert load_settings().discord.history_days == 90


def test_an_answer_comes_back_whole(store):
    answer = huge_answer("a huge question")
    answer_id = add(store, answer=answer, message_id=500)

    stored = store.answer(answer_id)
    assert stored.answer == answer
    assert (stored.collection, stored.guild_id, stored.channel_id, stored.message_id) == ("default", GUILD, CHANNEL, 500)
    assert stored.conversation == 500  # a new question's conversation is keyed by its message
    assert store.answer(answer_id + 1) is None


def test_a_conversation_is_its_questions_oldest_first_and_capped(store):
    add(store, "first?", message_id=100)
    for n in range(2, 6):
        add(store, f"q{n}?", conversation=100, message_id=100 + n)
    add(store, "another conversation?", message_id=900)

    assert store.context(100, limit=10) == ["first?", "q2?", "q3?", "q4?", "q5?"]
    assert store.context(100, limit=2) == ["q4?", "q5?"]
    assert store.context(12345, limit=10) is None
    # A reply to the third answer continues that conversation up to that answer.
    assert store.context_of_message(103, limit=10) == (100, ["first?", "q2?", "q3?"])
    assert store.context_of_message(900, limit=10) == (900, ["another conversation?"])
    assert store.context_of_message(4242, limit=10) is None


def test_a_not_found_answer_is_part_of_the_conversation(store):
    add(store, answer=not_found("an unknown thing"), message_id=100)
    assert store.context(100, limit=10) == ["an unknown thing"]


def test_votes_replace_each_other_and_keep_what_was_answered(store, clock):
    answer_id = add(store, "where?", message_id=100)
    assert store.record_vote(answer_id, guild_id=GUILD, message_id=100, user_id=1, vote=1)
    clock.now += 5
    assert store.record_vote(answer_id, guild_id=GUILD, message_id=100, user_id=1, vote=-1)
    assert store.record_vote(answer_id, guild_id=GUILD, message_id=100, user_id=2, vote=1)

    [first, second] = store.votes()
    assert {(v.user_id, v.vote) for v in (first, second)} == {(1, -1), (2, 1)}
    assert first.question == "where?" and first.answer == "Slovakia, Hungary, Romania and Bulgaria"
    assert first.chunk_ids == ["chunk1", "chunk2", "chunk3"] and first.message_id == 100
    with pytest.raises(ValueError, match="vote must be"):
        store.record_vote(answer_id, guild_id=GUILD, message_id=100, user_id=1, vote=2)


def test_a_vote_or_sources_need_the_answer_posted_there(store):
    answer_id = add(store, message_id=100)

    assert not store.record_vote(answer_id, guild_id=GUILD + 1, message_id=100, user_id=1, vote=1)
    assert not store.record_vote(answer_id, guild_id=GUILD, message_id=101, user_id=1, vote=1)
    assert not store.record_vote(answer_id + 1, guild_id=GUILD, message_id=100, user_id=1, vote=1)
    assert store.posted_answer(answer_id, guild_id=GUILD, message_id=101) is None
    assert store.posted_answer(answer_id, guild_id=GUILD, message_id=100).id == answer_id
    assert store.votes() == []


def test_pruning_removes_what_is_older_than_the_retention_and_nothing_else(store, clock):
    old = add(store, "old?", message_id=100)
    store.record_vote(old, guild_id=GUILD, message_id=100, user_id=1, vote=1)
    clock.now += 60 * DAY
    recent = add(store, "recent?", conversation=100, message_id=101)
    store.record_vote(recent, guild_id=GUILD, message_id=101, user_id=1, vote=1)
    clock.now += 31 * DAY  # old is 91 days old, recent 31

    assert store.prune() == 2  # the old answer and its vote
    assert store.answer(old) is None and store.answer(recent) is not None
    assert [v.answer_id for v in store.votes()] == [recent]
    assert store.context(100, limit=10) == ["recent?"]
    assert store.prune() == 0


def test_answers_prune_the_history_at_most_once_an_hour(store, clock):
    old = add(store, "old?")
    clock.now += 91 * DAY
    add(store, "the first answer in a while prunes?")
    assert store.answer(old) is None

    stale = add(store, "written long ago?")
    with store._state.session() as connection:
        connection.execute("UPDATE answers SET at = ? WHERE id = ?", (clock.now - 100 * DAY, stale))
    clock.now += PRUNE_EVERY - 60
    add(store, "within the hour?")
    assert store.answer(stale) is not None  # not pruned again yet
    clock.now += 60
    add(store, "an hour later?")
    assert store.answer(stale) is None


def test_a_pruned_answer_id_is_never_given_to_a_new_answer(store, clock):
    first = add(store)
    clock.now += 91 * DAY
    store.prune()
    assert add(store) > first  # an old button must not show a new answer


def test_pruning_costs_what_it_removes_not_the_size_of_the_history(tmp_path, clock):
    """SQLite's virtual-machine steps for one prune of 10 rows: the same with 100 or 20,000 rows kept."""
    def steps(kept: int) -> int:
        store = HistoryStore(tmp_path / f"{kept}.sqlite", keep_days=90, now=clock)
        template = add(store, "template?")
        with sqlite3.connect(Path(store.location)) as connection:
            row = connection.execute("SELECT * FROM answers WHERE id = ?", (template,)).fetchone()[2:]
            connection.execute("DELETE FROM answers")
            old, new = clock.now - 100 * DAY, clock.now
            connection.executemany("INSERT INTO answers VALUES (NULL, ?, " + ", ".join("?" * len(row)) + ")",
                                   [(old, *row)] * 10 + [(new, *row)] * kept)
        counted = [0]
        connect = store._state._connect

        def counting():
            connection = connect()
            connection.set_progress_handler(lambda: counted.__setitem__(0, counted[0] + 1), 1)
            return connection

        store._state._connect = counting
        assert store.prune() == 10
        return counted[0]

    small, large = steps(100), steps(20_000)
    assert large < small * 1.5, (small, large)
    with sqlite3.connect(tmp_path / "100.sqlite") as connection:
        plans = [" ".join(str(c) for c in row) for table in ("answers", "votes")
                 for row in connection.execute(f"EXPLAIN QUERY PLAN DELETE FROM {table} WHERE at < 1")]
    assert all("USING" in plan and "INDEX" in plan for plan in plans), plans


def test_an_answer_this_citebot_cannot_read_is_none_not_an_error(store):
    answer_id = add(store, message_id=100)
    with store._state.session() as connection:
        connection.execute("UPDATE answers SET answer = ? WHERE id = ?", (json.dumps({"shape": "from the future"}),
                                                                          answer_id))
    stored = store.answer(answer_id)
    assert stored is not None and stored.answer is None and stored.question == "where?"


def test_the_retention_must_be_at_least_a_day(tmp_path):
    with pytest.raises(ValueError, match="keep_days must be at least 1"):
        HistoryStore(tmp_path / FILENAME, keep_days=0)


# -- private answers and their public copies --------------------------------------------------------------

def add_private(store: HistoryStore, *, user_id: int = USER, message_id: int = 100) -> int:
    answer_id = store.add_answer(make_answer("where?"), collection="default", guild_id=GUILD, channel_id=CHANNEL,
                                 user_id=user_id, conversation=None, private=True)
    store.sent(answer_id, message_id)
    return answer_id


def test_a_private_answer_is_shared_once_by_its_asker(store):
    private = add_private(store)

    assert store.share(private, guild_id=GUILD, message_id=100, user_id=USER + 1) is None  # not the asker's
    assert store.share(private, guild_id=GUILD, message_id=101, user_id=USER) is None  # not that message
    shared = store.share(private, guild_id=GUILD, message_id=100, user_id=USER)
    assert shared.new and shared.copy_id != private and shared.answer == make_answer("where?")
    copy = store.answer(shared.copy_id)
    assert (copy.private, copy.user_id, copy.channel_id, copy.conversation, copy.message_id) == (
        False, USER, CHANNEL, None, None)
    assert store.answer(private).private

    again = store.share(private, guild_id=GUILD, message_id=100, user_id=USER)
    assert again.copy_id == shared.copy_id and again.new  # its message never went out: post it now
    store.sent(shared.copy_id, 200)
    assert store.share(private, guild_id=GUILD, message_id=100, user_id=USER).new is False
    assert store.context(200, limit=10) == ["where?"]  # the public copy starts a conversation of its own


def test_a_public_answer_cannot_be_shared(store):
    public = add(store, message_id=100)

    assert store.share(public, guild_id=GUILD, message_id=100, user_id=USER) is None


# -- votes for the export ----------------------------------------------------------------------------------

def test_votes_carry_their_collection_and_server_and_filter_by_collection(store):
    default = add(store, message_id=100)
    harbour = store.add_answer(make_answer("harbour?"), collection="harbour", guild_id=GUILD + 1, channel_id=CHANNEL,
                               user_id=USER, conversation=None)
    store.sent(harbour, 101)
    store.record_vote(default, guild_id=GUILD, message_id=100, user_id=1, vote=1)
    store.record_vote(harbour, guild_id=GUILD + 1, message_id=101, user_id=1, vote=-1)

    assert [(v.collection, v.guild_id) for v in store.votes()] == [("default", GUILD), ("harbour", GUILD + 1)]
    [only] = store.votes(collection="harbour")
    assert (only.question, only.vote) == ("harbour?", -1)
    assert store.votes(collection="nowhere") == []


# The schema of the first history files (citebot before private answers and the export).
_FIRST_SCHEMA = """
CREATE TABLE answers (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, collection TEXT NOT NULL,
    guild_id INTEGER, channel_id INTEGER, user_id INTEGER, message_id INTEGER, conversation INTEGER,
    question TEXT NOT NULL, found INTEGER NOT NULL, text TEXT NOT NULL, chunk_ids TEXT NOT NULL, answer TEXT NOT NULL);
CREATE TABLE votes (answer_id INTEGER NOT NULL, user_id INTEGER NOT NULL, message_id INTEGER, at REAL NOT NULL,
    question TEXT NOT NULL, answer TEXT NOT NULL, chunk_ids TEXT NOT NULL,
    vote INTEGER NOT NULL CHECK (vote IN (-1, 1)), PRIMARY KEY (answer_id, user_id));
"""


def test_a_history_file_from_before_is_upgraded_in_place_and_its_votes_learn_their_collection(tmp_path, clock):
    path = tmp_path / FILENAME
    with sqlite3.connect(path) as connection:
        connection.executescript(_FIRST_SCHEMA)
        connection.execute("INSERT INTO answers VALUES (7, ?, 'harbour', ?, ?, ?, 100, 100, 'where?', 1, 'there', "
                           "'[\"c1\"]', ?)", (clock.now, GUILD, CHANNEL, USER, make_answer("where?").model_dump_json()))
        connection.execute("INSERT INTO votes VALUES (7, 1, 100, ?, 'where?', 'there', '[\"c1\"]', 1)", (clock.now,))

    store = HistoryStore(path, keep_days=90, now=clock)

    [vote] = store.votes()
    assert (vote.collection, vote.guild_id, vote.question, vote.chunk_ids) == ("harbour", GUILD, "where?", ["c1"])
    assert store.answer(7).private is False and store.answer(7).answer == make_answer("where?")
    assert add(store, message_id=101) == 8  # and it takes new answers
    assert HistoryStore(path, keep_days=90, now=clock).votes() == [vote]  # upgraded once


def test_discord_snowflakes_are_kept_whole(store):
    """Discord's ids are 64-bit: the PostgreSQL columns are bigint, and a button finds its answer by them."""
    guild, message, user = 1_234_567_890_123_456_789, 1_300_000_000_000_000_001, 999_999_999_999_999_999
    answer_id = store.add_answer(make_answer("big?"), collection="default", guild_id=guild, channel_id=guild + 1,
                                 user_id=user, conversation=None, private=True)
    store.sent(answer_id, message)
    stored = store.posted_answer(answer_id, guild_id=guild, message_id=message)
    assert stored is not None and (stored.guild_id, stored.message_id, stored.user_id) == (guild, message, user)
    assert store.record_vote(answer_id, guild_id=guild, message_id=message, user_id=user, vote=1)
    shared = store.share(answer_id, guild_id=guild, message_id=message, user_id=user)
    assert shared is not None and shared.new and store.share(answer_id, guild_id=guild, message_id=message,
                                                             user_id=user).copy_id == shared.copy_id
    assert store.context_of_message(message, limit=5) == (message, ["big?"])
