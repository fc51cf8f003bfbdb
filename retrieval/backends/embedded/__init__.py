"""The embedded engine: one folder on one disk, one writer at a time.

- store.py, schema.py, transaction.py: SQLite, the source of truth (documents, chunks, vectors, words,
  stories, outlets) and its write transaction.
- segments.py: FAISS segment files, and the merges that keep them few.
- postings.py: BM25 postings files, the lexical twins of the segments.
- check.py, migrate.py: `citebot check` and `citebot migrate` for this engine.
"""
