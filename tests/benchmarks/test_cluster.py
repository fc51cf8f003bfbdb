"""benchmarks/cluster.py, shortened: writers, shards, feeds and questions on one database, a writer and a shard
killed -9 and started again; the figures' shape and the promises that hold at any length."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_a_short_cluster_run_loses_nothing_and_fetches_no_feed_twice_in_an_interval():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cluster.py"), "--minutes", "0.75", "--feeds",
                             "4", "--every", "10s", "--new-every", "5", "--questions-per-minute", "30", "--json"],
                            cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    assert figures["questions"] >= 20 and figures["answered"] + figures["lost_to_dead_shard"] == figures["questions"]
    assert figures["cited_right_page"] == figures["answered"] and figures["error_replies"] == 0
    assert figures["new_entries"] >= 8 and figures["entries_lost"] == figures["entries_duplicated"] == 0
    assert figures["fetches"] > 4 and figures["fetches_within_interval"] == 0
    assert figures["answerable_p50_s"] is not None and figures["answerable_max_s"] < 60
    assert set(figures["exit_codes"].values()) == {0}  # the killed ones were started again
