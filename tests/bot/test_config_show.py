"""`citebot config show`: every setting in force and where it came from; the token shows as set or unset."""

import json

import pytest

from bot.cli import main
from bot.config_show import as_json, as_lines
from retrieval.settings import load_settings_with_origins
from tests.conftest import ROOT, SEEDS

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GAbcde.abcdefghijklmnopqrstuvwxyz0123456789"


@pytest.fixture
def clean(settings_for, monkeypatch):
    """No CITEBOT_ variables (settings_for removes them)."""
    return monkeypatch


def test_config_show_names_the_source_of_each_setting(clean, tmp_path):
    config = tmp_path / "mine.toml"
    config.write_text("[search]\ncandidates = 10\n")
    clean.setenv("CITEBOT_SEARCH__K", "3")
    clean.setenv("CITEBOT_HOME", str(tmp_path / "home"))
    clean.setenv("CITEBOT_RERANKER__WEIGHTS", '{"bm25": 2.5}')
    settings, origins = load_settings_with_origins(config)
    shown = json.loads(as_json(settings, origins))["settings"]
    assert shown["search.k"] == {"value": 3, "source": "environment", "from": "CITEBOT_SEARCH__K"}
    assert shown["search.candidates"] == {"value": 10, "source": "config file", "from": str(config)}
    assert shown["search.mode"]["source"] == "default file"
    assert shown["search.mode"]["from"] == str(ROOT / "config" / "default.toml")
    assert shown["reranker.weights.bm25"] == {"value": 2.5, "source": "environment",
                                              "from": "CITEBOT_RERANKER__WEIGHTS"}
    assert shown["reranker.weights.dense"]["source"] == "default file"  # one weight changed, the others kept
    assert shown["index.dir"] == {"value": str(tmp_path / "home" / "index"), "source": "CITEBOT_HOME",
                                  "from": str(tmp_path / "home")}
    assert shown["discord.dev_guild"]["source"] == "code default"
    lines = as_lines(settings, origins)
    assert lines[0] == f"# default file: {ROOT / 'config' / 'default.toml'} (the checkout)"
    assert any(line.startswith("search.k = 3 ") and line.endswith("# environment CITEBOT_SEARCH__K")
               for line in lines)


def test_config_show_never_prints_the_token(clean, capsys):
    clean.setenv("CITEBOT_DISCORD_TOKEN", TOKEN)
    for args in (["config", "show"], ["config", "show", "--json"]):
        assert main(args) == 0
        out = capsys.readouterr().out
        assert TOKEN not in out and TOKEN.split(".")[0] not in out
    assert json.loads(out)["settings"]["discord_token"] == {"value": "set", "source": "environment",
                                                            "from": "CITEBOT_DISCORD_TOKEN"}
    clean.delenv("CITEBOT_DISCORD_TOKEN")
    assert main(["config", "show"]) == 0
    assert "discord_token = unset" in capsys.readouterr().out


def test_the_checkout_keeps_its_own_index_folder(clean):
    settings, origins = load_settings_with_origins()
    assert settings.index.dir == ROOT / ".citebot"
    assert settings.corpus.paths == [SEEDS]
    assert origins["index.dir"].source == "default file"


def test_a_bad_environment_list_is_one_line(clean, capsys):
    clean.setenv("CITEBOT_DISCORD__CHANNELS", "12,general")
    assert main(["config", "show"]) == 2
    err = capsys.readouterr().err
    assert "setting 'discord.channels.1' is not allowed (got 'general')" in err and len(err.splitlines()) == 1
