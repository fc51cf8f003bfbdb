"""The `citebot` command line: ingest, ask, chat, sources, remove, check, migrate, eval, config, doctor, discord."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import re
import sys
import time
from pathlib import Path

from rich.text import Text

from bot.console import err, out, show
from bot.console import line as _line
from bot.console import version as _version
from bot.dates import date_range
from retrieval.errors import CitebotError, SettingsError

log = logging.getLogger("citebot")

EXAMPLES = """\
examples:
  citebot ask "where are the new battlegroups?"
  citebot ingest ~/news/ feed.jsonl
  citebot chat
  citebot sources
  citebot eval squad ../shared/eval/squad-dev-v1.1.json --limit 500
"""


TSV_COLUMNS = ("doc_id", "title", "outlet", "published", "chunks", "location")


def sources_tsv(rows) -> str:
    """`citebot sources --format tsv`: a header, then one line per article; tabs and line breaks become spaces."""
    from bot.render import clean_line

    def cell(value) -> str:
        return clean_line(str(value)) if value is not None else ""

    lines = ["\t".join(TSV_COLUMNS)]
    for r in rows:
        values = (r.doc_id, r.title or r.label, r.outlet, r.published.isoformat() if r.published else None,
                  r.chunks, r.location)
        lines.append("\t".join(cell(v) for v in values))
    return "\n".join(lines) + "\n"


COLLECTION_HELP = ("the collection to use (default: `default`, which holds the seeds; or CITEBOT_COLLECTION): "
                   "each has its own index, feeds and folders; `citebot collections` lists them")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="citebot",
        description="Answer questions from news articles, citing the passages (outlet, date, title) that say so.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="a TOML settings file over config/default.toml")
    parser.add_argument("--collection", metavar="NAME", default=None, help=COLLECTION_HELP)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log to stderr (-vv for debug)")
    parser.add_argument("--version", action="version", version=f"citebot {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = commands.add_parser("ingest", help="add or update articles (.txt .md .html .json .jsonl, folders, URLs)",
                            description="Index articles. Unchanged files are skipped, changed ones replaced. "
                            "An http(s) URL is fetched and its article extracted, keyed by its canonical URL. "
                            "Bad files are reported one line each; the rest go on.")
    p.add_argument("paths", nargs="+", metavar="PATH|URL")
    p.add_argument("--rebuild", action="store_true", help="start a fresh index (e.g. after changing the model)")
    p.add_argument("--sync", action="store_true", help="also remove what was indexed from under these paths and "
                   "is no longer there (a deleted file, a record gone from its file)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")

    p = commands.add_parser("ask", help="answer one question with cited passages",
                            description="Answer a question from the index, citing the passages it rests on. "
                            "On first use the configured corpus (seeds/) is indexed.")
    p.add_argument("question")
    p.add_argument("--k", type=int, metavar="N", help="how many passages to cite (default from settings)")
    _filter_flags(p)
    p.add_argument("--json", action="store_true", help="print the Answer as JSON")
    p.add_argument("--full", action="store_true", help="show whole passages, not the sentences around the answer")

    p = commands.add_parser("chat", help="ask question after question, model kept loaded",
                            description="An interactive session with line editing and history. "
                            "Type a question; follow-ups (\"and when?\") are asked with the earlier "
                            "questions as context. /new starts a new conversation; Ctrl-D or 'exit' leaves.")
    p.add_argument("--k", type=int, metavar="N", help="how many passages to cite")
    _filter_flags(p)

    p = commands.add_parser("sources", help="list the indexed articles")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.add_argument("--format", choices=("table", "tsv"), default="table",
                   help="tsv: one line per article, tab-separated, with a header line (for cut, awk, sort)")

    p = commands.add_parser("remove", help="take documents out of the index",
                            description="Remove documents by file path, URL or document id (as `sources` shows).")
    p.add_argument("refs", nargs="+", metavar="REF")
    p.add_argument("--json", action="store_true", help="print the keys removed as JSON")
    p.add_argument("--all-matching", action="store_true",
                   help="remove every document a REF matches (a file of many records, a short id prefix); "
                        "without it a REF that matches more than one document removes nothing")

    p = commands.add_parser("check", help="verify that the store and the vector index agree",
                            description="Read the whole index once and check that every chunk has exactly one "
                            "vector and every vector one chunk, that segment files hold what the store says, and "
                            "that the word index and counts match the chunks. Exit code 1 if anything is wrong.")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")

    p = commands.add_parser(
        "migrate", help="upgrade an index written by an older citebot in place, or copy it to another engine (--to)",
        description="Without --to: upgrade the index in [index] dir to this citebot's schema, keeping every "
        "article; the old index stays whole until the new one is complete (with index.url: every collection in "
        "that database, in place, one transaction each). With --to: copy every collection's "
        "index (vectors as stored: no model is loaded), feeds, and the Discord bot's history and server rules "
        "into a PostgreSQL database or a folder, then check both sides. Resumable: after a kill, run it again.")
    p.add_argument("--to", metavar="TARGET", help="postgresql://user@host/db, or a folder for the embedded engine")
    p.add_argument("--json", action="store_true", help="one JSON object: what was copied, and any problem")

    p = commands.add_parser("eval", help="measure retrieval quality")
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    q = kinds.add_parser("squad", help="recall@k, MRR and latency on a SQuAD v1.1 file",
                         description="Index every article of a SQuAD v1.1 file in a fresh temporary index, "
                         "ask every question, and report recall@1/5/10, MRR@10, answer-in-citations and latency.")
    q.add_argument("file", type=Path)
    q.add_argument("--limit", type=int, metavar="N", help="ask at most N questions")
    q.add_argument("--json", action="store_true", help="end with one JSON object of the figures")
    q.add_argument("--abstention", action="store_true",
                   help="index half the articles and measure 'not found' on the other half's questions")

    p = commands.add_parser("config", help="show the settings in force and where each came from")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = actions.add_parser("show", help="every setting, its value and its source",
                           description="Print every setting in force and where it came from: the default file, "
                           "the --config file, an environment variable, CITEBOT_HOME or the code's default. "
                           "The Discord token shows as set or unset.")
    q.add_argument("--json", action="store_true", help="print them as JSON")

    p = commands.add_parser("collections", help="list the collections: documents, chunks, feeds, folder",
                            description="Each collection is a corpus with its own index folder, feeds and "
                            "watched folders: `default` (the seeds), those under [collections.NAME] in the "
                            "settings, and those created by `citebot --collection NAME ingest|feeds add`.")
    p.add_argument("--json", action="store_true", help="one JSON object per collection, one per line")

    p = commands.add_parser("doctor", help="check the model, the index and the Discord settings",
                            description="Check that the model loads offline, the index folder is readable and "
                            "writable, the index's schema is current and its store and vectors agree, and the "
                            "Discord settings are usable. One line per check: ok, warn or fail; exit code 1 if "
                            "any fails.")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")

    from bot.feeds_cli import add_parsers

    add_parsers(commands)
    from bot.feedback_export import add_parser as add_feedback_parser

    add_feedback_parser(commands)
    p = commands.add_parser("discord", help="run the Discord bot (token from CITEBOT_DISCORD_TOKEN)",
                            description="Start the Discord bot. The token is read from the CITEBOT_DISCORD_TOKEN "
                            "environment variable only. Needs the discord extra: pip install 'citebot[discord]'.")
    shards = p.add_mutually_exclusive_group()
    shards.add_argument("--shard", metavar="I/N", type=shard_spec,
                        help="run shard I of N (0 ≤ I < N), one process per shard with the same token: Discord "
                        "gives each shard its share of the servers. Only shard 0 registers the slash commands and "
                        "follows the feeds")
    shards.add_argument("--shards", choices=["auto"],
                        help="auto: this one process holds as many shards as Discord recommends")
    # --config and -v also after the command (`citebot ask "q" -v`, `citebot config show -v`); given there, they win.
    for sub in _all_subparsers(commands):
        sub.add_argument("--config", type=Path, metavar="FILE", default=argparse.SUPPRESS,
                         help="a TOML settings file over config/default.toml")
        sub.add_argument("--collection", metavar="NAME", default=argparse.SUPPRESS, help=COLLECTION_HELP)
        sub.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                         help="log to stderr (-vv for debug)")
    return parser


def _all_subparsers(commands) -> list[argparse.ArgumentParser]:
    """Every command's parser, and the parsers of commands within commands (`eval squad`, `config show`)."""
    found = []
    for sub in commands.choices.values():
        found.append(sub)
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                found += _all_subparsers(action)
    return found


