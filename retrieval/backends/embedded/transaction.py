"""The write side of one store transaction (see Store.write): documents, chunks, words, segments.

Every change a commit makes (rows, word counts, tombstones, the new segment's row) happens in the
one SQLite transaction, so a kill at any moment leaves all of it or none. The new segment's files
(vectors and postings) are written by the caller before that transaction commits.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from collections import Counter

import numpy as np

from retrieval import stories
from retrieval.features import content_stems
from retrieval.backends.embedded.segments import segment_name
from retrieval.models import Article, Chunk
from retrieval.backends.embedded.schema import pack_spans


def candidates_sql(bands: int) -> str:
    """The stories sharing a band with a new document: one primary-key search per band.

    CROSS JOIN keeps SQLite's order (the bands first); with `(band, hash) IN (VALUES …)` it
    scanned every story instead, a cost that grew with the corpus.
    """
    return ("WITH wanted(band, hash) AS (VALUES " + ", ".join(["(?, ?)"] * bands) + ")"
            " SELECT DISTINCT s.document, s.story, s.signature, s.shingles FROM wanted w"
            " CROSS JOIN story_bands b CROSS JOIN stories s"
            " WHERE b.band = w.band AND b.hash = w.hash AND s.document = b.document")


class Transaction:
    def __init__(self, db: sqlite3.Connection, generation: int, *, copies_threshold: float | None = None):
        self._db = db
        self.generation = generation
        self.copies_threshold = copies_threshold
        self.added: dict[int, np.ndarray] = {}  # chunk id -> vector, for the new segment
        self.added_texts: dict[int, str] = {}  # chunk id -> text, for the new segment's postings
        self.segment: tuple[int, str] | None = None  # (id, file) of this commit's new segment
        self._stems: Counter[str] = Counter()
        self._documents = 0
        self._chunks = 0
        self._copies = 0

    def set_model(self, name: str, dim: int) -> None:
        self._set_meta("model", name)
        self._set_meta("dim", str(dim))

    def set_meta(self, key: str, value: str) -> None:
        self._set_meta(key, value)

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def remove(self, key: str) -> bool:
        """Take out the document with `key` and its chunks; their vectors become tombstones."""
        row = self._db.execute("SELECT id, trim(outlet) FROM documents WHERE key = ?", (key,)).fetchone()
        if row is None:
            return False
        self._count_outlet(row[1], -1)
        chunks = self._db.execute("SELECT id, segment, text FROM chunks WHERE document = ?", (row[0],)).fetchall()
        dead = []
        for chunk_id, segment, text in chunks:
            self.added_texts.pop(chunk_id, None)
            if self.added.pop(chunk_id, None) is None:  # added earlier in this commit: never reached a file
                dead.append((chunk_id, segment, self.generation))
            self._stems.subtract(set(content_stems(text)))
        self._db.executemany("INSERT OR IGNORE INTO tombstones(id, segment, generation) VALUES (?, ?, ?)", dead)
        for segment, n in Counter(segment for _, segment, _ in dead).items():
            self._db.execute("UPDATE segments SET dead = dead + ? WHERE id = ?", (n, segment))
        self._leave_story(row[0])
        self._db.execute("DELETE FROM chunks WHERE document = ?", (row[0],))
        self._db.execute("DELETE FROM documents WHERE id = ?", (row[0],))
        self._documents -= 1
        self._chunks -= len(chunks)
        return True

    def _segment_id(self) -> int:
        if self.segment is None:
            file = segment_name(self.generation)
            cursor = self._db.execute(
                "INSERT INTO segments(file, vectors, factory, generation) VALUES (?, 0, 'Flat', ?)",
                (file, self.generation),
            )
            self.segment = (int(cursor.lastrowid), file)
        return self.segment[0]

    def add(
        self,
        article: Article,
        chunks: list[Chunk],
        vectors: np.ndarray,
        sentences: list[list[tuple[int, int]]],
        sentence_vectors: list[np.ndarray],
    ) -> None:
        """Add an article (replacing any with the same key) with its chunks, vectors and sentences."""
        self.remove(article.key)
        cursor = self._db.execute(
            "INSERT INTO documents(doc_id, key, title, outlet, published, author, url, path, text, ingested_at, via)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                article.doc_id, article.key, article.title, article.outlet,
                article.published.isoformat() if article.published else None,
                article.author, article.url, article.path, article.text,
                dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), article.via,
            ),
        )
        document = cursor.lastrowid
        self._count_outlet((article.outlet or "").strip(), +1)
        if self.copies_threshold is not None:
            self.join_story(document, article.text)
        segment = self._segment_id()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        for chunk, vector, spans, svectors in zip(chunks, vectors, sentences, sentence_vectors, strict=True):
            cursor = self._db.execute(
                "INSERT INTO chunks(chunk_id, document, ordinal, start, end, text, vector, sentences,"
                " sentence_vectors, segment) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (chunk.chunk_id, document, chunk.ordinal, chunk.start, chunk.end, chunk.text, vector.tobytes(),
                 pack_spans(spans), np.ascontiguousarray(svectors, dtype=np.float16).tobytes(), segment),
            )
            self.added[int(cursor.lastrowid)] = vector
            self.added_texts[int(cursor.lastrowid)] = chunk.text
            self._stems.update(set(content_stems(chunk.text)))
        self._documents += 1
        self._chunks += len(chunks)

    def join_story(self, document: int, text: str) -> int | None:
        """Put a new document into the story of its most similar indexed document, or a story of its own.

        Costs one index lookup per band and a comparison per candidate found, whatever the corpus holds.
        """
        signature = stories.signature(text)
        if signature is None:
            return None
        bands = signature.bands()
        found = self._db.execute(candidates_sql(len(bands)), [value for band in bands for value in band]).fetchall()
        candidates = {doc: stories.Signature.from_bytes(blob, n) for doc, _, blob, n in found}
        best = stories.best_match(signature, candidates, self.copies_threshold or 1.0)
        if best is not None:
            story = next(story for doc, story, _, _ in found if doc == best)
            self._copies += 1
        else:
            story = int(self._db.execute("SELECT coalesce((SELECT value FROM meta WHERE key = 'next_story'), 1)")
                        .fetchone()[0])
            self._set_meta("next_story", str(story + 1))
        self._db.execute("INSERT INTO stories(document, story, signature, shingles) VALUES (?, ?, ?, ?)",
                         (document, story, signature.to_bytes(), signature.size))
        self._db.executemany("INSERT OR IGNORE INTO story_bands(band, hash, document) VALUES (?, ?, ?)",
                             [(band, value, document) for band, value in bands])
        return story

    def _count_outlet(self, name: str | None, delta: int) -> None:
        if not name:
            return
        self._db.execute("INSERT INTO outlets(name, documents) VALUES (?, ?)"
                         " ON CONFLICT(name) DO UPDATE SET documents = documents + excluded.documents", (name, delta))
        if delta < 0:
            self._db.execute("DELETE FROM outlets WHERE name = ? AND documents <= 0", (name,))

    @property
    def copies(self) -> int:
        """How many more documents this transaction put into existing stories than it took out of them."""
        return self._copies

    def _leave_story(self, document: int) -> None:
        row = self._db.execute("SELECT story FROM stories WHERE document = ?", (document,)).fetchone()
        if row is None:
            return
        self._db.execute("DELETE FROM story_bands WHERE document = ?", (document,))
        self._db.execute("DELETE FROM stories WHERE document = ?", (document,))
        if self._db.execute("SELECT 1 FROM stories WHERE story = ? LIMIT 1", (row[0],)).fetchone():
            self._copies -= 1

    def added_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        ids = np.fromiter(self.added, dtype=np.int64, count=len(self.added))
        dim = next(iter(self.added.values())).shape[0] if self.added else 0
        vectors = np.vstack(list(self.added.values())) if self.added else np.zeros((0, dim), dtype=np.float32)
        return ids, vectors

    def replace_segments(self, old: list[int], file: str, factory: str, vectors: int) -> int:
        """Point the chunks of segments `old` at a new merged file; the old files are retired."""
        cursor = self._db.execute(
            "INSERT INTO segments(file, vectors, factory, generation) VALUES (?, ?, ?, ?)",
            (file, vectors, factory, self.generation),
        )
        new = int(cursor.lastrowid)
        marks = ",".join("?" * len(old))
        self._db.execute(f"UPDATE chunks SET segment = ? WHERE segment IN ({marks})", (new, *old))
        self._db.execute(f"DELETE FROM tombstones WHERE segment IN ({marks})", old)
        files = self._db.execute(f"SELECT file FROM segments WHERE id IN ({marks})", old).fetchall()
        self._db.executemany("INSERT OR REPLACE INTO retired(file, since) VALUES (?, ?)",
                             [(f, time.time()) for (f,) in files])
        self._db.execute(f"DELETE FROM segments WHERE id IN ({marks})", old)
        return new

    def drop_segments(self, old: list[int]) -> None:
        """Forget segments that hold no live vector any more; their files are retired."""
        marks = ",".join("?" * len(old))
        files = self._db.execute(f"SELECT file FROM segments WHERE id IN ({marks})", old).fetchall()
        self._db.executemany("INSERT OR REPLACE INTO retired(file, since) VALUES (?, ?)",
                             [(f, time.time()) for (f,) in files])
        self._db.execute(f"DELETE FROM tombstones WHERE segment IN ({marks})", old)
        self._db.execute(f"DELETE FROM segments WHERE id IN ({marks})", old)

    def forget_retired(self, files: list[str]) -> None:
        self._db.executemany("DELETE FROM retired WHERE file = ?", [(f,) for f in files])

    def clear(self) -> None:
        """Empty the index (a rebuild): every document, chunk, word count and segment goes."""
        self._db.execute("DELETE FROM story_bands")
        self._db.execute("DELETE FROM stories")
        self._db.execute("DELETE FROM outlets")
        self._db.execute("DELETE FROM chunks")
        self._db.execute("DELETE FROM documents")
        self._db.execute("DELETE FROM stems")
        self._db.execute("DELETE FROM tombstones")
        self._db.execute("INSERT OR REPLACE INTO retired(file, since) SELECT file, ? FROM segments", (time.time(),))
        self._db.execute("DELETE FROM segments")
        self._db.execute("DELETE FROM meta WHERE key IN ('documents', 'chunks', 'copies')")
        self.added.clear()
        self.added_texts.clear()
        self._stems.clear()
        self._documents = self._chunks = self._copies = 0
        self.segment = None

    def finish(self) -> None:
        """Called by Store.write before COMMIT: word counts, the segment's size, counters, generation."""
        if self.segment is not None:
            if self.added:
                self._db.execute("UPDATE segments SET vectors = ? WHERE id = ?", (len(self.added), self.segment[0]))
            else:
                self._db.execute("DELETE FROM segments WHERE id = ?", (self.segment[0],))
        up = [(s, n) for s, n in self._stems.items() if n > 0]
        down = [(-n, s) for s, n in self._stems.items() if n < 0]
        self._db.executemany(
            "INSERT INTO stems(stem, df) VALUES (?, ?) ON CONFLICT(stem) DO UPDATE SET df = df + excluded.df", up
        )
        self._db.executemany("UPDATE stems SET df = df - ? WHERE stem = ?", down)
        self._db.executemany("DELETE FROM stems WHERE stem = ? AND df <= 0", [(s,) for _, s in down])
        for key, delta in (("documents", self._documents), ("chunks", self._chunks), ("copies", self._copies)):
            self._db.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = value + ?",
                (key, str(max(delta, 0)), delta),
            )
        self._set_meta("generation", str(self.generation))
