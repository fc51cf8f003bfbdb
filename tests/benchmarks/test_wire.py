"""benchmarks/wire.py on a small constructed set: the figures' shape, and the real ingest path agreeing with the sweep."""

import json
import subprocess
import sys
from pathlib import Path

from tests import squad_sample

ROOT = Path(__file__).resolve().parents[2]


def test_wire_copies_are_grouped_and_distinct_articles_kept_apart(tmp_path):
    squad = squad_sample.write(tmp_path / "squad.json")  # made up here: a clone has no ../shared
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "wire.py"), "--squad", str(squad),
                             "--groups", "8", "--no-embeddings", "--json"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(list(row) == ["method", "threshold", "groups", "groups_whole", "copies", "copies_joined",
                             "distinct", "distinct_apart"] for row in rows)
    real = rows[-1]
    assert real["method"] == "citebot-ingest"
    swept = next(r for r in rows if r["method"] == "minhash-containment" and r["threshold"] == real["threshold"])
    assert {**swept, "method": real["method"]} == real  # the store groups as the sweep says it would
    assert real["groups"] == 8 and real["distinct"] == 8 + 2
    assert real["groups_whole"] >= 7 and real["distinct_apart"] == real["distinct"]
    # A low threshold merges distinct articles that share a paragraph; a high one splits copies.
    assert next(r for r in rows if r["method"] == "minhash-jaccard" and r["threshold"] == 0.9)["groups_whole"] \
        < real["groups_whole"]
