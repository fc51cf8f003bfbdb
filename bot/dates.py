"""The dates a user types for --since and --until (and /ask's since and until on Discord)."""

from __future__ import annotations

import datetime as dt
import re

from retrieval.errors import CitebotError

_RELATIVE = re.compile(r"(\d{1,4})\s*([dw])")


def parse_date_flag(flag: str, value: str | None, *, today: dt.date | None = None) -> dt.date | None:
    """A --since/--until value as a date: YYYY-MM-DD, `today`, `yesterday`, `7d` (days ago) or `2w` (weeks ago).

    A bad one is a CitebotError naming the flag. Relative dates count from today in UTC.
    """
    if value is None:
        return None
    text = value.strip().lower()
    today = today or dt.datetime.now(dt.timezone.utc).date()
    if text in ("today", "yesterday"):
        return today - dt.timedelta(days=text == "yesterday")
    relative = _RELATIVE.fullmatch(text)
    if relative:
        n, unit = int(relative.group(1)), relative.group(2)
        return today - dt.timedelta(days=n * (7 if unit == "w" else 1))
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ValueError
        return dt.date.fromisoformat(text)
    except ValueError:
        raise CitebotError(f"{flag} must be a date (YYYY-MM-DD, e.g. 2022-03-23), today, yesterday, or days or "
                           f"weeks ago (7d, 2w), not {value!r}") from None


def date_range(since: str | None, until: str | None, *, names: tuple[str, str] = ("--since", "--until"),
               today: dt.date | None = None) -> tuple[dt.date | None, dt.date | None]:
    """The --since/--until pair (or /ask's since/until, `names`) as dates, checked before any slow work: each a
    date, and the first not after the second."""
    first = parse_date_flag(names[0], since, today=today)
    last = parse_date_flag(names[1], until, today=today)
    if first and last and first > last:
        raise CitebotError(f"{names[0]} {first.isoformat()} is after {names[1]} {last.isoformat()}: swap them")
    return first, last
