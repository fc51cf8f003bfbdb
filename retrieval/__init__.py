"""citebot's retrieval core: articles in, cited answers out. Knows nothing of Discord or terminals."""