def _filter_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--outlet", metavar="NAME", help="only articles from this outlet (its exact name, any case)")
    p.add_argument("--since", metavar="DATE", help="only articles published on or after this date: YYYY-MM-DD, "
                   "today, yesterday, 7d (days ago) or 2w (weeks ago)")
    p.add_argument("--until", metavar="DATE", help="only articles published on or before this date (same forms)")


def shard_spec(text: str) -> tuple[int, int]:
    """`--shard I/N` as (I, N): shard I of N, 0 ≤ I < N."""
    match = re.fullmatch(r"\s*(\d{1,5})\s*/\s*(\d{1,5})\s*", text)
    if not match or not 0 <= int(match.group(1)) < int(match.group(2)):
        raise argparse.ArgumentTypeError(f"{text!r} is not I/N with 0 ≤ I < N (e.g. 0/2 and 1/2 for two processes)")
    return int(match.group(1)), int(match.group(2))


def filters(args) -> dict:
    """The ask/chat filter flags as Answerer.answer keywords, checked before any slow work."""
    outlet = args.outlet.strip() if args.outlet is not None else None
    if outlet == "":
        raise CitebotError("--outlet is empty: give an outlet's name, as `citebot sources` lists it")
    since, until = date_range(args.since, args.until)
    return {"outlet": outlet, "since": since, "until": until}


