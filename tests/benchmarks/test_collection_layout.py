"""benchmarks/collection_layout.py at a tiny size: two real indexes, the real question path, the figures' shape."""

import json
import subprocess
import sys

import pytest

from tests.benchmarks.test_scale import squad  # noqa: F401 - the fixture
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_a_tiny_layout_run_prints_both_layouts_side_by_side(squad, tmp_path):  # noqa: F811
    command = [sys.executable, str(ROOT / "benchmarks" / "collection_layout.py"), "--size", "300", "--share", "3",
               "--questions", "4", "--dir", str(tmp_path / "runs"), "--squad", str(squad), "--json"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert list(figures) == ["shared_chunks", "own_chunks", "questions", "shared_p50_ms", "shared_p95_ms",
                             "own_p50_ms", "own_p95_ms", "p50_ratio"]
    assert figures["shared_chunks"] >= 300 and 100 <= figures["own_chunks"] < figures["shared_chunks"]
    assert figures["questions"] == 4 and figures["own_p50_ms"] > 0 and figures["shared_p50_ms"] > 0
    # built once, kept with --reuse
    again = subprocess.run(command + ["--reuse", "--build-only"], cwd=ROOT, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0 and (tmp_path / "runs" / "shared" / "build.json").exists()
