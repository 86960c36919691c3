"""FID, Inception Score and mode statistics against closed forms and known distributions."""

import numpy as np
import pytest
import scipy.linalg
import torch

from rtm_plugin.metrics.fid import feature_stats, fid_from_features, fid_from_stats, inception_score
from rtm_plugin.metrics.modes import mode_stats

def random_spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)

def fid_symmetric(mu1, s1, mu2, s2):
    """The same distance through the symmetric form tr((s1^1/2 s2 s1^1/2)^1/2), by eigendecomposition only."""
    w, v = np.linalg.eigh(s1)
    root1 = v @ np.diag(np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root1 @ s2 @ root1)
    return np.square(mu1 - mu2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(inner, 0, None)).sum()

def test_fid_of_diagonal_gaussians_has_its_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var1, var2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    expected = np.square(mu1 - mu2).sum() + np.square(np.sqrt(var1) - np.sqrt(var2)).sum()   # 5 + 1 + 1
    assert fid_from_stats(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected, rel=1e-12)
    assert expected == 7.0

@pytest.mark.parametrize('d', [2, 16, 64])
def test_fid_of_full_covariances_matches_the_symmetric_form(d):
    rng = np.random.default_rng(d)
    mu1, mu2, s1, s2 = rng.normal(size=d), rng.normal(size=d), random_spd(rng, d), random_spd(rng, d)
    assert fid_from_stats(mu1, s1, mu2, s2) == pytest.approx(fid_symmetric(mu1, s1, mu2, s2), rel=1e-8)

def test_fid_from_features_uses_biased_covariance_like_stylegan2_ada():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(500, 8)), rng.normal(loc=0.3, scale=1.5, size=(400, 8))
    mu, sigma = feature_stats(real)
    np.testing.assert_allclose(sigma, (real - real.mean(0)).T @ (real - real.mean(0)) / len(real))
    mu_f, sigma_f = real.mean(0), np.cov(real, rowvar=False, bias=True)
    assert np.allclose(mu, mu_f) and np.allclose(sigma, sigma_f)
    expected = fid_symmetric(*feature_stats(real), *feature_stats(fake))
    assert fid_from_features(real, fake) == pytest.approx(expected, rel=1e-8)
    assert fid_from_features(torch.from_numpy(real).float(), torch.from_numpy(fake).float()) == pytest.approx(
        expected, rel=1e-4)

def test_fid_of_large_gaussian_samples_approaches_the_population_value():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(40000, 4))
    fake = rng.normal(loc=[1, 0, 0, 0], scale=2.0, size=(40000, 4))
    assert fid_from_features(real, fake) == pytest.approx(1 + 4 * (2 - 1) ** 2, abs=0.1)       # |mu|^2 + D (2-1)^2

def test_fid_is_zero_for_identical_sets_and_finite_for_singular_covariances():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 10))
    assert abs(fid_from_features(x, x)) < 1e-8
    low_rank = rng.normal(size=(30, 3)) @ rng.normal(size=(3, 10))     # rank 3 in 10 dims: sqrtm's complex residue
    value = fid_from_features(low_rank, x)
    assert np.isfinite(value) and isinstance(value, float) and value > 0
    ref = fid_symmetric(*feature_stats(low_rank), *feature_stats(x))
    assert value == pytest.approx(ref, rel=1e-5)

def test_fid_bad_input():
    with pytest.raises(ValueError, match='8 dims but fake features have 9'):
        fid_from_features(np.zeros((5, 8)), np.zeros((5, 9)))
    with pytest.raises(ValueError, match=r'N >= 2'):
        fid_from_features(np.zeros((1, 8)), np.zeros((5, 8)))
    with pytest.raises(ValueError, match='NaN'):
        fid_from_features(np.full((5, 2), np.nan), np.zeros((5, 2)))
    with pytest.raises(ValueError, match='mismatched statistics'):
        fid_from_stats(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))

def upstream_style_is(probs, splits):
    """Salimans et al.'s formula written out directly (log of strictly positive probabilities)."""
    scores = []
    for part in np.array_split(probs, splits):
        py = part.mean(0, keepdims=True)
        scores.append(np.exp(np.mean(np.sum(part * (np.log(part) - np.log(py)), 1))))
    return np.mean(scores), np.std(scores)

def test_inception_score_of_known_distributions():
    k = 10
    onehot_balanced = np.eye(k)[np.arange(1000) % k]
    assert inception_score(onehot_balanced) == pytest.approx(k)                 # confident and diverse: K
    assert inception_score(np.full((100, k), 1 / k)) == pytest.approx(1.0)     # no confidence: 1
    assert inception_score(np.eye(k)[np.zeros(100, int)]) == pytest.approx(1.0)  # no diversity: 1
    assert inception_score(np.eye(k)[np.arange(100) % 2]) == pytest.approx(2.0)
    mean, std = inception_score(onehot_balanced, splits=10, return_std=True)
    assert mean == pytest.approx(k) and std == pytest.approx(0.0, abs=1e-12)

@pytest.mark.parametrize('splits', [1, 10])
def test_inception_score_matches_the_reference_formula(splits):
    rng = np.random.default_rng(splits)
    probs = rng.dirichlet(np.full(20, 0.3), size=1000)
    ref_mean, ref_std = upstream_style_is(probs, splits)
    mean, std = inception_score(torch.from_numpy(probs), splits=splits, return_std=True)
    assert mean == pytest.approx(ref_mean, rel=1e-10) and std == pytest.approx(ref_std, rel=1e-8, abs=1e-12)

def test_inception_score_bad_input():
    with pytest.raises(ValueError, match='sum to 1'):
        inception_score(np.ones((10, 3)))
    with pytest.raises(ValueError, match='splits'):
        inception_score(np.full((10, 2), 0.5), splits=11)

def test_mode_stats_known_answers():
    assert mode_stats(np.arange(3000) % 1000) == {'modes': 1000, 'kl': 0.0}
    collapsed = mode_stats(np.full(500, 7))
    assert collapsed['modes'] == 1 and collapsed['kl'] == pytest.approx(np.log(1000))
    half = mode_stats(torch.arange(1000) % 500)                                  # half the modes, evenly
    assert half['modes'] == 500 and half['kl'] == pytest.approx(np.log(2))
    skewed = mode_stats([0, 0, 0, 1], num_modes=2)                               # p = (3/4, 1/4) against (1/2, 1/2)
    assert skewed['kl'] == pytest.approx(0.75 * np.log(1.5) + 0.25 * np.log(0.5))

def test_mode_stats_bad_input():
    with pytest.raises(ValueError, match=r'0\.\.999'):
        mode_stats([0, 1000])
    with pytest.raises(ValueError, match='integers'):
        mode_stats(np.array([0.5]))
    with pytest.raises(ValueError, match='non-empty'):
        mode_stats([])
