"""Frechet distance between Gaussian fits of two feature sets (FID), and the Inception Score.

As stylegan2-ada's fid50k_full: float64 statistics, the covariance normalised by N (not N - 1), and the real part
of scipy's matrix square root. TTUR's guard for a singular product (a small diagonal offset) is added.
"""

import warnings

import numpy as np
import scipy.linalg
import scipy.special
import torch

def _as_matrix(name, x):
    x = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f'{name} must be a [N, D] array with N >= 2, got shape {list(x.shape)}')
    if not np.isfinite(x).all():
        raise ValueError(f'{name} contains NaN or infinite values')
    return x

def feature_stats(features):
    """(mean [D], covariance [D, D]) in float64, the covariance normalised by N as stylegan2-ada does."""
    x = _as_matrix('features', features)
    mu = x.mean(0)
    return mu, np.cov(x, rowvar=False, bias=True).reshape(len(mu), len(mu))

def _sqrtm(a):
    """scipy's sqrtm, quiet about singular input (rank-deficient covariances are normal), as upstream's disp=False."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', scipy.linalg.LinAlgWarning)
        return scipy.linalg.sqrtm(a)

def fid_from_stats(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """|mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)), clamped at 0."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (len(mu1), len(mu1)):
        raise ValueError(f'mismatched statistics: means {mu1.shape} vs {mu2.shape}, '
                         f'covariances {sigma1.shape} vs {sigma2.shape}')
    covmean = _sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(mu1)) * eps               # a singular product: nudge it, as TTUR's fid.py does
        covmean = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)                        # drop the tiny imaginary residue of sqrtm, like upstream
    fid = np.square(mu1 - mu2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)
    return float(max(fid, 0.0))

def fid_from_features(real, fake):
    """FID between two feature sets [N, D] and [M, D] (numpy or torch)."""
    real, fake = _as_matrix('real features', real), _as_matrix('fake features', fake)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f'real features have {real.shape[1]} dims but fake features have {fake.shape[1]}')
    return fid_from_stats(*feature_stats(real), *feature_stats(fake))

def inception_score(probs, splits=1, return_std=False):
    """exp(E_x KL(p(y|x) || p(y))), averaged over `splits` equal parts of the samples.

    probs: [N, K] class probabilities (rows sum to 1). StudioGAN reports splits=1; stylegan2-ada's is50k uses 10
    and also reports the standard deviation over splits (return_std=True gives (mean, std)).
    """
    p = _as_matrix('probs', probs)
    if (p < 0).any() or not np.allclose(p.sum(1), 1, atol=1e-3):
        raise ValueError('probs must be non-negative rows that sum to 1 (softmax outputs)')
    if not isinstance(splits, int) or not 1 <= splits <= len(p):
        raise ValueError(f'splits must be an integer in 1..{len(p)} (the number of samples), got {splits!r}')
    scores = []
    for i in range(splits):
        part = p[i * len(p) // splits: (i + 1) * len(p) // splits]
        kl = scipy.special.rel_entr(part, part.mean(0, keepdims=True)).sum(1).mean()   # 0 log 0 = 0
        scores.append(np.exp(kl))
    mean, std = float(np.mean(scores)), float(np.std(scores))
    return (mean, std) if return_std else mean
