"""Exact nearest-neighbour queries by chunked GEMM: memory is bounded by the chunk, not by N x M."""

import torch

def sq_distances(a, b):
    """Squared Euclidean distances [len(a), len(b)] as |a|^2 + |b|^2 - 2 a.b^T (one GEMM), clamped at 0.
    |b|^2 rides in the GEMM's bias (addmm) and the rest is in place: two passes over the result, not five."""
    d = torch.addmm(b.square().sum(1).unsqueeze(0), a, b.t(), alpha=-2)
    return d.add_(a.square().sum(1, keepdim=True)).clamp_min_(0)

def row_chunks(n, chunk):
    for start in range(0, n, chunk):
        yield slice(start, min(start + chunk, n))

def kth_neighbour_sq_radii(x, k, chunk=1024):
    """Squared distance from each row of x to its k-th nearest other row (self excluded)."""
    if not 1 <= k < len(x):
        raise ValueError(f'k={k} needs at least {k + 1} points, got {len(x)}')
    return torch.cat([sq_distances(x[s], x).kthvalue(k + 1, dim=1).values for s in row_chunks(len(x), chunk)])

def nearest(queries, points, chunk=1024):
    """(squared distance, index) of the nearest row of `points` for every row of `queries`."""
    if len(points) == 0:
        raise ValueError('nearest() needs at least one point to search')
    dists, idx = zip(*(sq_distances(queries[s], points).min(dim=1) for s in row_chunks(len(queries), chunk)))
    return torch.cat(dists), torch.cat(idx)

def count_within(queries, points, sq_radii, strict, chunk=1024):
    """For each query, how many points p have |q - p|^2 within p's radius (< if strict, else <=)."""
    out = []
    for s in row_chunks(len(queries), chunk):
        d = sq_distances(queries[s], points)
        inside = d < sq_radii.unsqueeze(0) if strict else d <= sq_radii.unsqueeze(0)
        out.append(inside.sum(dim=1))
    return torch.cat(out)
