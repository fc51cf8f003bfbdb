"""`citebot feedback export`: the 👍/👎 votes from the bot's history, as JSON lines or a table.

The votes live in `history.sqlite` in the index folder the bot runs with (bot/history.py), each
with a copy of the question, the answer's text and its chunk ids, so an export needs nothing else;
they are kept for `discord.history_days` days, as the answers are. `--collection NAME` keeps the
votes on answers from that collection.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # bot.history loads pydantic and the models: not for every `citebot --help`
    from bot.history import Vote


def add_parser(commands) -> None:
    p = commands.add_parser("feedback", help="the 👍/👎 votes cast on the Discord bot's answers",
                            description="Votes on the bot's answers, kept in history.sqlite in the index "
                            "folder for discord.history_days days.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = actions.add_parser("export", help="every vote: time, user, question, answer, chunk ids, vote, collection, "
                           "server", description="Print every vote, oldest first: a table, or with --json one JSON "
                           "object per line. The global --collection NAME keeps the votes on that collection's "
                           "answers.")
    q.add_argument("--json", action="store_true", help="one JSON object per vote, one per line")


def vote_record(vote: Vote) -> dict:
    """One vote as `--json` prints it."""
    return {
        "time": dt.datetime.fromtimestamp(vote.at, dt.timezone.utc).isoformat(timespec="seconds"),
        "user_id": vote.user_id,
        "question": vote.question,
        "answer": vote.answer,
        "chunk_ids": vote.chunk_ids,
        "vote": vote.vote,
        "collection": vote.collection,
        "guild_id": vote.guild_id,
        "answer_id": vote.answer_id,
        "message_id": vote.message_id,
    }


def cmd_feedback(args, settings) -> int:
    from bot.console import err, show
    from bot.history import HistoryStore
    from bot.render import clean_line

    # The bot's one history, whichever collection it answered from: the collection is a column.
    history = HistoryStore.from_settings(getattr(args, "base_settings", settings))
    votes = history.votes(collection=args.collection)
    if args.json:
        for vote in votes:
            print(json.dumps(vote_record(vote)))  # ASCII only: no character of a question can steer a terminal
        return 0
    if not votes:
        where = f" on answers from collection {args.collection!r}" if args.collection else ""
        err.print(f"No votes{where} in {history.location}.", markup=False, soft_wrap=True)
        return 0
    from rich.table import Table
    from rich.text import Text

    table = Table("time", "vote", "collection", "question", "answer", "user")
    for vote in votes:
        record = vote_record(vote)
        table.add_row(record["time"], "👍" if vote.vote > 0 else "👎", Text(clean_line(vote.collection or "?")),
                      Text(clean_line(vote.question)), Text(clean_line(vote.answer)), str(vote.user_id))
    show(table)
    return 0
