"""RS-IMLE pool, rejection and matching on tiny data with known answers, and against brute force."""

import math

import pytest
import torch

from rtm_plugin.imle.features import RandomProjection
from rtm_plugin.imle.matching import NO_MATCH, match, match_shard, merge_matches, pool_size

def brute_force(data, pool, eps):
    d = torch.cdist(data.double(), pool.double())                 # Euclidean
    rejected = (d < eps).any(dim=0)
    d[:, rejected] = math.inf
    best, idx = d.min(dim=1)
    idx[torch.isinf(best)] = NO_MATCH
    return idx, rejected

def test_pool_size_rounds_as_the_official_code():
    assert pool_size(100, 20, 1024) == 2048                        # ceil(2000 / 1024) * 1024
    assert pool_size(1000, 20) == 20000
    assert pool_size(3, 2.5) == 8                                  # ceil(7.5)
    with pytest.raises(ValueError, match='force_factor'):
        pool_size(10, 0)

def test_known_answer_on_a_line():
    # Data at 0 and 10; pool at 0.05 (too close to 0), 1, 9.95 (too close to 10), 12.
    data = torch.tensor([[0.0], [10.0]])
    pool = torch.tensor([[0.05], [1.0], [9.95], [12.0]])
    m = match(data, pool, eps=0.1)
    assert m.rejected.tolist() == [True, False, True, False]
    assert m.index.tolist() == [1, 3]
    assert torch.allclose(m.sq_dist, torch.tensor([1.0, 4.0]))
    plain = match(data, pool, eps=0.0)                             # eps = 0: IMLE, nothing rejected
    assert plain.rejected.sum() == 0 and plain.index.tolist() == [0, 2]

def test_rejection_is_strict_and_global():
    data = torch.tensor([[0.0], [5.0]])
    pool = torch.tensor([[1.0], [4.0], [3.0]])
    m = match(data, pool, eps=1.0)                                 # distance exactly eps: kept
    assert m.rejected.tolist() == [False, False, False]
    m = match(data, pool, eps=1.5)                                 # pool 0 and 1 each too close to one point
    assert m.rejected.tolist() == [True, True, False]
    assert m.index.tolist() == [2, 2]                              # both fall back to the survivor

def test_all_rejected_gives_no_match():
    data = torch.tensor([[0.0, 0.0]])
    pool = torch.tensor([[0.01, 0.0], [0.0, 0.02]])
    m = match(data, pool, eps=0.5)
    assert m.index.tolist() == [NO_MATCH] and math.isinf(m.sq_dist.item())

@pytest.mark.parametrize('eps', [0.0, 0.9, 1.1])
def test_matches_brute_force_and_never_a_rejected_sample(eps):
    g = torch.Generator().manual_seed(int(eps * 10))
    proj = RandomProjection([3, 4, 4], dim=16, seed=1)
    data = proj(torch.rand([60, 3, 4, 4], generator=g) * 2 - 1)
    pool = proj(torch.rand([500, 3, 4, 4], generator=g) * 2 - 1)
    want_idx, want_rej = brute_force(data, pool, eps)
    for max_elements in (60, 60 * 7, 1 << 24):                     # 1, 7 and all columns per chunk
        m = match(data, pool, eps, max_elements=max_elements)
        assert torch.equal(m.rejected, want_rej)
        assert torch.equal(m.index, want_idx)
        ok = m.index != NO_MATCH
        assert not m.rejected[m.index[ok]].any()
    if eps == 0:
        assert not m.rejected.any()
    else:
        assert 0 < m.rejected.sum() < len(pool)

def test_sharded_pool_merges_to_the_single_process_answer():
    g = torch.Generator().manual_seed(3)
    data, pool = torch.randn([40, 8], generator=g), torch.randn([301, 8], generator=g)
    data, pool = torch.nn.functional.normalize(data, dim=1), torch.nn.functional.normalize(pool, dim=1)
    whole = match(data, pool, eps=0.6)
    bounds = [0, 100, 101, 250, 301]
    parts = [match_shard(data, pool[a:b], 0.6, offset=a) for a, b in zip(bounds, bounds[1:])]
    index, sq = merge_matches(torch.stack([p.index for p in parts]), torch.stack([p.sq_dist for p in parts]))
    assert torch.equal(index, whole.index) and torch.equal(sq, whole.sq_dist)
    assert torch.equal(torch.cat([p.rejected for p in parts]), whole.rejected)

def test_merge_prefers_the_lower_index_on_ties_and_skips_empty_shards():
    index, sq = merge_matches(torch.tensor([[7, NO_MATCH], [3, NO_MATCH]]),
                              torch.tensor([[1.0, math.inf], [1.0, math.inf]]))
    assert index.tolist() == [3, NO_MATCH]

def test_merge_takes_and_returns_index_then_distance():
    """merge_matches(indices, sq_dists) -> (index, sq_dist): the order of its arguments and of Matches."""
    index, sq = merge_matches(torch.tensor([[4, 9], [2, 5]]), torch.tensor([[0.5, 0.25], [0.75, 0.125]]))
    assert index.dtype == torch.int64 and index.tolist() == [4, 5]
    assert sq.tolist() == [0.5, 0.125]

def test_faiss_backend_agrees():
    faiss = pytest.importorskip('faiss', reason='faiss-cpu is the optional backend (pip install faiss-cpu)')
    g = torch.Generator().manual_seed(5)
    proj = RandomProjection([3, 4, 4], dim=16, seed=2)
    data = proj(torch.rand([50, 3, 4, 4], generator=g) * 2 - 1)
    pool = proj(torch.rand([400, 3, 4, 4], generator=g) * 2 - 1)
    for eps in (0.0, 1.0):
        a, b = match(data, pool, eps), match(data, pool, eps, backend='faiss')
        assert torch.equal(a.rejected, b.rejected)
        assert torch.equal(a.index, b.index)

def test_projection_is_seeded_and_unit_norm():
    x = torch.rand([5, 3, 8, 8]) * 2 - 1
    a, b = RandomProjection([3, 8, 8], 800, seed=7), RandomProjection([3, 8, 8], 800, seed=7)
    assert torch.equal(a.matrix, b.matrix)
    assert torch.allclose(a.matrix.norm(dim=1), torch.ones(3 * 64))
    f = a(x)
    assert f.shape == (5, 800) and torch.allclose(f.norm(dim=1), torch.ones(5))
    with pytest.raises(ValueError, match=r'\[N, 3, 8, 8\]'):
        a(torch.zeros([2, 3, 4, 4]))

def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match='differ in dimension'):
        match(torch.zeros([2, 3]), torch.zeros([4, 5]), 0.1)
    with pytest.raises(ValueError, match='eps'):
        match(torch.zeros([2, 3]), torch.zeros([4, 3]), -1)
    with pytest.raises(ValueError, match='backend'):
        match(torch.zeros([2, 3]), torch.zeros([4, 3]), 0.1, backend='annoy')
