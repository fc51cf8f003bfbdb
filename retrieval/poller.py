"""The long-running loop that keeps an index current: every followed feed polled when it is due.

A poller takes one feed at a time. Before polling a feed it claims it in the feed book (for
`fetch.claim_seconds`, renewed while the poll lasts), so several pollers on one PostgreSQL database
(`citebot run` on several machines) fetch each feed once per interval between them, and a killed
poller's feeds are taken over once its claims lapse. A feed's failure is logged and backs off
(retrieval/feeds.py); nothing a feed does stops the loop.
`citebot run` runs it in the foreground; `citebot discord` runs it in a thread beside the bot, off
the event loop.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
import uuid
from contextlib import contextmanager

from retrieval.errors import SettingsError
from retrieval.feeds import Feed, FeedBook, PollResult, poll
from retrieval.fetch import Fetcher, Policy

log = logging.getLogger(__name__)

_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)?\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
MIN_INTERVAL_S = 10.0


def parse_interval(text: str | float | int | None, *, what: str = "the interval") -> float:
    """`90s`, `15m`, `2h`, `1d` or a number of seconds -> seconds (at least 10)."""
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        match = _INTERVAL.match(text or "")
        if not match:
            raise SettingsError(f"{what} {text!r} is not a duration: write e.g. 90s, 15m, 2h or 1d")
        seconds = float(match.group(1)) * _UNIT_S[(match.group(2) or "s").lower()]
    if seconds < MIN_INTERVAL_S:
        raise SettingsError(f"{what} is {seconds:g} s; feeds are polled at most every {MIN_INTERVAL_S:g} s")
    return seconds


def policy_for(settings, version: str = "0.1") -> Policy:
    fetch = settings.fetch
    agent = f"citebot/{version}" + (f" (+{fetch.contact})" if fetch.contact else "")
    return Policy(timeout_s=fetch.timeout_seconds, max_bytes=int(fetch.max_page_mb * 2**20),
                  max_redirects=fetch.max_redirects, allow_private=fetch.allow_private, user_agent=agent,
                  host_interval_s=fetch.host_interval_seconds, robots=fetch.robots)


def followed(settings, book: FeedBook) -> list[Feed]:
    """The feeds in the settings ([[feeds]]), then those added with `citebot feeds add`, each once."""
    feeds: dict[str, Feed] = {}
    for entry in settings.feeds:
        every = parse_interval(entry.every, what=f"the interval of feed {entry.url}") if entry.every else None
        feeds.setdefault(entry.url, Feed(entry.url, entry.outlet, every, origin="settings"))
    for feed in book.added():
        feeds.setdefault(feed.url, feed)
    return list(feeds.values())


class Poller:
    def __init__(self, settings, writer, *, fetcher: Fetcher | None = None, book: FeedBook | None = None):
        self.settings = settings
        self.writer = writer  # anything with ingest_articles (the Answerer)
        self.fetcher = fetcher or Fetcher(policy_for(settings))
        self.book = book or FeedBook(settings.index)
        self.default_every = parse_interval(settings.fetch.feed_every, what="fetch.feed_every")
        self.lease_s = settings.fetch.claim_seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"  # this poller, in claims
        self.feeds()  # a bad [[feeds]] interval is a SettingsError now, not a log line every round

    def feeds(self) -> list[Feed]:
        return followed(self.settings, self.book)

    def poll(self, feed: Feed) -> PollResult:
        try:
            return poll(feed, fetcher=self.fetcher, book=self.book, writer=self.writer,
                        every_s=feed.every_s or self.default_every,
                        max_feed_bytes=int(self.settings.fetch.max_feed_mb * 2**20))
        except Exception as error:  # noqa: BLE001 - a bug costs this poll, not the loop
            log.debug("feed %s: poll failed", feed.url, exc_info=True)
            result = PollResult(feed.url, error=f"poll failed ({type(error).__name__}: {error}): run with -vv "
                                                "for the details")
            log.error("feed %s: %s", feed.url, result.error)
            return result

    def poll_all(self) -> list[PollResult]:
        """Every feed once, due or not (`citebot feeds poll`); one another process is polling now is left to it."""
        results = []
        for feed in self.feeds():
            with self._claimed(feed, due_only=False) as mine:
                results.append(self.poll(feed) if mine else PollResult(
                    feed.url, error=f"another citebot process ({self.book.claimed_by(feed)}) is polling it now"))
        return results

    def poll_due(self) -> list[PollResult]:
        """The feeds due now that no other poller has claimed, each polled once."""
        now = time.time()
        results = []
        for feed in self.feeds():
            if not self.book.due(feed, now):
                continue
            with self._claimed(feed) as mine:
                if mine:
                    results.append(self.poll(feed))
        return results

    @contextmanager
    def _claimed(self, feed: Feed, *, due_only: bool = True):
        """Claim the feed for the block (True) or learn that it is not ours to poll (False); the claim is
        renewed every third of its lease while the block runs, and released at its end."""
        if not self.book.claim(feed, self.owner, self.lease_s, due_only=due_only):
            yield False
            return
        done = threading.Event()

        def renew() -> None:
            while not done.wait(self.lease_s / 3):
                try:
                    if not self.book.renew(feed, self.owner, self.lease_s):
                        log.warning("feed %s: the claim lapsed during the poll; another poller may take it", feed.url)
                        return
                except Exception:  # noqa: BLE001 - the poll goes on; the claim may lapse
                    log.debug("feed %s: renewing the claim failed", feed.url, exc_info=True)

        keeper = threading.Thread(target=renew, name="citebot-claim", daemon=True)
        keeper.start()
        try:
            yield True
        finally:
            done.set()
            keeper.join()
            try:
                self.book.release(feed, self.owner)
            except Exception:  # noqa: BLE001 - an unreleased claim lapses by itself
                log.debug("feed %s: releasing the claim failed", feed.url, exc_info=True)

    def next_due_in(self) -> float:
        feeds = self.feeds()
        if not feeds:
            return self.default_every
        soonest = min(self.book.status(feed).next_due for feed in feeds)
        return max(0.0, soonest - time.time())

    def run(self, stop: threading.Event, *, max_sleep_s: float = 30.0) -> None:
        """Poll what is due, sleep until the next feed is, until `stop` is set."""
        log.info("polling %d feeds", len(self.feeds()))
        while not stop.is_set():
            try:
                for result in self.poll_due():
                    if result.error:
                        log.warning("feed %s: %s", result.url, result.error)
                wait = min(self.next_due_in(), max_sleep_s)
            except Exception:  # noqa: BLE001 - the loop outlives anything one round does
                log.exception("poll round failed")
                wait = max_sleep_s
            stop.wait(max(wait, 0.5))
