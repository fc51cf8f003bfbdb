"""Wall time of a cold `citebot ask` (a new process, index already built) and of warm questions.

usage: python benchmarks/latency.py [--runs N] [--json]
The index is the configured one (seeds/ by default), built first if empty. Cold runs start a
new process each, as a user's `citebot ask` does; warm runs ask in one process with the model
loaded, as `citebot chat` and the Discord bot do.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUESTIONS = [
    "where are the new battlegroups?",
    "who is the US ambassador to NATO?",
    "how many warships does the alliance have at sea?",
    "what did Stoltenberg say about chemical weapons?",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from retrieval.pipeline import Answerer
    from retrieval.settings import load_settings

    settings = load_settings()
    answerer = Answerer.from_settings(settings)
    if answerer.is_empty():
        answerer.ingest(settings.corpus.paths)

    citebot = str(Path(sys.executable).with_name("citebot"))
    cold = []
    for i in range(args.runs):
        started = time.perf_counter()
        subprocess.run([citebot, "ask", "--json", QUESTIONS[i % len(QUESTIONS)]], check=True,
                       stdout=subprocess.DEVNULL)
        cold.append(time.perf_counter() - started)

    started = time.perf_counter()
    answerer.warm_up()
    load = time.perf_counter() - started
    warm = []
    for i in range(args.runs * 4):
        started = time.perf_counter()
        answerer.answer(QUESTIONS[i % len(QUESTIONS)])
        warm.append(time.perf_counter() - started)

    figures = {
        "cold_ask_median_s": round(statistics.median(cold), 3),
        "cold_ask_min_s": round(min(cold), 3),
        "model_and_index_load_s": round(load, 3),
        "warm_question_median_ms": round(statistics.median(warm) * 1000, 1),
        "warm_question_max_ms": round(max(warm) * 1000, 1),
        "cold_over_warm": round(statistics.median(cold) / statistics.median(warm), 1),
        "runs": args.runs,
    }
    if args.json:
        print(json.dumps(figures))
    else:
        for name, value in figures.items():
            print(f"{name:>26}  {value}")


if __name__ == "__main__":
    main()