class UsageError(CitebotError):
    """A command-line argument cannot be used as it was given."""

    exit_code = 2


def _undecodable(text: str) -> str | None:
    """The bytes that were not UTF-8 in `text` (Python keeps them as lone surrogates), or None if it is text."""
    bad = [c for c in text if "\ud800" <= c <= "\udfff"]
    if not bad:
        return None
    return "".join(f"\\x{ord(c) - 0xDC00:02x}" if c >= "\udc80" else f"\\u{ord(c):04x}" for c in bad)


def _not_utf8(what: str, bad: str) -> str:
    return (f"{what} is not valid UTF-8 (it holds the bytes {bad}): set the terminal to UTF-8 "
            "(e.g. LANG=C.UTF-8) and type it again")


def check_arguments(args) -> None:
    """Refuse undecodable bytes in a text argument at once: they must never reach the tokenizer or the store."""
    for name, value in vars(args).items():
        for n, item in enumerate(value if isinstance(value, list) else [value], start=1):
            bad = _undecodable(item) if isinstance(item, str) else None  # a Path may hold any bytes
            if bad:
                what = {"question": "the question", "refs": f"REF {n}"}.get(name, f"--{name.replace('_', '-')}")
                raise UsageError(_not_utf8(what, bad))


def _disk_full(error: BaseException | None) -> str | None:
    """If `error` (or what caused it) is a full disk: the file being written, or "" when unknown."""
    while error is not None:
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return error.filename or ""
        if (getattr(error, "sqlite_errorcode", None) == 13  # SQLITE_FULL
                or "No space left on device" in str(error)):  # e.g. FAISS writing a segment
            return ""
        error = error.__cause__ or error.__context__
    return None


