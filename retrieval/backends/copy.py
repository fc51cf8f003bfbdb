"""`citebot migrate --to`: copy an index from one engine to another (an embedded folder into PostgreSQL, or
back), through the seams of base.py only.

Documents are copied in the order they were added, `BATCH` at a time, each batch one write transaction on
the target: the article, and its chunks with their vectors, sentences and sentence vectors as stored
(nothing is embedded again, so no model is loaded). Stories (wire copies) are grouped again by the target
as each document arrives in the source's order. A document the target already holds with the same content
id is skipped, so a copy cut short (kill -9, a server gone) resumes after its last committed batch, and a
finished copy run again copies nothing. The source is locked against writers for the whole copy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from retrieval.backends.base import IndexStore, StateDB
from retrieval.errors import CitebotError
from retrieval.models import Chunk

BATCH = 200  # documents per target transaction


@dataclass
class CopyReport:
    documents: int = 0  # in the source
    copied: int = 0
    skipped: int = 0  # already in the target, unchanged
    chunks: int = 0  # copied
    seconds: float = 0.0


def copy_index(source: IndexStore, target: IndexStore, *, copies_threshold: float | None, batch: int = BATCH,
               progress: Callable[[CopyReport], None] | None = None) -> CopyReport:
    """Copy every document of `source` into `target` (both locked by the caller or not: see cmd_migrate)."""
    started = time.monotonic()
    report = CopyReport(documents=source.count_documents())
    model, dim = source.get_meta("model"), source.get_meta("dim")
    have = target.doc_ids_by_key()
    foreign = set(have) - set(source.doc_ids_by_key())
    if foreign:
        raise CitebotError(f"{target.location} already holds {len(foreign)} documents that {source.location} does "
                           f"not (e.g. {sorted(foreign)[0]!r}): copy into an empty index")
    if model is None:
        return report
    if target.get_meta("model") not in (None, model):
        raise CitebotError(f"{target.location} holds vectors of {target.get_meta('model')} and {source.location} of "
                           f"{model}: copy into an empty index")
    sentence_kind = source.get_meta("sentence_vectors")  # how its sentence vectors were made, carried along
    after = 0
    while True:
        with source.snapshot():
            page = source.articles(after, batch)
            todo = [(article, ids) for _, article, ids in page if have.get(article.key) != article.doc_id]
            wanted = [i for _, ids in todo for i in ids]
            stored, vectors = source.chunks(wanted), source.vectors(wanted)
        if not page:
            break
        if todo:
            with target.write(copies_threshold=copies_threshold) as writer:
                writer.set_model(model, int(dim))
                if sentence_kind is not None:
                    writer.set_meta("sentence_vectors", sentence_kind)
                for article, ids in todo:
                    rows = [stored[i] for i in ids]
                    chunks = [Chunk(doc_id=article.doc_id, ordinal=n, start=row.start, end=row.end, text=row.text,
                                    sentences=tuple(row.sentences)) for n, row in enumerate(rows)]
                    for chunk, row in zip(chunks, rows, strict=True):
                        if chunk.chunk_id != row.chunk_id:  # the article did not come back as it went in
                            raise CitebotError(f"{article.key}: its chunk ids do not survive the copy; nothing of "
                                               "this batch was written (please report this)")
                    matrix = np.stack([vectors[i] for i in ids]) if ids else np.zeros((0, int(dim)), np.float32)
                    writer.add(article, chunks, matrix, [row.sentences for row in rows],
                               [row.sentence_vectors for row in rows])
                    report.chunks += len(ids)
        report.copied += len(todo)
        report.skipped += len(page) - len(todo)
        after = page[-1][0]
        if progress is not None:
            progress(report)
    target.maintain()  # PostgreSQL: the vector index, built once over everything copied
    report.seconds = time.monotonic() - started
    return report


def copy_state(source: StateDB, target: StateDB, tables: dict[str, str], *, page: int = 1000) -> int:
    """Copy the rows of a small state store's `tables` ({table: "its, columns"}) into the same store on another
    engine; a row the target holds already (by its primary key) is kept as it is, so a copy run again adds
    nothing. The rows copied."""
    if not source.exists():
        return 0
    copied = 0
    for table, columns in tables.items():
        marks = ", ".join("?" * len(columns.split(",")))
        with source.session() as read:
            rows = read.execute(f"SELECT {columns} FROM {table}").fetchall()
        for start in range(0, len(rows), page):
            with target.session() as write:
                before = write.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                write.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks}) ON CONFLICT DO NOTHING",
                                  rows[start:start + page])
                copied += write.execute(f"SELECT count(*) FROM {table}").fetchone()[0] - before
    return copied
