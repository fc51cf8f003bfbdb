"""RSS and Atom feeds: which feeds are followed, what each poll found, and the poll itself.

A poll fetches the feed with a conditional GET (ETag / Last-Modified), parses it with feedparser
(from the bytes fetched: feedparser itself never touches the network), fetches each new entry's
page and extracts it (retrieval/web.py), and commits the articles through the writer. An entry
whose page cannot be had is indexed from the feed's own content or summary, title, date and
author, and its citation says so (`via`). A feed that fails is logged with its URL and reason and
backs off (twice its interval per failure in a row, at most a day); it never stops the others.

The feed book (`feeds.sqlite` in the index folder) holds the feeds added with `citebot feeds add`,
each feed's validators and last outcome, and the entries already taken. It is not part of the
index: losing it costs one re-poll, whose articles come back unchanged.
"""

from __future__ import annotations

import calendar
import datetime as dt
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from retrieval.backends.base import StateDB
from retrieval.errors import CitebotError, IngestError
from retrieval.fetch import Fetcher, FetchError
from retrieval.models import Article
from retrieval.settings import IndexSettings
from retrieval.web import fetch_article, is_url, normalise_url

log = logging.getLogger(__name__)

FEED_TYPES = frozenset({"application/rss+xml", "application/atom+xml", "application/rdf+xml", "application/xml",
                        "text/xml"})
VIA_FEED = "the feed's summary: the article page could not be fetched"
VIA_FEED_ONLY = "the feed's summary: the entry links to no web page"
MAX_BACKOFF_S = 24 * 3600.0
MAX_ENTRIES = 200  # read from one feed per poll
FEED_BOOK = "feeds.sqlite"  # in the index folder

_BOOK = {"sqlite": """
CREATE TABLE IF NOT EXISTS feeds (
    url TEXT PRIMARY KEY,
    outlet TEXT,
    every_s REAL,
    added_at REAL NOT NULL,
    etag TEXT,
    last_modified TEXT,
    last_poll REAL,
    last_ok REAL,
    last_new REAL,
    last_error TEXT,
    failures INTEGER NOT NULL DEFAULT 0,
    next_due REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS entries (
    feed TEXT NOT NULL,
    entry TEXT NOT NULL,
    seen_at REAL NOT NULL,
    PRIMARY KEY (feed, entry)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS held (
    feed TEXT NOT NULL,
    entry TEXT NOT NULL,
    article TEXT NOT NULL,
    held_at REAL NOT NULL,
    PRIMARY KEY (feed, entry)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS claims (
    feed TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until REAL NOT NULL
);
""",
         "postgres": """
CREATE TABLE IF NOT EXISTS feeds (
    url TEXT PRIMARY KEY,
    outlet TEXT,
    every_s DOUBLE PRECISION,
    added_at DOUBLE PRECISION NOT NULL,
    etag TEXT,
    last_modified TEXT,
    last_poll DOUBLE PRECISION,
    last_ok DOUBLE PRECISION,
    last_new DOUBLE PRECISION,
    last_error TEXT,
    failures INTEGER NOT NULL DEFAULT 0,
    next_due DOUBLE PRECISION NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS entries (
    feed TEXT NOT NULL,
    entry TEXT NOT NULL,
    seen_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (feed, entry)
);
CREATE TABLE IF NOT EXISTS held (
    feed TEXT NOT NULL,
    entry TEXT NOT NULL,
    article TEXT NOT NULL,
    held_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (feed, entry)
);
CREATE TABLE IF NOT EXISTS claims (
    feed TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until DOUBLE PRECISION NOT NULL
);
"""}
BUSY_RETRY_S = 60.0  # a poll whose articles could not be committed (a busy index) is due again this soon


def looks_like_feed(body: bytes) -> bool:
    """A feed served under a generic type (text/plain, application/octet-stream) still counts."""
    head = body[:1024].lstrip().lower()
    return head.startswith(b"<?xml") or head.startswith((b"<rss", b"<feed", b"<rdf:rdf", b"<urlset"))


@dataclass(frozen=True)
class Feed:
    url: str
    outlet: str | None = None
    every_s: float | None = None  # None: the default interval
    origin: str = "added"  # "added" (citebot feeds add) or "settings" ([[feeds]])


@dataclass(frozen=True)
class FeedStatus:
    feed: Feed
    last_poll: float | None
    last_ok: float | None
    last_new: float | None
    last_error: str | None
    failures: int
    next_due: float
    entries: int