def _logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if verbose < 2:
        for noisy in ("sentence_transformers", "transformers", "httpx", "urllib3", "faiss"):
            logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    if verbose == 0:  # the extractors warn about the pages they read; the report already says what failed
        for chatty in ("trafilatura", "htmldate", "courlan", "justext", "charset_normalizer"):
            logging.getLogger(chatty).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _logging(args.verbose)
    try:
        check_arguments(args)
        from retrieval.settings import load_settings

        from retrieval import collection

        args.base_settings = load_settings(args.config)
        args.collection = args.collection or os.environ.get("CITEBOT_COLLECTION") or None
        settings = collection.settings_for(args.base_settings, args.collection or collection.DEFAULT)
        code = COMMANDS[args.command](args, settings)
        sys.stdout.flush()  # a full disk under `> file` is reported here, not lost at exit
        return code
    except CitebotError as error:
        # Text, not markup: a path or a quote in the message may hold [brackets].
        err.print(Text.assemble(("citebot:", "bold red"), f" {failure_line(error)[0]}"), soft_wrap=True)
        return error.exit_code
    except KeyboardInterrupt:
        err.print("citebot: interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (`citebot sources --json | head`): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE
    except Exception as error:
        log.debug("disk full" if _disk_full(error) is not None else "unexpected error", exc_info=True)
        line, code = failure_line(error)
        err.print(f"citebot: {line}", markup=False, soft_wrap=True)
        return code


def failure_line(error: Exception) -> tuple[str, int]:
    """What a user is told of an error that ends a command, in one line, and the exit code."""
    if isinstance(error, CitebotError):
        return _line(str(error)), error.exit_code
    full = _disk_full(error)
    if full is not None:
        where = f" writing {_line(str(full))}" if full else ""
        return (f"the disk is full (no space left on device{where}): free some space there and run the command "
                "again"), 1
    # a bug: one line for the user, the traceback in the log
    return f"unexpected error: {type(error).__name__}: {_line(str(error))} (run with -vv for the traceback)", 1


def _answerer(settings):
    from retrieval.pipeline import Answerer

    return Answerer.from_settings(settings)


def _ingest_with_progress(answerer, paths, *, rebuild=False, quiet=False, sync=False):
    from rich.progress import (
        BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
    )

    columns = [TextColumn("indexing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn(),
               TextColumn("{task.fields[name]}", style="dim", markup=False)]  # a file may be named "[/x]"
    if not quiet and getattr(getattr(answerer, "embedder", None), "_model", True) is None:
        err.print("Loading the embedding model …", markup=False)  # seconds of silence otherwise
    with Progress(*columns, console=err, transient=True, disable=quiet) as bar:
        task = bar.add_task("ingest", total=None, name="")

        def progress(done: int, total: int, path: str) -> None:
            bar.update(task, completed=done, total=total, name=_line(Path(path).name))

        return answerer.ingest(paths, progress=progress, rebuild=rebuild, sync=sync)


def _report_fields(report) -> dict:
    return {k: getattr(report, k) for k in ("added", "updated", "unchanged", "removed", "failed", "errors")}


def _print_report(report, as_json: bool) -> None:
    for line in report.errors:
        err.print(f"failed: {_line(line)}", markup=False, soft_wrap=True)
    if as_json:
        print(json.dumps({**_report_fields(report), "error": None}))
    else:
        err.print(f"{report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
                  + (f"{report.removed} removed, " if report.removed else "") + f"{report.failed} failed",
                  markup=False)


def _check_not_busy(settings) -> None:
    """A second writer waits for the first (index.lock_wait_seconds), and is told now if it gives up,
    not after paying for the model start-up."""
    from retrieval.backends import check_not_busy

    check_not_busy(settings, on_wait=lambda message: err.print(_line(message), markup=False))


def cmd_ingest(args, settings) -> int:
    _check_not_busy(settings)
    from bot.feeds_cli import ingest_urls, split_targets
    from retrieval.ingest import discover
    from retrieval.writer import IngestReport

    urls, paths = split_targets(args.paths)
    files, errors = discover(paths)
    if errors and not files and not urls and not args.rebuild:  # every path is wrong: say so before the model loads
        _print_report(IngestReport(failed=len(errors), errors=[str(e) for e in errors]), args.json)
        return 1
    report = IngestReport()
    try:
        answerer = _answerer(settings)
        if paths or args.rebuild:
            report = _ingest_with_progress(answerer, paths, rebuild=args.rebuild, sync=args.sync)
        if urls:
            fetched = ingest_urls(answerer, urls, settings)
            for name in ("added", "updated", "unchanged", "removed", "failed"):
                setattr(report, name, getattr(report, name) + getattr(fetched, name))
            report.errors += fetched.errors
    except Exception as error:
        if args.json and not isinstance(error, BrokenPipeError):  # a script reads stdout: it gets the report too
            print(json.dumps({**_report_fields(IngestReport(failed=len(errors), errors=[str(e) for e in errors])),
                              "error": failure_line(error)[0]}))
        raise  # main() says it on stderr and sets the exit code
    _print_report(report, args.json)
    return 0 if report.ok else 1


def _ready_answerer(settings, *, quiet: bool, answerer=None):
    """An Answerer whose index holds something: on first use the configured corpus is indexed.

    First use is an index never written to. One emptied by `remove` stays empty: it is not
    filled with the demo articles again.
    """
    answerer = answerer or _answerer(settings)
    if answerer.is_empty() and settings.corpus.paths and answerer.store.generation == 0:
        if not quiet:
            names = ", ".join(str(p) for p in settings.corpus.paths)
            err.print(f"First use: indexing {names} …", markup=False)
        report = _ingest_with_progress(answerer, settings.corpus.paths, quiet=quiet)
        for line in report.errors:
            err.print(f"failed: {_line(line)}", markup=False, soft_wrap=True)
    return answerer


def _check_k(k: int | None) -> None:
    if k is not None and not 1 <= k <= 50:
        raise CitebotError(f"--k must be between 1 and 50, not {k}")


def cmd_ask(args, settings) -> int:
    from bot.render import render_answer

    _check_k(args.k)
    only = filters(args)
    answerer = _answerer(settings)
    answerer.check_question(args.question)  # before any slow work
    _ready_answerer(settings, quiet=args.json, answerer=answerer)
    answer = answerer.answer(args.question, k=args.k, **only)
    if args.json:
        print(_escape_c1(answer.model_dump_json(indent=2)))
    else:
        show(render_answer(answer, full=args.full))
    return 0


def _escape_c1(dumped: str) -> str:
    """JSON with DEL and C1 controls written as escapes too: pydantic leaves them raw, and a terminal obeys them.

    They can only stand inside JSON strings, where the escape means the same character.
    """
    return re.sub(r"[\x7f-\x9f]", lambda m: f"\\u{ord(m.group()):04x}", dumped)


CHAT_BANNER = ("Ask a question about the indexed articles; a follow-up (\"and when?\") is asked with the "
               "earlier questions as context. /new starts over, Ctrl-D or 'exit' leaves.")
CHAT_NEW = "New conversation: earlier questions are forgotten."
CHAT_COMMANDS = "/new starts a new conversation, /help shows this, exit leaves"


def cmd_chat(args, settings) -> int:
    from bot.followup import CONTEXT_QUESTIONS
    from bot.render import render_answer
    from retrieval.errors import IndexUnavailableError, QuestionError

    _check_k(args.k)
    only = filters(args)
    answerer = _ready_answerer(settings, quiet=False)
    answerer.warm_up()
    ask = _prompt()
    err.print(CHAT_BANNER, markup=False)
    asked: list[str] = []  # this conversation's questions, oldest first: the follow-ups' context
    while True:
        try:
            line = ask()
        except EOFError:
            return 0
        except KeyboardInterrupt:
            continue
        command = line.strip().lower()
        if command in {"exit", "quit", ":q"}:
            return 0
        if not command:
            continue
        bad = _undecodable(line)
        if bad:
            err.print(f"citebot: {_not_utf8('that question', bad)}", markup=False, soft_wrap=True)
            continue
        if command in {"/new", "/reset"}:
            asked.clear()
            err.print(CHAT_NEW, markup=False)
            continue
        if command in {"/help", "/?"}:
            err.print(CHAT_COMMANDS, markup=False)
            continue
        if re.fullmatch(r"/\w+", command):
            err.print(f"citebot: unknown command {_line(line.strip())}: {CHAT_COMMANDS}", markup=False, soft_wrap=True)
            continue
        started = time.perf_counter()
        try:
            answer = answerer.answer(line, k=args.k, context=asked[-CONTEXT_QUESTIONS:] or None, **only)
        except (QuestionError, IndexUnavailableError) as error:  # a database away: ask again once it is back
            err.print(f"citebot: {_line(str(error))}", markup=False, soft_wrap=True)
            continue
        asked.append(line.strip())
        show(render_answer(answer))
        log.info("answered in %.0f ms", (time.perf_counter() - started) * 1000)


def _prompt():
    """A line reader: prompt_toolkit with history on a terminal, plain stdin otherwise."""
    if not sys.stdin.isatty():
        # Bytes that are not UTF-8 become lone surrogates, which the loop refuses, instead of ending the chat.
        stream = getattr(sys.stdin, "buffer", None)

        def read() -> str:
            line = stream.readline().decode("utf-8", "surrogateescape") if stream else sys.stdin.readline()
            if not line:
                raise EOFError
            return line

        return read
    import os

    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory

    state = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "citebot"
    state.mkdir(parents=True, exist_ok=True)
    session = PromptSession(history=FileHistory(str(state / "chat_history")))
    return lambda: session.prompt("citebot> ")


def cmd_sources(args, settings) -> int:
    from bot.render import render_sources

    rows = _answerer(settings).sources()
    if args.json:
        print(json.dumps([
            {"doc_id": r.doc_id, "title": r.title, "label": r.label, "outlet": r.outlet,
             "published": r.published.isoformat() if r.published else None, "chunks": r.chunks,
             "location": r.location}
            for r in rows
        ], indent=2))
        return 0
    if args.format == "tsv":
        sys.stdout.write(sources_tsv(rows))
        return 0
    if not rows:
        err.print("The index is empty: add articles with `citebot ingest PATH`.", markup=False)
        return 0
    show(render_sources(rows))
    return 0


def cmd_collections(args, settings) -> int:
    from retrieval import collection
    from retrieval.backends import has_index, open_index, schema_of
    from retrieval.feeds import FeedBook
    from retrieval.poller import followed

    rows = []
    for name in collection.names(args.base_settings):
        own = collection.settings_for(args.base_settings, name)
        row = {"name": name, "documents": 0, "chunks": 0, "feeds": 0, "folder": str(own.index.dir), "problem": None}
        if own.index.url is not None:  # kept in the database, in the collection's schema
            row["folder"] = None
            row["schema"] = schema_of(own)
        try:
            if has_index(own):
                store = open_index(own)
                row["documents"], row["chunks"] = store.count_documents(), store.count_chunks()
                store.close()
            book = FeedBook(own.index)
            try:
                if own.feeds or book.exists():
                    row["feeds"] = len(followed(own, book))
            finally:
                book.close()
        except CitebotError as error:
            row["problem"] = _line(str(error))
        rows.append(row)
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    from rich.table import Table

    table = Table("collection", "documents", "chunks", "feeds", "folder" if settings.index.url is None else "schema")
    for row in rows:
        table.add_row(Text(row["name"]), str(row["documents"]), str(row["chunks"]), str(row["feeds"]),
                      Text(row["problem"] or row["folder"] or row["schema"]))
    show(table)
    return 0


def cmd_remove(args, settings) -> int:
    _check_not_busy(settings)
    removed = _answerer(settings).remove(args.refs, all_matching=args.all_matching)
    if args.json:
        print(json.dumps({"removed": removed}))
        return 0
    for key in removed:
        err.print(f"removed {_line(key)}", markup=False)
    return 0


def cmd_check(args, settings) -> int:
    answerer = _answerer(settings)
    problems = answerer.check()
    figures = {"ok": not problems, **answerer.store.figures(), "problems": problems}
    if args.json:
        print(json.dumps(figures))
    else:
        for line in problems:
            err.print(f"problem: {_line(line)}", markup=False, soft_wrap=True)
        state = "ok" if not problems else f"{len(problems)} problems"
        err.print(f"{state}: {figures['documents']} documents, {figures['chunks']} chunks in "
                  f"{figures['segments']} vector segments, generation {figures['generation']}", markup=False)
    return 0 if not problems else 1


def cmd_migrate(args, settings) -> int:
    if args.to:
        from bot.migrate_cli import migrate_to

        return migrate_to(args, settings, err=err)
    if settings.index.url is not None:
        from retrieval.backends.postgres.schema import SCHEMA_VERSION as CURRENT, shown
        from retrieval.backends.postgres.upgrade import upgrade

        url = settings.index.url.get_secret_value()
        with err.status("upgrading the collections in the database"):
            done = upgrade(url)
        behind = [name for name, version in done if version < CURRENT]
        err.print(f"upgraded {', '.join(behind)} in {shown(url)} to schema {CURRENT}" if behind else
                  f"nothing to do: {shown(url)} holds {'no index' if not done else 'current indexes'}", markup=False)
        return 0
    from retrieval.backends.embedded.migrate import migrate, schema_version
    from retrieval.backends.embedded.schema import SCHEMA_VERSION
    from retrieval.embed import SentenceTransformerEmbedder

    version = schema_version(settings.index.dir)
    if version is None or version == SCHEMA_VERSION:
        err.print(f"nothing to do: {settings.index.dir} holds {'no index' if version is None else 'a current index'}",
                  markup=False)
        return 0
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn("upgrading"), BarColumn(), MofNCompleteColumn(), console=err, transient=True) as bar:
        task = bar.add_task("migrate", total=None)
        carried = migrate(settings, SentenceTransformerEmbedder(settings.embedding),
                          progress=lambda done, total, _: bar.update(task, completed=done, total=total))
    err.print(f"upgraded {settings.index.dir} to schema {SCHEMA_VERSION}: {carried} documents kept", markup=False)
    return 0


def cmd_eval(args, settings) -> int:
    from retrieval.evaluate import run_squad

    return run_squad(args, settings, out=out, err=err)


def check_token(settings) -> None:
    """Refuse a token no HTTP header can carry (a pasted line break) before the models load; never show it."""
    token = settings.discord_token.get_secret_value() if settings.discord_token is not None else ""
    if token and not (token.isascii() and token.isprintable() and " " not in token):
        what = "a line break" if "\n" in token or "\r" in token else "a space or a character no token holds"
        raise SettingsError(f"CITEBOT_DISCORD_TOKEN holds {what}: set it to the token alone, on one line, "
                            "as the Developer Portal shows it (Bot → Token)")


DISCORD_EXTRA = "`citebot discord` needs discord.py, which is not installed: pip install 'citebot[discord]'"


def cmd_discord(args, settings) -> int:
    try:
        from bot.discord_app import run_bot
    except ModuleNotFoundError as error:  # a CLI-only install, without the discord extra
        if error.name != "discord" and not (error.name or "").startswith("discord."):
            raise
        raise UsageError(DISCORD_EXTRA) from None
    if args.shard is not None and settings.index.url is None:
        raise UsageError("--shard runs one process per shard, and they share the index, history and rules: set "
                         "index.url to a PostgreSQL database (on one machine, --shards auto holds every shard in one "
                         "process)")
    check_token(settings)
    import threading

    from bot.feeds_cli import start_in_thread
    from bot.servers import ServerBook

    from retrieval import collection

    # Every server asks its collection (discord.guilds; the others discord.collection, or --collection):
    # one Answerer each, sharing one model, and each collection's feeds and folders followed beside the bot.
    base = args.base_settings
    default = args.collection or base.discord.collection
    base = base.model_copy(update={"discord": base.discord.model_copy(update={"collection": default})})
    answerer = _answerer(collection.settings_for(base, default))
    answerers = {default: answerer}
    chosen = ServerBook.from_settings(base).collections()  # what admins chose with /collection
    for name in [*base.discord.guilds.values(), *chosen.values()]:
        answerers.setdefault(name, answerer.sibling(collection.settings_for(base, name)))
    stop = threading.Event()
    followed: set[str] = set()
    lock = threading.Lock()

    def follow(name: str, each) -> None:  # the feeds keep every collection current while the bot answers
        with lock:
            if name in followed:
                return
            followed.add(name)
        start_in_thread(collection.settings_for(base, name), each, stop)

    shard = "auto" if args.shards == "auto" else args.shard
    leader = not isinstance(shard, tuple) or shard[0] == 0  # one process polls the feeds and syncs the commands
    if leader:
        for name, each in answerers.items():
            follow(name, each)
    try:
        return run_bot(base, answerer, answerers=answerers, follow=follow if leader else None, shard=shard)
    finally:
        stop.set()


def cmd_feeds(args, settings) -> int:
    from bot.feeds_cli import cmd_feeds as feeds

    return feeds(args, settings)


def cmd_run(args, settings) -> int:
    from bot.feeds_cli import cmd_run as loop

    return loop(args, settings)


def cmd_watch(args, settings) -> int:
    from bot.feeds_cli import cmd_watch as watch

    return watch(args, settings)


def cmd_feedback(args, settings) -> int:
    from bot.feedback_export import cmd_feedback as export

    return export(args, settings)


def cmd_config(args, settings) -> int:
    from bot.config_show import as_json, as_lines
    from retrieval.settings import load_settings_with_origins

    settings, origins = load_settings_with_origins(args.config)
    if args.json:
        print(as_json(settings, origins))
    else:
        sys.stdout.write("".join(f"{_line(line)}\n" for line in as_lines(settings, origins)))
    return 0


def cmd_doctor(args, settings) -> int:
    from dataclasses import asdict

    from bot.doctor import run_checks

    findings = []
    for finding in run_checks(settings):
        findings.append(finding)
        if not args.json:  # each line as its check ends: loading the model takes seconds
            print(f"{finding.status:<4}  {finding.name}: {_line(finding.detail)}", flush=True)
    failed = any(f.status == "fail" for f in findings)
    if args.json:
        print(json.dumps({"ok": not failed, "checks": [asdict(f) for f in findings]}, indent=2))
    return 1 if failed else 0


COMMANDS = {
    "ingest": cmd_ingest, "ask": cmd_ask, "chat": cmd_chat, "sources": cmd_sources,
    "remove": cmd_remove, "check": cmd_check, "migrate": cmd_migrate, "eval": cmd_eval,
    "config": cmd_config, "doctor": cmd_doctor, "discord": cmd_discord, "collections": cmd_collections,
    "feeds": cmd_feeds, "run": cmd_run, "watch": cmd_watch, "feedback": cmd_feedback,
}


def run() -> None:
    """The console script: main(), then exit at once.

    Tearing down spaCy, ONNX Runtime and FAISS at interpreter exit took 0.7 s of a 4.5 s cold
    `citebot ask` here. Every file citebot writes is committed or closed before main() returns.
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
