"""Time words in a question ("this week", "yesterday", "the latest", "so far this year"): the days they point at.

A news question often names its time instead of its date: "What country elected its first-ever leftist leader
this week?". The words give a window of days counted from now (`search.now` pins it, for tests and for
archives) and how fast an article's weight falls outside it. The reader then prefers the articles of that
window through its recency weighting (retrieval/reader.py); a question without such words is ranked exactly
as before. Only explicit phrases count: "week" alone, or "now", is not a time.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class TimeFocus:
    """Articles published from `start` to `end` (inclusive) are the question's; one `half_life_days` outside
    the window weighs half as much."""

    start: dt.date
    end: dt.date
    half_life_days: float
    words: str  # as the question wrote them

    def distance(self, day: dt.date) -> int:
        """Days from `day` to the window (0 inside it)."""
        if day < self.start:
            return (self.start - day).days
        if day > self.end:
            return (day - self.end).days
        return 0


def _month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def _previous_month(day: dt.date) -> tuple[dt.date, dt.date]:
    end = _month_start(day) - dt.timedelta(days=1)
    return _month_start(end), end


# (pattern, window from today, half-life in days). Where a question names two times ("what did the minister
# say last week about this year's budget?"), the narrowest wins: the rules go from a day to a year, then the
# vague "recently".
_RULES: list[tuple[re.Pattern, object, float]] = [
    (re.compile(r"\byesterday\b|\blast night\b"), lambda t: (t - dt.timedelta(days=1), t - dt.timedelta(days=1)), 2.0),
    (re.compile(r"\btoday\b|\btonight\b|\bthis morning\b|\bthis afternoon\b|\bthis evening\b"),
     lambda t: (t, t), 2.0),
    (re.compile(r"(?<!the )\blast week\b"), lambda t: (t - dt.timedelta(days=14), t - dt.timedelta(days=7)), 4.0),
    (re.compile(r"\bthis week(?:end)?\b|\bthe (?:past|last) (?:week|few days|seven days)\b|\bthese days\b"),
     lambda t: (t - dt.timedelta(days=7), t), 4.0),
    (re.compile(r"\blast month\b"), lambda t: _previous_month(t), 10.0),
    (re.compile(r"\bthis month\b|\bearlier this month\b"), lambda t: (_month_start(t), t), 10.0),
    (re.compile(r"\bso far this year\b|\bthis year\b|\bearlier this year\b"),
     lambda t: (t.replace(month=1, day=1), t), 60.0),
    (re.compile(r"\blast year\b"), lambda t: (dt.date(t.year - 1, 1, 1), dt.date(t.year - 1, 12, 31)), 60.0),
    (re.compile(r"\b(?:most )?recent(?:ly)?\b|\blatest\b|\bnewest\b|\bjust announced\b|\bcurrent(?:ly)?\b"),
     lambda t: (t - dt.timedelta(days=14), t), 7.0),
]


def time_focus(question: str, today: dt.date) -> TimeFocus | None:
    """The window of days `question`'s time words point at, counted from `today`; None when it names no time."""
    text = question.lower()
    for pattern, window, half_life in _RULES:
        match = pattern.search(text)
        if match:
            start, end = window(today)
            return TimeFocus(start, end, half_life, match.group(0))
    return None