@dataclass
class PollResult:
    url: str
    not_modified: bool = False
    entries: int = 0  # in the feed
    new: int = 0  # entries not taken before
    added: int = 0
    updated: int = 0
    from_summary: int = 0  # indexed from the feed's own text
    failed: int = 0
    error: str | None = None  # the feed itself failed
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


class FeedBook:
    """The followed feeds and their state: `feeds.sqlite` beside the index, or the collection's schema in the
    PostgreSQL database of `index.url` (retrieval/backends: `open_state`)."""

    def __init__(self, where: Path | IndexSettings | StateDB):
        from retrieval.backends import open_state

        if isinstance(where, Path):
            where = IndexSettings(dir=where)
        self._state = where if hasattr(where, "session") else open_state(where, file=FEED_BOOK, ddl=_BOOK,
                                                                          table="feeds")

    def close(self) -> None:
        self._state.close()

    def copy_to(self, other: FeedBook) -> int:
        """Every feed, entry taken and article held, into another engine's book (`citebot migrate --to`)."""
        from retrieval.backends.copy import copy_state

        return copy_state(self._state, other._state, {
            "feeds": "url, outlet, every_s, added_at, etag, last_modified, last_poll, last_ok, last_new, last_error,"
                     " failures, next_due",
            "entries": "feed, entry, seen_at", "held": "feed, entry, article, held_at"})

    def exists(self) -> bool:
        """Whether any feed was ever added or polled here (nothing is created to find out)."""
        return self._state.exists()

    def _read(self, sql: str, parameters: tuple = ()) -> list[tuple]:
        with self._state.session() as db:
            return db.execute(sql, parameters).fetchall()

    def add(self, url: str, *, outlet: str | None = None, every_s: float | None = None) -> bool:
        """Follow a feed; False if it was followed already (its outlet and interval are updated)."""
        with self._state.session(exclusive=True) as db:
            known = db.execute("SELECT 1 FROM feeds WHERE url = ?", (url,)).fetchone() is not None
            db.execute("INSERT INTO feeds(url, outlet, every_s, added_at) VALUES (?, ?, ?, ?) ON CONFLICT (url) DO"
                       " UPDATE SET outlet = excluded.outlet, every_s = excluded.every_s",
                       (url, outlet, every_s, time.time()))
        return not known

    def remove(self, url: str) -> bool:
        with self._state.session(exclusive=True) as db:
            gone = db.execute("DELETE FROM feeds WHERE url = ?", (url,)).rowcount
            db.execute("DELETE FROM entries WHERE feed = ?", (url,))
            db.execute("DELETE FROM held WHERE feed = ?", (url,))
            db.execute("DELETE FROM claims WHERE feed = ?", (url,))
        return bool(gone)

    def added(self) -> list[Feed]:
        rows = self._read("SELECT url, outlet, every_s FROM feeds ORDER BY added_at, url")
        return [Feed(url, outlet, every) for url, outlet, every in rows]

    def status(self, feed: Feed) -> FeedStatus:
        with self._state.session() as db:
            row = db.execute("SELECT last_poll, last_ok, last_new, last_error, failures, next_due FROM feeds"
                             " WHERE url = ?", (feed.url,)).fetchone() or (None, None, None, None, 0, 0.0)
            entries = db.execute("SELECT count(*) FROM entries WHERE feed = ?", (feed.url,)).fetchone()[0]
        return FeedStatus(feed, *row, entries=entries)

    def validators(self, url: str) -> tuple[str | None, str | None]:
        rows = self._read("SELECT etag, last_modified FROM feeds WHERE url = ?", (url,))
        return (rows[0][0], rows[0][1]) if rows else (None, None)

    def seen(self, url: str, entries: Iterable[str]) -> set[str]:
        entries = list(entries)
        if not entries:
            return set()
        rows = self._read(f"SELECT entry FROM entries WHERE feed = ? AND entry IN ({','.join('?' * len(entries))})",
                          (url, *entries))
        return {row[0] for row in rows}

    def record(self, feed: Feed, result: PollResult, *, every_s: float, etag=None, modified=None,
               taken: Iterable[str] = (), retry_s: float | None = None) -> None:
        """Store a poll's outcome: validators, times, the entries taken, when the feed is due again.

        A failed poll backs off (twice the interval per failure in a row), unless `retry_s` says when to
        try again: a busy index is not the feed's fault.
        """
        now = time.time()
        taken = list(taken)
        with self._state.session(exclusive=True) as db:
            db.execute("INSERT INTO feeds(url, outlet, every_s, added_at) VALUES (?, ?, ?, ?) ON CONFLICT (url)"
                       " DO NOTHING", (feed.url, feed.outlet, feed.every_s, now))
            if result.ok:
                db.execute(
                    "UPDATE feeds SET last_poll = ?, last_ok = ?, last_error = NULL, failures = 0, next_due = ?,"
                    " etag = coalesce(?, etag), last_modified = coalesce(?, last_modified),"
                    " last_new = CASE WHEN ? THEN ? ELSE last_new END WHERE url = ?",
                    (now, now, now + every_s, etag, modified, result.new > 0, now, feed.url))
            else:
                failures = (db.execute("SELECT failures FROM feeds WHERE url = ?", (feed.url,)).fetchone()
                            or (0,))[0] + 1
                wait = retry_s if retry_s is not None else min(every_s * 2 ** failures, MAX_BACKOFF_S)
                db.execute("UPDATE feeds SET last_poll = ?, last_error = ?, failures = ?, next_due = ?"
                           " WHERE url = ?", (now, result.error, failures, now + wait, feed.url))
            db.executemany("INSERT INTO entries(feed, entry, seen_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                           [(feed.url, entry, now) for entry in taken])
            db.executemany("DELETE FROM held WHERE feed = ? AND entry = ?", [(feed.url, e) for e in taken])

    def hold(self, url: str, articles: dict[str, Article]) -> None:
        """Keep articles fetched for entries that could not be committed, for the next poll to commit."""
        now = time.time()
        with self._state.session(exclusive=True) as db:
            db.executemany("INSERT INTO held(feed, entry, article, held_at) VALUES (?, ?, ?, ?) ON CONFLICT"
                           " (feed, entry) DO UPDATE SET article = excluded.article, held_at = excluded.held_at",
                           [(url, entry, a.model_dump_json(), now) for entry, a in articles.items()])

    def held(self, url: str) -> dict[str, Article]:
        """The articles fetched at an earlier poll of this feed and not committed yet, by entry."""
        rows = self._read("SELECT entry, article FROM held WHERE feed = ? ORDER BY held_at, entry", (url,))
        return {entry: Article.model_validate_json(article) for entry, article in rows}

    def claim(self, feed: Feed, owner: str, lease_s: float, *, due_only: bool = True) -> bool:
        """Take the right to poll this feed now, for `lease_s` seconds: False if it is not due (with
        `due_only`) or another process holds an unexpired claim. Many pollers on one database (PostgreSQL)
        thus fetch each feed once per interval; a killed poller's claims lapse and others take its feeds."""
        now = time.time()
        with self._state.session(exclusive=True) as db:
            if due_only:
                row = db.execute("SELECT next_due FROM feeds WHERE url = ?", (feed.url,)).fetchone()
                if row is not None and row[0] > now:
                    return False
            taken = db.execute("INSERT INTO claims(feed, owner, until) VALUES (?, ?, ?) ON CONFLICT (feed) DO UPDATE"
                               " SET owner = excluded.owner, until = excluded.until WHERE claims.until < ?"
                               " OR claims.owner = excluded.owner", (feed.url, owner, now + lease_s, now))
            return taken.rowcount == 1

    def renew(self, feed: Feed, owner: str, lease_s: float) -> bool:
        """Extend a claim this owner holds; False if it lapsed and another took it."""
        with self._state.session() as db:
            return db.execute("UPDATE claims SET until = ? WHERE feed = ? AND owner = ?",
                              (time.time() + lease_s, feed.url, owner)).rowcount == 1

    def release(self, feed: Feed, owner: str) -> None:
        with self._state.session() as db:
            db.execute("DELETE FROM claims WHERE feed = ? AND owner = ?", (feed.url, owner))

    def claimed_by(self, feed: Feed) -> str | None:
        """Who polls the feed now (an unexpired claim), for `citebot feeds list`."""
        rows = self._read("SELECT owner FROM claims WHERE feed = ? AND until >= ?", (feed.url, time.time()))
        return rows[0][0] if rows else None

    def due(self, feed: Feed, now: float | None = None) -> bool:
        rows = self._read("SELECT next_due FROM feeds WHERE url = ?", (feed.url,))
        return not rows or rows[0][0] <= (now if now is not None else time.time())


# -- one poll -------------------------------------------------------------------------------------
def parse_feed(body: bytes, url: str):
    """feedparser's reading of the bytes (or a news sitemap's); CitebotError when they hold no feed at all."""
    import feedparser

    head = body[:2048].lower()
    if b"<urlset" in head or b"<sitemapindex" in head:
        return parse_sitemap(body, url)
    parsed = feedparser.parse(body, sanitize_html=False, resolve_relative_uris=False)
    # feedparser reads a feed with small XML faults; bytes with nothing entry-like in them are no feed.
    if not parsed.get("version") or parsed.bozo and not any(entry_key(e) for e in parsed.entries):
        reason = getattr(parsed, "bozo_exception", None)
        raise CitebotError(f"{url}: not an RSS or Atom feed"
                           + (f" ({type(reason).__name__}: {str(reason)[:120]})" if reason else ""))
    return parsed


_SITEMAP = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
_NEWS = "{http://www.google.com/schemas/sitemap-news/0.9}"


@dataclass
class Sitemap:
    """A news sitemap read as a feed: its `<news:news>` entries, newest first, shaped as feedparser's."""

    entries: list[dict]
    feed: dict


def parse_sitemap(body: bytes, url: str) -> Sitemap:
    """The articles a Google News sitemap lists (loc, news:title, news:publication_date, news:name).

    Read with entities unresolved and no network: a sitemap is hostile input like any feed. A
    sitemap index, or a sitemap without news entries (every page of a site), is refused: name a
    news sitemap or a feed instead.
    """
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, recover=True, huge_tree=False)
    try:
        root = etree.fromstring(body, parser)
    except etree.XMLSyntaxError as error:
        raise CitebotError(f"{url}: not an RSS or Atom feed or a news sitemap ({error})") from None
    if root is None or root.tag == f"{_SITEMAP}sitemapindex":
        raise CitebotError(f"{url}: a sitemap index, not a news sitemap: add one of the sitemaps it lists")
    entries, site = [], None
    for node in root.iter(f"{_SITEMAP}url"):
        news = node.find(f"{_NEWS}news")
        loc = (node.findtext(f"{_SITEMAP}loc") or "").strip()
        if news is None or not loc:
            continue
        site = site or (news.findtext(f"{_NEWS}publication/{_NEWS}name") or "").strip() or None
        when = _iso_time(news.findtext(f"{_NEWS}publication_date"))
        entries.append({"id": loc, "link": loc, "title": (news.findtext(f"{_NEWS}title") or "").strip() or None,
                        "published_parsed": when.utctimetuple() if when else None, "_when": when})
    if not entries:
        raise CitebotError(f"{url}: a sitemap without news entries: give a news sitemap or the site's feed")
    entries.sort(key=lambda e: e["_when"] or dt.datetime.min.replace(tzinfo=dt.timezone.utc), reverse=True)
    return Sitemap(entries=entries, feed={"title": site})


