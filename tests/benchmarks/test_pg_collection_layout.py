"""benchmarks/pg_collection_layout.py at a tiny size on the real server: both layouts built, searched, reported."""

import json
import subprocess
import sys

import numpy as np

from retrieval.models import Article
from retrieval.pipeline import Answerer
from retrieval.settings import load_settings
from tests.conftest import ROOT
from tests.fakes import FakeEmbedder


def test_a_tiny_run_reports_both_layouts(postgres_url, tmp_path):
    settings = load_settings(index={"dir": str(tmp_path / "folder"), "url": postgres_url},
                             embedding={"model": "fake"}, chunking={"max_tokens": 40})
    answerer = Answerer(settings, FakeEmbedder())
    answerer.ingest_articles([Article(key=f"a{n}", text=f"Story {n} about the harbour and item zq{n}.")
                              for n in range(30)])
    answerer.store.close()
    np.save(tmp_path / "q.npy", FakeEmbedder().embed_queries(["harbour", "zq3 story"]))
    command = [sys.executable, str(ROOT / "benchmarks" / "pg_collection_layout.py"), "--url", postgres_url,
               "--vectors", str(tmp_path / "q.npy"), "--size", "20", "--collections", "3", "--json"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert (figures["collection_chunks"], figures["shared_chunks"], figures["questions"]) == (20, 60, 2)
    for layout in ("schema", "shared", "shared_iterative"):
        assert 0 < figures[f"{layout}_recall_at_40"] <= 1 and figures[f"{layout}_p50_ms"] > 0
    assert figures["schema_recall_at_40"] == 0.5  # 20 rows: all found, but 40 asked for
