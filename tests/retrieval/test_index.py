import numpy as np
import pytest

from retrieval.index import FaissIndex


def unit(*values):
    v = np.array(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_add_search_remove_save_load(tmp_path):
    index = FaissIndex(4)
    index.add(np.array([10, 20, 30]), np.stack([unit(1, 0, 0, 0), unit(0, 1, 0, 0), unit(1, 1, 0, 0)]))
    scores, ids = index.search(unit(1, 0.1, 0, 0).reshape(1, -1), 2)
    assert ids[0].tolist() == [10, 30]
    assert scores[0][0] > scores[0][1]

    index.remove(np.array([10]))
    assert len(index) == 2
    _, ids = index.search(unit(1, 0, 0, 0).reshape(1, -1), 3)
    assert 10 not in ids[0].tolist()

    path = tmp_path / "v.faiss"
    index.save(path)
    loaded = FaissIndex.load(path)
    assert loaded.dim == 4 and len(loaded) == 2
    assert not list(tmp_path.glob(".*.tmp"))


def test_wrong_dimension_is_refused():
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        FaissIndex(4).add(np.array([1]), np.ones((1, 3), dtype=np.float32))


def test_search_on_empty_index_returns_nothing():
    scores, ids = FaissIndex(4).search(unit(1, 0, 0, 0).reshape(1, -1), 5)
    assert ids.shape == (1, 0)
