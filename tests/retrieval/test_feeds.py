"""Feeds and article pages from a real HTTP server on 127.0.0.1: new entries become answerable, bad ones are reported."""

import fcntl
import time

import pytest

from bot.render import source_line
from retrieval import fetch
from retrieval.feeds import VIA_FEED, VIA_FEED_ONLY, Feed, FeedBook, poll
from retrieval.pipeline import Answerer
from retrieval.web import canonical_key, fetch_article, normalise_url
from tests.fakes import FakeEmbedder
from tests.retrieval.webserver import Route
from tests.retrieval.webserver import local_fetcher as fetcher

HTML = {"Content-Type": "text/html; charset=utf-8"}
RSS = {"Content-Type": "application/rss+xml"}


def page(title: str, body: str, *, canonical: str | None = None, date: str = "2025-03-04") -> bytes:
    link = f'<link rel="canonical" href="{canonical}">' if canonical else ""
    return f"""<html><head><title>{title}</title>{link}
<meta property="og:site_name" content="Harbour Herald"><meta name="date" content="{date}">
<meta name="author" content="Maria de Vries"></head>
<body><article><h1>{title}</h1><p>{body}</p><p>{body} It went on for hours, officials said.</p></article>
</body></html>""".encode()


def rss(items: list[tuple[str, str, str]]) -> bytes:
    """items: (guid, link, summary)"""
    entries = "".join(f"<item><guid>{g}</guid><title>Entry {g}</title><link>{link}</link>"
                      f"<description>{summary}</description><pubDate>Tue, 04 Mar 2025 10:00:00 GMT</pubDate>"
                      f"<author>desk@herald.example (Desk)</author></item>" for g, link, summary in items)
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>Herald</title>{entries}</channel></rss>'.encode()


def cites(answerer, word: str) -> list:
    return [s for p in answerer.answer(word).passages for s in p.sources if word in p.text]


def test_a_feed_entry_becomes_answerable_and_a_new_one_at_the_next_poll(web, answerer, settings_for):
    web.routes["/a1"] = Route(page("Strike grows", "Zqdockers walked out in Rotterdam."), headers=HTML)
    web.routes["/a2"] = Route(page("Port shut", "Zqcranes stood still at the port."), headers=HTML)
    items = [("1", web.url("/a1"), "s1"), ("2", web.url("/a2"), "s2")]
    web.routes["/feed"] = lambda h: (Route(None, 304, {"ETag": '"v1"'}) if h.headers.get("If-None-Match") == '"v1"'
                                     else Route(rss(items), headers={**RSS, "ETag": '"v1"'}))
    book, f = FeedBook(answerer.settings.index.dir), fetcher()
    feed = Feed(web.url("/feed"), outlet="Herald")
    first = poll(feed, fetcher=f, book=book, writer=answerer, every_s=60)
    assert (first.entries, first.new, first.added, first.failed, first.error) == (2, 2, 2, 0, None)
    [source] = cites(answerer, "Zqdockers")
    assert (source.outlet, source.title, source.author, str(source.published)) == (
        "Herald", "Strike grows", "Maria de Vries", "2025-03-04")
    assert source.url == web.url("/a1") and source.via is None

    before = len(web.requests)
    again = poll(feed, fetcher=f, book=book, writer=answerer, every_s=60)
    assert again.not_modified and web.paths()[before:] == ["/feed"]

    web.routes["/a3"] = Route(page("Talks", "Zqtalks resume on Monday."), headers=HTML)
    items.append(("3", web.url("/a3"), "s3"))
    web.routes["/feed"] = Route(rss(items), headers={**RSS, "ETag": '"v2"'})
    third = poll(feed, fetcher=f, book=book, writer=answerer, every_s=60)
    assert (third.entries, third.new, third.added) == (3, 1, 1)
    assert cites(answerer, "Zqtalks")
    status = book.status(feed)
    assert status.entries == 3 and status.last_error is None and status.last_new is not None


def test_an_entry_whose_page_fails_is_indexed_from_its_summary_and_says_so(web, answerer):
    web.routes["/feed"] = Route(rss([("9", web.url("/gone"), "<p>Zqsummary: the ferry was cancelled.</p>")]),
                                headers=RSS)
    result = poll(Feed(web.url("/feed")), fetcher=fetcher(), book=FeedBook(answerer.settings.index.dir),
                  writer=answerer, every_s=60)
    assert (result.added, result.from_summary) == (1, 1)
    [source] = cites(answerer, "Zqsummary")
    assert source.via == VIA_FEED and source.outlet == "Herald" and source.title == "Entry 9"
    assert source_line(source).endswith("from the feed's summary: the article page could not be fetched")


