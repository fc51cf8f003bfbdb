"""benchmarks/feeds.py at a tiny size: a real server, a real `citebot run`, the figures' shape."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_a_tiny_feeds_run_prints_every_figure(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "feeds.py"), "--feeds", "2", "--entries", "2", "--minutes", "0.4",
         "--new-every", "8", "--every", "10s", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert list(figures) == ["feeds", "entries", "backlog_s", "new_entries", "answerable_p50_s", "answerable_p95_s",
                             "answerable_max_s", "never_answerable", "poll_every_s", "poller_cpu_s",
                             "poller_cpu_share", "poller_rss_mb", "minutes"]
    assert (figures["feeds"], figures["entries"], figures["never_answerable"]) == (2, 2, 0)
    assert figures["new_entries"] >= 3
    # polled every 10 s: a new entry waits at most one interval, plus fetching and indexing it
    assert 0 < figures["answerable_p50_s"] <= figures["answerable_max_s"] < 60
    assert figures["poller_rss_mb"] > 100 and figures["poller_cpu_s"] > 0
