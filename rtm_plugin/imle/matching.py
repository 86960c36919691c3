"""RS-IMLE's pool, rejection and matching, exact, on projected features.

Rejection sampling IMLE (Vashist et al., ECCV 2024): draw a pool of latents, drop every pool sample that lies
closer than `eps` to ANY data point (Euclidean, strict `<`), then match each data point to its nearest surviving
sample. eps = 0 drops nothing: plain IMLE (Li & Malik).

One pass, one GEMM: the pool is processed in column chunks against all data points at once, so a chunk's
rejection is complete before its argmin is taken. Memory is N x chunk distances, with chunk chosen so that this
stays under `max_elements`, whatever the pool size. A pool split across ranks is matched shard by shard
(`match_shard`) and the per-rank winners are merged (`merge_matches`): the result is the same as one process.

The official code (SerChirag/rs-imle, sampler.py) queries DCI, an approximate index, for each data point's 5
nearest samples in 1024-sample chunks and rejects those within eps. Here the search is exact and rejects every
sample within eps, which is what the paper's algorithm states.
"""

import math
from dataclasses import dataclass

import torch

from rtm_plugin.knn import row_chunks

NO_MATCH = -1

def pool_size(num_data, force_factor, multiple=1):
    """ceil(force_factor * N), rounded up to a multiple of `multiple` (the official code uses 1024)."""
    if num_data < 1:
        raise ValueError(f'pool_size needs at least one data point, got {num_data}')
    if not force_factor > 0:
        raise ValueError(f'force_factor must be positive, got {force_factor!r}')
    return math.ceil(math.ceil(force_factor * num_data) / multiple) * multiple

@dataclass
class Matches:
    index: torch.Tensor         # [N] int64: the matched pool sample (global index), NO_MATCH if all were rejected
    sq_dist: torch.Tensor       # [N] float: squared feature distance to it (inf if none)
    rejected: torch.Tensor      # [P_shard] bool: pool samples dropped by rejection

    @property
    def num_rejected(self):
        return int(self.rejected.sum())

def _check(data, pool):
    for name, t in (('data', data), ('pool', pool)):
        if not isinstance(t, torch.Tensor) or t.ndim != 2:
            raise ValueError(f'{name} features must be a 2-D tensor, got {getattr(t, "shape", type(t).__name__)}')
    if data.shape[1] != pool.shape[1]:
        raise ValueError(f'data and pool features differ in dimension: {data.shape[1]} vs {pool.shape[1]}')
    if len(data) == 0:
        raise ValueError('no data features to match')

def _lift(x, query):
    """Rows lifted so that one GEMM gives squared distances, |q|^2 + |p|^2 - 2 q.p, with no pass over the
    [N, chunk] result: queries become [q, |q|^2, 1] and points [-2p, 1, |p|^2]. Filling one preallocated
    tensor costs less than the elementwise passes it replaces (benchmarks/bench_imle.py)."""
    n, d = x.shape
    out = torch.empty([n, d + 2], dtype=x.dtype, device=x.device)
    sq = torch.linalg.vector_norm(x, dim=1).square_()
    torch.mul(x, 1 if query else -2, out=out[:, :d])
    out[:, d], out[:, d + 1] = (sq, 1) if query else (1, sq)
    return out

def match_shard(data, pool, eps, offset=0, max_elements=1 << 24, backend='torch'):
    """Match every data point to its nearest pool sample within this shard, after rejection.

    data [N, D] and pool [P, D] are features; pool row i has global index offset + i. eps >= 0.
    """
    _check(data, pool)
    if eps < 0:
        raise ValueError(f'eps must be >= 0, got {eps!r}')
    if backend == 'faiss':
        return _match_shard_faiss(data, pool, eps, offset)
    if backend != 'torch':
        raise ValueError(f"backend must be 'torch' or 'faiss', got {backend!r}")
    n = len(data)
    best_d = torch.full([n], math.inf, dtype=data.dtype, device=data.device)     # on the features' device (GPU)
    best_i = torch.full([n], NO_MATCH, dtype=torch.int64, device=data.device)
    rejected = torch.zeros([len(pool)], dtype=torch.bool, device=data.device)
    sq_eps = eps * eps
    chunk = max(1, max_elements // n)
    lifted = _lift(data, query=True)
    for cols in row_chunks(len(pool), chunk):
        d = lifted @ _lift(pool[cols], query=False).t()             # [N, chunk] squared distances: the one GEMM
        if sq_eps > 0:
            too_close = d.amin(dim=0) < sq_eps                      # near ANY data point
            rejected[cols] = too_close
            d.index_fill_(1, torch.nonzero(too_close).squeeze(1), math.inf)   # touches rejected columns only
        d_min, i_min = d.min(dim=1)
        d_min.clamp_min_(0)                                         # rounding can dip just below 0
        better = d_min < best_d                                     # strict: the earlier index wins ties
        best_d = torch.where(better, d_min, best_d)
        best_i = torch.where(better, i_min + (cols.start + offset), best_i)
    return Matches(best_i, best_d, rejected)

def _match_shard_faiss(data, pool, eps, offset):
    """The same with faiss: range search for rejection, then an exact flat index of the survivors."""
    import faiss
    x = data.detach().float().contiguous().numpy()
    y = pool.detach().float().contiguous().numpy()
    rejected = torch.zeros([len(pool)], dtype=torch.bool)
    if eps > 0:
        index = faiss.IndexFlatL2(y.shape[1])
        index.add(y)
        _, _, ids = index.range_search(x, eps * eps)                # all pairs with d^2 < eps^2
        rejected[torch.from_numpy(ids.astype('int64'))] = True
    keep = torch.nonzero(~rejected).squeeze(1)
    best_d = torch.full([len(data)], math.inf, dtype=data.dtype)
    best_i = torch.full([len(data)], NO_MATCH, dtype=torch.int64)
    if len(keep):
        index = faiss.IndexFlatL2(y.shape[1])
        index.add(y[keep.numpy()])
        dist, ids = index.search(x, 1)
        best_d = torch.from_numpy(dist[:, 0]).to(data.dtype)
        best_i = keep[torch.from_numpy(ids[:, 0].astype('int64'))] + offset
    return Matches(best_i, best_d, rejected)

def merge_matches(indices, sq_dists):
    """Per-rank winners [K, N] (index, squared distance; Matches' order) -> (index, sq_dist) [N] of the global
    nearest (lowest index on ties, as one process would pick)."""
    indices, sq_dists = torch.as_tensor(indices), torch.as_tensor(sq_dists)
    none = torch.iinfo(torch.int64).max
    best = sq_dists.min(dim=0).values
    candidates = torch.where((sq_dists == best) & (indices != NO_MATCH), indices, none)
    pick = candidates.min(dim=0).values
    return torch.where(pick == none, NO_MATCH, pick), best

def match(data, pool, eps, max_elements=1 << 24, backend='torch'):
    """Single-process matching: match_shard over the whole pool."""
    return match_shard(data, pool, eps, 0, max_elements, backend)