def test_entries_pointing_at_private_addresses_are_refused_and_logged(web, answerer, monkeypatch, caplog):
    monkeypatch.setattr(fetch, "public_address", lambda a: a == "127.0.0.1")  # the test server counts as public
    web.routes["/feed"] = Route(rss([("1", "http://169.254.169.254/latest/meta-data/", ""),
                                     ("2", "http://10.0.0.7/admin", "")]), headers=RSS)
    with caplog.at_level("INFO"):
        result = poll(Feed(web.url("/feed")), fetcher=fetcher(allow_private=False, robots=False),
                      book=FeedBook(answerer.settings.index.dir), writer=answerer, every_s=60)
    assert (result.new, result.added, result.failed) == (2, 0, 2)
    assert any("169.254.169.254" in e and "refused" in e for e in result.errors)
    assert web.paths() == ["/feed"]


@pytest.mark.parametrize("route, reason", [
    (Route(b"<html><body><p>a page, not a feed</p></body></html>", headers=RSS), "not an RSS or Atom feed"),
    (Route(b"<rss><channel><item><title>broken", headers=RSS), "not an RSS or Atom feed"),
    (Route(b"nope", 404), "HTTP 404"),
    (Route(b"oops", 500), "HTTP 500"),
    (Route(bytes(range(256)) * 40, headers={"Content-Type": "application/octet-stream"}), "not application"),
    (Route(rss([]), headers=RSS, trickle_s=0.2), "took longer than"),
])
def test_a_bad_feed_is_reported_backs_off_and_the_others_go_on(web, answerer, route, reason):
    web.routes["/bad"] = route
    web.routes["/a"] = Route(page("Fine", "Zqfine news from the harbour."), headers=HTML)
    web.routes["/good"] = Route(rss([("1", web.url("/a"), "")]), headers=RSS)
    book = FeedBook(answerer.settings.index.dir)
    f = fetcher(timeout_s=1.0)
    bad = poll(Feed(web.url("/bad")), fetcher=f, book=book, writer=answerer, every_s=60)
    good = poll(Feed(web.url("/good")), fetcher=f, book=book, writer=answerer, every_s=60)
    assert reason in bad.error and "\n" not in bad.error
    assert good.ok and good.added == 1
    status = book.status(Feed(web.url("/bad")))
    assert status.failures == 1 and status.last_error == bad.error
    assert status.next_due >= time.time() + 60  # twice the interval
    assert answerer.check() == []


def test_one_article_reached_by_two_links_is_one_document(web, answerer):
    canonical = web.url("/story")
    body = page("One story", "Zqcanonical text of the story.", canonical=canonical)
    web.routes["/story"] = Route(body, headers=HTML)
    web.routes["/amp/story"] = Route(body, headers=HTML)
    web.routes["/feed"] = Route(rss([("1", web.url("/amp/story?utm_source=rss"), ""), ("2", canonical, "")]),
                                headers=RSS)
    result = poll(Feed(web.url("/feed")), fetcher=fetcher(), book=FeedBook(answerer.settings.index.dir),
                  writer=answerer, every_s=60)
    assert result.added == 1
    assert [r.key for r in answerer.sources()] == [canonical]


def test_a_page_cannot_claim_another_sites_url_as_its_key():
    assert canonical_key("https://herald.example/a", "https://www.herald.example/a?utm_medium=x") == \
        "https://www.herald.example/a"
    assert canonical_key("https://evil.example/a", "https://reuters.com/world/a") == "https://evil.example/a"
    assert canonical_key("https://h.example/a#top", "javascript:alert(1)") == "https://h.example/a"
    assert normalise_url("HTTPS://H.Example/p?story=5&fbclid=1&utm_source=rss") == "https://h.example/p?story=5"


def test_a_page_that_declares_no_date_takes_the_day_in_its_url(web):
    body = page("Talks", "Union and port talks resume on Thursday.").replace(
        b'<meta name="date" content="2025-03-04">', b"")
    web.routes["/world/2022/06/19/talks.html"] = Route(body, headers=HTML)
    web.routes["/world/talks.html"] = Route(body, headers=HTML)
    assert fetch_article(fetcher(), web.url("/world/2022/06/19/talks.html")).published.isoformat() == "2022-06-19"
    assert fetch_article(fetcher(), web.url("/world/talks.html")).published is None
    dated = page("Talks", "Union and port talks resume.", date="2025-03-04")
    web.routes["/world/2022/06/20/dated.html"] = Route(dated, headers=HTML)  # the page's own date wins
    assert fetch_article(fetcher(), web.url("/world/2022/06/20/dated.html")).published.isoformat() == "2025-03-04"


