"""How soon a feed's new entry is answerable, and what the poller costs, with feeds served on 127.0.0.1.

usage: python benchmarks/feeds.py [--feeds 20] [--entries 25] [--minutes 30] [--new-every 20] [--json] [-v]

A real HTTP server in this process serves FEEDS RSS feeds of ENTRIES entries each, and their
article pages. `citebot run` (a separate process, the real model, the default poll interval
`fetch.feed_every` unless --every is given) follows them in a fresh index. First the backlog: the
time until every entry of every feed is indexed. Then, for MINUTES, one new entry appears in a
random feed every NEW_EVERY seconds; the time from its appearing in the feed to its being
answerable (a reader in this process cites its page) is recorded. At the end: p50/p95/max of that
time, and the poller's CPU time and peak RSS over the run (from /proc).

Each entry's page states a fact about a made-up word no other page has, so the question that finds
it is unambiguous. The poller fetches from 127.0.0.1, so it runs with fetch.allow_private and no
per-host spacing (the feeds stand for 20 different sites).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.retrieval.webserver import Route, WebServer  # noqa: E402

RSS = {"Content-Type": "application/rss+xml"}
HTML = {"Content-Type": "text/html; charset=utf-8"}
SEED = 11
KEYS = ("feeds", "entries", "backlog_s", "new_entries", "answerable_p50_s", "answerable_p95_s", "answerable_max_s",
        "never_answerable", "poll_every_s", "poller_cpu_s", "poller_cpu_share", "poller_rss_mb", "minutes")


def word_of(name: str) -> str:
    return "Zq" + hashlib.sha1(name.encode()).hexdigest()[:10]


def page(name: str) -> bytes:
    word = word_of(name)
    rng = random.Random(name)
    place = rng.choice(["Rotterdam", "Gdansk", "Lisbon", "Genoa", "Hamburg", "Piraeus"])
    return (f"<html><head><title>{word} report</title><meta name='date' content='2025-03-04'></head><body><article>"
            f"<h1>{word} report</h1><p>The {word} accord was signed in {place} by {rng.randrange(12, 90)} "
            f"delegates on Tuesday, officials said.</p><p>Talks on the {word} accord had lasted for months, and "
            "ministers called it a step forward for the region's ports.</p></article></body></html>").encode()


class Site:
    """The feeds and pages; entries are added while the poller runs."""

    def __init__(self, server: WebServer, feeds: int, entries: int):
        self.server = server
        self.lock = threading.Lock()
        self.items: dict[int, list[tuple[str, float]]] = {f: [] for f in range(feeds)}
        for f in range(feeds):
            for e in range(entries):
                self.add(f, f"f{f}-e{e}", at=0.0)
            server.routes[f"/feed/{f}.xml"] = lambda handler, f=f: Route(self.rss(f), headers=RSS)

    def add(self, feed: int, name: str, *, at: float | None = None) -> str:
        self.server.routes[f"/a/{name}.html"] = Route(page(name), headers=HTML)
        with self.lock:
            self.items[feed].insert(0, (name, time.monotonic() if at is None else at))
        return self.server.url(f"/a/{name}.html")

    def rss(self, feed: int) -> bytes:
        with self.lock:
            items = list(self.items[feed])[:50]
        body = "".join(f"<item><guid>{n}</guid><title>{word_of(n)}</title><link>{self.server.url(f'/a/{n}.html')}"
                       f"</link><pubDate>Tue, 04 Mar 2025 10:00:00 GMT</pubDate></item>" for n, _ in items)
        return f'<?xml version="1.0"?><rss version="2.0"><channel><title>Feed {feed}</title>{body}</channel></rss>'.encode()


def _proc(pid: int) -> tuple[float, float]:
    """(CPU seconds, peak RSS MB) of a process and its children so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = sum(int(x) for x in fields[11:15]) / ticks  # utime, stime, cutime, cstime
    peak = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("VmHWM:")) / 1024
    return cpu, peak


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=20)
    parser.add_argument("--entries", type=int, default=25)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--new-every", type=float, default=20.0, help="seconds between new entries (default 20)")
    parser.add_argument("--every", help="the poll interval (default: fetch.feed_every)")
    parser.add_argument("--json", action="store_true", help="one JSON line with the figures")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)

    from retrieval.backends import open_index
    from retrieval.settings import load_settings

    rng = random.Random(SEED)
    work = Path(tempfile.mkdtemp(prefix="citebot-feeds-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEBOT_")}
    env.update({"CITEBOT_INDEX__DIR": str(work / "index"), "CITEBOT_FETCH__ALLOW_PRIVATE": "true",
                "CITEBOT_FETCH__HOST_INTERVAL_SECONDS": "0", "CITEBOT_CORPUS__PATHS": "[]"})
    if args.every:
        env["CITEBOT_FETCH__FEED_EVERY"] = args.every
    citebot = [sys.executable, "-m", "bot.cli"]
    every = load_settings().fetch.feed_every if not args.every else args.every

    def say(text: str) -> None:
        if args.verbose:
            print(text, file=sys.stderr, flush=True)

    with WebServer() as server:
        site = Site(server, args.feeds, args.entries)
        for f in range(args.feeds):
            subprocess.run([*citebot, "feeds", "add", server.url(f"/feed/{f}.xml")], cwd=ROOT, env=env, check=True,
                           capture_output=True)
        # The store exists before the poller starts, so that this process only ever reads it.
        subprocess.run([*citebot, "sources", "--json"], cwd=ROOT, env=env, check=True, capture_output=True)
        store = open_index(load_settings(index={"dir": str(work / "index")}))
        started = time.monotonic()
        poller = subprocess.Popen([*citebot, "run"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL if not args.verbose else None)
        try:
            def indexed(url: str) -> bool:
                return bool(store.find_documents(url))

            backlog = [server.url(f"/a/f{f}-e{e}.html") for f in range(args.feeds) for e in range(args.entries)]
            while not all(indexed(u) for u in backlog[-5:]) or sum(map(indexed, backlog)) < len(backlog):
                if time.monotonic() - started > 1800:
                    raise SystemExit("feeds.py: the backlog was not indexed within 30 minutes")
                time.sleep(1.0)
            backlog_s = time.monotonic() - started
            say(f"backlog of {len(backlog)} entries indexed in {backlog_s:.0f} s")

            pending: dict[str, float] = {}
            seen: dict[str, float] = {}
            end = time.monotonic() + args.minutes * 60
            next_new = time.monotonic()
            count = 0
            cpu_start, _ = _proc(poller.pid)
            clock_start = time.monotonic()
            while time.monotonic() < end or (pending and time.monotonic() < end + 300):
                now = time.monotonic()
                if now >= next_new and now < end:
                    name = f"new-{count}"
                    pending[site.add(rng.randrange(args.feeds), name)] = time.monotonic()
                    count += 1
                    next_new = now + args.new_every
                for url in [u for u in pending if indexed(u)]:
                    seen[url] = time.monotonic() - pending.pop(url)
                    say(f"{url} answerable after {seen[url]:.1f} s")
                time.sleep(0.25)
            cpu_end, peak = _proc(poller.pid)
            wall = time.monotonic() - clock_start
            # Indexed means a reader answers from it: check the last few truly cite their page.
            from retrieval.pipeline import Answerer
            from retrieval.settings import load_settings as settings_of

            os.environ.update({k: v for k, v in env.items() if k.startswith("CITEBOT_")})
            reader = Answerer.from_settings(settings_of())
            for url in list(seen)[-3:]:
                word = word_of(url.rsplit("/", 1)[1].removesuffix(".html"))
                answer = reader.answer(f"Where was the {word} accord signed?")
                if not any(s.url == url for p in answer.passages for s in p.sources):
                    raise SystemExit(f"feeds.py: {url} is indexed but the answer does not cite it")
        finally:
            poller.terminate()
            poller.wait(timeout=60)
    times = sorted(seen.values())
    figures = {
        "feeds": args.feeds, "entries": args.entries, "backlog_s": round(backlog_s, 1), "new_entries": count,
        "answerable_p50_s": round(statistics.median(times), 1) if times else None,
        "answerable_p95_s": round(times[min(len(times) - 1, int(0.95 * len(times)))], 1) if times else None,
        "answerable_max_s": round(times[-1], 1) if times else None,
        "never_answerable": len(pending), "poll_every_s": every, "poller_cpu_s": round(cpu_end - cpu_start, 1),
        "poller_cpu_share": round((cpu_end - cpu_start) / wall, 3), "poller_rss_mb": round(peak, 1),
        "minutes": args.minutes,
    }
    if args.json:
        print(json.dumps({k: figures[k] for k in KEYS}))
    else:
        for key in KEYS:
            print(f"{key:>20}  {figures[key]}")


if __name__ == "__main__":
    main()
