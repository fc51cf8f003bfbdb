"""`citebot migrate --to TARGET`: copy every collection's index, feed book, and the bot's history and server
rules from the engine the settings name into another (a PostgreSQL database, or a folder for the embedded
engine). Resumable: run it again after a kill and it goes on after the last committed batch. Both sides
are checked (`citebot check`) at the end; the source is left as it was."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import SecretStr

from retrieval.errors import CitebotError


def target_settings(settings, to: str):
    """The settings with the index moved to `to`: a postgresql:// URL, or a folder."""
    if to.startswith(("postgresql://", "postgres://")):
        index = settings.index.model_copy(update={"url": SecretStr(to)})
    else:
        index = settings.index.model_copy(update={"url": None, "dir": Path(to).expanduser().resolve()})
    return settings.model_copy(update={"index": index})


def _same_place(a, b) -> bool:
    if (a.index.url is None) != (b.index.url is None):
        return False
    if a.index.url is not None:
        return a.index.url.get_secret_value() == b.index.url.get_secret_value()
    return Path(a.index.dir).resolve() == Path(b.index.dir).resolve()


def migrate_to(args, settings, *, err) -> int:
    from bot.history import HistoryStore
    from bot.servers import ServerBook
    from retrieval import collection
    from retrieval.backends import has_index, open_index
    from retrieval.backends.copy import copy_index
    from retrieval.feeds import FeedBook

    base = getattr(args, "base_settings", settings)
    goal = target_settings(base, args.to)
    if _same_place(base, goal):
        raise CitebotError(f"--to names the index citebot already uses ({open_index_location(base)}): name "
                           "another database or folder")
    summary: dict = {"to": open_index_location(goal), "collections": {}, "problems": []}
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err, transient=True, disable=args.json) as bar:
        for name in collection.names(base):
            own, theirs = collection.settings_for(base, name), collection.settings_for(goal, name)
            row = {"documents": 0, "copied": 0, "skipped": 0, "chunks": 0, "feeds": 0}
            if has_index(own):
                source, target = open_index(own), open_index(theirs)
                try:
                    task = bar.add_task(f"copying {name}", total=source.count_documents())
                    with source.lock(alone=True), target.lock(alone=True):
                        copies = own.copies.threshold if own.copies.enabled else None
                        report = copy_index(source, target, copies_threshold=copies, progress=lambda r, t=task: bar.update(
                            t, completed=r.copied + r.skipped))
                    row.update(documents=report.documents, copied=report.copied, skipped=report.skipped,
                               chunks=report.chunks)
                    for side, store in (("source", source), ("target", target)):
                        summary["problems"] += [f"{name} ({side}): {p}" for p in store.check()]
                finally:
                    source.close()
                    target.close()
            book, their_book = FeedBook(own.index), FeedBook(theirs.index)
            row["feeds"] = book.copy_to(their_book)
            summary["collections"][name] = row
        summary["history"] = HistoryStore.from_settings(base).copy_to(HistoryStore.from_settings(goal))
        summary["servers"] = ServerBook.from_settings(base).copy_to(ServerBook.from_settings(goal))
    if args.json:
        print(json.dumps(summary))
    else:
        for name, row in summary["collections"].items():
            err.print(f"{name}: {row['copied']} documents copied ({row['chunks']} chunks), {row['skipped']} already "
                      f"there, {row['feeds']} feed rows", markup=False)
        err.print(f"history: {summary['history']} rows; server rules: {summary['servers']} rows; into "
                  f"{summary['to']}", markup=False)
        for problem in summary["problems"]:
            err.print(f"problem: {problem}", markup=False)
        if not summary["problems"]:
            err.print("both sides pass `citebot check`; point index.url (or index.dir) at the copy to use it",
                      markup=False)
    return 1 if summary["problems"] else 0


def open_index_location(settings) -> str:
    if settings.index.url is None:
        return str(settings.index.dir)
    from retrieval.backends.postgres.schema import shown

    return shown(settings.index.url.get_secret_value())