def test_fetch_article_reports_pages_without_text(web):
    web.routes["/empty"] = Route(b"<html><body><script>var x = 1;</script></body></html>", headers=HTML)
    web.routes["/pdf"] = Route(b"%PDF-1.4", headers={"Content-Type": "application/pdf"})
    assert "no article text" in fetch_article(fetcher(), web.url("/empty")).reason
    assert "application/pdf" in fetch_article(fetcher(), web.url("/pdf")).reason


def news_sitemap(urls: list[tuple[str, str, str]], *, doctype: str = "") -> bytes:
    """urls: (loc, title, publication date); a page without news markup is listed too, and skipped."""
    entries = "".join(
        f"<url><loc>{loc}</loc><news:news><news:publication><news:name>Harbour Herald</news:name>"
        f"<news:language>en</news:language></news:publication><news:publication_date>{when}</news:publication_date>"
        f"<news:title>{title}</news:title></news:news></url>" for loc, title, when in urls)
    return (f'<?xml version="1.0" encoding="UTF-8"?>{doctype}<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'
            f' xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">{entries}'
            f"<url><loc>https://herald.example/about</loc></url></urlset>").encode()


def test_a_news_sitemap_is_followed_like_a_feed(web, answerer):
    web.routes["/s1"] = Route(page("Ferry", "Zqferry sailings were cancelled at noon."), headers=HTML)
    web.routes["/s2"] = Route(page("Bridge", "Zqbridge reopened to traffic."), headers=HTML)
    web.routes["/news-sitemap.xml"] = Route(news_sitemap([
        (web.url("/s1"), "Ferry sailings cancelled", "2025-03-03T10:00:00+01:00"),
        (web.url("/s2"), "Bridge reopens", "2025-03-04")]), headers={"Content-Type": "application/xml"})
    book = FeedBook(answerer.settings.index.dir)
    result = poll(Feed(web.url("/news-sitemap.xml")), fetcher=fetcher(), book=book, writer=answerer, every_s=60)
    assert (result.entries, result.new, result.added, result.error) == (2, 2, 2, None)
    assert cites(answerer, "Zqferry") and cites(answerer, "Zqbridge")
    again = poll(Feed(web.url("/news-sitemap.xml")), fetcher=fetcher(), book=book, writer=answerer, every_s=60)
    assert (again.entries, again.new) == (2, 0)


def test_a_sitemap_index_or_one_without_news_is_refused_and_entities_are_not_resolved(web, answerer, tmp_path):
    from retrieval.errors import CitebotError
    from retrieval.feeds import parse_sitemap

    index = (b'<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
             b"<sitemap><loc>https://herald.example/news.xml</loc></sitemap></sitemapindex>")
    with pytest.raises(CitebotError, match="a sitemap index"):
        parse_sitemap(index, "https://herald.example/sitemap.xml")
    with pytest.raises(CitebotError, match="without news entries"):
        parse_sitemap(news_sitemap([]), "https://herald.example/sitemap.xml")
    secret = tmp_path / "secret.txt"
    secret.write_text("Zqsecret")
    hostile = news_sitemap([("https://herald.example/a", "&x;", "2025-03-04")],
                           doctype=f'<!DOCTYPE urlset [<!ENTITY x SYSTEM "file://{secret}">]>')
    [entry] = parse_sitemap(hostile, "https://herald.example/s.xml").entries
    assert "Zqsecret" not in str(entry["title"])


