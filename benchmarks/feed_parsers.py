"""feedparser (what citebot uses) against fastfeedparser: speed on ordinary feeds, and what each makes of bad ones.

usage: python benchmarks/feed_parsers.py [--feeds 20] [--entries 25] [--rounds 5] [--json]

Both parse the same bytes, in memory (neither fetches anything: citebot's fetcher does that).
Speed: FEEDS RSS 2.0 and Atom feeds of ENTRIES entries each, parsed by each parser in turn, ROUNDS
interleaved rounds; the median time per feed and the ratio. Then the feeds that citebot's tests
throw at the poller, and others found in the wild: for each, the entries each parser recovers
with a link and a date, where feedparser's reading is the reference (title, link and day agree).
"""

from __future__ import annotations

import argparse
import calendar
import datetime as dt
import json
import statistics
import sys
import time

ENTRY_RSS = """<item><title>Strike day {n} &amp; talks</title><link>https://example.org/{f}/{n}.html</link>
<guid>https://example.org/{f}/{n}</guid><pubDate>Tue, 04 Mar 2025 {h:02d}:15:00 +0100</pubDate>
<dc:creator>Maria de Vries</dc:creator><category>Ports</category>
<description>&lt;p&gt;About {n}00 workers joined the strike, the union said.&lt;/p&gt;</description>
<content:encoded><![CDATA[<p>About {n}00 workers joined the strike at the port, the union said on Tuesday.</p>
<p>Talks resume on Thursday.</p>]]></content:encoded></item>"""
ENTRY_ATOM = """<entry><title>Strike day {n}</title><link href="https://example.org/{f}/{n}.html"/>
<id>urn:example:{f}:{n}</id><updated>2025-03-04T{h:02d}:15:00Z</updated><author><name>Omar al-Sharif</name></author>
<summary type="html">&lt;p&gt;About {n}00 workers joined the strike.&lt;/p&gt;</summary></entry>"""


def rss(f: int, entries: int) -> bytes:
    items = "".join(ENTRY_RSS.format(f=f, n=n, h=n % 24) for n in range(entries))
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/" '
            f'xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel><title>Feed {f}</title>'
            f"<link>https://example.org/{f}</link><description>d</description>{items}</channel></rss>").encode()


def atom(f: int, entries: int) -> bytes:
    items = "".join(ENTRY_ATOM.format(f=f, n=n, h=n % 24) for n in range(entries))
    return (f'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>Feed {f}</title>'
            f"<id>urn:example:{f}</id><updated>2025-03-04T10:00:00Z</updated>{items}</feed>").encode()


def hostile() -> dict[str, bytes]:
    good = rss(0, 3)
    return {
        "bare ampersand in a title": good.replace(b"&amp; talks", b"& talks"),
        "undefined entity (&nbsp;)": good.replace(b"&amp; talks", b"&nbsp;talks"),
        "cut off mid-entry": good[: len(good) * 2 // 3],
        "cp1252 bytes declared utf-8": good.replace("Maria de Vries".encode(), "Mar\xeda de Vries".encode("cp1252")),
        "no XML declaration, BOM": b"\xef\xbb\xbf" + good.split(b"?>", 1)[1],
        "RSS 1.0 (RDF)": (b'<?xml version="1.0"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
                          b'xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">'
                          b'<channel rdf:about="https://example.org/"><title>R</title></channel>'
                          b'<item rdf:about="https://example.org/r/1"><title>One</title>'
                          b"<link>https://example.org/r/1</link><dc:date>2025-03-04T10:00:00Z</dc:date></item>"
                          b"</rdf:RDF>"),
        "US time zone names in dates": good.replace(b"+0100", b"EST"),
        "an HTML page, not a feed": b"<!doctype html><html><head><title>Home</title></head><body><p>Hi</p></body></html>",
        "binary junk": bytes(range(256)) * 8,
    }


def _day_feedparser(entry) -> dt.date | None:
    for name in ("published_parsed", "updated_parsed"):
        value = entry.get(name)
        if value:
            return dt.datetime.fromtimestamp(calendar.timegm(value), tz=dt.timezone.utc).date()
    return None


def _day_fast(entry) -> dt.date | None:
    value = entry.get("published") or entry.get("updated")
    try:
        return dt.datetime.fromisoformat(value).astimezone(dt.timezone.utc).date() if value else None
    except (TypeError, ValueError):
        return None


def read_feedparser(body: bytes) -> list[tuple]:
    import feedparser

    parsed = feedparser.parse(body, sanitize_html=False, resolve_relative_uris=False)
    if not parsed.get("version"):
        return []
    return [((e.get("title") or "").strip(), e.get("link"), _day_feedparser(e)) for e in parsed.entries]


def read_fast(body: bytes) -> list[tuple]:
    import fastfeedparser

    try:
        parsed = fastfeedparser.parse(body)  # bytes: fastfeedparser fetches a str that looks like a URL
    except Exception:  # noqa: BLE001 - it raises several kinds on bad input
        return []
    return [((e.get("title") or "").strip(), e.get("link"), _day_fast(e)) for e in parsed.get("entries", [])]


PARSERS = {"feedparser": read_feedparser, "fastfeedparser": read_fast}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--feeds", type=int, default=20)
    parser.add_argument("--entries", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="one JSON line")
    args = parser.parse_args(argv)
    feeds = [(rss if f % 2 == 0 else atom)(f, args.entries) for f in range(args.feeds)]
    times = {name: [] for name in PARSERS}
    for _ in range(args.rounds):  # interleaved, so drift on a noisy machine hits both alike
        for name, read in PARSERS.items():
            started = time.perf_counter()
            for body in feeds:
                read(body)
            times[name].append((time.perf_counter() - started) / len(feeds))
    ms = {name: statistics.median(values) * 1000 for name, values in times.items()}
    agree = sum(read_fast(body) == read_feedparser(body) for body in feeds)
    cases = {}
    for case, body in hostile().items():
        reference, fast = read_feedparser(body), read_fast(body)
        cases[case] = {"feedparser": sum(1 for _, link, day in reference if link and day),
                       "fastfeedparser": sum(1 for _, link, day in fast if link and day),
                       "fastfeedparser_agrees": fast == reference}
    figures = {"feeds": args.feeds, "entries": args.entries, "feedparser_ms_per_feed": round(ms["feedparser"], 2),
               "fastfeedparser_ms_per_feed": round(ms["fastfeedparser"], 2),
               "speedup": round(ms["feedparser"] / ms["fastfeedparser"], 1),
               "ordinary_feeds_read_alike": agree, "hostile": cases}
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"{args.feeds} feeds of {args.entries} entries: feedparser {figures['feedparser_ms_per_feed']} ms a feed, "
          f"fastfeedparser {figures['fastfeedparser_ms_per_feed']} ms ({figures['speedup']}x); "
          f"read alike: {agree}/{args.feeds}")
    print("entries with a link and a date   feedparser  fastfeedparser")
    for case, row in cases.items():
        print(f"  {case:32} {row['feedparser']:>10}  {row['fastfeedparser']:>14}"
              + ("" if row["fastfeedparser_agrees"] else "  (differs)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
