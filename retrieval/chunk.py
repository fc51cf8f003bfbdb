"""Article text -> sentence-aware chunks that fit the embedding model. Pure: no I/O, no models.

A chunk is a run of whole sentences whose word-piece count is at most `max_tokens`, so the
embedding model never silently truncates it. Consecutive chunks share `overlap` sentences, so a
fact stated across a chunk boundary is whole in at least one of them. A single sentence longer
than `max_tokens` is cut between words into pieces that fit.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

from retrieval.models import Chunk

TokenCounter = Callable[[str], int]

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


@lru_cache(maxsize=1)
def _segmenter():
    import pysbd

    return pysbd.Segmenter(language="en", clean=False)


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans (start, end) into `text`, stripped of surrounding whitespace.

    Paragraph breaks always end a sentence; inside a paragraph pysbd decides. Offsets are found
    by searching forward from the previous sentence, so they are exact even when pysbd trims.
    """
    spans: list[tuple[int, int]] = []
    paragraph_start = 0
    for match in [*_PARAGRAPH_BREAK.finditer(text), None]:
        paragraph_end = match.start() if match else len(text)
        cursor = paragraph_start
        for sentence in _segmenter().segment(text[paragraph_start:paragraph_end]):
            sentence = sentence.strip()
            if not sentence:
                continue
            start = text.find(sentence, cursor, paragraph_end)
            if start < 0:  # pysbd changed the text: fall back to the rest of the paragraph
                start = cursor
                while start < paragraph_end and text[start].isspace():
                    start += 1
                spans.append((start, paragraph_end))
                break
            spans.append((start, start + len(sentence)))
            cursor = start + len(sentence)
        paragraph_start = match.end() if match else len(text)
    return [(start, end) for start, end in spans if end > start]


def _cut_long(text: str, start: int, end: int, count: TokenCounter, max_tokens: int) -> list[tuple[int, int]]:
    """Cut text[start:end] between words into pieces of at most max_tokens word pieces."""
    words = [(m.start() + start, m.end() + start) for m in re.finditer(r"\S+", text[start:end])]
    pieces: list[tuple[int, int]] = []
    i = 0
    while i < len(words):
        j = i + 1
        while j < len(words) and count(text[words[i][0] : words[j][1]]) <= max_tokens:
            j += 1
        if j == i + 1 and count(text[words[i][0] : words[i][1]]) > max_tokens:
            raise ValueError(f"a single word is longer than {max_tokens} word pieces: raise chunking.max_tokens")
        pieces.append((words[i][0], words[j - 1][1]))
        i = j
    return pieces


def chunk_text(
    doc_id: str,
    text: str,
    *,
    count_tokens: TokenCounter,
    max_tokens: int,
    overlap: int = 1,
) -> list[Chunk]:
    """Split an article's cleaned text into chunks of whole sentences that each fit `max_tokens`."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, not {max_tokens}")
    units: list[tuple[int, int]] = []
    for start, end in split_sentences(text):
        if count_tokens(text[start:end]) > max_tokens:
            units.extend(_cut_long(text, start, end, count_tokens, max_tokens))
        else:
            units.append((start, end))

    chunks: list[Chunk] = []
    i = 0
    while i < len(units):
        j = i + 1
        while j < len(units) and count_tokens(text[units[i][0] : units[j][1]]) <= max_tokens:
            j += 1
        start, end = units[i][0], units[j - 1][1]
        chunks.append(Chunk(doc_id=doc_id, ordinal=len(chunks), start=start, end=end, text=text[start:end]))
        if j >= len(units):
            break
        # Step back `overlap` sentences, but always move forward by at least one.
        i = max(i + 1, j - overlap)
    return chunks