def _iso_time(value: str | None) -> dt.datetime | None:
    """A W3C date or datetime (2025-03-04, 2025-03-04T10:00:00+01:00, …Z) in UTC; None if it is neither."""
    try:
        when = dt.datetime.fromisoformat((value or "").strip())
    except ValueError:
        return None
    return when.replace(tzinfo=when.tzinfo or dt.timezone.utc).astimezone(dt.timezone.utc)


def entry_key(entry) -> str | None:
    return entry.get("id") or entry.get("link") or None


def _entry_date(entry) -> dt.date | None:
    for name in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(name)
        if value:
            try:
                return dt.datetime.fromtimestamp(calendar.timegm(value), tz=dt.timezone.utc).date()
            except (OverflowError, ValueError, TypeError):
                continue
    return None


def _plain(html: str) -> str:
    """An entry's HTML content or summary as plain text, paragraph breaks kept."""
    import lxml.html

    if "<" not in html:
        return html.strip()
    try:
        root = lxml.html.fromstring(html)
    except Exception:  # noqa: BLE001 - lxml raises several kinds on junk
        return ""
    for block in root.iter("p", "br", "div", "li", "h1", "h2", "h3", "h4", "blockquote"):
        block.tail = "\n\n" + (block.tail or "")
    return "\n".join(" ".join(line.split()) for line in root.text_content().split("\n")).strip()


