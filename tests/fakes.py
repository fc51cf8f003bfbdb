"""Test doubles that need no model weights."""

from __future__ import annotations

import hashlib
import re

import numpy as np


class FakeEmbedder:
    """Bag-of-words hashed into a small space: texts sharing words get similar unit vectors."""

    name = "fake"

    def __init__(self, dim: int = 64, max_tokens: int = 60):
        self._dim = dim
        self._max_tokens = max_tokens
        self.calls = 0

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def _vector(self, text: str) -> np.ndarray:
        vector = np.zeros(self._dim, dtype=np.float32)
        for word in re.findall(r"\w+", text.lower()):
            vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % self._dim] += 1.0
        norm = np.linalg.norm(vector)
        return vector / norm if norm else vector

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        return np.array([self._vector(t) for t in texts], dtype=np.float32).reshape(len(texts), self._dim)

    embed_queries = embed_documents

    def embed_with_tokens(self, texts: list[str]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Each word is a token: its vector is the word's own hashed one-hot."""
        tokens = [
            np.array([self._vector(w) for w in re.findall(r"\w+", t.lower())] or [np.zeros(self._dim)],
                     dtype=np.float16)
            for t in texts
        ]
        return self.embed_documents(texts), tokens