def test_only_http_links_become_locations_and_a_guid_is_not_taken_for_a_link(web, answerer):
    items = "".join(f"<item><guid>{g}</guid><title>T{g}</title>{f'<link>{link}</link>' if link else ''}"
                    f"{f'<description>{text}</description>' if text else ''}</item>"
                    for g, link, text in [("x", "file:///etc/passwd", "Zqfile summary."),
                                          ("y", "javascript:alert(1)", "Zqjs summary."),
                                          ("z", "gopher://example.com/1", "Zqgopher summary."),
                                          ("m1", None, "Zqguid summary &amp; more."),
                                          ("m2", None, None)])
    # an unescaped & makes the feed malformed: feedparser reads it anyway, and so must citebot
    body = f'<?xml version="1.0"?><rss version="2.0"><channel><title>Herald & Co</title>{items}</channel></rss>'
    web.routes["/feed"] = Route(body.encode(), headers=RSS)
    result = poll(Feed(web.url("/feed")), fetcher=fetcher(), book=FeedBook(answerer.settings.index.dir),
                  writer=answerer, every_s=60)
    assert (result.entries, result.new, result.added, result.from_summary, result.failed) == (5, 5, 4, 4, 1)
    [error] = result.errors
    assert error == (f"{web.url('/feed')} entry m2: links to no web page (only http and https links are "
                     "fetched), and the feed gives no text for it")
    sources = answerer.sources()
    assert len(sources) == 4 and all(row.location is None for row in sources)
    assert {row.key for row in sources} == {f"{web.url('/feed')}#entry={g}" for g in ("x", "y", "z", "m1")}
    for word in ("Zqfile", "Zqjs", "Zqgopher", "Zqguid"):
        [source] = cites(answerer, word)
        assert source.url is None and source.via == VIA_FEED_ONLY
    assert web.paths() == ["/robots.txt", "/feed"]  # nothing but the feed was requested


def test_two_feeds_entries_with_one_guid_and_no_link_stay_two_articles(web, answerer):
    book = FeedBook(answerer.settings.index.dir)
    for name, word in (("/one", "Zqalpha"), ("/two", "Zqbeta")):
        web.routes[name] = Route(f'<?xml version="1.0"?><rss version="2.0"><channel><title>{name}</title><item>'
                                 f'<guid isPermaLink="false">1</guid><description>{word} news.</description></item>'
                                 f'</channel></rss>'.encode(), headers=RSS)
        assert poll(Feed(web.url(name)), fetcher=fetcher(), book=book, writer=answerer, every_s=60).added == 1
    assert cites(answerer, "Zqalpha") and cites(answerer, "Zqbeta")


def test_pages_fetched_while_the_index_is_busy_are_kept_and_indexed_at_the_next_poll(web, settings_for):
    settings = settings_for(embedding={"model": "fake"}, chunking={"max_tokens": 40}, index={"lock_wait_seconds": 0.3},
                            answer={"min_score": 0.0, "min_mixed_score": -100.0, "min_support": -100.0})
    answerer = Answerer(settings, FakeEmbedder())
    web.routes["/a1"] = Route(page("Strike", "Zqdockers walked out in Rotterdam."), headers=HTML)
    web.routes["/a2"] = Route(page("Port", "Zqcranes stood still at the port."), headers=HTML)
    web.routes["/feed"] = Route(rss([("1", web.url("/a1"), ""), ("2", web.url("/a2"), "")]), headers=RSS)
    book, feed = FeedBook(settings.index.dir), Feed(web.url("/feed"))
    settings.index.dir.mkdir(parents=True, exist_ok=True)
    with open(settings.index.dir / "write.lock", "w") as other_writer:
        fcntl.flock(other_writer, fcntl.LOCK_EX)  # another process's long ingest
        busy = poll(feed, fetcher=fetcher(), book=book, writer=answerer, every_s=600)
    assert busy.error.startswith("2 articles fetched but not indexed (another citebot process has been writing")
    assert busy.error.endswith("they are kept and indexed at the next poll") and "\n" not in busy.error
    status = book.status(feed)
    assert status.last_error == busy.error and status.last_poll is not None and status.entries == 0
    assert time.time() + 50 < status.next_due < time.time() + 70  # soon, not the backed-off interval
    assert set(book.held(feed.url)) == {"1", "2"}
    again = poll(feed, fetcher=fetcher(), book=book, writer=answerer, every_s=600)
    assert (again.error, again.new, again.added) == (None, 0, 2)
    assert web.paths().count("/a1") == web.paths().count("/a2") == 1  # fetched once, committed later
    assert cites(answerer, "Zqdockers") and cites(answerer, "Zqcranes")
    assert book.held(feed.url) == {} and book.status(feed).entries == 2


