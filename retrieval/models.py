"""The data that moves through citebot: Article -> Chunk -> Hit -> Passage -> Answer.

Every model is frozen: a step returns new values and never edits what it was given.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def content_hash(*parts: str) -> str:
    """A stable id for some text: the first 16 hex digits of its SHA-256."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()[:16]


class Article(_Frozen):
    """One cleaned news article and what a reader would cite it by.

    `key` names where the article came from (a file path, or a path and record number for JSON
    lines); re-ingesting the same key replaces the article. `text` is the cleaned body that chunks
    and answer offsets point into. Metadata that could not be found stays None: nothing is invented.
    """

    key: str
    text: str
    title: str | None = None
    outlet: str | None = None
    published: dt.date | None = None
    author: str | None = None
    url: str | None = None
    path: str | None = None
    via: str | None = Field(None, description="where the text came from when not from the article itself, "
                            "e.g. a feed's summary because the page could not be fetched")

    @property
    def doc_id(self) -> str:
        """Content hash of the text and metadata: unchanged articles keep their id."""
        return content_hash(
            self.text,
            self.title or "",
            self.outlet or "",
            self.published.isoformat() if self.published else "",
            self.author or "",
            self.url or "",
            *([self.via] if self.via else []),
        )

    def __repr__(self) -> str:
        return f"Article({self.key!r}, title={self.title!r}, outlet={self.outlet!r}, {len(self.text)} chars)"


class Chunk(_Frozen):
    """A run of whole sentences of one article; `start`/`end` are offsets into `Article.text`."""

    doc_id: str
    ordinal: int
    start: int
    end: int
    text: str
    sentences: tuple[tuple[int, int], ...] = Field(
        (), description="the article's sentences within the chunk, as offsets into `text`; () if not known"
    )

    @property
    def chunk_id(self) -> str:
        return content_hash(self.doc_id, str(self.start), str(self.end))

    def __repr__(self) -> str:
        return f"Chunk({self.doc_id}#{self.ordinal} [{self.start}:{self.end}] {self.text[:40]!r}…)"


class Source(_Frozen):
    """What a citation points at: one article's metadata."""

    doc_id: str
    title: str | None = None
    outlet: str | None = None
    published: dt.date | None = None
    author: str | None = None
    url: str | None = None
    path: str | None = None
    lead: str = Field("", description="the article's first words, to name it when it has no title")
    via: str | None = Field(None, description="where the text came from when not from the article itself")

    @property
    def label(self) -> str:
        """The title, or failing that the opening words of the article, quoted."""
        if self.title:
            return self.title
        return f"“{self.lead}”" if self.lead else self.doc_id

    @property
    def location(self) -> str | None:
        return self.url or self.path


class Hit(_Frozen):
    """A retrieved chunk with its score (higher is better) and the source it belongs to."""

    chunk_id: str
    doc_id: str
    start: int
    end: int
    text: str
    score: float
    source: Source

    def __repr__(self) -> str:
        return f"Hit({self.chunk_id} score={self.score:.3f} {self.text[:40]!r}…)"


class Span(_Frozen):
    """A highlighted stretch of text: offsets into the passage text and into the cited article."""

    text: str
    passage: int = Field(description="the number n of the passage [n] it lies in")
    start: int = Field(description="offset into the passage text")
    end: int
    doc_start: int = Field(description="offset into the cited article's cleaned text")
    doc_end: int


class Passage(_Frozen):
    """One numbered citation [n]: a chunk's text and every source that carries it."""

    n: int
    text: str
    score: float
    sources: list[Source]
    chunk_ids: list[str]
    doc_start: int = Field(description="offset of the passage into the first source's text")
    doc_end: int
    highlight: Span | None = None


class Version(_Frozen):
    """What one side says when sources differ: the phrase, the values it names, and who says it."""

    text: str = Field(description="the phrase as the passage words it")
    values: list[str] = Field(description="the entities it names, in the passage's order")
    passage: int = Field(description="the number n of the passage [n] it is quoted from")
    sources: list[Source] = Field(description="the articles that say it, newest first")
    newest: bool = Field(False, description="its newest article is newer than every other version's, each "
                         "dated: the latest report")


class Preferred(_Frozen):
    """The days a question's time words named ("this week"): their articles were ranked first."""

    words: str = Field(description="the time words, as the question wrote them")
    start: dt.date
    end: dt.date

    def describe(self) -> str:
        days = self.start.isoformat() if self.start == self.end else f"{self.start.isoformat()} to {self.end.isoformat()}"
        return f"“{self.words}”: articles of {days} first"


class Answer(_Frozen):
    """What citebot says to a question."""

    question: str
    found: bool
    answer: Span | None = None
    passages: list[Passage] = []
    message: str = ""
    phrase: Span | None = Field(None, description="the exact phrase inside `answer` that the question asks for")
    versions: list[Version] = Field(default_factory=list, description="each version when sources differ")
    disagreement: bool = Field(False, description="articles give different values for what was asked")
    as_of: dt.date | None = Field(None, description="the publication date of the article the answer is quoted "
                                  "from (the newest of its copies)")
    preferred: Preferred | None = Field(None, description="the days the question's time words named, whose "
                                        "articles were ranked first (retrieval/timewords.py)")

    @property
    def sources(self) -> list[Source]:
        seen: dict[str, Source] = {}
        for passage in self.passages:
            for source in passage.sources:
                seen.setdefault(source.doc_id, source)
        return list(seen.values())

    def __repr__(self) -> str:
        head = self.answer.text[:50] if self.answer else self.message
        return f"Answer(found={self.found}, {head!r}, {len(self.passages)} passages)"
