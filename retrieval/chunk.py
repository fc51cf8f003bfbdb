"""Article text -> sentence-aware chunks that fit the embedding model. Pure: no I/O, no models.

A chunk is a run of whole sentences whose word-piece count is at most `max_tokens`, so the
embedding model never silently truncates it. Consecutive chunks share `overlap` sentences, so a
fact stated across a chunk boundary is whole in at least one of them. A single sentence longer
than `max_tokens` is cut between words into pieces that fit, and a single word longer than that
(a URL, a base64 blob) is cut inside, so no text makes chunking fail.

Each sentence is counted once and chunks are sized by adding counts: exact for a WordPiece
tokenizer, which splits at whitespace, so the count of two texts joined by whitespace is the sum
of theirs. Where units touch (pieces of a cut word; the odd pair of sentences pysbd splits with
no space between) their join is counted instead, and one real count of each assembled chunk
keeps the limit for a counter that does not add up.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Callable, Sequence
from functools import lru_cache

from retrieval.budget import TimeBudget, running
from retrieval.models import Chunk

TokenCounter = Callable[[str], int]
_Unit = tuple[int, int, int]  # start, end, word pieces

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_WORD = re.compile(r"\S+")
_ZWJ = "\u200d"


@lru_cache(maxsize=1)
def _segmenter():
    import pysbd

    return pysbd.Segmenter(language="en", clean=False)


def sentence_spans(chunk) -> list[tuple[int, int]]:
    """The sentences ingest embeds for a chunk: the chunker's (one pysbd pass per article), else the chunk's own.

    Never empty: a chunk pysbd finds no sentence in is one sentence.
    """
    return list(chunk.sentences) or split_sentences(chunk.text) or [(0, len(chunk.text))]


def split_sentences(text: str, budget: TimeBudget | None = None) -> list[tuple[int, int]]:
    """Sentence spans (start, end) into `text`, stripped of surrounding whitespace.

    Paragraph breaks always end a sentence; inside a paragraph pysbd decides. Offsets are found
    by searching forward from the previous sentence, so they are exact even when pysbd trims.
    pysbd's time grows with the square of what it is given (1.8 s for one 32,000-character
    paragraph), so a paragraph longer than SEGMENT_WINDOW goes to it in windows, each cut where
    a sentence most likely ends: the whole text then costs time in proportion to its length.
    """
    spans: list[tuple[int, int]] = []
    paragraph_start = 0
    with running(budget):
        for match in [*_PARAGRAPH_BREAK.finditer(text), None]:
            paragraph_end = match.start() if match else len(text)
            for window_start, window_end in _windows(text, paragraph_start, paragraph_end):
                if budget is not None:
                    budget.check()
                _segment(text, window_start, window_end, spans)
            paragraph_start = match.end() if match else len(text)
    return [(start, end) for start, end in spans if end > start]


SEGMENT_WINDOW = 5000
# Where a window is best cut, most likely sentence end first.
_WINDOW_CUTS = (re.compile(r"\n"), re.compile(r"[.!?][\"”’')\]]*\s"), re.compile(r"\s"))


def _windows(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """[start, end) in pieces of at most SEGMENT_WINDOW characters, cut after a line, a sentence or a word."""
    windows = []
    while end - start > SEGMENT_WINDOW:
        limit = start + SEGMENT_WINDOW
        cut = limit
        for pattern in _WINDOW_CUTS:
            found = [m.end() for m in pattern.finditer(text, start + SEGMENT_WINDOW // 2, limit)]
            if found:
                cut = found[-1]
                break
        windows.append((start, cut))
        start = cut
    windows.append((start, end))
    return windows


def _segment(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    cursor = start
    for sentence in _segmenter().segment(text[start:end]):
        sentence = sentence.strip()
        if not sentence:
            continue
        found = text.find(sentence, cursor, end)
        if found < 0:  # pysbd changed the text: fall back to the rest of the window
            found = cursor
            while found < end and text[found].isspace():
                found += 1
            spans.append((found, end))
            return
        spans.append((found, found + len(sentence)))
        cursor = found + len(sentence)


def _joins(before: str, char: str) -> bool:
    """Whether `char` continues what `before` ends, so a cut between them would split one visible character.

    An approximation of Unicode grapheme clusters (UAX #29) from the standard library: combining
    marks and variation selectors, emoji joined by ZWJ, skin-tone modifiers, tag sequences, and the
    halves of a surrogate pair. Regional-indicator flags are handled by the caller, which counts them.
    """
    code = ord(char)
    return (
        unicodedata.category(char)[0] == "M"
        or char == _ZWJ
        or before == _ZWJ
        or 0x1F3FB <= code <= 0x1F3FF
        or 0xE0020 <= code <= 0xE007F
        or ("\ud800" <= before <= "\udbff" and "\udc00" <= char <= "\udfff")
    )


def _is_regional(char: str) -> bool:
    return "\U0001f1e6" <= char <= "\U0001f1ff"


def _cut_points(text: str, start: int, end: int) -> Sequence[int]:
    """Offsets from `start` to `end`, both included, where text[start:end] may be cut."""
    if text[start:end].isascii():
        return range(start, end + 1)
    points = [start]
    regional = 0  # regional indicators in a row just before p: a flag is a pair of them
    for p in range(start + 1, end):
        before, char = text[p - 1], text[p]
        regional = regional + 1 if _is_regional(before) else 0
        if not (_joins(before, char) or (regional % 2 == 1 and _is_regional(char))):
            points.append(p)
    points.append(end)
    return points


def _cut_word(text: str, start: int, end: int, count: TokenCounter, max_tokens: int) -> list[_Unit]:
    """Cut a word longer than max_tokens (a URL, a base64 blob) into pieces that each fit.

    Each piece is found by galloping up from the previous piece's length, then bisecting, so it
    costs O(log n) counts of texts about as long as it: O(n log n) characters in all, where
    bisecting over the rest of the word each time would be quadratic. A piece of one character
    that still does not fit is kept as it is: it cannot be cut further.
    """
    points = _cut_points(text, start, end)
    last = len(points) - 1
    pieces: list[_Unit] = []
    i, step = 0, max_tokens
    while i < last:
        # text up to points[fits] fits; up to points[over] does not (over == last + 1: not yet known).
        fits, fits_count, over, over_count = i, 0, last + 1, 0
        probe = min(i + step, last)
        while over - fits > 1:
            n = count(text[points[i] : points[probe]])
            if n <= max_tokens:
                fits, fits_count = probe, n
            else:
                over, over_count = probe, n
            probe = min(i + 2 * (probe - i), last) if over > last else (fits + over) // 2
        if fits == i:
            fits, fits_count = over, over_count
        pieces.append((points[i], points[fits], fits_count))
        i, step = fits, fits - i
    return pieces


def _cut_sentence(text: str, start: int, end: int, n: int, count: TokenCounter, max_tokens: int) -> list[_Unit]:
    """Cut a sentence of n > max_tokens word pieces between words into runs that fit."""
    words: list[_Unit] = []
    for match in _WORD.finditer(text, start, end):
        word_start, word_end = match.span()
        word_count = n if (word_start, word_end) == (start, end) else count(text[word_start:word_end])
        if word_count <= max_tokens:
            words.append((word_start, word_end, word_count))
        else:
            words.extend(_cut_word(text, word_start, word_end, count, max_tokens))
    return _pack(text, words, count, max_tokens, overlap=0)


def _separates(gap: str) -> bool:
    """Whether a WordPiece tokenizer splits at `gap`, so that counts either side of it add up.

    Not str.isspace: that admits control characters (form feed, U+001C-U+001F, U+0085) which
    BERT's normaliser deletes, joining the words around them.
    """
    return gap == " " or (gap != "" and all(c in " \t\n\r" or unicodedata.category(c)[0] == "Z" for c in gap))


def _pack(text: str, units: list[_Unit], count: TokenCounter, max_tokens: int, overlap: int) -> list[_Unit]:
    """Greedy runs of consecutive units that fit max_tokens; each run repeats the last `overlap` of the one before.

    Counts are added across whitespace. Units that touch (pieces of a cut word, or sentences
    pysbd split with no space between) form a segment, which is counted again as it grows.
    """
    runs: list[_Unit] = []
    i = 0
    while i < len(units):
        start, end, _ = units[i]
        # The run's count is settled + segment: segment is the last run of touching units, from segment_start.
        settled, segment_start, segment = 0, start, units[i][2]
        j = i + 1
        while j < len(units):
            unit_start, unit_end, unit_count = units[j]
            if _separates(text[end:unit_start]):
                grown = (settled + segment, unit_start, unit_count)
            else:
                grown = (settled, segment_start, count(text[segment_start:unit_end]))
            if grown[0] + grown[2] > max_tokens:
                break
            (settled, segment_start, segment), end = grown, unit_end
            j += 1
        total = settled + segment
        if j > i + 1:
            # The sum is exact for a WordPiece counter; one real count keeps the promise for any other.
            total = count(text[start:end])
            while total > max_tokens and j > i + 1:
                j -= 1
                end = units[j - 1][1]
                total = count(text[start:end]) if j > i + 1 else units[i][2]
        runs.append((start, end, total))
        if j >= len(units):
            break
        # Step back `overlap` units, but always move forward by at least one.
        i = max(i + 1, j - overlap)
    return runs


def chunk_text(
    doc_id: str,
    text: str,
    *,
    count_tokens: TokenCounter,
    max_tokens: int,
    overlap: int = 1,
    max_chars: int | None = None,
    budget: TimeBudget | None = None,
) -> list[Chunk]:
    """Split an article's cleaned text into chunks of whole sentences that each fit `max_tokens`.

    Never raises for any text. `count_tokens` is called once per sentence (and per word of an
    overlong one), once per chunk of more than one sentence to check the sum, and where sentences
    touch with no space between, once per sentence added to the chunk.

    `max_chars` caps a chunk's characters too: a tokenizer reads a word of over 100 characters
    as one unknown piece, so 5 MB without a space would count as a single word piece. A text is
    counted as at least its share of `max_tokens` by length, which leaves ordinary prose (under
    max_chars / max_tokens characters per word piece) chunked exactly as before.

    `budget`, if given, counts the time spent here and is checked before each pysbd window and
    each word-piece count, so a text that would take too long raises OverBudget (a ValueError)
    soon after the budget is spent.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, not {max_tokens}")
    if max_chars is not None:
        if max_chars < 1:
            raise ValueError(f"max_chars must be at least 1, not {max_chars}")
        count_tokens = _at_least_by_length(count_tokens, max_tokens, max_chars)
    if budget is not None:
        count_tokens = _within(count_tokens, budget)
    with running(budget):
        units: list[_Unit] = []
        sentences = split_sentences(text, budget)
        for start, end in sentences:
            n = count_tokens(text[start:end])
            if n > max_tokens:
                units.extend(_cut_sentence(text, start, end, n, count_tokens, max_tokens))
            else:
                units.append((start, end, n))
        return [
            Chunk(doc_id=doc_id, ordinal=ordinal, start=start, end=end, text=text[start:end],
                  sentences=_inside(sentences, start, end))
            for ordinal, (start, end, _) in enumerate(_pack(text, units, count_tokens, max_tokens, overlap))
        ]


def _at_least_by_length(count: TokenCounter, max_tokens: int, max_chars: int) -> TokenCounter:
    def counted(text: str) -> int:
        by_length = -(-len(text) * max_tokens // max_chars)  # ceil: over max_chars is over max_tokens
        return max(count(text) if by_length <= 2 * max_tokens else 0, by_length)

    return counted


def _within(count: TokenCounter, budget: TimeBudget) -> TokenCounter:
    """`count`, checking the budget first: every loop of the chunker counts word pieces as it goes."""

    def counted(text: str) -> int:
        budget.check()
        return count(text)

    return counted


def _inside(sentences: list[tuple[int, int]], start: int, end: int) -> tuple[tuple[int, int], ...]:
    """The article's sentences within [start, end), cut to it, as offsets into the chunk's text."""
    spans = []
    # Sentences are in order and do not overlap, so their ends are sorted.
    first = bisect.bisect_right(sentences, start, key=lambda span: span[1])
    for s, e in sentences[first:]:
        if s >= end:
            break
        s, e = max(s, start), min(e, end)
        if e > s:
            spans.append((s - start, e - start))
    return tuple(spans) or ((0, end - start),)
