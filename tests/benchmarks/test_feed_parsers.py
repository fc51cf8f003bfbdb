"""benchmarks/feed_parsers.py at a tiny size: both parsers run on the same bytes, the figures' shape."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_both_parsers_read_the_ordinary_feeds_alike_and_report_the_bad_ones():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "feed_parsers.py"), "--feeds", "4",
                             "--entries", "3", "--rounds", "1", "--json"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert list(figures) == ["feeds", "entries", "feedparser_ms_per_feed", "fastfeedparser_ms_per_feed", "speedup",
                             "ordinary_feeds_read_alike", "hostile"]
    assert figures["ordinary_feeds_read_alike"] == 4
    assert figures["feedparser_ms_per_feed"] > 0 and figures["fastfeedparser_ms_per_feed"] > 0
    hostile = figures["hostile"]
    assert hostile["an HTML page, not a feed"]["feedparser"] == hostile["binary junk"]["feedparser"] == 0
    assert hostile["RSS 1.0 (RDF)"]["feedparser"] == 1
    # feedparser keeps the entries of a feed with a bare ampersand or an undefined entity
    assert hostile["bare ampersand in a title"]["feedparser"] == 3
