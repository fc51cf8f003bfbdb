"""BM25 from postings files: the same tokens and the same scores as SQLite FTS5, files that load whole or not at all."""

import sqlite3

import numpy as np
import pytest

from retrieval.text import question_terms, tokens
from retrieval.backends.embedded import postings as lexical
from tests import squad_sample

TOKENIZER = "unicode61 remove_diacritics 2"


def fts(texts: list[str]) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute(f"CREATE VIRTUAL TABLE f USING fts5(text, tokenize='{TOKENIZER}')")
    db.executemany("INSERT INTO f(rowid, text) VALUES (?, ?)", [(i + 1, t) for i, t in enumerate(texts)])
    return db


def fts_query(question: str) -> str:
    """What citebot 0.2 asked FTS5: every question word, quoted, OR-ed."""
    return " OR ".join(f'"{t}"' for t in question_terms(question))


@pytest.mark.parametrize("text", [
    "Café crème, naïve façade: Ångström and Øresund Straße",
    "cafe\u0301 with a combining accent, Mu\u0308ller",
    "الإسلام والمسلمين and Ελληνικός λόγος ΤΕΛΟΣ",
    "snake_case, don't, 1,000-1,500 troops, 3.5%, U.S., e-mail",
    "ＦＵＬＬ width, 東京都, émoji 🎉 and tabs\tand\nlines",
])
def test_tokens_are_fts5s_unicode61_tokens(text):
    db = fts([text])
    db.execute("CREATE VIRTUAL TABLE v USING fts5vocab(f, 'instance')")
    theirs = [row[0] for row in db.execute("SELECT term FROM v ORDER BY offset")]
    assert tokens(text) == theirs


@pytest.fixture(scope="module")
def squad() -> tuple[list[str], list[str]]:
    data = squad_sample.sample()["data"]  # made up here: a clone has no ../shared
    texts = [p["context"] for article in data for p in article["paragraphs"]][:400]
    questions = [q["question"] for article in data for p in article["paragraphs"] for q in p["qas"]][:1500:3]
    return texts, questions


def _segments(texts: list[str], dead: list[int]) -> list[lexical.LexicalSegment]:
    half = len(texts) // 2
    ids = list(range(1, len(texts) + 1))
    segments = [lexical.LexicalSegment(lexical.build(ids[:half], texts[:half])),
                lexical.LexicalSegment(lexical.build(ids[half:], texts[half:]))]
    for segment in segments:
        segment.kill(dead)
    return segments


def _same_ranking(theirs, ours):
    """Same scores at every rank (1e-9); ids may differ only where two chunks tie."""
    assert len(theirs) == len(ours)
    for (a, x), (b, y) in zip(theirs, ours):
        assert y == pytest.approx(x, rel=1e-9)
        if a != b:
            assert dict(theirs).get(b) == pytest.approx(y, rel=1e-9)


def test_bm25_equals_fts5_across_segments_with_deletions(squad):
    texts, questions = squad
    dead = list(range(3, len(texts), 17))
    db = fts(texts)
    for d in dead:
        db.execute("DELETE FROM f WHERE rowid = ?", (d,))
    segments = _segments(texts, dead)
    for question in questions:
        theirs = db.execute("SELECT rowid, -bm25(f) FROM f WHERE f MATCH ? ORDER BY rank LIMIT 40",
                            (fts_query(question),)).fetchall()
        _same_ranking(theirs, lexical.search(segments, question_terms(question), 40))


def test_bm25_with_a_filter_returns_the_best_of_the_allowed(squad):
    texts, questions = squad
    allowed = np.arange(1, len(texts) + 1, 5, dtype=np.int64)
    db = fts(texts)
    segments = _segments(texts, [])
    for question in questions[:100]:
        theirs = [(i, s) for i, s in db.execute("SELECT rowid, -bm25(f) FROM f WHERE f MATCH ? ORDER BY rank",
                                                (fts_query(question),)) if i in set(allowed.tolist())][:10]
        ours = lexical.search(segments, question_terms(question), 10, allowed)
        assert {i for i, _ in ours} <= set(allowed.tolist())
        _same_ranking(theirs, ours)


