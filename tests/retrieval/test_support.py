"""The support score "not found" rests on (reranker.support_weights, answer.min_support)."""

import json
import sys

import numpy as np
import pytest

from retrieval.answer import ScoredHit, build_answer
from retrieval.features import FEATURES
from retrieval.models import Hit, Source
from retrieval.pipeline import Answerer
from tests.conftest import ROOT
from tests.fakes import FakeEmbedder

sys.path.insert(0, str(ROOT / "benchmarks"))

import fit_support  # noqa: E402

ARTICLES = {
    "nato.txt": "NATO will set up four new battle groups in Hungary, Slovakia, Romania and Bulgaria. "
    "The forces will remain in place as long as necessary. Leaders meet in Brussels on Thursday.",
    "bread.txt": "Sourdough bread needs a lively starter. Bake it hot in a covered pot for forty minutes.",
    "ships.txt": "The alliance has 140 warships at sea and 130 aircraft on high alert in the region.",
}
# Every feature named: a settings layer merges into the defaults' table, it does not replace it.
WEIGHTS = {name: {"cosine": 1.0, "bm25": 0.5, "token_match": 2.0}.get(name, 0.0) for name in FEATURES}


@pytest.fixture
def make(settings_for, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in ARTICLES.items():
        (corpus / name).write_text(text, encoding="utf-8")

    def make_answerer(min_support, support=True):
        settings = settings_for(embedding={"model": "fake"}, chunking={"max_tokens": 20},
                                reranker={"support_weights": WEIGHTS, "support": support},
                                answer={"min_score": 0.0, "min_mixed_score": -100.0, "min_support": min_support})
        answerer = Answerer(settings, FakeEmbedder())
        report = answerer.ingest([corpus])  # one index: the settings differ on the read side only
        assert report.added + report.unchanged == 3 and not report.failed
        return answerer

    return make_answerer


def test_each_candidate_supports_by_its_best_sentences_features(make):
    answerer = make(-100.0)
    assert answerer.supporting
    scored = answerer.rank("where are the new battle groups?", k=10)
    assert len(scored) >= 4
    weights = np.array([WEIGHTS.get(name, 0.0) for name in FEATURES])
    full = answerer.settings.reranker.token_chunks
    for item in scored[:full]:  # scored in full: word pieces and all
        assert len(item.features) == len(FEATURES)
        assert item.support == pytest.approx(float(np.array(item.features) @ weights))
    assert any(item.features[FEATURES.index("token_match")] > 0 for item in scored[:full])
    floor = min(item.support for item in scored[:full])
    assert all(item.support <= floor + 1e-9 for item in scored[full:])  # the rest: never above those


def test_not_found_rests_on_the_support_when_its_weights_are_set(make):
    question = "where are the new battle groups?"
    # cosine <= 1, BM25 (relative) <= 1, token match <= 1: the support can never reach 10
    strict = make(10.0)
    assert not strict.answer(question).found
    # the same threshold with the support turned off: the rescoring score decides (min_mixed_score -100)
    loose = make(10.0, support=False)
    assert not loose.supporting and loose.answer(question).found
    assert all(item.support is None for item in loose.rank(question))
    answered = make(-100.0).answer(question)
    assert answered.found and "battle groups" in answered.passages[0].text


def test_a_hit_with_no_support_is_not_supported():
    source = Source(doc_id="a", lead="x")
    hit = Hit(chunk_id="a-0", doc_id="a", start=0, end=10, text="Riga froze.", score=1.0, source=source)
    item = ScoredHit(hit=hit, sentence=(0, 11), sentence_score=0.9, rank_score=30.0)
    assert not build_answer("q", [item], k=3, min_score=0.0, support="support").found
    assert build_answer("q", [item], k=3, min_score=0.0, support="rank").found
    from dataclasses import replace

    assert build_answer("q", [replace(item, support=0.5)], k=3, min_score=0.0, support="support").found
    assert not build_answer("q", [replace(item, support=-0.5)], k=3, min_score=0.0, support="support").found


def test_the_fit_recovers_a_known_logistic_model():
    rng = np.random.default_rng(7)
    rows = rng.normal(size=(20000, 3)) * [1.0, 5.0, 0.1] + [0.0, 10.0, 0.0]
    truth = np.array([2.0, -0.4, 0.0])
    labels = (rng.random(20000) < 1 / (1 + np.exp(-(rows @ truth + 4.0)))).astype(float)
    weights, intercept = fit_support.fit(rows, labels, l2=0.01)
    assert np.allclose(weights[:2], truth[:2], atol=0.15)
    assert abs(weights[2]) < 2.0 and intercept == pytest.approx(4.0, abs=0.5)
    strong, _ = fit_support.fit(rows, labels, l2=1e4)  # a heavy penalty shrinks the weights
    assert np.abs(strong[:2]).sum() < np.abs(weights[:2]).sum() / 2


def test_rates_read_the_threshold_off_the_answerable():
    labels = np.array([1] * 100 + [0] * 100, dtype=float)
    scores = np.r_[np.arange(100.0), np.arange(100.0) - 50.0]
    figures = fit_support.rates(scores, labels)
    assert figures["0.03"]["threshold"] == pytest.approx(np.quantile(np.arange(100.0), 0.03))
    assert figures["0.03"]["abstained_unanswerable"] == pytest.approx(0.53)


@pytest.mark.slow
def test_a_fit_on_a_tiny_squad_file_prints_weights_for_every_feature(tmp_path, capsys, monkeypatch):
    from tests.retrieval.test_evaluate import SQUAD

    for name in list(__import__("os").environ):
        if name.startswith("CITEBOT_"):
            monkeypatch.delenv(name)
    squad = tmp_path / "tiny.json"
    squad.write_text(json.dumps(SQUAD))
    assert fit_support.main([str(squad), "--half", "even", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (figures["answerable"], figures["unanswerable"]) == (2, 1)  # Baltic Sea indexed, Sourdough not
    assert list(figures["weights"]) == FEATURES
    assert any(value != 0 for value in figures["weights"].values())