def entry_link(entry, feed_url: str) -> str | None:
    """The entry's web page: an http(s) URL (a relative one read against the feed's address), else None.

    `file:`, `javascript:` and `gopher:` links are no page, and neither is a guid that feedparser took
    for a link ("m2": RSS calls a guid a permalink unless told otherwise).
    """
    link = (entry.get("link") or "").strip()
    if not link or entry.get("guidislink") and not is_url(link):
        return None
    try:
        absolute = urljoin(feed_url, link)
        parts = urlsplit(absolute)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            return None
    except ValueError:  # an unbalanced [ in the host
        return None
    return absolute


def from_entry(entry, *, link: str | None, feed_url: str, outlet: str | None,
               fallback_outlet: str | None) -> Article | None:
    """An Article from the feed entry's own text, when its page cannot be had; None if it has none.

    `link` is the entry's vetted page (entry_link): the citation's location, or None. An entry without
    one is keyed by the feed and its id, so that two feeds' entries "1" stay two articles.
    """
    content = entry.get("content") or []
    text = _plain(content[0].get("value", "") if content else entry.get("summary", "") or "")
    if not text:
        return None
    url = normalise_url(link) if link else None
    return Article(key=url or f"{feed_url}#entry={entry_key(entry)}", text=text,
                   title=(entry.get("title") or "").strip() or None, outlet=outlet or fallback_outlet,
                   published=_entry_date(entry), author=(entry.get("author") or "").strip() or None, url=url,
                   via=VIA_FEED if link else VIA_FEED_ONLY)


