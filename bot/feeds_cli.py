"""`citebot feeds add|remove|list|poll`, `citebot watch`, `citebot run`, and URLs given to `citebot ingest`."""

from __future__ import annotations

import datetime as dt
import json
import signal
import threading

from retrieval.errors import CitebotError


def add_parsers(commands) -> None:
    """The `feeds` and `run` commands."""
    p = commands.add_parser(
        "feeds", help="follow RSS and Atom feeds: add, remove, list, poll",
        description="Feeds listed here or under [[feeds]] in the settings are polled by `citebot run`, "
        "by `citebot discord`, or once by `citebot feeds poll` (for cron). Each new entry's page is fetched "
        "and indexed; where it cannot be had, the entry's own summary is, and the citation says so.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = actions.add_parser("add", help="follow a feed")
    a.add_argument("url", metavar="URL")
    a.add_argument("--outlet", help="the outlet to cite its articles by (default: what each page says)")
    a.add_argument("--every", metavar="DURATION", help="poll interval, e.g. 90s, 15m, 2h (default fetch.feed_every)")
    r = actions.add_parser("remove", help="stop following a feed (its articles stay indexed)")
    r.add_argument("url", metavar="URL")
    ls = actions.add_parser("list", help="each feed with its last poll, last new entry and last error")
    ls.add_argument("--json", action="store_true", help="one JSON object per feed, one per line")
    po = actions.add_parser("poll", help="poll every feed once and exit (for cron)")
    po.add_argument("--json", action="store_true", help="one JSON object per feed, one per line")
    w = commands.add_parser(
        "watch", help="keep folders indexed: new and changed files within seconds, deleted ones removed",
        description="Catches up once (as `ingest --sync`), then follows the folders until Ctrl-C or SIGTERM.")
    w.add_argument("paths", nargs="+", metavar="FOLDER")
    commands.add_parser(
        "run", help="keep every collection current: poll each feed when it is due, watch the folders, until stopped",
        description="Polls each followed feed at its interval (conditional GET), indexes new entries "
        "within one interval of their publication, watches the folders in watch.paths, and logs what it "
        "does (-v). Serves every collection, each into its own index, unless --collection names one. "
        "Stop with Ctrl-C or SIGTERM.")


def _fetch_url_ok(url: str) -> None:
    from retrieval.web import is_url

    if not is_url(url):
        raise CitebotError(f"{url!r} is not an http(s) URL: give the feed's address, e.g. https://example.com/rss")


def cmd_feeds(args, settings) -> int:
    from retrieval.feeds import FeedBook
    from retrieval.poller import parse_interval

    book = FeedBook(settings.index)
    if args.action == "add":
        _fetch_url_ok(args.url)
        every = parse_interval(args.every, what="--every") if args.every else None
        new = book.add(args.url, outlet=args.outlet, every_s=every)
        _say(f"{'following' if new else 'updated'} {args.url}: polled by `citebot run`, `citebot discord` "
             "or `citebot feeds poll`")
        return 0
    if args.action == "remove":
        if not book.remove(args.url):
            raise CitebotError(f"no feed {args.url!r} was added with `citebot feeds add`: "
                               "`citebot feeds list` shows them (feeds in the settings are removed there)")
        _say(f"no longer following {args.url}; its articles stay indexed (`citebot remove` takes them out)")
        return 0
    if args.action == "list":
        return _list(book, settings, args.json)
    return _poll(settings, book, args.json)


def _say(line: str) -> None:
    from bot.console import err

    err.print(line, markup=False, soft_wrap=True)


def _when(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return dt.datetime.fromtimestamp(stamp, tz=dt.timezone.utc).isoformat(timespec="seconds")


def _list(book, settings, as_json: bool) -> int:
    from bot.console import line as _line
    from bot.console import out
    from retrieval.poller import followed

    feeds = followed(settings, book)
    for feed in feeds:
        s = book.status(feed)
        row = {"url": feed.url, "outlet": feed.outlet, "every_s": feed.every_s, "origin": feed.origin,
               "last_poll": _when(s.last_poll), "last_ok": _when(s.last_ok), "last_new_entry": _when(s.last_new),
               "last_error": s.last_error, "failures": s.failures, "entries_taken": s.entries,
               "next_due": _when(s.next_due or None), "polled_by": book.claimed_by(feed)}
        if as_json:
            print(json.dumps(row))
        else:
            state = f"error: {_line(s.last_error)}" if s.last_error else ("ok" if s.last_ok else "never polled")
            out.print(f"{_line(feed.url)}  [{feed.origin}] {state}; last poll {row['last_poll'] or '—'}, "
                      f"last new entry {row['last_new_entry'] or '—'}, {s.entries} entries taken"
                      + (f"; being polled by {row['polled_by']}" if row["polled_by"] else ""),
                      markup=False, soft_wrap=True)
    if not feeds and not as_json:
        _say("no feeds: add one with `citebot feeds add URL` or under [[feeds]] in the settings")
    return 0


def _result_row(result) -> dict:
    return {"url": result.url, "ok": result.ok, "not_modified": result.not_modified, "entries": result.entries,
            "new": result.new, "added": result.added, "updated": result.updated, "from_summary": result.from_summary,
            "failed": result.failed, "error": result.error, "errors": result.errors}


def _fetcher(settings):
    from bot.console import version as _version
    from retrieval.fetch import Fetcher
    from retrieval.poller import policy_for

    return Fetcher(policy_for(settings, _version()))


def _poller(settings, writer=None, book=None):
    """The poller over `writer` (by default a new Answerer for the settings' index)."""
    from retrieval.pipeline import Answerer
    from retrieval.poller import Poller

    return Poller(settings, writer or Answerer.from_settings(settings), fetcher=_fetcher(settings), book=book)


def _poll(settings, book, as_json: bool) -> int:
    from bot.console import err
    from bot.console import line as _line
    from retrieval.poller import followed

    if not followed(settings, book):
        _say("no feeds to poll: add one with `citebot feeds add URL` or under [[feeds]] in the settings")
        return 0
    results = _poller(settings, book=book).poll_all()
    for result in results:
        for line in result.errors:
            err.print(f"failed: {_line(line)}", markup=False, soft_wrap=True)
        if as_json:
            print(json.dumps(_result_row(result)))
        elif result.error:
            err.print(f"{_line(result.url)}: {_line(result.error)}", markup=False, soft_wrap=True)
        else:
            what = "not modified" if result.not_modified else (
                f"{result.entries} entries, {result.new} new: {result.added} added, {result.updated} updated, "
                f"{result.from_summary} from the feed's summary, {result.failed} failed")
            err.print(f"{_line(result.url)}: {what}", markup=False, soft_wrap=True)
    return 0 if all(r.ok and not r.failed for r in results) else 1


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def _folders(paths) -> list:
    from pathlib import Path

    folders = [Path(p) for p in paths]
    missing = [str(p) for p in folders if not p.is_dir()]
    if missing:
        raise CitebotError(f"{missing[0]} is not a folder: give folders to watch (files are ingested with "
                           "`citebot ingest`)")
    return folders


def cmd_watch(args, settings) -> int:
    from bot.console import err
    from retrieval.pipeline import Answerer
    from retrieval.watcher import FolderWatcher

    folders = _folders(args.paths)
    stop = _stop_on_signals()
    err.print(f"watching {', '.join(map(str, folders))} into {settings.index.dir}; Ctrl-C stops", markup=False)
    FolderWatcher(Answerer.from_settings(settings), folders).run(stop)
    return 0


def cmd_run(args, settings) -> int:
    """Every collection's feeds and folders (or the one `--collection` names), each into its own index."""
    from bot.console import err
    from retrieval.pipeline import Answerer
    from retrieval import collection

    base = getattr(args, "base_settings", settings)
    names = [args.collection] if getattr(args, "collection", None) else collection.names(base)
    stop = _stop_on_signals()
    threads, lines, feeds, first = [], [], 0, None
    for name in names:
        own = collection.settings_for(base, name)
        answerer = Answerer.from_settings(own) if first is None else first.sibling(own)  # one model for all
        first = first or answerer
        followed = len(_poller(own, answerer).feeds())
        feeds += followed
        threads += start_in_thread(own, answerer, stop)
        lines.append(f"{name}: {followed} feeds and {len(own.watch.paths)} folders into {own.index.dir}")
    err.print("following " + "; ".join(lines) + "; Ctrl-C stops", markup=False)
    if not feeds:
        err.print("no feeds yet: `citebot feeds add URL` adds one, and this loop picks it up", markup=False)
    while not stop.wait(1.0):
        pass
    for thread in threads:
        thread.join(timeout=10)
    return 0


def start_in_thread(settings, writer, stop: threading.Event, *, poll: bool = True) -> list[threading.Thread]:
    """The feed poller and the folder watcher beside the Discord bot: daemon threads, off the event loop.

    Feeds added later are picked up; the folders are those in watch.paths.
    """
    threads = []
    if poll:
        poller = _poller(settings, writer)
        threads.append(threading.Thread(target=poller.run, args=(stop,), name="citebot-poller", daemon=True))
    if settings.watch.paths:
        from retrieval.watcher import FolderWatcher

        watcher = FolderWatcher(writer, _folders(settings.watch.paths))
        threads.append(threading.Thread(target=watcher.run, args=(stop,), name="citebot-watcher", daemon=True))
    for thread in threads:
        thread.start()
    return threads


def ingest_urls(answerer, urls: list[str], settings):
    """`citebot ingest URL…`: each page fetched, extracted, keyed by its canonical URL, committed."""
    from retrieval.web import fetch_article

    fetcher = _fetcher(settings)
    return answerer.ingest_articles([fetch_article(fetcher, url) for url in urls])


def split_targets(values: list[str]) -> tuple[list[str], list]:
    """`citebot ingest` arguments: (http(s) URLs, paths)."""
    from pathlib import Path

    from retrieval.web import is_url

    return [v for v in values if is_url(v)], [Path(v) for v in values if not is_url(v)]

