"""Storage engines behind one set of interfaces (base.py): the embedded engine (SQLite + FAISS segments +
postings files, embedded/) is the default."""
