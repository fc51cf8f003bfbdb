"""Control characters out of article text, for the terminal and for Discord alike.

Whole sequences go, as a terminal reads them, so nothing like "[2J" is left behind: strings (OSC, DCS,
SOS, PM, APC, in their ESC and C1 forms) up to their terminator, or the line's end if there is none;
CSI with its parameters and final byte; other escapes with their intermediates and final byte. Then
any C0 control but tab and newline, DEL, and C1. No sequence runs over a line break. Every sequence
starts with one of those single characters, so text without any is returned as it is, unsearched.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable

_SEQUENCES = (
    r"(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?"
    r"|(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?"
    r"|\x1b[\x20-\x2f]*[\x30-\x7e]?"
)
_SINGLE = r"\x00-\x08\x0b-\x1f\x7f-\x9f"
# The bidirectional embeddings, overrides and isolates, which can make text (a host name) read backwards.
_BIDI = r"\u202a-\u202e\u2066-\u2069"


class Controls:
    """What to take out of text: the control sequences and characters, and `extra` characters besides."""

    def __init__(self, extra: str = ""):
        self._pattern = re.compile(f"{_SEQUENCES}|[{_SINGLE}{extra}]")
        self._any = re.compile(f"[{_SINGLE}{extra}]")  # where every match starts

    def strip(self, text: str) -> str:
        return self._pattern.sub("", text) if self._any.search(text) else text

    def strip_mapped(self, text: str) -> tuple[str, Callable[[int], int]]:
        """`strip(text)`, and where an offset into `text` lands in it (a highlight keeps its words).

        An offset inside a removed sequence lands where the sequence was.
        """
        cuts = [m.span() for m in self._pattern.finditer(text)] if self._any.search(text) else []
        if not cuts:
            return text, lambda i: min(max(i, 0), len(text))
        starts = [start for start, _ in cuts]
        gone = [0]  # characters removed before cut k
        for start, end in cuts:
            gone.append(gone[-1] + end - start)

        def where(i: int) -> int:
            i = min(max(i, 0), len(text))
            k = bisect_right(starts, i) - 1  # the last cut starting at or before i
            if k < 0:
                return i
            start, end = cuts[k]
            return start - gone[k] if i < end else i - gone[k + 1]

        kept = [0, *(edge for cut in cuts for edge in cut), len(text)]
        return "".join(text[a:b] for a, b in zip(kept[::2], kept[1::2])), where


TERMINAL = Controls()
DISCORD = Controls(_BIDI)
