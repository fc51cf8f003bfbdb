"""The indexed outlets, for `/ask outlet:` autocomplete: read once per index generation, matched in memory.

Discord asks on every keystroke and gives 3 s to answer. The index keeps each outlet's document count
(IndexStore.outlets), so listing them costs what the outlets are, not the documents; they are read
only when the index's generation has moved since the last time, that is after an ingest or a poll
added or removed something. A keystroke between two such changes costs that one lookup and a filter
over the few hundred distinct names in memory. Only reads: nothing here can write to the index or
take a lock a writer waits on. Calls block on disk: the bot makes them off the event loop.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)

CHOICES_LIMIT = 25  # Discord shows at most 25 choices
NAME_LIMIT = 100  # and each choice's name and value hold at most 100 characters


class Outlets:
    """The outlets of an index (anything with `generation` and `outlets()`), each spelled as most of its
    documents spell it."""

    def __init__(self, store):
        self.store = store
        self._lock = threading.Lock()
        self._generation: int | None = None
        self._names: list[str] = []
        self.scans = 0  # how many times the outlets were read, for the tests

    def matching(self, typed: str, *, limit: int = CHOICES_LIMIT) -> list[str]:
        """Up to `limit` outlets starting with `typed` (any case), then those holding it; all when it is blank."""
        needle = " ".join(typed.split()).casefold()
        names = self._current()
        starts = [name for name in names if name.casefold().startswith(needle)]
        if len(starts) < limit:
            starts += [name for name in names if needle in name.casefold() and name not in starts]
        return starts[:limit]

    def _current(self) -> list[str]:
        with self._lock:  # one reader at a time: a burst of keystrokes scans once
            try:
                generation = self.store.generation
                if generation != self._generation:
                    self._names = _distinct(self.store.outlets())
                    self._generation = generation
                    self.scans += 1
            except Exception as error:  # noqa: BLE001 - an index being upgraded or away: the last list stands
                log.debug("outlets not read: %s", error)
            return self._names


def _distinct(outlets: dict[str, int]) -> list[str]:
    counts: dict[str, dict[str, int]] = {}
    for name, documents in outlets.items():  # kept by the writer
        # Sent back as it is stored, for the filter to match; one Discord could not show or take is left out.
        if name and name.isprintable() and len(name) <= NAME_LIMIT:
            counts.setdefault(name.casefold(), {})[name] = documents
    # The filter compares case-folded names, so "REUTERS" and "Reuters" are one outlet: offered as most write it,
    # or, as many one way as the other, in mixed case.
    def preferred(spellings: dict[str, int]) -> str:
        return max(sorted(spellings), key=lambda name: (spellings[name], not (name.isupper() or name.islower())))

    return sorted((preferred(spellings) for spellings in counts.values()), key=str.casefold)