def test_a_question_of_stop_words_or_an_empty_index_finds_nothing(squad):
    texts, _ = squad
    assert question_terms("what is the and of it?") == ["what"]
    assert lexical.search(_segments(texts, []), question_terms("is it the?"), 5) == []
    assert lexical.search([], ["nato"], 5) == []
    everything_dead = _segments(texts[:10], list(range(1, 11)))
    assert lexical.search(everything_dead, ["the"], 5) == []


def test_merge_equals_building_the_live_chunks_anew(squad):
    texts, _ = squad
    a = lexical.build(list(range(1, 101)), texts[:100])
    b = lexical.build(list(range(101, 201)), texts[100:200])
    dead_a, dead_b = np.array([5, 6, 50]), np.array([101, 199])
    merged = lexical.merge([(a, dead_a), (b, dead_b)])
    live = [i for i in range(1, 201) if i not in {5, 6, 50, 101, 199}]
    fresh = lexical.build(live, [texts[i - 1] for i in live])
    for name in ("ids", "lengths", "terms", "starts", "docs", "tfs"):
        assert np.array_equal(getattr(merged, name), getattr(fresh, name)), name


def test_postings_files_load_whole_or_refuse(tmp_path, squad):
    texts, questions = squad
    postings = lexical.build([7, 3, 9], texts[:3])
    path = tmp_path / lexical.lexical_name("seg-00000001-abcd.faiss")
    assert path.name == "seg-00000001-abcd.lex"
    lexical.save(postings, path)
    loaded = lexical.load(path)
    assert loaded.ids.tolist() == [3, 7, 9]
    for name in ("lengths", "terms", "starts", "docs", "tfs"):
        assert np.array_equal(getattr(loaded, name), getattr(postings, name))
    assert not list(tmp_path.glob(".*.tmp"))
    torn = tmp_path / "torn.lex"
    torn.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="torn"):
        lexical.load(torn)
    (tmp_path / "junk.lex").write_bytes(b"not postings at all")
    with pytest.raises(ValueError, match="not a postings file"):
        lexical.load(tmp_path / "junk.lex")
    (tmp_path / "empty.lex").write_bytes(b"")
    with pytest.raises(ValueError):
        lexical.load(tmp_path / "empty.lex")


# -- in the index ---------------------------------------------------------------------------------
def _index(settings_for, tmp_path):
    from retrieval.pipeline import Answerer
    from tests.fakes import FakeEmbedder

    settings = settings_for(embedding={"model": "fake"}, chunking={"max_tokens": 16}, search={"mode": "bm25"})
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "nato.txt").write_text("NATO sets up battle groups in Hungary and Slovakia. Troops arrive soon.")
    (corpus / "bread.txt").write_text("Sourdough bread needs a lively starter and a hot oven.")
    answerer = Answerer(settings, FakeEmbedder())
    answerer.ingest([corpus / "nato.txt"])
    answerer.ingest([corpus / "bread.txt"])
    return settings, answerer


def test_each_segment_has_its_postings_twin_and_bm25_reads_them(settings_for, tmp_path):
    settings, answerer = _index(settings_for, tmp_path)
    files = {s.file for s in answerer.store.sqlite.segments()}
    assert len(files) == 2
    assert {p.name for p in settings.index.dir.glob("seg-*.lex")} == {lexical.lexical_name(f) for f in files}
    found = answerer.retrieve("sourdough starter")
    assert found and "Sourdough" in answerer.store.chunks([found[0].id])[found[0].id].text
    assert found[0].lexical > 0


def test_a_lost_or_torn_postings_file_is_rebuilt_from_the_store_and_check_names_it(settings_for, tmp_path, caplog):
    from retrieval.pipeline import Answerer
    from tests.fakes import FakeEmbedder

    settings, answerer = _index(settings_for, tmp_path)
    before = [(r.id, r.lexical) for r in answerer.retrieve("battle groups Hungary sourdough")]
    answerer.store.close()
    twins = sorted(settings.index.dir.glob("seg-*.lex"))
    twins[0].unlink()
    twins[1].write_bytes(twins[1].read_bytes()[:40])
    fresh = Answerer(settings, FakeEmbedder())
    problems = fresh.check()
    assert len(problems) == 2 and all("postings file" in p for p in problems)
    with caplog.at_level("WARNING"):
        after = [(r.id, r.lexical) for r in fresh.retrieve("battle groups Hungary sourdough")]
    assert after == before
    assert sum("rebuilt from the store" in r.getMessage() for r in caplog.records) == 2
