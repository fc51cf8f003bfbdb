import numpy as np
import pytest

from retrieval.backends.embedded.check import segment_ids
from retrieval.backends.embedded.segments import (
    MERGE_FACTOR, Segment, SegmentInfo, auto_factory, build_index, load_index, plan_merge, save_index,
)


def unit(*values):
    v = np.array(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_a_flat_segment_searches_saves_and_loads(tmp_path):
    index = build_index(np.array([10, 20, 30]), np.stack([unit(1, 0, 0, 0), unit(0, 1, 0, 0), unit(1, 1, 0, 0)]),
                        "Flat")
    segment = Segment(1, "s", index)
    scores, ids = segment.search(unit(1, 0.1, 0, 0).reshape(1, -1), 2, nprobe=1)
    assert ids[0].tolist() == [10, 30]
    assert scores[0][0] > scores[0][1]

    path = tmp_path / "seg.faiss"
    save_index(index, path)
    loaded = load_index(path)
    assert loaded.d == 4 and loaded.ntotal == 3
    assert sorted(segment_ids(loaded).tolist()) == [10, 20, 30]
    assert not list(tmp_path.glob(".*.tmp"))
    assert path.stat().st_mode & 0o777 == 0o644  # readable like the SQLite file beside it


def test_tombstones_mask_dead_vectors_without_rewriting_the_file():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    segment = Segment(1, "s", build_index(np.arange(100, 150), vectors, "Flat"))
    _, ids = segment.search(vectors[:1], 3, nprobe=1)
    assert ids[0][0] == 100
    segment.kill([100, 101])
    _, ids = segment.search(vectors[:1], 50, nprobe=1)
    found = [i for i in ids[0].tolist() if i >= 0]
    assert 100 not in found and 101 not in found and len(found) == 48


def test_an_ivf_segment_takes_ids_and_tombstones():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(2000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = build_index(np.arange(2000) + 5, vectors, "IVF16,Flat")
    segment = Segment(1, "s", index)
    _, ids = segment.search(vectors[7:8], 1, nprobe=16)
    assert ids[0][0] == 12
    segment.kill([12])
    _, ids = segment.search(vectors[7:8], 5, nprobe=16)
    assert 12 not in ids[0].tolist()
    assert sorted(segment_ids(index).tolist()) == list(range(5, 2005))


def test_an_hnsw_factory_is_wrapped_to_keep_ids():
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(300, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = build_index(np.arange(300) * 3, vectors, "HNSW16")
    _, ids = Segment(1, "s", index).search(vectors[4:5], 1, nprobe=1)
    assert ids[0][0] == 12


def test_auto_factory_is_exact_below_the_threshold():
    assert auto_factory(10_000, 50_000) == "Flat"
    assert auto_factory(1_000_000, 50_000) == "IVF4096,Flat"


def test_same_sized_segments_merge_in_tiers_and_dead_heavy_ones_are_rewritten():
    small = [SegmentInfo(i, 5, 0) for i in range(MERGE_FACTOR - 1)]
    assert plan_merge(small) == []
    assert plan_merge(small + [SegmentInfo(99, 6, 0)]) == [*range(MERGE_FACTOR - 1), 99]
    # one big segment and a few small ones: nothing to do
    assert plan_merge([SegmentInfo(1, 10_000, 0), SegmentInfo(2, 5, 0), SegmentInfo(3, 7, 0)]) == []
    assert plan_merge([SegmentInfo(1, 10_000, 4_000), SegmentInfo(2, 5, 0)]) == [1]
    assert plan_merge([SegmentInfo(1, 10, 10), SegmentInfo(2, 5, 0)]) == [1]


@pytest.mark.parametrize("factory", ["Flat", "IVF8,Flat"])
def test_an_empty_or_all_dead_segment_returns_nothing(factory):
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(400, 4)).astype(np.float32)
    segment = Segment(1, "s", build_index(np.arange(400), vectors, factory))
    segment.kill(range(400))
    _, ids = segment.search(vectors[:1], 5, nprobe=8)
    assert (ids < 0).all()


@pytest.mark.parametrize("factory", ["Flat", "IVF16,Flat"])
def test_a_filter_given_to_faiss_returns_the_best_allowed_live_vectors(factory):
    from retrieval.backends.embedded.segments import SegmentSet

    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(3000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(3000) + 1
    segments = SegmentSet(None, 16, nprobe=16)  # nprobe 16 of 16 lists: IVF is exact here
    for n, part in enumerate(np.array_split(np.arange(3000), 3)):
        segments.segments[n] = Segment(n, f"s{n}", build_index(ids[part], vectors[part], factory))
    segments.segments[1].kill([1500, 1501])
    allowed = np.sort(rng.choice(ids, 60, replace=False))
    allowed = np.union1d(allowed, [1500, 1501])  # dead ones stay out even when allowed
    query = vectors[0]
    live = np.array([i for i in allowed if i not in (1500, 1501)])
    exact = live[np.argsort(-(vectors[live - 1] @ query), kind="stable")][:10]
    found = segments.search(query, 10, allowed)
    assert [i for i, _ in found] == exact.tolist()
    assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)
    assert segments.search(query, 10, np.array([], dtype=np.int64)) == []