def poll(feed: Feed, *, fetcher: Fetcher, book: FeedBook, writer, every_s: float,
         max_feed_bytes: int | None = None) -> PollResult:
    """Poll one feed once: new entries fetched, extracted and committed. Never raises for the feed's faults,
    nor for an index that is busy or full: the articles fetched are then held for the next poll."""
    result = PollResult(feed.url)
    got: dict[str, Article] = book.held(feed.url)  # entry -> its article in hand, from an earlier poll too
    failures: list[IngestError] = []
    etag, modified = book.validators(feed.url)
    try:
        response = fetcher.get(feed.url, accept=FEED_TYPES, etag=etag, modified=modified, sniff=looks_like_feed,
                               max_bytes=max_feed_bytes)
        parsed = None if response.not_modified else parse_feed(response.body, feed.url)
    except (FetchError, CitebotError) as error:
        result.error = error.reason if isinstance(error, FetchError) else str(error).split(": ", 1)[-1]
        log.info("feed %s: %s", feed.url, result.error)
        response = parsed = None
    if parsed is not None:
        _take_entries(feed, parsed, fetcher, book, got, failures, result)
    elif response is not None:
        result.not_modified = True
    if got or failures:  # what an earlier poll fetched is committed even when the feed fails now
        try:
            report = writer.ingest_articles([*got.values(), *failures])
        except CitebotError as error:  # a busy index, a full disk: the pages stay fetched
            book.hold(feed.url, got)
            result.failed, result.errors = len(failures), [str(f) for f in failures]
            result.error = (f"{len(got)} articles fetched but not indexed ({error}); they are kept and indexed at "
                            "the next poll")
            log.info("feed %s: %s", feed.url, result.error)
            book.record(feed, result, every_s=every_s, retry_s=min(every_s, BUSY_RETRY_S))
            return result
        result.added, result.updated, result.failed = report.added, report.updated, report.failed
        result.errors = report.errors
    book.record(feed, result, every_s=every_s, etag=response and response.etag,
                modified=response and response.last_modified, taken=list(got))
    log.info("feed %s: %d entries, %d new, %d added, %d failed", feed.url, result.entries, result.new,
             result.added, result.failed)
    return result


def _take_entries(feed: Feed, parsed, fetcher: Fetcher, book: FeedBook, got: dict[str, Article],
                  failures: list[IngestError], result: PollResult) -> None:
    """Each new entry's article into `got` (its page, else the feed's own text), or its failure into `failures`."""
    entries = [e for e in parsed.entries[:MAX_ENTRIES] if entry_key(e)]
    result.entries = len(entries)
    taken = book.seen(feed.url, (entry_key(e) for e in entries))
    fresh = [e for e in entries if entry_key(e) not in taken and entry_key(e) not in got]
    result.new = len(fresh)
    site = (parsed.feed.get("title") or "").strip() or None
    for entry in fresh:
        key = entry_key(entry)
        link = entry_link(entry, feed.url)
        page = fetch_article(fetcher, link, outlet=feed.outlet) if link else IngestError(
            f"{feed.url} entry {key}", "links to no web page (only http and https links are fetched)")
        if isinstance(page, Article):
            got[key] = page
            continue
        summary = from_entry(entry, link=link, feed_url=feed.url, outlet=feed.outlet, fallback_outlet=site)
        if summary is None:
            failures.append(IngestError(page.path, f"{page.reason}, and the feed gives no text for it"))
            continue
        log.info("feed %s: %s; indexed from the feed's summary", feed.url, page.reason)
        result.from_summary += 1
        got[key] = summary
