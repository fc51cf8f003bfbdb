"""Collections: each its own index folder, corpus, watched folders and feeds; names that are safe folder names."""

import pytest

from retrieval import collection
from retrieval.errors import SettingsError
from retrieval.models import Article
from retrieval.pipeline import Answerer
from tests.fakes import FakeEmbedder


def test_a_collection_has_its_own_folder_corpus_watch_and_feeds(settings_for, tmp_path):
    settings = settings_for(collections={"harbour": {"paths": [str(tmp_path / "h")], "watch": [str(tmp_path / "w")],
                                                     "feeds": [{"url": "https://herald.example/rss"}]}},
                            feeds=[{"url": "https://default.example/rss"}])
    assert collection.settings_for(settings, "default") is settings
    harbour = collection.settings_for(settings, "harbour")
    assert harbour.index.dir == settings.index.dir / "collections" / "harbour"
    assert harbour.corpus.paths == [tmp_path / "h"] and harbour.watch.paths == [tmp_path / "w"]
    assert [f.url for f in harbour.feeds] == ["https://herald.example/rss"]
    # one not in the settings starts empty: no seeds, no feeds
    other = collection.settings_for(settings, "other")
    assert other.corpus.paths == [] and other.feeds == [] and other.index.dir.name == "other"
    assert settings.corpus.paths  # the default keeps the seeds


@pytest.mark.parametrize("name", ["", "Harbour", "../up", "a/b", "-x", "x" * 65, "a b", "ü"])
def test_a_name_that_is_no_safe_folder_name_is_refused(settings_for, name):
    with pytest.raises(SettingsError, match="cannot name a collection"):
        collection.settings_for(settings_for(), name)


def test_collections_are_listed_from_settings_and_disk_and_answer_only_from_their_own(settings_for):
    settings = settings_for(embedding={"model": "fake"}, chunking={"max_tokens": 40},
                            answer={"min_score": 0.0, "min_mixed_score": -100.0, "min_support": -100.0},
                            collections={"harbour": {}})
    a = Answerer(collection.settings_for(settings, "default"), FakeEmbedder())
    b = Answerer(collection.settings_for(settings, "wire-desk"), FakeEmbedder())
    a.ingest_articles([Article(key="a", outlet="Herald", text="The Zqferry to Texel was cancelled on Monday.")])
    b.ingest_articles([Article(key="b", outlet="Courier", text="The Zqferry to Vlieland sails again on Tuesday.")])
    assert collection.names(settings) == ["default", "harbour", "wire-desk"]
    assert {s.outlet for s in a.answer("where does the Zqferry go?").sources} == {"Herald"}
    assert {s.outlet for s in b.answer("where does the Zqferry go?").sources} == {"Courier"}
    assert a.check() == [] and b.check() == []


def test_a_sibling_over_another_collection_shares_the_models_not_the_index(settings_for):
    settings = settings_for(embedding={"model": "fake"}, chunking={"max_tokens": 40})
    first = Answerer(settings, FakeEmbedder())
    other = first.sibling(collection.settings_for(settings, "harbour"))
    assert other.embedder is first.embedder and other.reader.embedder is first.reader.embedder
    assert other.dir != first.dir and other.store is not first.store
    assert first.sibling(settings) is first


def test_servers_are_mapped_to_collections_in_the_settings(settings_for, tmp_path):
    config = tmp_path / "citebot.toml"
    config.write_text('[discord]\ncollection = "wire"\n[discord.guilds]\n"123456789012345678" = "harbour"\n')
    from retrieval.settings import load_settings

    settings = load_settings(config)
    assert settings.discord.collection == "wire" and settings.discord.guilds == {123456789012345678: "harbour"}
