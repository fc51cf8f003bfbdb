"""`citebot feedback export` (bot/feedback_export.py): the votes in the bot's history, as JSON lines or a table."""

from __future__ import annotations

import io
import json
import os

import pytest
from rich.console import Console

import bot.cli as cli
import bot.console as console
from bot.history import HistoryStore
from retrieval.settings import load_settings
from tests.bot.conftest import make_answer

AT = 1_700_000_000.0  # 2023-11-14T22:13:20+00:00


@pytest.fixture
def index(monkeypatch, tmp_path):
    """An index folder whose history holds three votes: two on the default collection, one on harbour."""
    for name in [n for n in os.environ if n.startswith("CITEBOT_")]:
        monkeypatch.delenv(name)
    folder = tmp_path / "index"
    monkeypatch.setenv("CITEBOT_INDEX__DIR", str(folder))
    monkeypatch.setattr(cli, "out", Console(file=io.StringIO(), width=400, color_system=None, highlight=False))
    monkeypatch.setattr(console, "out", cli.out)  # cli prints through bot.console
    monkeypatch.setattr(cli, "err", Console(file=io.StringIO(), width=400, color_system=None, highlight=False))
    monkeypatch.setattr(console, "err", cli.err)  # cli prints through bot.console
    history = HistoryStore.from_settings(load_settings(index={"dir": str(folder)}), now=lambda: AT)
    for n, (collection, question, guild) in enumerate(
            [("default", "where are the new battlegroups?", 11), ("harbour", "when does the ferry \x1b[2Jsail?", 22)]):
        answer_id = history.add_answer(make_answer(question), collection=collection, guild_id=guild, channel_id=5,
                                       user_id=1, conversation=None)
        history.sent(answer_id, 100 + n)
        history.record_vote(answer_id, guild_id=guild, message_id=100 + n, user_id=7, vote=1 if n == 0 else -1)
        if n == 0:
            history.record_vote(answer_id, guild_id=guild, message_id=100, user_id=8, vote=-1)
    return folder


def test_json_is_one_object_per_vote_with_all_it_was_cast_on(index, capsys):
    assert cli.main(["feedback", "export", "--json"]) == 0

    lines = capsys.readouterr().out.splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 3
    first = records[0]
    assert first == {
        "time": "2023-11-14T22:13:20+00:00", "user_id": 7, "question": "where are the new battlegroups?",
        "answer": "Slovakia, Hungary, Romania and Bulgaria", "chunk_ids": ["chunk1", "chunk2", "chunk3"], "vote": 1,
        "collection": "default", "guild_id": 11, "answer_id": 1, "message_id": 100,
    }
    assert [(r["user_id"], r["vote"], r["collection"]) for r in records] == [
        (7, 1, "default"), (8, -1, "default"), (7, -1, "harbour")]
    assert all(line.isascii() and "\x1b" not in line for line in lines)  # escaped: nothing reaches the terminal raw


def test_collection_keeps_that_collections_votes(index, capsys):
    assert cli.main(["--collection", "harbour", "feedback", "export", "--json"]) == 0
    [only] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (only["collection"], only["question"], only["vote"]) == ("harbour", "when does the ferry \x1b[2Jsail?", -1)

    assert cli.main(["feedback", "export", "--json", "--collection", "nowhere"]) == 0
    assert capsys.readouterr().out == ""


def test_the_table_shows_each_vote_on_one_inert_line(index):
    assert cli.main(["feedback", "export"]) == 0

    text = cli.out.file.getvalue()
    rows = [line for line in text.splitlines() if "2023-11-14" in line]
    assert len(rows) == 3
    assert "👍" in rows[0] and "where are the new battlegroups?" in rows[0] and "default" in rows[0]
    assert "👎" in rows[2] and "harbour" in rows[2] and "\x1b" not in text and "sail?" in rows[2]


def test_no_votes_yet_is_one_line_not_an_error(monkeypatch, tmp_path):
    for name in [n for n in os.environ if n.startswith("CITEBOT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CITEBOT_INDEX__DIR", str(tmp_path / "empty"))
    monkeypatch.setattr(cli, "err", Console(file=io.StringIO(), width=400, color_system=None, highlight=False))
    monkeypatch.setattr(console, "err", cli.err)  # cli prints through bot.console

    assert cli.main(["feedback", "export"]) == 0
    assert cli.err.file.getvalue().startswith("No votes in ")
    assert not (tmp_path / "empty").exists()  # reading made nothing


def test_export_needs_its_action(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["feedback"])
    assert exited.value.code == 2 and "ACTION" in capsys.readouterr().err