def test_the_feed_book_keeps_feeds_validators_entries_and_held_articles(state_settings):
    """The feed book on either engine: a SQLite file in the index folder, or the database's schema."""
    from retrieval.feeds import PollResult
    from retrieval.models import Article

    book = FeedBook(state_settings.index)
    assert not book.exists() and book.added() == []
    feed = Feed("https://news.example/rss", outlet="Herald", every_s=600.0)
    assert book.add(feed.url, outlet="Herald", every_s=600.0) and not book.add(feed.url, outlet="Herald")
    assert book.exists() and book.added() == [Feed(feed.url, "Herald", None)]
    assert book.due(feed) and book.validators(feed.url) == (None, None)

    book.record(feed, PollResult(feed.url, entries=2, new=2), every_s=600.0, etag='"v1"', modified="Tue", taken=["a"])
    assert book.validators(feed.url) == ('"v1"', "Tue") and not book.due(feed)
    assert book.seen(feed.url, ["a", "b"]) == {"a"}
    article = Article(key="k", title="T", text="Text of it.", url="https://news.example/b")
    book.hold(feed.url, {"b": article})
    assert book.held(feed.url) == {"b": article}
    book.record(feed, PollResult(feed.url, error="the feed timed out"), every_s=600.0, taken=["b"])
    status = FeedBook(state_settings.index).status(feed)  # a second book sees what the first wrote
    assert (status.failures, status.last_error, status.entries) == (1, "the feed timed out", 2)
    assert status.next_due - status.last_poll == pytest.approx(1200.0) and book.held(feed.url) == {}
    assert book.remove(feed.url) and not book.remove(feed.url) and book.added() == []


def test_a_feed_is_claimed_by_one_poller_until_polled_or_its_claim_lapses(state_settings):
    """Claims on either engine: one owner at a time, none while the feed is not due, a lapsed claim taken over."""
    from retrieval.feeds import PollResult

    one, two = FeedBook(state_settings.index), FeedBook(state_settings.index)
    feed = Feed("https://news.example/rss")
    assert one.claim(feed, "a", 60) and not two.claim(feed, "b", 60)
    assert two.claimed_by(feed) == "a" and one.claim(feed, "a", 60)  # its own claim, renewed
    assert one.renew(feed, "a", 60) and not two.renew(feed, "b", 60)
    one.record(feed, PollResult(feed.url, entries=1, new=1), every_s=600.0, taken=["x"])
    one.release(feed, "a")
    assert two.claimed_by(feed) is None and not two.claim(feed, "b", 60)  # polled: not due for 600 s
    assert two.claim(feed, "b", 60, due_only=False) and not one.claim(feed, "a", 60, due_only=False)
    assert two.claim(feed, "b", -1, due_only=False)  # a claim whose lease has run out ...
    assert one.claim(feed, "a", 60, due_only=False) and one.claimed_by(feed) == "a"  # ... is taken over
    assert not two.renew(feed, "b", 60)
    assert one.remove(feed.url) and one.claimed_by(feed) is None


def test_two_pollers_on_one_book_fetch_each_feed_once_per_interval(web, settings_for, tmp_path):
    """Two pollers (two processes' worth: their own books and writers) share 6 feeds for three rounds."""
    from retrieval.poller import Poller

    settings = settings_for(embedding={"model": "fake"}, chunking={"max_tokens": 40}, answer={"min_score": 0.0},
                            fetch={"claim_seconds": 30, "feed_every": "10s"})
    for n in range(6):
        web.routes[f"/p{n}"] = Route(page(f"Page {n}", f"Story number {n} about the harbour."), headers=HTML)
        web.routes[f"/feed{n}"] = Route(rss([(f"{n}", web.url(f"/p{n}"), "")]), headers=RSS)
    pollers = []
    for _ in range(2):
        answerer = Answerer(settings, FakeEmbedder())
        poller = Poller(settings, answerer, fetcher=fetcher())
        pollers.append(poller)
    for n in range(6):
        pollers[0].book.add(web.url(f"/feed{n}"), every_s=600.0)
    import threading

    results = [[], []]
    threads = [threading.Thread(target=lambda i=i: results[i].extend(pollers[i].poll_due())) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    polled = [r.url for rs in results for r in rs]
    assert sorted(polled) == sorted(web.url(f"/feed{n}") for n in range(6))  # each once, between the two
    assert all(web.paths().count(f"/feed{n}") == 1 for n in range(6))
    assert pollers[0].poll_due() == [] and pollers[1].poll_due() == []  # none due again within the interval
    forced = pollers[1].poll_all()
    assert [r.error for r in forced] == [None] * 6 and all(web.paths().count(f"/feed{n}") == 2 for n in range(6))
    answerer = pollers[0].writer
    assert answerer.store.count_documents() == 6 and answerer.check() == []
