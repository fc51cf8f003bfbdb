"""What every engine does alike over its own rows: counters kept in its meta table, the model check, a
document's lead, an id prefix."""

from __future__ import annotations

import datetime as dt

import numpy as np

from retrieval.backends.base import SourceRow, StoredChunk
from retrieval.errors import IndexMismatchError
from retrieval.models import Article, Source

ID_PREFIX_DIGITS = 6  # `citebot remove 3fa9c1` finds the document whose doc id starts so


def lead(text: str, words: int = 12) -> str:
    """The opening words an untitled document is cited by."""
    head = text.split()[:words]
    return " ".join(head) + ("…" if len(text.split()) > words else "")


def id_prefix(ref: str) -> str | None:
    """`ref` as a doc id prefix (6 hex digits or more, any case), or None."""
    ref = ref.lower()
    if len(ref) >= ID_PREFIX_DIGITS and all(c in "0123456789abcdef" for c in ref):
        return ref
    return None


# The columns both engines select for a chunk, in this order: see stored_chunk.
CHUNK_COLUMNS = ("c.id, c.chunk_id, {start}, {end}, c.text, d.doc_id, d.title, d.outlet, d.published, d.author, d.url,"
                 " d.path, {head}, c.sentences, c.sentence_vectors, d.via")


def stored_chunk(row, published: dt.date | None) -> StoredChunk:
    """A chunk from a row of CHUNK_COLUMNS (the publication date already a date)."""
    source = Source(doc_id=row[5], title=row[6], outlet=row[7], published=published, author=row[9], url=row[10],
                    path=row[11], lead=lead(row[12]), via=row[15])
    pairs = np.frombuffer(bytes(row[13]), dtype=np.int32).reshape(-1, 2)
    spans = [(int(a), int(b)) for a, b in pairs]
    vectors = np.frombuffer(bytes(row[14]), dtype=np.float16).reshape(len(spans), -1)
    return StoredChunk(row[0], row[1], row[2], row[3], row[4], source, spans, vectors)


ARTICLE_COLUMNS = "id, key, title, outlet, published, author, url, path, text, via"


def stored_articles(rows, chunk_rows) -> list[tuple[int, Article, list[int]]]:
    """Articles from rows of ARTICLE_COLUMNS (published already a date), each with its chunk ids from
    (document, chunk id) rows in the chunks' order."""
    chunks: dict[int, list[int]] = {}
    for document, chunk in chunk_rows:
        chunks.setdefault(document, []).append(int(chunk))
    return [(int(row[0]), Article(key=row[1], title=row[2], outlet=row[3], published=row[4], author=row[5],
                                  url=row[6], path=row[7], text=row[8], via=row[9]), chunks.get(row[0], []))
            for row in rows]


def source_row(doc_id: str, key: str, title: str | None, outlet: str | None, published: dt.date | None,
               url: str | None, path: str | None, head: str, chunks: int) -> SourceRow:
    """One document as `citebot sources` lists it; an untitled one is labelled by its opening words."""
    label = Source(doc_id=doc_id, title=title, lead=lead(head)).label
    return SourceRow(doc_id, key, title, outlet, published, chunks, url or path, label)


class MetaCounters:
    """Counters and facts an engine keeps in its meta table, read through its `get_meta`; `where()` names
    the index in messages."""

    def get_meta(self, key: str) -> str | None:
        raise NotImplementedError

    def where(self) -> str:
        raise NotImplementedError

    @property
    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    def count_chunks(self) -> int:
        return int(self.get_meta("chunks") or 0)

    def count_documents(self) -> int:
        return int(self.get_meta("documents") or 0)

    def count_copies(self) -> int:
        """Documents grouped into another document's story (each story's members but one)."""
        return int(self.get_meta("copies") or 0)

    def check_model(self, model: str) -> None:
        """IndexMismatchError if the index was built with another embedding model than `model`."""
        built_with = self.get_meta("model")
        if built_with is not None and built_with != model:
            raise IndexMismatchError(
                f"the index in {self.where()} was built with embedding model {built_with!r} "
                f"(dim {self.get_meta('dim')}), not {model!r}: "
                "re-ingest with `citebot ingest --rebuild PATH…` or set embedding.model back"
            )
