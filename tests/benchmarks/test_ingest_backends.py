"""benchmarks/ingest_backends.py at a tiny size: both backends embed the same texts and agree."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_both_backends_embed_the_writers_texts_and_agree(tmp_path):
    env = {**__import__("os").environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ingest_backends.py"), "--articles", "2",
                             "--rounds", "1", "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert list(figures) == ["articles", "chunks", "sentences", "rounds", "st_s", "onnx_s", "st_chunks_per_s",
                             "onnx_chunks_per_s", "onnx_speedup", "min_cosine"]
    assert figures["articles"] == 2 and figures["chunks"] >= 2 and figures["sentences"] > figures["chunks"]
    assert figures["st_s"] > 0 and figures["onnx_s"] > 0
    assert figures["min_cosine"] >= 0.99999  # the export made in the empty cache gives torch's vectors
    assert (tmp_path / "cache" / "citebot" / "onnx").is_dir()
