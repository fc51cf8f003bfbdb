import pytest

from retrieval.pipeline import Answerer
from tests.fakes import FakeEmbedder


@pytest.fixture
def answerer(settings_for):
    """An Answerer over a temporary index with the fake embedder, and no calibrated "not found" threshold."""
    settings = settings_for(embedding={"model": "fake"}, chunking={"max_tokens": 40},
                            answer={"min_score": 0.0, "min_mixed_score": -100.0, "min_support": -100.0})
    return Answerer(settings, FakeEmbedder())
