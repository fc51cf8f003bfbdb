"""The `citebot` command line, run as a user runs it: a new process, the real model, a real index."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, SEEDS

pytestmark = pytest.mark.slow


def citebot(*args, index, stdin=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEBOT_")}
    env["CITEBOT_INDEX__DIR"] = str(index)
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=ROOT, env=env, input=stdin,
                          capture_output=True, text=True, timeout=300)


def test_help_explains_every_command(tmp_path):
    result = citebot("--help", index=tmp_path)
    assert result.returncode == 0
    for command in ("ingest", "ask", "chat", "sources", "remove", "check", "migrate", "eval", "discord"):
        assert command in result.stdout
    result = citebot("ask", "--help", index=tmp_path)
    assert "--json" in result.stdout and "--k" in result.stdout


def test_ingest_reports_bad_files_one_line_each_and_keeps_the_rest(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "good.txt").write_text((SEEDS / "000_13573c5537cf727e.txt").read_text())
    (corpus / "bad.txt").write_bytes(b"\xff\xfe\x00broken")
    (corpus / "feed.jsonl").write_text('{"title": "T", "text": "Ships at sea today."}\n{not json\n')
    index = tmp_path / "index"

    result = citebot("ingest", str(corpus), str(tmp_path / "nope.md"), "--json", index=index)
    assert result.returncode == 1
    failures = [line for line in result.stderr.splitlines() if line.startswith("failed: ")]
    assert len(failures) == 3
    assert any("bad.txt" in f and "UTF-8" in f for f in failures)
    assert any("feed.jsonl" in f and "line 2" in f for f in failures)
    assert any("nope.md" in f for f in failures)
    assert "Traceback" not in result.stderr
    summary = json.loads(result.stdout)
    assert (summary["added"], summary["failed"]) == (2, 3)

    again = citebot("ingest", str(corpus / "good.txt"), "--json", index=index)
    assert again.returncode == 0
    assert json.loads(again.stdout)["unchanged"] == 1

    listed = json.loads(citebot("sources", "--json", index=index).stdout)
    assert {row["outlet"] for row in listed} == {"Newsmax", None}
    newsmax = next(row for row in listed if row["outlet"] == "Newsmax")

    removed = citebot("remove", newsmax["doc_id"][:10], index=index)
    assert removed.returncode == 0 and "good.txt" in removed.stderr
    assert len(json.loads(citebot("sources", "--json", index=index).stdout)) == 1

    missing = citebot("remove", "no-such-doc", index=index)
    assert missing.returncode != 0 and "no indexed document" in missing.stderr


def test_chat_answers_several_questions_with_one_model_load(tmp_path):
    questions = "where are the new battlegroups?\n\nwho is the US ambassador to NATO?\nexit\n"
    result = citebot("chat", index=tmp_path / "index", stdin=questions)
    assert result.returncode == 0, result.stderr
    assert "Hungary" in result.stdout and "Julianne Smith" in result.stdout


def test_bad_settings_are_one_clear_line(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[search]\nk = 0\n")
    result = citebot("--config", str(config), "sources", index=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "citebot: setting 'search.k' is not allowed (got 0): Input should be greater than or equal to 1"


def test_overlong_question_is_refused(tmp_path):
    result = citebot("ask", "why " * 400, index=tmp_path / "index")
    assert result.returncode == 2
    assert "the question is" in result.stderr and "limit is 500" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_says_ok_and_finds_a_damaged_index(tmp_path):
    index = tmp_path / "index"
    assert citebot("ingest", str(SEEDS), index=index).returncode == 0
    result = citebot("check", "--json", index=index)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["ok"] and figures["documents"] == 2 and figures["chunks"] > 2 and figures["problems"] == []

    (next(index.glob("seg-*.faiss"))).write_bytes(b"torn")
    damaged = citebot("check", index=index)
    assert damaged.returncode == 1
    assert "cannot be read" in damaged.stderr and "Traceback" not in damaged.stderr
    # questions still work: the store is the truth, and the lost segment is rebuilt from it in memory
    answer = citebot("ask", "--json", "where are the new battlegroups?", index=index)
    assert answer.returncode == 0 and "Hungary" in answer.stdout


def test_an_old_index_names_the_command_that_upgrades_it(tmp_path):
    import sqlite3

    index = tmp_path / "index"
    index.mkdir()
    db = sqlite3.connect(index / "citebot.sqlite")
    from tests.retrieval.backends.embedded.test_migrate import V1_SCHEMA

    db.executescript(V1_SCHEMA + "INSERT INTO meta VALUES ('schema', '1');")
    db.close()
    result = citebot("ask", "where are the new battlegroups?", index=index)
    assert result.returncode == 1
    assert "run `citebot migrate`" in result.stderr and "Traceback" not in result.stderr
    assert citebot("migrate", index=index).returncode == 0  # no documents: upgraded empty
    assert citebot("check", index=index).returncode == 0
