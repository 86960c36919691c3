"""Chunked exact k-NN and the manifold metrics, cross-checked against the prdc package and brute force."""

import numpy as np
import prdc
import pytest
import torch

from rtm_plugin.knn import kth_neighbour_sq_radii, nearest
from rtm_plugin.metrics.manifold import density_coverage, precision_recall

@pytest.mark.parametrize('k,chunk', [(3, 7), (5, 1024), (7, 64)])
def test_matches_prdc_package(k, chunk):
    rng = np.random.default_rng(k)
    real = rng.normal(size=(300, 12))
    fake = rng.normal(loc=0.25, scale=1.1, size=(250, 12))
    ref = prdc.compute_prdc(real, fake, nearest_k=k)
    ours = {**precision_recall(real, fake, k=k, chunk=chunk), **density_coverage(real, fake, k=k, chunk=chunk)}
    for key in ('precision', 'recall', 'density', 'coverage'):
        assert ours[key] == pytest.approx(float(ref[key]), abs=1e-12), key

def test_nearest_and_radii_match_brute_force():
    torch.manual_seed(0)
    q, p = torch.randn(37, 5, dtype=torch.float64), torch.randn(53, 5, dtype=torch.float64)
    full = torch.cdist(q, p).square()
    d, i = nearest(q, p, chunk=8)
    torch.testing.assert_close(d, full.min(1).values)
    assert torch.equal(i, full.argmin(1))
    self_d = torch.cdist(p, p).square()
    torch.testing.assert_close(kth_neighbour_sq_radii(p, 3, chunk=5), self_d.sort(1).values[:, 3])

def test_upstream_precision_counts_the_ball_boundary():
    # stylegan2-ada's pr50k3 uses <=, prdc's density uses <: a fake exactly on a real ball's boundary.
    real = np.array([[-1.0], [0.0], [1.0]])  # every real ball has radius 1
    fake = np.array([[2.0], [2.5]])          # 2.0 lies exactly on the ball of real 1.0; 2.5 lies outside all
    assert precision_recall(real, fake, k=1)['precision'] == 0.5
    assert density_coverage(real, fake, k=1)['density'] == 0.0

def test_bad_input():
    with pytest.raises(ValueError, match='needs at least 4 points'):
        precision_recall(np.zeros((3, 2)), np.zeros((10, 2)), k=3)
    with pytest.raises(ValueError, match='non-empty'):
        density_coverage(np.zeros((10, 2)), np.zeros((0, 2)))
    with pytest.raises(ValueError, match='at least one point'):
        nearest(torch.zeros(2, 2), torch.zeros(0, 2))
