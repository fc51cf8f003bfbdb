"""One normalisation of words for the lexical side: the tokens of SQLite FTS5's unicode61 tokenizer
(remove_diacritics 2), and the terms a question searches. Every engine's BM25 reads words this way."""

from __future__ import annotations

import re
import unicodedata

# bm25s's English stop words, which the lexical side has always left out of a question.
STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these "
    "they this to was will with".split()
)

# Words that say nothing about what a question is after: left out of the rescoring's word features
# (retrieval/features.py). A longer list than BM25's, which keeps what BM25 always left out.
QUESTION_STOPWORDS = frozenset(
    "a an the of in on at to for by with from and or is are was were be been what which who whom whose when where "
    "why how did does do that this these those it its as into than then there their they he she his her not no yes "
    "can could would should may might will shall about after before during much many".split()
)
_QUESTION_WORD = re.compile(r"(?u)\b\w\w+\b")
_TOKEN = re.compile(r"[^\W_]+")


class _Fold(dict):
    """What FTS5's remove_diacritics 2 does to a character: Latin letters lose their diacritics, and
    combining marks, which join the letters around them, are dropped; other scripts stay as written."""

    def __missing__(self, code: int) -> str:
        c = chr(code)
        if 0x300 <= code <= 0x36F:
            folded = ""
        elif code == 0x3C2:  # final sigma
            folded = "σ"
        elif 0xC0 <= code <= 0x24F or 0x1E00 <= code <= 0x1EFF:
            folded = "".join(d for d in unicodedata.normalize("NFD", c) if not 0x300 <= ord(d) <= 0x36F)
        else:
            folded = c
        self[code] = folded
        return folded


_FOLD = _Fold()

def tokens(text: str) -> list[str]:
    """Every token of `text`, as FTS5's unicode61 tokenizer with remove_diacritics 2 makes them."""
    text = text.lower()
    if not text.isascii():
        text = text.translate(_FOLD)
    return _TOKEN.findall(text)


def question_terms(question: str) -> list[str]:
    """The terms a question searches: its words of two letters or more, no stop words, each once."""
    words = dict.fromkeys(w for w in _QUESTION_WORD.findall(question.lower()) if w not in STOPWORDS and "_" not in w)
    terms = [t for w in words for t in tokens(w)]
    return [t for t in terms if t not in STOPWORDS]
