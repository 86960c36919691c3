"""Detector features of an image set, streamed in batches, and the on-disk cache of the reals' statistics.

FeatureStats accumulates the float64 mean and covariance (normalised by N, as stylegan2-ada) batch by batch or,
when asked, keeps every feature (the k-NN metrics and KID need them). Reference statistics are cached as .npz
files in the layout pytorch-fid and clean-fid use (`mu`, `sigma`), or with `features` where every feature is
needed, plus the provenance (`detector`, `num_images`, `fingerprint`, `resolution`), under <cache root>/gan-metrics/. The file name
is keyed by the set's fingerprint, the detector's weights and the image count, so another dataset, detector or
count never reuses a file.
"""

import hashlib
import json
import os

import numpy as np
import torch
from tqdm import tqdm

from rtm_plugin.files import atomic_write, cache_dir as resolve_cache_dir

STATS_VERSION = 1

def gaussian_fit(features):
    """(mean, covariance normalised by N) in float64, as stylegan2-ada fits features."""
    x = np.asarray(features, dtype=np.float64)
    mu = x.mean(0)
    return mu, np.cov(x, rowvar=False, bias=True).reshape(len(mu), len(mu))

class FeatureStats:
    """Features [B, D] appended batch by batch: running float64 sums for the mean and covariance, or, with
    capture_all, every row (float32), the mean and covariance then computed from the rows only if asked."""

    def __init__(self, capture_all=False):
        self.capture_all, self.num, self.dim, self._sum, self._outer, self._rows = capture_all, 0, None, None, None, []

    def append(self, x):
        x = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
        if not np.isfinite(x).all():
            raise ValueError('the detector returned NaN or infinite features')
        self.num += len(x)
        self.dim = x.shape[1]
        if self.capture_all:
            self._rows.append(x.astype(np.float32))
            return
        if self._sum is None:
            self._sum, self._outer = np.zeros(x.shape[1]), np.zeros((x.shape[1], x.shape[1]))
        self._sum += x.sum(0)
        self._outer += x.T @ x

    @property
    def features(self):
        return np.concatenate(self._rows) if self.capture_all else None

    def moments(self):
        """(mu, sigma), sigma normalised by N."""
        if self.capture_all:
            return gaussian_fit(self.features)
        mu = self._sum / self.num
        return mu, self._outer / self.num - np.outer(mu, mu)

@torch.no_grad()
def stream_features(images, fn, capture_all=False, batch_size=256, progress=False, desc='features'):
    """FeatureStats of fn(uint8 torch batch) over every batch of the ImageStream `images`, with a tqdm bar."""
    stats = FeatureStats(capture_all)
    with tqdm(total=len(images), desc=desc, unit='img', disable=not progress, leave=False) as bar:
        for batch in images.batches(batch_size):
            stats.append(fn(torch.from_numpy(np.ascontiguousarray(batch))))
            bar.update(len(batch))
    return stats

class ReferenceStats:
    """What a metric needs of the reals: mu and sigma (computed from the features when not given), optionally every
    feature, and where they came from."""

    def __init__(self, mu=None, sigma=None, num=None, features=None, detector=None, resolution=None, source=None):
        self._mu, self._sigma, self.num, self.features = mu, sigma, num, features
        self.detector, self.resolution, self.source = detector, resolution, source

    @property
    def dim(self):
        return len(self._mu) if self._mu is not None else self.features.shape[1]

    def moments(self):
        if self._mu is None:
            self._mu, self._sigma = gaussian_fit(self.features)
        return self._mu, self._sigma

def save_stats(path, ref, fingerprint=''):
    """Write `ref` as an .npz (mu and sigma, or features; and the provenance), atomically."""
    arrays = dict(num_images=np.int64(ref.num), detector=np.str_(ref.detector or ''),
                  fingerprint=np.str_(fingerprint), resolution=np.int64(ref.resolution or 0),
                  version=np.int64(STATS_VERSION))
    if ref.features is not None:
        arrays['features'] = ref.features
    else:
        arrays['mu'], arrays['sigma'] = ref.moments()
    atomic_write(path, lambda f: np.savez(f, **arrays))
    return path

def load_stats(path):
    """A ReferenceStats from an .npz with `mu` and `sigma` (ours, pytorch-fid's or clean-fid's) or `features`."""
    try:
        with np.load(path, allow_pickle=False) as z:
            has_moments = 'mu' in z and 'sigma' in z
            if not has_moments and 'features' not in z:
                raise ValueError(f'it holds {", ".join(z.files) or "nothing"}, not mu and sigma')
            mu = z['mu'].astype(np.float64) if has_moments else None
            sigma = z['sigma'].astype(np.float64) if has_moments else None
            features = z['features'] if 'features' in z else None
            num = int(z['num_images']) if 'num_images' in z else (len(features) if features is not None else None)
            detector = str(z['detector']) if 'detector' in z and str(z['detector']) else None
            resolution = int(z['resolution']) if 'resolution' in z and int(z['resolution']) else None
    except ValueError as e:
        raise ValueError(f'{path}: not usable reference statistics ({e})') from None
    except Exception as e:
        raise ValueError(f'{path}: cannot read reference statistics ({type(e).__name__}: {e})') from None
    if has_moments and (mu.ndim != 1 or sigma.shape != (len(mu), len(mu))):
        raise ValueError(f'{path}: mu {list(mu.shape)} and sigma {list(sigma.shape)} are not a mean and its covariance')
    if features is not None and (features.ndim != 2 or len(features) < 2):
        raise ValueError(f'{path}: features {list(features.shape)} are not [N >= 2, D]')
    return ReferenceStats(mu, sigma, num, features, detector, resolution, source=os.fspath(path))

def stats_cache_path(images, detector_id, cache_dir=None, capture_all=False):
    """<cache root>/gan-metrics/<detector>-<count>-<key>[-features].npz for an ImageStream and a detector's cache_id."""
    key = json.dumps(dict(version=STATS_VERSION, fingerprint=images.fingerprint(), detector=detector_id,
                          num=len(images), shape=list(images.shape)), sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:20]
    name = f'{detector_id.split("-")[0]}-{len(images)}-{digest}{"-features" if capture_all else ""}.npz'
    return resolve_cache_dir('gan-metrics', root=cache_dir) / name
