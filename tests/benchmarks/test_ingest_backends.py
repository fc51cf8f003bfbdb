"""benchmarks/ingest_backends.py at a tiny size: both backends, both ways, embed the same texts and agree."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import squad_sample

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_both_backends_embed_the_writers_texts_both_ways_and_agree(tmp_path):
    env = {**__import__("os").environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    squad = squad_sample.write(tmp_path / "squad.json")  # made up here: a clone has no ../shared
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ingest_backends.py"), "--squad", str(squad),
                             "--articles", "2",
                             "--rounds", "1", "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert list(figures) == ["articles", "chunks", "sentences", "rounds", "seconds", "chunks_per_s", "speedup",
                             "min_cosine"]
    ways = ["st-separate", "st-chunk-pass", "onnx-separate", "onnx-chunk-pass"]
    assert figures["articles"] == 2 and figures["chunks"] >= 2 and figures["sentences"] > figures["chunks"]
    assert list(figures["seconds"]) == ways and min(figures["seconds"].values()) > 0
    assert figures["speedup"]["st-separate"] == 1.0
    assert figures["min_cosine"] >= 0.9999  # the export made in the empty cache gives torch's vectors
    assert (tmp_path / "cache" / "citebot" / "onnx").is_dir()
