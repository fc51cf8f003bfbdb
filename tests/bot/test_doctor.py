"""`citebot doctor`: one line per check, ok / warn / fail; the token is never shown."""

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bot import doctor
from bot.cli import main
from retrieval.pipeline import Answerer
from tests.conftest import ROOT, SEEDS
from tests.fakes import FakeEmbedder

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GAbcde.abcdefghijklmnopqrstuvwxyz0123456789"  # user id 123456789012345678
CHANNEL = 123456789012345678


@pytest.fixture
def clean(settings_for, monkeypatch):
    """No CITEBOT_ variables (settings_for removes them)."""
    return monkeypatch


def settings_with(settings_for, **discord):
    return settings_for(discord=discord) if discord else settings_for()


def test_doctor_token_well_formed_or_not_never_shown(settings_for, clean):
    assert doctor._discord_token(settings_with(settings_for))[0] == "warn"
    clean.setenv("CITEBOT_DISCORD_TOKEN", TOKEN)
    status, detail = doctor._discord_token(settings_with(settings_for))
    assert status == "ok" and "123456789012345678" in detail and TOKEN not in detail
    for bad in ("not-a-token", "abc.def", TOKEN.replace(".", " ")):
        clean.setenv("CITEBOT_DISCORD_TOKEN", bad)
        status, detail = doctor._discord_token(settings_with(settings_for))
        assert status == "fail" and bad not in detail
    clean.setenv("CITEBOT_DISCORD_TOKEN", "bm90IGEgdXNlciBpZCBhdCBhbGw." + TOKEN.split(".", 1)[1])
    assert doctor._discord_token(settings_with(settings_for))[0] == "warn"


def test_doctor_channels(settings_for):
    assert doctor._channels(settings_with(settings_for))[0] == "ok"
    assert doctor._channels(settings_with(settings_for, channels=[CHANNEL], dev_guild=CHANNEL)) == (
        "ok", f"answers in 1 channels; commands synced to server {CHANNEL} only")
    status, detail = doctor._channels(settings_with(settings_for, channels=[CHANNEL, 42]))
    assert status == "fail" and "discord.channels holds 42" in detail


def test_doctor_index_folder_schema_and_agreement(settings_for, tmp_path):
    settings = settings_for(embedding={"model": "fake"}, chunking={"max_tokens": 40})
    assert doctor._index_folder(settings)[0] == "ok"
    assert doctor._schema(settings) == ("ok", "no index yet")
    answerer = Answerer(settings, FakeEmbedder())
    answerer.ingest([SEEDS])
    assert doctor._index_folder(settings) == ("ok", f"{settings.index.dir} is readable and writable")
    assert doctor._schema(settings)[0] == "ok"
    assert doctor._agreement(settings) == ("ok", "store and vectors agree: 2 documents, "
                                                 f"{answerer.store.count_chunks()} chunks")
    for segment in settings.index.dir.glob("seg-*.faiss"):
        segment.write_bytes(b"damaged")
    status, detail = doctor._agreement(settings)
    assert status == "fail" and "cannot be read" in detail and "citebot check" in detail

    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    assert doctor._index_folder(settings_for(index={"dir": str(not_a_folder)}))[0] == "fail"


@pytest.mark.parametrize("version, says", [(1, "citebot migrate"), (99, "newer citebot")])
def test_doctor_names_the_way_out_of_another_schema(settings_for, version, says):
    settings = settings_for()
    settings.index.dir.mkdir(parents=True)
    db = sqlite3.connect(settings.index.dir / "citebot.sqlite")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(version),))
    db.commit()
    db.close()
    status, detail = doctor._schema(settings)
    assert status == "fail" and says in detail
    assert doctor._agreement(settings)[0] == "ok"  # nothing to check until it is upgraded


def test_doctor_exits_1_on_a_failure_and_reports_a_crashed_check(clean, monkeypatch, capsys):
    monkeypatch.setattr(doctor, "_model", lambda settings: ("ok", "fake model"))
    monkeypatch.setattr(doctor, "_question_encoder", lambda settings: 1 / 0)
    clean.setenv("CITEBOT_INDEX__DIR", "/nonexistent/citebot-index")
    assert main(["doctor", "--json"]) == 1
    found = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert found["question encoder"]["status"] == "fail" and "ZeroDivisionError" in found["question encoder"]["detail"]
    assert found["model"] == {"name": "model", "status": "ok", "detail": "fake model"}
    monkeypatch.setattr(doctor, "_question_encoder", lambda settings: ("warn", "no export"))
    assert main(["doctor"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "warn  question encoder: no export" in lines and len(lines) == 11


@pytest.mark.slow
def test_doctor_on_a_real_index(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()),
           "CITEBOT_INDEX__DIR": str(tmp_path / "index")}
    subprocess.run([sys.executable, "-m", "bot.cli", "ingest", str(SEEDS)], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=300)
    result = subprocess.run([sys.executable, "-m", "bot.cli", "doctor"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    statuses = {line.split(":")[0].split(None, 1)[1]: line.split()[0] for line in result.stdout.splitlines()}
    assert statuses["model"] == statuses["schema"] == statuses["agreement"] == "ok"
    assert statuses["discord token"] == "warn"
