"""Wire copies: which documents carry the same story, decided when each one arrives (MinHash LSH).

A document's text is cut into overlapping word 5-grams (shingles). datasketch's MinHash turns the
set into 128 numbers; the share of numbers two documents have in common estimates the Jaccard
similarity of their shingle sets. The numbers are cut into bands (the banding datasketch's
MinHashLSH chooses for CANDIDATE_THRESHOLD): two documents equal on every number of some band are
candidates, and a candidate whose estimated similarity reaches `copies.threshold` carries the
same story. The bands live in SQLite (store_writer.Writer.add), indexed, so finding a new
article's copies costs one lookup per band, whatever the corpus holds.

benchmarks/wire.py measures this against document embeddings on a constructed set of wire copies
and distinct articles on the same subjects.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SHINGLE_WORDS = 5
NUM_PERM = 128
SEED = 1
# The bands find candidates from this estimated similarity up; `copies.threshold` (at least
# this) then decides. The stored bands therefore stay valid whatever threshold a user sets.
CANDIDATE_THRESHOLD = 0.3

_WORD = re.compile(r"\w+")


@lru_cache(maxsize=1)
def banding() -> tuple[int, int]:
    """(bands, rows per band) for NUM_PERM numbers, as datasketch's MinHashLSH picks them."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=CANDIDATE_THRESHOLD, num_perm=NUM_PERM)
    return lsh.b, lsh.r


def shingles(text: str) -> list[bytes]:
    """The word 5-grams of `text`, case-folded (the whole text when it has fewer words)."""
    words = _WORD.findall(text.casefold())
    if len(words) < SHINGLE_WORDS:
        return [" ".join(words).encode()] if words else []
    return list({" ".join(words[i:i + SHINGLE_WORDS]).encode() for i in range(len(words) - SHINGLE_WORDS + 1)})


@dataclass(frozen=True)
class Signature:
    """A document's MinHash (NUM_PERM unsigned 32-bit numbers) and how many shingles it has."""

    values: np.ndarray
    size: int

    def jaccard(self, other: Signature) -> float:
        """The estimated Jaccard similarity of the two documents' shingle sets."""
        return float(np.count_nonzero(self.values == other.values)) / len(self.values)

    def similarity(self, other: Signature) -> float:
        """The estimated share of the smaller document's shingles that the other holds too.

        A copy cut to half its length still scores near 1, where its Jaccard similarity is 0.5.
        """
        j = self.jaccard(other)
        common = j * (self.size + other.size) / (1 + j)
        return min(1.0, common / max(1, min(self.size, other.size)))

    def bands(self) -> list[tuple[int, int]]:
        """(band number, band hash) pairs: a candidate shares at least one with this signature."""
        b, r = banding()
        return [(i, _hash64(self.values[i * r:(i + 1) * r].tobytes())) for i in range(b)]

    def to_bytes(self) -> bytes:
        return self.values.astype("<u4").tobytes()

    @classmethod
    def from_bytes(cls, blob: bytes, size: int) -> Signature:
        return cls(np.frombuffer(blob, dtype="<u4"), size)


def signature(text: str) -> Signature | None:
    """The MinHash of `text`; None for a text without a word."""
    from datasketch import MinHash

    words = shingles(text)
    if not words:
        return None
    minhash = MinHash(num_perm=NUM_PERM, seed=SEED, scheme="affine32")
    for start in range(0, len(words), 8192):  # bounded memory for a long article
        minhash.update_batch(words[start:start + 8192])
    return Signature(minhash.hashvalues.astype("<u4"), len(words))


def _hash64(data: bytes) -> int:
    """A signed 64-bit hash (what an SQLite INTEGER holds)."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)


def best_match(new: Signature, candidates: dict[int, Signature], threshold: float, *,
               measure: str = "containment") -> int | None:
    """The key of the candidate most similar to `new`, if it reaches `threshold` (ties: the smallest key)."""
    best, best_score = None, threshold
    for key, other in candidates.items():
        score = new.similarity(other) if measure == "containment" else new.jaccard(other)
        if score >= best_score and (best is None or score > best_score or key < best):
            best, best_score = key, score
    return best
