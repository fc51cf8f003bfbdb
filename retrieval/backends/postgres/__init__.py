"""The PostgreSQL engine (pgvector): selected by `index.url`. Work in progress, see engine.py."""
