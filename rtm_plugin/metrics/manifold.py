"""k-NN manifold metrics on detector features.

- Improved precision/recall (Kynkaenniemi et al. 2019), as stylegan2-ada's pr50k3: k=3, squared distances,
  radius = k-th neighbour excluding self, membership `<=`.
- Density/coverage (Naeem et al. 2020), as the `prdc` package: k=5 recommended, the same radius, strict `<`.
  Density = mean over fakes of (real balls containing it) / k; coverage = fraction of reals whose nearest
  fake lies inside their ball.
"""

import torch

from rtm_plugin.knn import count_within, kth_neighbour_sq_radii, nearest

def _as_features(name, x, dtype):
    x = torch.as_tensor(x)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f'{name} features must be a non-empty [N, D] array, got shape {list(x.shape)}')
    return x.to(dtype)

def precision_recall(real, fake, k=3, dtype=torch.float64, chunk=1024):
    real, fake = _as_features('real', real, dtype), _as_features('fake', fake, dtype)
    r_real = kth_neighbour_sq_radii(real, k, chunk)
    r_fake = kth_neighbour_sq_radii(fake, k, chunk)
    precision = (count_within(fake, real, r_real, strict=False, chunk=chunk) > 0).double().mean().item()
    recall = (count_within(real, fake, r_fake, strict=False, chunk=chunk) > 0).double().mean().item()
    return {'precision': precision, 'recall': recall}

def density_coverage(real, fake, k=5, dtype=torch.float64, chunk=1024):
    real, fake = _as_features('real', real, dtype), _as_features('fake', fake, dtype)
    r_real = kth_neighbour_sq_radii(real, k, chunk)
    density = count_within(fake, real, r_real, strict=True, chunk=chunk).double().mean().item() / k
    d_nearest_fake, _ = nearest(real, fake, chunk)
    coverage = (d_nearest_fake < r_real).double().mean().item()
    return {'density': density, 'coverage': coverage}
